/**
 * `SocketConn`: the one `Conn` implementation, shared by the three adapters. Each adapter supplies
 * a small `SocketDriver` for its runtime's socket and feeds the socket's events in; the state
 * machine (half-close, errors, backpressure both ways) lives only here.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { closedError, IpcError, systemError } from "../errors.ts";
import type { Conn } from "./types.ts";

/**
 * What `SocketConn` needs from a runtime's socket. A runtime whose reads are calls (Deno)
 * provides `readInto`; one whose reads are events (Node, Bun) calls `onData`/`onEnd` and
 * honours `pause`/`resume`.
 */
export interface SocketDriver {
  /**
   * Reads into `view`, resolving with the count read, or `null` once the peer has ended. With
   * it the readable reads straight into the buffer of a BYOB reader.
   */
  readInto?(view: Uint8Array): Promise<number | null>;
  /**
   * Hands `chunk` to the socket and returns how many bytes it took: all of them for a runtime
   * that buffers (Node, Deno), perhaps fewer for one that does not (Bun).
   */
  send(chunk: Uint8Array): number;
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
/** For a default reader of a `readInto` socket: the most one read takes. */
const READ_SIZE = 64 * 1024;
/** Where that scratch buffer starts: see `#pullInto`. */
const FIRST_READ_SIZE = 4 * 1024;

/** A connected socket as a pair of Web Streams; see `Conn` for the contract. */
export class SocketConn implements Conn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly localAddr: Address;
  readonly remoteAddr: Address;
  readonly closed: Promise<void>;

  #driver: SocketDriver;
  #label: string;
  #rc!: ReadableByteStreamController;
  #wc!: WritableStreamDefaultController;
  #readDone = false;
  #writeDone = false;
  #closing = false;
  #finishing = false;
  #destroyed = false;
  /** The unsent tail of a chunk the socket only partly took. */
  #rest: Uint8Array | undefined;
  #drainResolve: (() => void) | undefined;
  #drainReject: ((err: unknown) => void) | undefined;
  #resolveClosed!: () => void;
  /** Where a default reader's bytes land, for a `readInto` socket. */
  #scratch: Uint8Array | undefined;
  /** The socket is paused: the reader has `READ_HIGH_WATER_MARK` bytes waiting unread. */
  #paused = false;

  /**
   * @param driver The runtime's socket.
   * @param localAddr This end's address.
   * @param remoteAddr The peer's address.
   * @param label How errors name this connection, usually the address string.
   */
  constructor(driver: SocketDriver, localAddr: Address, remoteAddr: Address, label: string) {
    this.#driver = driver;
    this.localAddr = localAddr;
    this.remoteAddr = remoteAddr;
    this.#label = label;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    // A byte stream: a BYOB reader (`getReader({ mode: "byob" })`) gets the bytes in its own
    // buffer, which it can reuse; reading into fresh memory for every chunk is what costs most.
    const pullInto = driver.readInto !== undefined;
    this.readable = new ReadableStream({
      type: "bytes",
      start: (controller) => {
        this.#rc = controller;
      },
      pull: pullInto ? (controller) => this.#pullInto(controller) : () => this.#resume(),
      cancel: () => this.close(),
      // Reading only when asked lets every read go straight into the reader's buffer.
    }, { highWaterMark: pullInto ? 0 : READ_HIGH_WATER_MARK }) as ReadableStream<Uint8Array>;
    this.writable = new WritableStream<Uint8Array>({
      start: (controller) => {
        this.#wc = controller;
      },
      write: (chunk) => this.#write(chunk),
      close: () => this.#endWrite(),
      abort: () => this.close(),
    });
  }

  /**
   * Called by the adapter with each chunk read. The chunk's buffer is transferred to the reader,
   * so it must not be shared with anything else; a chunk that is a view of a larger buffer is
   * copied first.
   */
  onData(chunk: Uint8Array): void {
    if (this.#readDone) return;
    if (chunk.byteOffset !== 0 || chunk.byteLength !== chunk.buffer.byteLength) {
      chunk = chunk.slice();
    }
    this.#rc.enqueue(chunk);
    if (!this.#paused && (this.#rc.desiredSize ?? 0) <= 0) {
      this.#paused = true;
      this.#driver.pause();
    }
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

  async #pullInto(controller: ReadableByteStreamController): Promise<void> {
    // A BYOB reader's buffer is read into directly. For a default reader the bytes land in a
    // reused scratch buffer and leave as an exact-size copy: cheaper than a fresh 64 KiB buffer
    // per read (autoAllocateChunkSize), which costs several microseconds in every runtime. The
    // scratch starts small and doubles whenever a read fills it, up to 64 KiB: an idle
    // connection, whose read waits in it, holds 4 KiB rather than 64.
    const request = controller.byobRequest;
    const view = request
      ? (request.view as Uint8Array)
      : this.#scratch ??= new Uint8Array(FIRST_READ_SIZE);
    let n: number | null;
    try {
      n = await this.#driver.readInto!(view);
    } catch (err) {
      this.onError(err);
      this.#endReadable();
      return;
    }
    if (this.#readDone) return;
    if (n === null) return this.onEnd();
    if (request) {
      request.respond(n);
      return;
    }
    controller.enqueue(view.slice(0, n));
    if (n === view.length && n < READ_SIZE) this.#scratch = new Uint8Array(n * 2);
  }

  /** Ends the readable, releasing a BYOB read that waits (it resolves as done). */
  #endReadable(): void {
    if (this.#readDone) return;
    this.#readDone = true;
    try {
      this.#rc.close();
      this.#rc.byobRequest?.respond(0);
    } catch {
      // The reader cancelled the stream, which is what brought us here.
    }
  }

  /** Called by the adapter when the socket can take more bytes. */
  onDrain(): void {
    let rest = this.#rest;
    while (rest) {
      const taken = this.#driver.send(rest);
      if (taken < rest.byteLength) {
        this.#rest = rest.subarray(Math.max(taken, 0));
        return;
      }
      rest = this.#rest = undefined;
    }
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
    const taken = this.#driver.send(chunk);
    // The fast path: the socket took everything, so no promise is made for this write.
    if (taken === chunk.byteLength && !this.#driver.blocked) return undefined;
    this.#rest = taken < chunk.byteLength ? chunk.subarray(Math.max(taken, 0)) : undefined;
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
    this.#writeDone = true;
    this.#wc.error(error);
    const reject = this.#drainReject;
    this.#drainResolve = this.#drainReject = undefined;
    this.#rest = undefined;
    reject?.(error);
    if (!this.#readDone) {
      this.#readDone = true;
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
