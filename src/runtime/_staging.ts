/**
 * `StagingDriver`: the sending half of the `SocketDriver` of every runtime. Small writes are
 * copied into a staging buffer and settle at once; a burst of them goes out in one socket write.
 *
 * @module
 */

import { BurstTimer } from "../internal/async.ts";
import { copyBytes } from "./bytes.ts";
import type { SocketConn, SocketDriver } from "./_socket_conn.ts";

/**
 * Bytes accepted ahead of the socket. A write smaller than `COPY_BELOW` is copied into a staging
 * buffer and settles at once while fewer than this are waiting. The first write after a quiet
 * spell goes out at once, so a lone request or reply is not held back; the writes of a burst
 * that follows it are staged and go out together, in one socket write, when the burst ends or a
 * staging buffer is full. Writing whenever the socket is idle is not enough: a socket write
 * completes within a microtask or two, before a stream's next write comes, so every small write
 * would still be a syscall of its own.
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

/**
 * The sending half shared by the Deno, Bun and Node drivers. A subclass says how bytes reach its
 * socket (`write`, `writeNow`, `closeWrite`), how the socket is let go (`release`, `close`), and
 * how it reads.
 */
export abstract class StagingDriver implements SocketDriver {
  blocked = false;
  /** The connection this driver reports to. */
  protected sink!: SocketConn;
  /** The socket was closed here: nothing more is written, failures are not reported. */
  protected closed = false;
  #queue: Segment[] = [];
  /** A staging buffer already written out, kept for the next one. */
  #spare: Uint8Array | undefined;
  #queued = 0;
  /** A caller's chunk, not copied, is waiting or in flight: its write may not settle yet. */
  #borrowed = 0;
  #flushing = false;
  /** The lone write in flight (see `#sendLone`): its staging buffer and length. */
  #lone: Uint8Array | undefined;
  #loneLen = 0;
  #shutdown = false;
  #finish = false;
  /** No write came for a few microtasks: the next one leaves at once. */
  #quiet = true;
  #burst = new BurstTimer(() => {
    this.#quiet = true;
    if (!this.#flushing && this.#queue.length > 0) void this.#flush();
  });

  /**
   * Sends `bytes`, returning how many the socket took, or a promise of that count. Fewer than
   * all is fine: the rest is written next, so a socket that is full should return its count
   * once it can take more.
   */
  protected abstract write(bytes: Uint8Array): number | Promise<number>;
  /**
   * Sends what of `bytes` the socket takes at once and returns the count: 0 for a socket whose
   * writes are not synchronous. A socket that keeps a reference to bytes it took calls `hold`.
   */
  protected abstract writeNow(bytes: Uint8Array): number;
  /** Ends the sending direction; everything written has been handed to the socket. */
  protected abstract closeWrite(): void | Promise<void>;
  /** Lets go of the socket once both directions have ended and everything is written. */
  protected abstract release(): void;
  /** Closes the socket now; the subclass reports `onClose` to the sink. */
  protected abstract close(): void;

  abstract pause(): void;
  abstract resume(): void;

  attach(sink: SocketConn): void {
    this.sink = sink;
  }

  /**
   * For `writeNow`: the socket took bytes but keeps a reference to them until `flushed`
   * resolves. The write waits for it, as for a large chunk written from the caller's memory.
   */
  protected hold(flushed: Promise<void>): void {
    this.#borrowed++;
    this.#updateBlocked();
    void flushed.then(() => {
      this.#borrowed--;
      this.#eased();
    });
  }

  send(chunk: Uint8Array): void {
    if (this.#quiet && this.#queue.length === 0 && !this.#flushing) {
      // A lone write to an idle socket that writes synchronously goes straight out, uncopied.
      let n: number;
      try {
        n = this.writeNow(chunk);
      } catch (err) {
        this.#writeFailed(err);
        return;
      }
      if (n > 0) {
        this.#quiet = false;
        this.#burst.touch();
        if (n === chunk.byteLength) return;
        chunk = chunk.subarray(n);
      } else if (chunk.byteLength < COPY_BELOW) {
        this.#sendLone(chunk);
        this.#quiet = false;
        this.#burst.touch();
        return;
      }
    }
    const len = chunk.byteLength;
    const last = this.#queue[this.#queue.length - 1];
    if (len >= COPY_BELOW) {
      this.#queue.push({ buf: chunk, len, staging: false });
      this.#borrowed++;
    } else if (last?.staging && last.buf.byteLength - last.len >= len) {
      copyBytes(last.buf, last.len, chunk);
      last.len += len;
    } else {
      // Staging starts small and doubles when a burst outgrows it, so an idle connection
      // holds 4 KiB, a busy one 64 KiB.
      const grown = last?.staging ? Math.min(last.buf.byteLength * 2, SEND_BUFFER) : FIRST_STAGING;
      this.#queue.push({ buf: this.#staged(chunk, grown), len, staging: true });
    }
    this.#queued += len;
    this.#updateBlocked();
    if (!this.#flushing && this.#due()) void this.#flush();
    this.#quiet = false;
    this.#burst.touch();
  }

  /**
   * A staging buffer of at least `size` bytes that starts with a copy of `chunk`: the spare one
   * if it is large enough, else a new one.
   */
  #staged(chunk: Uint8Array, size: number): Uint8Array {
    let buf = this.#spare;
    if (buf === undefined || buf.byteLength < Math.max(chunk.byteLength, size)) {
      buf = new Uint8Array(Math.max(size, chunk.byteLength, buf?.byteLength ?? 0));
    }
    this.#spare = undefined;
    copyBytes(buf, 0, chunk);
    return buf;
  }

  /**
   * A lone small write that the socket did not take at once (every write on Deno, whose writes
   * are ops): copied into the spare staging buffer and written from there, with the op's promise
   * as its one continuation, not through the queue and the async flush loop. It is the request
   * or reply of every round trip, and the queue and loop cost Deno's ping-pong 2.5–4 %
   * (`bench/ab.ts`).
   */
  #sendLone(chunk: Uint8Array): void {
    const len = chunk.byteLength;
    const buf = this.#staged(chunk, FIRST_STAGING);
    this.#lone = buf;
    this.#loneLen = len;
    this.#queued += len;
    this.#flushing = true;
    let sent: number | Promise<number>;
    try {
      sent = this.write(buf.subarray(0, len));
    } catch (err) {
      this.#writeFailed(err);
      return;
    }
    if (typeof sent === "number") this.#loneSent(sent);
    else sent.then(this.#loneSent, this.#writeFailed);
  }

  /** The socket took `n` bytes of the lone write; what it left waits at the head of the queue. */
  #loneSent = (n: number): void => {
    const buf = this.#lone!;
    const rest = this.#loneLen - n;
    this.#lone = undefined;
    this.#queued -= n;
    if (rest > 0) {
      buf.copyWithin(0, n, n + rest);
      this.#queue.unshift({ buf, len: rest, staging: true });
    } else {
      this.#spare = buf;
    }
    this.#eased();
    this.#flushing = false;
    // What came meanwhile goes now if due, or when the burst timer says the burst has ended.
    if (this.#queue.length > 0 ? this.#due() : this.#shutdown || this.#finish) void this.#flush();
  };

  /** A socket write failed: the connection fails with it, unless it was closed here. */
  #writeFailed = (err: unknown): void => {
    this.#flushing = false;
    if (!this.closed) this.sink.onError(err);
  };

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

  /** Bytes waited for have gone out: a writer that waits goes on once nothing blocks it. */
  #eased(): void {
    if (!this.blocked) return;
    this.#updateBlocked();
    if (!this.blocked) this.sink.onDrain();
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0 && this.#due()) {
        const seg = this.#queue.shift()!;
        const bytes = seg.buf.subarray(0, seg.len);
        for (let off = 0; off < seg.len;) {
          const sent = this.write(off === 0 ? bytes : bytes.subarray(off));
          off += typeof sent === "number" ? sent : await sent;
        }
        this.#queued -= seg.len;
        if (seg.staging) this.#spare = seg.buf; // written out: free to fill again
        else this.#borrowed--;
        this.#eased();
      }
      if (this.#shutdown) await this.closeWrite();
      if (this.#finish) this.release();
    } catch (err) {
      this.#writeFailed(err);
      return;
    }
    this.#flushing = false;
  }

  shutdown(): void {
    this.#shutdown = true;
    if (this.#flushing) return;
    if (this.#queue.length > 0) {
      void this.#flush();
      return;
    }
    try {
      const ending = this.closeWrite();
      if (ending) ending.catch((err) => this.closed || this.sink.onError(err));
    } catch (err) {
      if (!this.closed) this.sink.onError(err);
    }
  }

  finish(): void {
    this.#finish = true;
    if (this.#flushing) return;
    if (this.#queue.length > 0) void this.#flush();
    else this.release();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.#queue = [];
    this.close();
  }
}
