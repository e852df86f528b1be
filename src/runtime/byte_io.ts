/**
 * A connection's bytes as calls rather than streams: what a `Channel` drives a connection with.
 * A connection that has the {@linkcode DIRECT} capability (the runtime's own) is driven directly;
 * any other `Conn` through its streams.
 *
 * @module
 */

import type { Conn } from "./types.ts";

/** Takes anything and drops it: a default and a sink that need no closure of their own. */
export const ignore = (): void => {};

/**
 * The key of a connection's capability to be driven by calls: `conn[DIRECT]()` locks its
 * streams and returns its `ByteIo`.
 */
export const DIRECT: unique symbol = Symbol("direct");

/**
 * A connection's bytes as calls. One read at a time, and one write at a time (the next once the
 * last has resolved).
 */
export interface ByteIo {
  /**
   * Reads the next bytes and hands them to `take`, which may keep them (nothing writes to them
   * again) and must not throw. Returns or resolves true once it did, false once the peer has
   * ended; returns at once when bytes were waiting. Throws or rejects once the connection failed.
   * Answering with a flag, not the bytes, spares the promise a look for a `then` on them.
   */
  read(take: (chunk: Uint8Array) => void): boolean | Promise<boolean>;
  /**
   * Writes `chunk`: undefined once the connection has taken it, so the caller may reuse it, or
   * a promise that resolves then (backpressure), or rejects once the connection failed.
   */
  write(chunk: Uint8Array): Promise<void> | undefined;
  /** Ends the sending direction after everything written so far. */
  end(): Promise<void>;
  /** Closes the connection at once. */
  abort(reason: unknown): Promise<void>;
}

/** A connection with the capability to be driven by calls. */
interface Direct {
  [DIRECT](): ByteIo;
}

/**
 * The bytes of `conn` as calls. A connection of the runtime's own is driven directly: each read
 * and write skips a stream operation (a promise and a queue). Any other `Conn` is driven through
 * its streams. Either way its streams are locked from then on.
 */
export function byteIo(conn: Conn): ByteIo {
  if (DIRECT in conn) return (conn as Conn & Direct)[DIRECT]();
  const reader = conn.readable.getReader();
  const writer = conn.writable.getWriter();
  return {
    read: (take) => readTo(reader, take),
    // A stream may hold on to a chunk after its write resolved (an in-memory pipe does, until
    // it is read), and the caller reuses it then: the stream gets its own copy.
    write: (chunk) => writer.write(chunk.slice()),
    end: () => writer.close(),
    abort: (reason) => writer.abort(reason),
  };
}

/** A `ByteIo` read from a stream's reader: hands a chunk to `take` and answers whether one came. */
export function readTo(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  take: (chunk: Uint8Array) => void,
): Promise<boolean> {
  return reader.read().then(({ done, value }) => {
    if (!done) take(value);
    return !done;
  });
}
