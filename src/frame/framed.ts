/**
 * Frames over a connection: {@linkcode framed} for length-prefixed binary frames and
 * {@linkcode lines} for text lines, each a pair of Web Streams of whole messages.
 *
 * @module
 */

import type { Conn } from "../runtime/types.ts";
import type { Decoder, Encoder } from "./_codec.ts";
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
  const readable = new ReadableStream<T>({
    // One pull per chunk read from the socket, which may carry many messages.
    async pull(controller): Promise<void> {
      const batch = await channel.read();
      if (readCancelled) return;
      if (batch === undefined) return controller.close();
      for (const value of batch) controller.enqueue(value);
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
