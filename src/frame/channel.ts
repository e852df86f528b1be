/**
 * A framed connection driven by calls rather than per-message streams: `read()` returns every
 * message the next socket read completes, `send()` batches a message for writing. `framed()`
 * and `lines()` build their Web Streams on it; the library's own protocols (RPC) use it
 * directly, which saves a stream read and a stream write per message.
 *
 * @module
 */

import { closedError } from "../errors.ts";
import { type ByteIo, byteIo, ignore } from "../runtime/byte_io.ts";
import type { Conn } from "../runtime/types.ts";
import { BurstTimer } from "../internal/async.ts";
import { BATCH_BYTES, type Decoder, type Encoder } from "./format.ts";

/** The first size of a connection's write batch: an idle connection holds two of these. */
const FIRST_BATCH_BYTES = 2048;

/** How long messages accepted before bad input arrived may take to leave before the close. */
const FLUSH_GRACE_MS = 2000;

/** What a channel tells its owner. */
export interface ChannelHooks<T = unknown> {
  /**
   * The peer sent bad input: a message to send it before the channel ends (an error report), or
   * undefined to send none.
   */
  lastWords?(err: unknown): T | undefined;
  /** Nothing more will be written: after `end()`, or once a message was refused. */
  writeEnded?(): void;
  /** The channel failed with `err` (bad input, a broken connection, `close()`). */
  failed?(err: unknown): void;
}

/** Messages over a connection: a decoder on its reading side, a batching encoder on its writing side. */
export class Channel<T> {
  readonly conn: Conn;
  readonly #decoder: Decoder<T>;
  readonly #io: ByteIo;
  readonly #sink: BatchSink<T>;
  readonly #hooks: ChannelHooks<T>;
  /** What failed the channel: later reads throw it. */
  #failure: { error: unknown } | undefined;
  #closing = false;
  #ended = false;
  /** Bad input met after some messages of the same chunk: thrown by the next `read()`. */
  #badInput: { error: unknown } | undefined;
  /** A `send()` that waits: later ones queue behind it, so the sink sees one at a time. */
  #sending: Promise<void> | undefined;
  /** Where the messages of the chunk being decoded go, and how many went. */
  #target: (value: T) => void = ignore;
  #emitted = 0;
  #emit = (value: T): void => {
    this.#emitted++;
    this.#target(value);
  };
  /** Bad input met while decoding: `pump()` acts on it once the chunk is done. */
  #decodeError: { error: unknown } | undefined;
  /** What reads hand their bytes to. */
  #take = (chunk: Uint8Array): void => this.#decode(chunk);

  constructor(
    conn: Conn,
    decoder: Decoder<T>,
    encoder: Encoder<T>,
    hooks: ChannelHooks<T> = {},
  ) {
    this.conn = conn;
    this.#decoder = decoder;
    this.#hooks = hooks;
    this.#io = byteIo(conn);
    this.#sink = new BatchSink(encoder, this.#io, () => hooks.writeEnded?.());
  }

  /**
   * The messages the next chunk from the socket completes (at least one), or undefined once the
   * peer has ended. Bad input, after the messages that came before it, or a broken connection
   * throws and fails the channel.
   */
  async read(): Promise<T[] | undefined> {
    const out: T[] = [];
    return (await this.pump((value) => void out.push(value))) ? out : undefined;
  }

  /**
   * Reads until at least one message has gone to `emit`, then answers true, or false once the
   * peer has ended with no message left; fails as `read()` does. `read()` in a form that makes
   * no array, for a caller that hands messages on one by one. Answers at once, or throws, when
   * bytes were waiting; otherwise the promise is the read's own, with one step added.
   */
  pump(emit: (value: T) => void): boolean | Promise<boolean> {
    if (this.#badInput !== undefined) {
      this.fail(this.#badInput.error, true);
      throw this.#badInput.error;
    }
    if (this.#ended) return false;
    // After a failure the connection is closed, or drained by `fail()` alone.
    if (this.#failure !== undefined) {
      if (this.#closing) return false;
      throw this.#failure.error;
    }
    this.#target = emit;
    this.#emitted = 0;
    return this.#readNext();
  }

  /** Reads for `pump()` until a message has come or the input has ended. */
  #readNext(): boolean | Promise<boolean> {
    for (;;) {
      let read: boolean | Promise<boolean>;
      try {
        read = this.#io.read(this.#take);
      } catch (err) {
        return this.#readFailed(err);
      }
      if (typeof read !== "boolean") return read.then(this.#afterRead, this.#readFailed);
      const done = this.#settle(read);
      if (done !== undefined) return done;
    }
  }

  #afterRead = (more: boolean): boolean | Promise<boolean> =>
    this.#settle(more) ?? this.#readNext();

  /**
   * A read for `pump()` is done: its answer, or undefined to read again as no message came.
   * Bad input is thrown now if no message came before it, else by the next `pump()`.
   */
  #settle(more: boolean): boolean | undefined {
    if (!more) {
      this.#ended = true;
      if (!this.#closing) this.#decode(undefined);
    }
    const bad = this.#decodeError;
    if (bad !== undefined) {
      this.#decodeError = undefined;
      if (this.#emitted > 0) {
        this.#badInput = bad;
        return true;
      }
      this.fail(bad.error, true);
      throw bad.error;
    }
    if (this.#emitted > 0) return true;
    return more ? undefined : false;
  }

  #readFailed = (err: unknown): never => {
    this.fail(err, false);
    throw err;
  };

  /** Decodes a chunk read, or the end of input for undefined. */
  #decode(chunk: Uint8Array | undefined): void {
    try {
      if (chunk === undefined) this.#decoder.end(this.#emit);
      else this.#decoder.push(chunk, this.#emit);
    } catch (err) {
      this.#decodeError = { error: err };
    }
  }

  /**
   * Batches a message for writing: undefined once it is taken, or a promise while the batch
   * waits for the socket (backpressure). A refused message (over the size limit) rejects and
   * nothing of it is sent; the channel stays usable. After the channel failed, `send()` throws.
   */
  send(value: T): Promise<void> | undefined {
    if (this.#sending !== undefined) {
      // Whatever became of the one before, this one is the sink's to take or refuse.
      const write = (): Promise<void> | undefined => this.#sink.write(value);
      const queued: Promise<void> = this.#sending.then(write, write);
      return this.#track(queued);
    }
    const taken = this.#sink.write(value);
    return taken === undefined ? undefined : this.#track(taken);
  }

  #track(sending: Promise<void>): Promise<void> {
    this.#sending = sending;
    const done = (): void => {
      if (this.#sending === sending) this.#sending = undefined;
    };
    sending.then(done, done);
    return sending;
  }

  /** Sends what is batched, then ends the sending direction. */
  async end(): Promise<void> {
    await this.#sending?.catch(() => {});
    await this.#sink.close();
  }

  /** Ends the sending direction at once (the stream's abort). */
  abort(reason: unknown): Promise<void> {
    return this.#sink.abort(reason);
  }

  /** Closes the connection at once: batched messages are discarded, reading ends quietly. */
  close(): void {
    this.#closing = true;
    this.fail(closedError("write", "connection"), false);
  }

  /**
   * Ends both directions with `err`. After bad input from the peer (`flush`), what was accepted
   * for writing before is still sent and the sending direction ended; what the peer still sends
   * is read and dropped until it ends too, as closing with unread input would reset the
   * connection and could cost the peer those last messages. All that takes `FLUSH_GRACE_MS` at
   * most. After a broken connection or `close()` there is nothing to save.
   */
  fail(err: unknown, flush: boolean): void {
    if (this.#failure !== undefined) return;
    this.#failure = { error: err };
    const last = flush ? this.#hooks.lastWords?.(err) : undefined;
    if (last !== undefined) void this.send(last)?.catch(() => {});
    this.#sink.stop(err);
    this.#hooks.failed?.(err);
    if (!flush) {
      this.conn.close();
      return;
    }
    const timer = setTimeout(() => this.conn.close(), FLUSH_GRACE_MS);
    void (async () => {
      await this.#sink.close().catch(() => {});
      try {
        while (await this.#io.read(ignore));
      } catch {
        // The connection failed: there is nothing left to drain.
      }
    })().finally(() => {
      clearTimeout(timer);
      this.conn.close();
    });
  }
}

/**
 * The writing half of a channel: encodes messages into a batch and writes batches to the
 * connection, one write in flight at a time, from two buffers that take turns. A batch leaves
 * when a burst of writes ends or when it is full, so small messages share socket writes.
 * Reusing the buffers is safe because a connection write resolves only once the connection no
 * longer needs the chunk.
 */
class BatchSink<T> {
  readonly #encoder: Encoder<T>;
  readonly #io: ByteIo;
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
  #stopped: { error: unknown } | undefined;

  /** Called once no more will be written: after `close()`, or once a message was refused. */
  readonly #onEnded: () => void;

  constructor(
    encoder: Encoder<T>,
    io: ByteIo,
    onEnded: () => void,
  ) {
    this.#encoder = encoder;
    this.#io = io;
    this.#onEnded = onEnded;
  }

  write(value: T): Promise<void> | undefined {
    if (this.#stopped !== undefined) throw this.#stopped.error;
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

  /** Refuses further writes with `error`; what was accepted can still be flushed. */
  stop(error: unknown): void {
    this.#stopped ??= { error };
  }

  async close(): Promise<void> {
    await this.flush();
    await this.#io.end();
    this.#onEnded();
  }

  abort(reason: unknown): Promise<void> {
    return this.#io.abort(reason);
  }

  /** The value did not fit the room left, or is large enough to be written by reference. */
  async #writeSlow(value: T): Promise<void> {
    while (this.#inflight !== undefined) await this.#inflight;
    this.#throwIfFailed();
    if (this.#len > 0) this.#send();
    const n = this.#encoder.encode(value, this.#buf, 0);
    if (n >= 0) {
      this.#len = n;
      // The writer was held back by us, not quiet: what it writes next joins this batch.
      this.#quiet = false;
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
    for (const chunk of chunks) await this.#io.write(chunk);
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
    const written = this.#io.write(chunk);
    // Taken at once (the usual case): the buffer is free again, with no promise made.
    if (written === undefined) this.#spare = sent;
    else this.#inflight = written.then(() => this.#written(sent), (err) => this.#writeFailed(err));
  }

  #written(sent: Uint8Array<ArrayBuffer>): void {
    this.#spare = sent;
    this.#inflight = undefined;
    if (this.#due && this.#len > 0) this.#send();
  }

  #writeFailed(err: unknown): void {
    this.#inflight = undefined;
    this.#len = 0;
    if (!this.#failed) {
      this.#failed = true;
      this.#error = err;
    }
  }

  #throwIfFailed(): void {
    if (this.#failed) throw this.#error;
  }
}
