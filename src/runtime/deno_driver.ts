/**
 * The socket driver of the Deno adapter: Deno's socket calls (`conn.read`, `conn.write`) behind
 * `SocketDriver`, with the staging of small writes. Apart from `deno.ts` so that its logic can be
 * tested with a stand-in socket on every runtime.
 *
 * @module
 */

import { BurstTimer } from "../internal/async.ts";
import type { SocketConn, SocketDriver } from "./_socket_conn.ts";

/** The calls of a `Deno.Conn` the driver makes. */
export interface DenoSocket {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/**
 * Bytes accepted ahead of the socket. A write smaller than `COPY_BELOW` is copied into a staging
 * buffer and its promise settles at once while fewer than this are waiting. The first write
 * after a quiet spell goes out at once; the writes of a burst that follows it are staged and go
 * out together, in one `conn.write`, when the burst ends or the staging buffer is full. Deno
 * completes a socket write within a microtask or two, faster than a stream's next write comes,
 * so without waiting for the burst every write would still be an op and a syscall of its own.
 */
const SEND_BUFFER = 64 * 1024;
const COPY_BELOW = 16 * 1024;
const FIRST_STAGING = 4 * 1024;

/** A run of bytes waiting to be written: a staging buffer of ours, or a caller's large chunk. */
interface Segment {
  buf: Uint8Array;
  len: number;
  /** True for a staging buffer (small writes are appended to it); false for a caller's chunk. */
  staging: boolean;
}

/** A Deno socket as a `SocketDriver`. */
export class DenoDriver implements SocketDriver {
  blocked = false;
  #conn: DenoSocket;
  #sink!: SocketConn;
  #closed = false;
  #queue: Segment[] = [];
  /** A staging buffer already written out, kept for the next one. */
  #spare: Uint8Array | undefined;
  #queued = 0;
  /** A caller's chunk, not copied, is waiting or in flight: its write may not settle yet. */
  #borrowed = 0;
  #flushing = false;
  #shutdown = false;
  #finish = false;
  /** No write came for a few microtasks: the next one leaves at once. */
  #quiet = true;
  #burst = new BurstTimer(() => {
    this.#quiet = true;
    if (!this.#flushing && this.#queue.length > 0) void this.#flush();
  });

  constructor(conn: DenoSocket) {
    this.#conn = conn;
  }

  attach(sink: SocketConn): void {
    this.#sink = sink;
  }

  send(chunk: Uint8Array): number {
    const len = chunk.byteLength;
    const last = this.#queue[this.#queue.length - 1];
    if (len >= COPY_BELOW) {
      this.#queue.push({ buf: chunk, len, staging: false });
      this.#borrowed++;
    } else if (last?.staging && last.buf.byteLength - last.len >= len) {
      last.buf.set(chunk, last.len);
      last.len += len;
    } else {
      // Staging starts small and doubles when a burst outgrows it, so an idle connection
      // holds 4 KiB, a busy one 64 KiB.
      const grown = last?.staging ? Math.min(last.buf.byteLength * 2, SEND_BUFFER) : FIRST_STAGING;
      let buf = this.#spare;
      if (buf === undefined || buf.byteLength < Math.max(len, grown)) {
        buf = new Uint8Array(Math.max(grown, len, buf?.byteLength ?? 0));
      }
      this.#spare = undefined;
      buf.set(chunk);
      this.#queue.push({ buf, len, staging: true });
    }
    this.#queued += len;
    this.#updateBlocked();
    if (!this.#flushing && this.#due()) void this.#flush();
    this.#quiet = false;
    this.#burst.touch();
    return len;
  }

  /**
   * The first segment may be written: unless it is the staging buffer a burst of writes is
   * still filling, with room left and nobody waiting for it.
   */
  #due(): boolean {
    return this.#quiet || this.blocked || this.#shutdown || this.#finish ||
      this.#queue.length > 1 || !this.#queue[0]!.staging;
  }

  #updateBlocked(): void {
    this.blocked = this.#borrowed > 0 || this.#queued >= SEND_BUFFER;
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0 && this.#due()) {
        const seg = this.#queue.shift()!;
        const bytes = seg.buf.subarray(0, seg.len);
        let off = await this.#conn.write(bytes);
        while (off < seg.len) off += await this.#conn.write(bytes.subarray(off));
        this.#queued -= seg.len;
        if (seg.staging) this.#spare = seg.buf; // written out: free to fill again
        else this.#borrowed--;
        if (this.blocked) {
          this.#updateBlocked();
          if (!this.blocked) this.#sink.onDrain();
        }
      }
      if (this.#shutdown) await this.#conn.closeWrite();
      if (this.#finish) this.destroy();
    } catch (err) {
      if (!this.#closed) this.#sink.onError(err);
    } finally {
      this.#flushing = false;
    }
  }

  /** Reads go straight into the reader's buffer; the readable pulls only when it wants more. */
  async readInto(view: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    try {
      return await this.#conn.read(view);
    } catch (err) {
      if (this.#closed) return null; // closed here while the read waited
      throw err;
    }
  }

  pause(): void {}
  resume(): void {}

  shutdown(): void {
    this.#shutdown = true;
    if (this.#queue.length > 0) {
      if (!this.#flushing) void this.#flush();
    } else if (!this.#flushing) {
      this.#conn.closeWrite().catch((err) => this.#closed || this.#sink.onError(err));
    }
  }

  finish(): void {
    this.#finish = true;
    if (this.#flushing) return;
    if (this.#queue.length > 0) void this.#flush();
    else this.destroy();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime.
    }
    queueMicrotask(() => this.#sink.onClose());
  }
}
