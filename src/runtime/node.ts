/**
 * The Node adapter: `node:net` sockets, `node:fs` files (shared with Bun), `node:child_process`.
 *
 * @module
 */

import { spawn as spawnChild } from "node:child_process";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import process from "node:process";
import { Readable, Writable } from "node:stream";
import type { Address, TcpAddress, UnixAddress } from "../address.ts";
import { formatAddress } from "../address.ts";
import { systemError } from "../errors.ts";
import { nodeFs } from "./node_fs.ts";
import { SocketConn, type SocketDriver } from "./_socket_conn.ts";
import type {
  ChildProcess,
  ChildStatus,
  Conn,
  ListenHandlers,
  RawListener,
  Runtime,
  SpawnOptions,
} from "./types.ts";

/** A write smaller than this that Node would have to queue is copied, so the caller may reuse it. */
const COPY_BELOW = 16 * 1024;

class NodeDriver implements SocketDriver {
  #socket: Socket;
  #sink!: SocketConn;
  /** Node's buffer is over its high-water mark: wait for "drain". */
  #needDrain = false;
  /** Writes handed to Node, and how many of them it has flushed to the kernel. */
  #issued = 0;
  #flushed = 0;
  /** Node holds a caller's chunk until the write with this number is flushed. */
  #waitFor = 0;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  attach(sink: SocketConn): void {
    this.#sink = sink;
  }

  get blocked(): boolean {
    return this.#needDrain || this.#flushed < this.#waitFor;
  }

  send(chunk: Uint8Array): void {
    const socket = this.#socket;
    // Node keeps a reference to what it cannot write at once. A small chunk that will queue is
    // copied; any other chunk Node still holds keeps its write pending until it is flushed.
    const data = socket.writableLength > 0 && chunk.byteLength < COPY_BELOW ? chunk.slice() : chunk;
    this.#issued++;
    this.#needDrain = !socket.write(data, this.#onFlushed);
    if (data === chunk && socket.writableLength > 0) this.#waitFor = this.#issued;
  }

  /** One callback for every write, so no closure is made per write. */
  #onFlushed = (): void => {
    this.#flushed++;
    if (this.#flushed === this.#waitFor) this.#sink.onDrain();
  };

  drained(): void {
    this.#needDrain = false;
    this.#sink.onDrain();
  }

  pause(): void {
    this.#socket.pause();
  }
  resume(): void {
    this.#socket.resume();
  }
  shutdown(): void {
    this.#socket.end();
  }
  finish(): void {
    // Nothing to do: once both directions have ended and Node has flushed what it buffered,
    // the socket destroys itself and emits "close". destroy() now would drop that buffer.
  }
  destroy(): void {
    this.#socket.destroy();
  }
}

function wrap(socket: Socket, localAddr: Address, remoteAddr: Address, label: string): Conn {
  if (localAddr.transport === "tcp") socket.setNoDelay(true);
  const driver = new NodeDriver(socket);
  const conn = new SocketConn(driver, localAddr, remoteAddr, label);
  driver.attach(conn);
  socket.on("data", (b: Uint8Array) => {
    // A plain Uint8Array view, so that `slice()` copies as everywhere else.
    conn.onData(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  });
  socket.on("end", () => conn.onEnd());
  socket.on("drain", () => driver.drained());
  socket.on("error", (err) => conn.onError(err));
  socket.on("close", () => conn.onClose());
  return conn;
}

function tcpPeer(socket: Socket, side: "local" | "remote"): TcpAddress {
  const hostname = (side === "local" ? socket.localAddress : socket.remoteAddress) ?? "";
  const port = (side === "local" ? socket.localPort : socket.remotePort) ?? 0;
  return { transport: "tcp", hostname, port };
}

function listen(address: Address, handlers: ListenHandlers): Promise<RawListener> {
  const label = formatAddress(handlers.publicAddr ?? address);
  const server: Server = createServer({ allowHalfOpen: true });
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(systemError(err, "listen on", label)));
    const onListening = (): void => {
      server.removeAllListeners("error");
      server.on("error", (err) => handlers.onError(err));
      let addr: Address = address;
      const bound = server.address();
      if (address.transport === "tcp" && bound && typeof bound === "object") {
        addr = { transport: "tcp", hostname: bound.address, port: bound.port };
      }
      server.on("connection", (socket: Socket) => {
        const remote: Address = addr.transport === "unix"
          ? { transport: "unix", path: "" }
          : tcpPeer(socket, "remote");
        const local: Address = addr.transport === "unix"
          ? handlers.publicAddr ?? addr
          : tcpPeer(socket, "local");
        handlers.onConn(wrap(socket, local, remote, label));
      });
      resolve({
        addr,
        // Not server.close(callback): that waits for every accepted connection to end.
        close: () => {
          server.close();
          return Promise.resolve();
        },
      });
    };
    if (address.transport === "unix") server.listen({ path: address.path }, onListening);
    else server.listen({ host: address.hostname, port: address.port }, onListening);
  });
}

function connect(address: UnixAddress | TcpAddress): Promise<Conn> {
  const label = formatAddress(address);
  const socket = address.transport === "unix"
    ? createConnection({ path: address.path, allowHalfOpen: true })
    : createConnection({ host: address.hostname, port: address.port, allowHalfOpen: true });
  return new Promise((resolve, reject) => {
    socket.once("error", (err) => reject(systemError(err, "connect to", label)));
    socket.once("connect", () => {
      socket.removeAllListeners("error");
      if (address.transport === "unix") {
        resolve(wrap(socket, { transport: "unix", path: "" }, address, label));
      } else {
        resolve(wrap(socket, tcpPeer(socket, "local"), tcpPeer(socket, "remote"), label));
      }
    });
  });
}

function spawn(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawnChild(command, [...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: [
      options.stdin === "pipe" ? "pipe" : options.stdin === "inherit" ? "inherit" : "ignore",
      (options.stdout ?? "pipe") === "pipe"
        ? "pipe"
        : options.stdout === "inherit"
        ? "inherit"
        : "ignore",
      options.stderr === "pipe"
        ? "pipe"
        : (options.stderr ?? "inherit") === "inherit"
        ? "inherit"
        : "ignore",
    ],
  });
  const status = new Promise<ChildStatus>((resolve, reject) => {
    child.once("error", (err) => reject(systemError(err, "spawn", command, "path")));
    child.once("close", (code, signal) => resolve({ code, signal, success: code === 0 }));
  });
  return {
    pid: child.pid ?? -1,
    stdin: child.stdin ? (Writable.toWeb(child.stdin) as WritableStream<Uint8Array>) : null,
    stdout: child.stdout ? (Readable.toWeb(child.stdout) as ReadableStream<Uint8Array>) : null,
    stderr: child.stderr ? (Readable.toWeb(child.stderr) as ReadableStream<Uint8Array>) : null,
    status,
    kill: (signal = "SIGTERM") => {
      child.kill(signal);
    },
  };
}

/** The Node runtime. */
export const runtime: Runtime = {
  name: "node",
  version: process.versions.node,
  platform: process.platform,
  listen,
  connect,
  fs: nodeFs,
  spawn,
  env: (name) => process.env[name],
  execPath: process.execPath,
  pid: process.pid,
};
