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
 * `readable` yields each message the peer sent and ends when the peer stops writing. A message
 * is the reader's to keep (see `FrameDecoderStream` for when a frame is a view). If the peer
 * sends bad input (an oversize length, a truncated frame, an overlong line, bytes that are not
 * UTF-8), the connection is closed, the `IpcError` surfaces on `readable`, and writes reject
 * with it too.
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

/** Puts a decoder on a connection's readable side and an encoder on its writable side. */
function join<T>(conn: Conn, decoder: Decoder<T>, encoder: Encoder<T>): FramedConn<T> {
  let closing = false;
  let failed = false;
  let writeController: WritableStreamDefaultController;
  /** Bad input or a broken connection ends both directions with the same error. */
  const fail = (err: unknown): void => {
    if (failed) return;
    failed = true;
    conn.close();
    writeController.error(err);
  };
  const reader = conn.readable.getReader();
  let readController: ReadableStreamDefaultController<T>;
  let emitted = false;
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
      try {
        emitted = false;
        while (!emitted) {
          const { value, done } = await reader.read();
          if (done) {
            if (!closing) decoder.end(emit);
            controller.close();
            return;
          }
          decoder.push(value, emit);
        }
      } catch (err) {
        fail(err);
        throw err;
      }
    },
    cancel(reason): Promise<void> {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  const sink = new BatchSink(encoder, conn.writable.getWriter());
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
      fail(closedError("write", "connection"));
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
  #buf = new Uint8Array(BATCH_BYTES);
  #len = 0;
  #spare: Uint8Array<ArrayBuffer> | undefined;
  #inflight: Promise<void> | undefined;
  /** A burst ended while a batch was in flight: send the next one as soon as it lands. */
  #due = false;
  #failed = false;
  #error: unknown;

  constructor(encoder: Encoder<T>, writer: WritableStreamDefaultWriter<Uint8Array>) {
    this.#encoder = encoder;
    this.#writer = writer;
  }

  write(value: T): Promise<void> | undefined {
    if (this.#failed) throw this.#error;
    let n: number;
    try {
      n = this.#encoder.encode(value, this.#buf, this.#len);
    } catch (err) {
      // Refused before a byte of it is written; what was accepted before still goes out.
      return this.#settle().then(() => Promise.reject(err));
    }
    if (n < 0) return this.#writeSlow(value);
    this.#len += n;
    this.#timer.touch();
    return undefined;
  }

  async close(): Promise<void> {
    await this.#settle();
    await this.#writer.close();
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
    await this.#settle();
    for (const chunk of this.#encoder.encodeAlone(value)) await this.#writer.write(chunk);
  }

  /** Resolves once everything accepted so far has been written to the connection. */
  async #settle(): Promise<void> {
    while (this.#inflight !== undefined || this.#len > 0) {
      if (this.#inflight === undefined) this.#send();
      await this.#inflight;
      this.#throwIfFailed();
    }
    this.#throwIfFailed();
  }

  #burstEnded(): void {
    if (this.#len === 0) return;
    if (this.#inflight === undefined) this.#send();
    else this.#due = true;
  }

  #send(): void {
    const sent = this.#buf;
    const chunk = sent.subarray(0, this.#len);
    this.#buf = this.#spare ?? new Uint8Array(BATCH_BYTES);
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
