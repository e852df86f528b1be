/**
 * `SocketConn`: the one `Conn` implementation, shared by the three adapters. Each adapter supplies
 * a small `SocketDriver` for its runtime's socket and feeds the socket's events in; the state
 * machine (half-close, errors, backpressure both ways) lives only here.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { closedError, IpcError, systemError } from "../errors.ts";
import { type ByteIo, DIRECT, ignore, readTo } from "./byte_io.ts";
import type { Conn, TlsInfo } from "./types.ts";

/**
 * What `SocketConn` needs from a runtime's socket. A runtime whose reads are calls (Deno)
 * provides `readInto`; one whose reads are events (Node, Bun) calls `onData`/`onEnd` and
 * honours `pause`/`resume`.
 */
export interface SocketDriver {
  /**
   * Reads into `view`, resolving with the count read, or `null` once the peer has ended. May
   * reject once the connection was closed here, which is not reported as a failure.
   */
  readInto?(view: Uint8Array): Promise<number | null>;
  /**
   * Takes all of `chunk`: copied, or kept until written, in which case `blocked` says so. The
   * caller may reuse it once `blocked` is false.
   */
  send(chunk: Uint8Array): void;
  /** True while the writer must wait for `onDrain` before sending more. */
  readonly blocked: boolean;
  /** Stop reading from the socket, leaving further bytes in the kernel. */
  pause(): void;
  /** Read again. */
  resume(): void;
  /** End the sending direction (FIN), after everything sent so far. */
  shutdown(): void;
  /**
   * Both directions have ended: release the socket once everything sent has gone out; the
   * adapter then reports `onClose`.
   */
  finish(): void;
  /** Close the socket now, discarding what is unsent; the adapter then reports `onClose`. */
  destroy(): void;
}

/**
 * Bytes read ahead of the reader at most. Past this the socket is paused, so a slow reader keeps
 * the backlog in the kernel, where the peer's writes then wait.
 */
const READ_HIGH_WATER_MARK = 64 * 1024;
/** For a `readInto` socket: the most one read takes. */
const READ_SIZE = 64 * 1024;
/** The arenas a `readInto` socket reads into, smallest and largest: see `#readArena`. */
const FIRST_ARENA = 4 * 1024;
const MAX_ARENA = 256 * 1024;

/** A chunk's size in an event socket's read queue; one function for every connection. */
const byteLength = (chunk: Uint8Array): number => chunk.byteLength;

/** What an idle connection's read fields hold: shared, as a connection may idle for long. */
const NO_BYTES = new Uint8Array(0);

/** A connected socket as a pair of Web Streams; see `Conn` for the contract. */
export class SocketConn implements Conn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly localAddr: Address;
  readonly remoteAddr: Address;
  readonly closed: Promise<void>;
  readonly tls: TlsInfo | undefined;

  #driver: SocketDriver;
  #label: string;
  #rc!: ReadableStreamDefaultController<Uint8Array>;
  #wc!: WritableStreamDefaultController;
  #readDone = false;
  #writeDone = false;
  #closing = false;
  #finishing = false;
  #destroyed = false;
  #drainResolve: (() => void) | undefined;
  #drainReject: ((err: unknown) => void) | undefined;
  #resolveClosed!: () => void;
  /** The socket is paused: the reader has `READ_HIGH_WATER_MARK` bytes waiting unread. */
  #paused = false;
  /** Driven by calls (`[DIRECT]()`), the streams locked and unused. */
  #direct = false;
  /** What failed the reading direction, for direct reads. */
  #readError: IpcError | undefined;
  /** What ended the writing direction, for direct writes. */
  #writeError: IpcError | undefined;
  /** Direct reads, event sockets: chunks read ahead, their bytes, and a read that waits. */
  #chunks: Uint8Array[] = [];
  #chunkBytes = 0;
  #waiter:
    | {
      take: (chunk: Uint8Array) => void;
      resolve: (more: boolean) => void;
      reject: (err: unknown) => void;
    }
    | undefined;
  /** Direct reads, event sockets: the stream's reader, while it may hold bytes read before. */
  #backlog: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** `readInto` sockets: the arena read into, where its free part starts, its size. */
  #arena: Uint8Array | undefined;
  #at = 0;
  #arenaSize = FIRST_ARENA;
  /** `readInto` sockets: the read in progress, its part of the arena and who takes its bytes. */
  #reading = false;
  #view: Uint8Array = NO_BYTES;
  #take: (chunk: Uint8Array) => void = ignore;
  /** The readable's way to take a chunk. */
  #enqueue = (chunk: Uint8Array): void => this.#rc.enqueue(chunk);

  /**
   * @param driver The runtime's socket.
   * @param localAddr This end's address.
   * @param remoteAddr The peer's address.
   * @param label How errors name this connection, usually the address string.
   * @param tls What its TLS session established, for a TLS connection.
   */
  constructor(
    driver: SocketDriver,
    localAddr: Address,
    remoteAddr: Address,
    label: string,
    tls?: TlsInfo,
  ) {
    this.tls = tls;
    this.#driver = driver;
    this.localAddr = localAddr;
    this.remoteAddr = remoteAddr;
    this.#label = label;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    // Not a byte stream: a read of a byte stream costs two to eight times as much in every
    // runtime (each chunk's buffer is transferred, a BYOB read's twice), which in a ping-pong is
    // a tenth of the round trip. Chunks are never written to again, so nothing needs a transfer.
    // A `readInto` socket reads only when asked; an event socket reads ahead up to a bound.
    const pullInto = driver.readInto !== undefined;
    this.readable = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#rc = controller;
        },
        pull: pullInto ? () => this.#readArena(this.#enqueue) : () => this.#resume(),
        cancel: () => this.close(),
      },
      pullInto ? { highWaterMark: 0 } : { highWaterMark: READ_HIGH_WATER_MARK, size: byteLength },
    );
    this.writable = new WritableStream<Uint8Array>({
      start: (controller) => {
        this.#wc = controller;
      },
      write: (chunk) => this.#write(chunk),
      close: () => this.#endWrite(),
      abort: () => this.close(),
    });
  }

  /** Called by the adapter with each chunk read, which is the reader's from then on. */
  onData(chunk: Uint8Array): void {
    if (this.#readDone) return;
    if (this.#direct) {
      const waiter = this.#waiter;
      if (waiter !== undefined) {
        this.#waiter = undefined;
        waiter.take(chunk);
        waiter.resolve(true);
        return;
      }
      this.#chunks.push(chunk);
      this.#chunkBytes += chunk.byteLength;
      if (this.#chunkBytes >= READ_HIGH_WATER_MARK) this.#pause();
      return;
    }
    this.#rc.enqueue(chunk);
    if ((this.#rc.desiredSize ?? 0) <= 0) this.#pause();
  }

  /** The reader has `READ_HIGH_WATER_MARK` bytes waiting: further bytes stay in the kernel. */
  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#driver.pause();
  }

  /**
   * The reader wants more: resumes a paused socket. The stream asks on every read, and a
   * runtime's resume is not free (a native call in Bun), so only a paused socket is resumed.
   */
  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#driver.resume();
  }

  /** Called by the adapter when the peer ends its sending direction. */
  onEnd(): void {
    this.#endReadable();
    this.#finishIfDone();
  }

  /**
   * Switches to direct calls (see `byteIo`): locks both streams, which are not used again
   * except to hand out bytes they had already read.
   */
  [DIRECT](): ByteIo {
    const reader = this.readable.getReader();
    this.writable.getWriter();
    this.#direct = true;
    if (this.#driver.readInto === undefined) this.#backlog = reader;
    return {
      read: this.#driver.readInto === undefined
        ? (take) => this.#readEvents(take)
        : (take) => this.#readArena(take),
      write: (chunk) => this.#writeDone ? Promise.reject(this.#writeFailure()) : this.#write(chunk),
      end: () => {
        if (this.#writeDone) return Promise.reject(this.#writeFailure());
        this.#endWrite();
        return Promise.resolve();
      },
      abort: () => {
        this.close();
        return Promise.resolve();
      },
    };
  }

  #writeFailure(): IpcError {
    return this.#writeError ?? closedError("write", "connection");
  }

  /** A direct read once reading has ended: false, or what failed it. */
  #readEnded(): false {
    if (this.#readError !== undefined) throw this.#readError;
    return false;
  }

  /** A direct read of an event socket: a chunk read ahead, or the next one to arrive. */
  #readEvents(take: (chunk: Uint8Array) => void): boolean | Promise<boolean> {
    if (this.#backlog !== undefined) {
      // Bytes the stream read before the switch come first; its queue is full until drained.
      const size = this.#rc.desiredSize;
      if (size === null || size < READ_HIGH_WATER_MARK) {
        return readTo(this.#backlog, take);
      }
      this.#backlog = undefined;
    }
    if (this.#readError !== undefined) throw this.#readError;
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) {
      this.#chunkBytes -= chunk.byteLength;
      if (this.#paused && this.#chunkBytes < READ_HIGH_WATER_MARK) this.#resume();
      take(chunk);
      return true;
    }
    if (this.#readDone) return this.#readEnded();
    if (this.#waiter !== undefined) throw new TypeError("Cannot read as a read is in progress");
    this.#resume();
    return new Promise((resolve, reject) => (this.#waiter = { take, resolve, reject }));
  }

  /**
   * A read of a `readInto` socket, into the free part of an arena that later reads go on
   * filling: one allocation serves many reads, and nothing is ever written twice, so every chunk
   * handed to `take` stays the reader's. The arena starts at 4 KiB and doubles, up to 256 KiB,
   * while reads fill the room they are given: an idle connection holds 4 KiB. The read's promise
   * is the runtime's with one step added, not an async function's over it.
   */
  #readArena(take: (chunk: Uint8Array) => void): boolean | Promise<boolean> {
    if (this.#readDone) return this.#readEnded();
    if (this.#reading) throw new TypeError("Cannot read as a read is in progress");
    let arena = this.#arena;
    if (arena === undefined || arena.length - this.#at < this.#arenaSize >> 2) {
      arena = this.#arena = new Uint8Array(this.#arenaSize);
      this.#at = 0;
    }
    this.#view = arena.subarray(this.#at, Math.min(arena.length, this.#at + READ_SIZE));
    this.#take = take;
    this.#reading = true;
    return this.#driver.readInto!(this.#view).then(this.#arenaRead, this.#arenaFailed);
  }

  #arenaRead = (n: number | null): boolean => {
    this.#reading = false;
    if (this.#readDone) return this.#readEnded();
    if (n === null) {
      this.onEnd();
      return false;
    }
    const view = this.#view;
    this.#at += n;
    if (n === view.length && this.#arenaSize < MAX_ARENA) this.#arenaSize *= 2;
    this.#take(view.subarray(0, n));
    return true;
  };

  #arenaFailed = (err: unknown): boolean => {
    this.#reading = false;
    this.onError(err);
    this.#endReadable();
    return this.#readEnded();
  };

  /** Ends the readable: a read that waits resolves as done. */
  #endReadable(): void {
    if (this.#readDone) return;
    this.#readDone = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve(false);
    try {
      this.#rc.close();
    } catch {
      // The reader cancelled the stream, which is what brought us here.
    }
  }

  /** Called by the driver when it is no longer `blocked`. */
  onDrain(): void {
    if (this.#driver.blocked) return;
    const resolve = this.#drainResolve;
    this.#drainResolve = this.#drainReject = undefined;
    resolve?.();
  }

  /** Called by the adapter when the socket fails; the error ends both directions. */
  onError(err: unknown): void {
    if (this.#closing || this.#destroyed) return;
    const error = err instanceof IpcError ? err : systemError(err, "use connection", this.#label);
    this.#fail(error);
    this.#destroy();
  }

  /** Called by the adapter once the socket is closed. */
  onClose(): void {
    this.#destroyed = true;
    this.#endReadable();
    if (!this.#writeDone) {
      this.#fail(
        new IpcError("ECONNRESET", `Cannot write to "${this.#label}" as the connection closed`, {
          op: "write",
          address: this.#label,
        }),
      );
    }
    this.#resolveClosed();
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#endReadable();
    this.#fail(closedError("write", "connection"));
    this.#destroy();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return this.closed;
  }

  #write(chunk: Uint8Array): Promise<void> | undefined {
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot write to a connection as the chunk is not a Uint8Array: current type is ${typeof chunk}`,
      );
    }
    if (chunk.byteLength === 0) return undefined;
    this.#driver.send(chunk);
    // The fast path: the driver is done with the chunk, so no promise is made for this write.
    if (!this.#driver.blocked) return undefined;
    return new Promise((resolve, reject) => {
      this.#drainResolve = resolve;
      this.#drainReject = reject;
    });
  }

  #endWrite(): void {
    this.#writeDone = true;
    this.#driver.shutdown();
    this.#finishIfDone();
  }

  /** Errors the sending direction, and the receiving one if it is still open. */
  #fail(error: IpcError): void {
    this.#writeError ??= error;
    this.#writeDone = true;
    this.#wc.error(error);
    const reject = this.#drainReject;
    this.#drainResolve = this.#drainReject = undefined;
    reject?.(error);
    if (!this.#readDone) {
      this.#readDone = true;
      this.#readError = error;
      this.#chunks = [];
      this.#chunkBytes = 0;
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.reject(error);
      this.#rc.error(error);
    }
  }

  #finishIfDone(): void {
    if (this.#readDone && this.#writeDone && !this.#finishing && !this.#destroyed) {
      this.#finishing = true;
      this.#driver.finish();
    }
  }

  #destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#driver.destroy();
  }
}
