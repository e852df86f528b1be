/**
 * A `node:net` socket (or a `node:tls` one, on any runtime) as a `Conn`: the Node adapter's
 * driver, shared with the TLS transport every adapter uses.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { Address } from "../address.ts";
import { SocketConn } from "./_socket_conn.ts";
import { StagingDriver } from "./_staging.ts";
import type { Conn, TlsInfo } from "./types.ts";

/**
 * The reads of a socket's transport, for a socket whose own `pause()` does not hold the peer
 * back: Deno's `node:tls` socket goes on reading TCP while paused (its TLS layer only stops
 * handing out cleartext) and loses an end of stream that arrives meanwhile. Pausing its TCP
 * handle instead holds the peer back, and the end comes once reading starts again.
 */
export interface ReadSwitch {
  readStop(): void;
  readStart(): void;
}

class NodeDriver extends StagingDriver {
  #socket: Socket;
  /** Writes handed to Node, and how many of them it has flushed to the kernel. */
  #issued = 0;
  #done = 0;
  /** Writes Node could not finish at once, in order: their numbers, and whom to tell. */
  #waiting: { n: number; flushed: () => void }[] = [];

  /** What stops and starts reading, when not the socket itself (see `ReadSwitch`). */
  readonly #reads: ReadSwitch | undefined;

  constructor(socket: Socket, reads?: ReadSwitch) {
    super();
    this.#socket = socket;
    this.#reads = reads;
  }

  /**
   * Hands `bytes` to Node. Node writes what the kernel takes at once and keeps a reference to
   * the rest, so the bytes count as taken only once Node has flushed them (its callback).
   */
  protected write(bytes: Uint8Array): number | Promise<number> {
    this.#hand(bytes);
    if (this.#socket.writableLength === 0) return bytes.byteLength;
    return this.#flushed().then(() => bytes.byteLength);
  }

  /**
   * A write to an idle socket goes straight to Node, uncopied. If Node keeps part of it, the
   * write waits until Node has flushed it.
   */
  protected writeNow(bytes: Uint8Array): number {
    if (this.#socket.writableLength !== 0) return 0;
    this.#hand(bytes);
    if (this.#socket.writableLength !== 0) this.hold(this.#flushed());
    return bytes.byteLength;
  }

  #hand(bytes: Uint8Array): void {
    this.#issued++;
    this.#socket.write(bytes, this.#onFlushed);
  }

  /** Resolves once Node has flushed the last write handed to it. */
  #flushed(): Promise<void> {
    return new Promise((flushed) => this.#waiting.push({ n: this.#issued, flushed }));
  }

  /** One callback for every write, in order, so no closure is made per write. */
  #onFlushed = (): void => {
    this.#done++;
    const waiting = this.#waiting;
    while (waiting.length > 0 && waiting[0]!.n <= this.#done) waiting.shift()!.flushed();
  };

  protected closeWrite(): void {
    this.#socket.end();
  }
  pause(): void {
    if (this.#reads) this.#reads.readStop();
    else this.#socket.pause();
  }
  resume(): void {
    if (this.#reads) this.#reads.readStart();
    else this.#socket.resume();
  }
  protected release(): void {
    // Nothing to do: once both directions have ended and Node has flushed what it buffered,
    // the socket destroys itself and emits "close". destroy() now would drop that buffer.
  }
  protected close(): void {
    this.#socket.destroy();
  }
}

/** Wraps a connected socket; TCP ones get no Nagle delay and, when asked, keepalive probes. */
export function wrapSocket(
  socket: Socket,
  localAddr: Address,
  remoteAddr: Address,
  label: string,
  keepAlive: boolean,
  tls?: TlsInfo,
  reads?: ReadSwitch,
): Conn {
  if (localAddr.transport !== "unix") {
    socket.setNoDelay(true);
    if (keepAlive) socket.setKeepAlive(true);
  }
  const driver = new NodeDriver(socket, reads);
  const conn = new SocketConn(driver, localAddr, remoteAddr, label, tls);
  driver.attach(conn);
  socket.on("data", (b: Uint8Array) => {
    // A plain Uint8Array view, so that `slice()` copies as everywhere else.
    conn.onData(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  });
  socket.on("end", () => conn.onEnd());
  socket.on("error", (err) => conn.onError(err));
  socket.on("close", () => conn.onClose());
  return conn;
}

/** The local or remote address of a TCP socket, or of a TLS one as a `"tls"` address. */
export function tcpPeer<T extends "tcp" | "tls" = "tcp">(
  socket: Socket,
  side: "local" | "remote",
  transport: T = "tcp" as T,
): { transport: T; hostname: string; port: number } {
  const hostname = (side === "local" ? socket.localAddress : socket.remoteAddress) ?? "";
  const port = (side === "local" ? socket.localPort : socket.remotePort) ?? 0;
  return { transport, hostname, port };
}
