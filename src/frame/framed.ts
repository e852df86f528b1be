/**
 * Frames over a connection: {@linkcode framed} for length-prefixed binary frames and
 * {@linkcode lines} for text lines, each a pair of Web Streams of whole messages.
 *
 * @module
 */

import { closedError } from "../errors.ts";
import type { Conn } from "../runtime/types.ts";
import { BATCH_BYTES, BurstTimer, type Decoder, type Encoder } from "./_codec.ts";
import { FrameEncoding, FrameParser, type FrameStreamOptions, maxFrameSizeOf } from "./codec.ts";
import { LineEncoding, LineParser, type LineStreamOptions, maxLineLengthOf } from "./lines.ts";

/**
 * A connection that carries whole messages: frames (`Uint8Array`) from {@linkcode framed} or
 * lines (`string`) from {@linkcode lines}.
 *
 * `readable` yields each message the peer sent and ends when the peer stops writing. Cancelling
 * it (as `break` in a `for await` loop does) stops reading without dropping what is still to be
 * written: the connection closes once `writable` is closed as well. A message
 * is the reader's to keep (see `FrameDecoderStream` for when a frame is a view). If the peer
 * sends bad input (an oversize length, a truncated frame, an overlong line, bytes that are not
 * UTF-8), the `IpcError` surfaces on `readable` after the messages that came before it, new
 * writes reject with it, what was already accepted for writing is sent, and the connection is
 * closed.
 *
 * `writable` takes one message per write. Messages written in one burst leave in one socket
 * write; a write resolves once the message is encoded into dockipc's bounded batch (or, for a
 * large payload, once the connection no longer needs its buffer), so awaiting writes is
 * backpressure. A message over the size limit is refused before any of it is sent: its write
 * rejects with `EFRAMETOOLARGE` or `ELINETOOLONG`, the messages accepted before it are still
 * delivered, and the writable is then errored while the connection stays open for reading.
 * `writable.close()` sends what is batched and ends the sending direction only.
 */
export interface FramedConn<T> extends AsyncDisposable {
  /** Messages from the peer. */
  readonly readable: ReadableStream<T>;
  /** Messages to the peer. */
  readonly writable: WritableStream<T>;
  /** Resolves once the connection is closed. Never rejects. */
  readonly closed: Promise<void>;
  /** Closes the connection at once: batched messages not yet sent are discarded. */
  close(): void;
}

/**
 * Carries length-prefixed frames over a connection: each write to `writable` is one frame,
 * each chunk from `readable` is one frame the peer wrote. The framing is a 4-byte big-endian
 * payload length, then the payload (`docs/PROTOCOL.md`); frames up to `maxFrameSize` (16 MiB by
 * default) are accepted in either direction. Take the streams from here and no longer use the
 * connection's own.
 *
 * @param conn A connection from `connect()` or `listen()`.
 * @param options The frame size limit.
 * @returns The connection as streams of frames.
 * @throws {RangeError} If `maxFrameSize` is not a whole number from 0 to 2³² − 1.
 *
 * @example A framed echo
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, framed, listen } from "@dockipc/dockipc";
 *
 * await using listener = await listen("tcp://127.0.0.1:0");
 * const client = framed(await connect(listener.addr));
 * const server = framed(await listener.accept());
 * server.readable.pipeTo(server.writable);
 *
 * const writer = client.writable.getWriter();
 * writer.write(new Uint8Array([1, 2, 3]));
 * writer.write(new Uint8Array(0));
 * await writer.close();
 * const frames = await Array.fromAsync(client.readable);
 * assert.deepEqual(frames, [new Uint8Array([1, 2, 3]), new Uint8Array(0)]);
 * ```
 */
export function framed(conn: Conn, options: FrameStreamOptions = {}): FramedConn<Uint8Array> {
  const max = maxFrameSizeOf("framed()", options);
  return join(conn, new FrameParser(max), new FrameEncoding(max));
}

/**
 * Carries text lines over a connection: each write to `writable` is one line (without its
 * line break), each chunk from `readable` is one line the peer wrote, without its `\n` or
 * `\r\n`. This is what `nc -U` and `socat` speak. Lines up to `maxLineLength` UTF-8 bytes (64 KiB
 * by default) are accepted in either direction.
 *
 * @param conn A connection from `connect()` or `listen()`.
 * @param options The line length limit.
 * @returns The connection as streams of lines.
 * @throws {RangeError} If `maxLineLength` is not a whole number from 0 to 2³¹.
 *
 * @example A line-protocol server and client
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen, lines } from "@dockipc/dockipc";
 *
 * await using listener = await listen("tcp://127.0.0.1:0");
 * (async () => {
 *   const server = lines(await listener.accept());
 *   const writer = server.writable.getWriter();
 *   for await (const command of server.readable) await writer.write(command.toUpperCase());
 *   await writer.close();
 * })();
 *
 * const client = lines(await connect(listener.addr));
 * const writer = client.writable.getWriter();
 * await writer.write("ping");
 * await writer.close();
 * assert.deepEqual(await Array.fromAsync(client.readable), ["PING"]);
 * ```
 */
export function lines(conn: Conn, options: LineStreamOptions = {}): FramedConn<string> {
  const max = maxLineLengthOf("lines()", options);
  return join(conn, new LineParser(max), new LineEncoding(max));
}

/** The first size of a connection's write batch: an idle connection holds two of these. */
const FIRST_BATCH_BYTES = 2048;

/** How long messages accepted before bad input arrived may take to leave before the close. */
const FLUSH_GRACE_MS = 2000;

/** Puts a decoder on a connection's readable side and an encoder on its writable side. */
function join<T>(conn: Conn, decoder: Decoder<T>, encoder: Encoder<T>): FramedConn<T> {
  let closing = false;
  let failed = false;
  let readCancelled = false;
  let writeEnded = false;
  let writeController: WritableStreamDefaultController;
  // Cancelling the connection's readable would close it and drop batched writes, so a cancelled
  // `readable` only stops reading; the connection closes once the writable has finished too.
  const closeIfDone = (): void => {
    if (readCancelled && writeEnded) conn.close();
  };
  const sink = new BatchSink(encoder, conn.writable.getWriter(), () => {
    writeEnded = true;
    closeIfDone();
  });
  const reader = conn.readable.getReader();
  /**
   * Ends both directions with `err`. After bad input from the peer, what was accepted for
   * writing before is still sent and the sending direction ended; what the peer still sends is
   * read and dropped until it ends too, as closing with unread input would reset the connection
   * and could cost the peer those last messages. All that takes `FLUSH_GRACE_MS` at most. After
   * a broken connection or `close()` there is nothing to save.
   */
  const fail = (err: unknown, flush: boolean): void => {
    if (failed) return;
    failed = true;
    writeController.error(err);
    if (!flush) {
      conn.close();
      return;
    }
    const timer = setTimeout(() => conn.close(), FLUSH_GRACE_MS);
    void (async () => {
      await sink.close().catch(() => {});
      while (!(await reader.read().catch(() => ({ done: true }))).done);
    })().finally(() => {
      clearTimeout(timer);
      conn.close();
    });
  };
  let readController: ReadableStreamDefaultController<T>;
  let emitted = false;
  let badInput: { error: unknown } | undefined;
  const emit = (value: T): void => {
    emitted = true;
    readController.enqueue(value);
  };
  const readable = new ReadableStream<T>({
    start(controller): void {
      readController = controller;
    },
    // One pull per chunk read from the socket, which may carry many messages.
    async pull(controller): Promise<void> {
      if (badInput !== undefined) {
        fail(badInput.error, true);
        throw badInput.error;
      }
      emitted = false;
      while (!emitted) {
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (err) {
          fail(err, false);
          throw err;
        }
        if (readCancelled) return;
        try {
          if (read.done) {
            if (!closing) decoder.end(emit);
            controller.close();
            return;
          }
          decoder.push(read.value, emit);
        } catch (err) {
          // Messages decoded from the same chunk before the bad input are delivered first.
          if (emitted) {
            badInput = { error: err };
            return;
          }
          fail(err, true);
          throw err;
        }
      }
    },
    cancel(): void {
      readCancelled = true;
      closeIfDone();
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream<T>({
    start(controller): void {
      writeController = controller;
    },
    write: (value) => sink.write(value),
    close: () => sink.close(),
    abort: (reason) => sink.abort(reason),
  });
  return {
    readable,
    writable,
    closed: conn.closed,
    close(): void {
      closing = true;
      fail(closedError("write", "connection"), false);
    },
    [Symbol.asyncDispose](): Promise<void> {
      this.close();
      return conn.closed;
    },
  };
}

/**
 * The writing half of `join`: encodes messages into a batch and writes batches to the
 * connection, one write in flight at a time, from two buffers that take turns. A batch leaves
 * when a burst of writes ends or when it is full, so small messages share socket writes.
 * Reusing the buffers is safe because a connection write resolves only once the connection no
 * longer needs the chunk.
 */
class BatchSink<T> {
  readonly #encoder: Encoder<T>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #timer = new BurstTimer(() => this.#burstEnded());
  /** The batch being filled: it starts small and doubles as bursts need, up to 64 KiB. */
  #buf = new Uint8Array(FIRST_BATCH_BYTES);
  #len = 0;
  #spare: Uint8Array<ArrayBuffer> | undefined;
  #inflight: Promise<void> | undefined;
  /** A burst ended while a batch was in flight: send the next one as soon as it lands. */
  #due = false;
  /** No write came for a few microtasks: the next one starts a burst. */
  #quiet = true;
  #failed = false;
  #error: unknown;

  /** Called once no more will be written: after `close()`, or once a message was refused. */
  readonly #onEnded: () => void;

  constructor(
    encoder: Encoder<T>,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    onEnded: () => void,
  ) {
    this.#encoder = encoder;
    this.#writer = writer;
    this.#onEnded = onEnded;
  }

  write(value: T): Promise<void> | undefined {
    if (this.#failed) throw this.#error;
    let n: number;
    try {
      n = this.#encoder.encode(value, this.#buf, this.#len);
      while (n < 0 && this.#buf.length < BATCH_BYTES) {
        const bigger = new Uint8Array(Math.min(this.#buf.length * 2, BATCH_BYTES));
        bigger.set(this.#buf.subarray(0, this.#len));
        this.#buf = bigger;
        n = this.#encoder.encode(value, this.#buf, this.#len);
      }
    } catch (err) {
      return this.#refuse(err);
    }
    if (n < 0) return this.#writeSlow(value);
    this.#len += n;
    // A write after a quiet spell is likely a lone message (a request, a reply): it leaves at
    // once. The writes that follow it in the same burst are batched.
    if (this.#quiet && this.#inflight === undefined) this.#send();
    this.#quiet = false;
    this.#timer.touch();
    return undefined;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.#writer.close();
    this.#onEnded();
  }

  abort(reason: unknown): Promise<void> {
    return this.#writer.abort(reason);
  }

  /** The value did not fit the room left, or is large enough to be written by reference. */
  async #writeSlow(value: T): Promise<void> {
    while (this.#inflight !== undefined) await this.#inflight;
    this.#throwIfFailed();
    if (this.#len > 0) this.#send();
    const n = this.#encoder.encode(value, this.#buf, 0);
    if (n >= 0) {
      this.#len = n;
      this.#timer.touch();
      return;
    }
    let chunks: Uint8Array[];
    try {
      chunks = this.#encoder.encodeAlone(value);
    } catch (err) {
      return this.#refuse(err);
    }
    await this.flush();
    for (const chunk of chunks) await this.#writer.write(chunk);
  }

  /** A refused message: nothing of it was written, and what was accepted before still goes out. */
  async #refuse(err: unknown): Promise<never> {
    await this.flush();
    this.#onEnded();
    throw err;
  }

  /** Resolves once everything accepted so far has been written to the connection. */
  async flush(): Promise<void> {
    while (this.#inflight !== undefined || this.#len > 0) {
      if (this.#inflight === undefined) this.#send();
      await this.#inflight;
      this.#throwIfFailed();
    }
    this.#throwIfFailed();
  }

  #burstEnded(): void {
    this.#quiet = true;
    if (this.#len === 0) return;
    if (this.#inflight === undefined) this.#send();
    else this.#due = true;
  }

  #send(): void {
    const sent = this.#buf;
    const chunk = sent.subarray(0, this.#len);
    this.#buf = this.#spare !== undefined && this.#spare.length >= sent.length
      ? this.#spare
      : new Uint8Array(sent.length);
    this.#spare = undefined;
    this.#len = 0;
    this.#due = false;
    this.#inflight = this.#writer.write(chunk).then(() => {
      this.#spare = sent;
      this.#inflight = undefined;
      if (this.#due && this.#len > 0) this.#send();
    }, (err: unknown) => {
      this.#inflight = undefined;
      this.#len = 0;
      if (!this.#failed) {
        this.#failed = true;
        this.#error = err;
      }
    });
  }

  #throwIfFailed(): void {
    if (this.#failed) throw this.#error;
  }
}
