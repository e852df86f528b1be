/**
 * Frames over a connection: {@linkcode framed} for length-prefixed binary frames and
 * {@linkcode lines} for text lines, each a pair of Web Streams of whole messages.
 *
 * @module
 */

import type { Conn } from "../runtime/types.ts";
import type { Decoder, Encoder } from "./format.ts";
import { view } from "../internal/wire.ts";
import { Channel } from "./channel.ts";
import { FrameEncoding, FrameParser, type FrameStreamOptions, maxFrameSizeOf } from "./codec.ts";
import { LineEncoding, LineParser, type LineStreamOptions, maxLineLengthOf } from "./lines.ts";

/**
 * A connection that carries whole messages: frames (`Uint8Array`) from {@linkcode framed} or
 * lines (`string`) from {@linkcode lines}.
 *
 * `readable` yields each message the peer sent and ends when the peer stops writing. Cancelling
 * it (as `break` in a `for await` loop does) stops reading without dropping what is still to be
 * written: the connection closes once `writable` is closed as well. A message
 * is the reader's to keep. A frame is usually a view of the memory the connection read it into,
 * which nothing writes to again: keeping one keeps that memory (up to 256 KiB) alive, so
 * `slice()` a small frame you keep for long. If the peer
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
  return join(conn, new FrameParser(max, view), new FrameEncoding(max));
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
  let readCancelled = false;
  let writeEnded = false;
  let writeController: WritableStreamDefaultController;
  // Cancelling the connection's readable would close it and drop batched writes, so a cancelled
  // `readable` only stops reading; the connection closes once the writable has finished too.
  const closeIfDone = (): void => {
    if (readCancelled && writeEnded) conn.close();
  };
  const channel = new Channel(conn, decoder, encoder, {
    writeEnded: () => {
      writeEnded = true;
      closeIfDone();
    },
    failed: (err) => writeController.error(err),
  });
  let rc: ReadableStreamDefaultController<T>;
  const enqueue = (value: T): void => {
    if (!readCancelled) rc.enqueue(value);
  };
  const closeAtEnd = (more: boolean): void => {
    if (!more && !readCancelled) rc.close();
  };
  const readable = new ReadableStream<T>({
    start(controller): void {
      rc = controller;
    },
    // One pull per chunk read from the socket, which may carry many messages.
    pull: () => {
      const more = channel.pump(enqueue);
      return typeof more === "boolean" ? closeAtEnd(more) : more.then(closeAtEnd);
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
    write: (value) => channel.send(value),
    close: () => channel.end(),
    abort: (reason) => channel.abort(reason),
  });
  return {
    readable,
    writable,
    closed: conn.closed,
    close(): void {
      channel.close();
    },
    [Symbol.asyncDispose](): Promise<void> {
      channel.close();
      return conn.closed;
    },
  };
}

/**
 * Frames over a connection without a stream operation per frame: the batch-level counterpart
 * of {@linkcode framed}, for code that moves many small frames. The library's RPC runs on it.
 *
 * `read()` returns every frame one socket read completed (at least one), or `undefined` once
 * the peer has ended; frames are owned as with `framed()`. `send()` encodes a frame into the
 * write batch at once and returns `undefined`, or a promise when the batch waits for the socket
 * (await it: that is backpressure); frames sent in one burst leave in one socket write. A frame
 * over `maxFrameSize` is refused by `send()` with `EFRAMETOOLARGE` and nothing of it is sent; the
 * channel stays usable. Bad input from the peer is thrown by `read()` after the frames that came
 * before it, and closes the connection as `framed()` does.
 */
export interface FrameChannel extends AsyncDisposable {
  /** The frames the next socket read completes, or `undefined` at the end. */
  read(): Promise<Uint8Array[] | undefined>;
  /** Batches a frame; a promise means: wait before sending more. */
  send(frame: Uint8Array): Promise<void> | undefined;
  /** Sends what is batched, then ends the sending direction. */
  end(): Promise<void>;
  /** Closes the connection at once; batched frames are discarded. */
  close(): void;
  /** Resolves once the connection is closed. Never rejects. */
  readonly closed: Promise<void>;
}

/**
 * Turns a connection into a {@linkcode FrameChannel}: length-prefixed frames, read a socket
 * read's worth at a time and written into batches, with no stream operation per frame.
 *
 * @param conn A connection from `connect()` or `listen()`.
 * @param options The frame size limit.
 * @returns The channel.
 * @throws {RangeError} If `maxFrameSize` is not a whole number from 0 to 2³² − 1.
 *
 * @example Stream many small frames
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, frameChannel, listen } from "@dockipc/dockipc";
 *
 * await using listener = await listen("tcp://127.0.0.1:0");
 * await using sender = frameChannel(await connect(listener.addr));
 * await using receiver = frameChannel(await listener.accept());
 * for (let i = 0; i < 1000; i++) {
 *   const wait = sender.send(new Uint8Array([i & 255]));
 *   if (wait) await wait; // backpressure
 * }
 * await sender.end();
 * let count = 0;
 * for (let batch; (batch = await receiver.read());) count += batch.length;
 * assert.equal(count, 1000);
 * ```
 */
export function frameChannel(conn: Conn, options: FrameStreamOptions = {}): FrameChannel {
  const max = maxFrameSizeOf("frameChannel()", options);
  const channel = new Channel(conn, new FrameParser(max, view), new FrameEncoding(max));
  return {
    read: () => channel.read(),
    send: (frame) => channel.send(frame),
    end: () => channel.end(),
    close: () => channel.close(),
    closed: conn.closed,
    [Symbol.asyncDispose](): Promise<void> {
      channel.close();
      return conn.closed;
    },
  };
}
