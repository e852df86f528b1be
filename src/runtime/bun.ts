/**
 * The Bun adapter: `Bun.listen`/`Bun.connect` natively (not `node:net`), `Bun.spawn`, and files
 * through Bun's native `node:fs`.
 *
 * Bun's `socket.write()` takes what the kernel takes and buffers nothing; the driver stages small
 * writes (`StagingDriver`), keeps the rest of a partial write and sends it on `drain`.
 *
 * @module
 */

import type { Address, TcpAddress, UnixAddress } from "../address.ts";
import { formatAddress } from "../address.ts";
import { systemError } from "../errors.ts";
import { nodeFs } from "./node_fs.ts";
import { nodeProcess } from "./node_process.ts";
import { SocketConn } from "./_socket_conn.ts";
import { StagingDriver } from "./_staging.ts";
import { connectTls, listenTls } from "./_tls.ts";
import type {
  ChildProcess,
  Conn,
  HttpHandler,
  HttpServer,
  ListenHandlers,
  RawListener,
  Runtime,
  SpawnOptions,
} from "./types.ts";

/** The part of Bun's socket this adapter uses. */
interface BunSocket {
  data: BunDriver | undefined;
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  shutdown(halfClose?: boolean): void;
  end(): void;
  terminate(): void;
  setNoDelay(noDelay: boolean): boolean;
  setKeepAlive(enable: boolean, initialDelay?: number): boolean;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
}

interface BunHandlers {
  binaryType: "arraybuffer";
  open(socket: BunSocket): void;
  data(socket: BunSocket, data: ArrayBuffer): void;
  drain(socket: BunSocket): void;
  end(socket: BunSocket): void;
  close(socket: BunSocket, err?: Error): void;
  error(socket: BunSocket, err: Error): void;
  connectError?(socket: BunSocket, err: Error): void;
}

interface BunSocketOptions {
  socket: BunHandlers;
  allowHalfOpen: boolean;
  unix?: string;
  hostname?: string;
  port?: number;
}

interface BunListener {
  readonly port?: number;
  readonly hostname?: string;
  stop(closeActiveConnections?: boolean): void;
}

interface BunSubprocess {
  readonly pid: number;
  readonly stdin:
    | { write(data: Uint8Array): number; flush(): unknown; end(): unknown }
    | number
    | undefined
    | null;
  readonly stdout: ReadableStream<Uint8Array> | number | undefined | null;
  readonly stderr: ReadableStream<Uint8Array> | number | undefined | null;
  readonly exited: Promise<number>;
  readonly exitCode: number | null;
  readonly signalCode: string | null;
  kill(signal?: string): void;
}

interface BunHttpServer {
  readonly port: number;
  readonly hostname: string;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}

interface BunLike {
  readonly version: string;
  serve(options: {
    hostname: string;
    port: number;
    fetch(request: Request): Response | Promise<Response>;
    error(err: Error): Response;
  }): BunHttpServer;
  listen(options: BunSocketOptions): BunListener;
  connect(options: BunSocketOptions): Promise<BunSocket>;
  spawn(
    cmd: string[],
    options: {
      cwd?: string;
      env?: Record<string, string | undefined>;
      stdin?: "pipe" | "inherit" | "ignore";
      stdout?: "pipe" | "inherit" | "ignore";
      stderr?: "pipe" | "inherit" | "ignore";
    },
  ): BunSubprocess;
}

interface BunProcessLike {
  readonly platform: string;
  readonly pid: number;
  readonly execPath: string;
  readonly env: Record<string, string | undefined>;
}

declare const Bun: BunLike;
declare const process: BunProcessLike;

/**
 * What `socket.write()` answered, as a count: -1 means the socket can take nothing more. A paused
 * socket whose peer is gone gets no `close` event until it reads, so this is how a server that
 * stopped reading a client learns that the client is gone.
 */
function written(n: number): number {
  if (n >= 0) return n;
  throw Object.assign(new Error("the peer closed the connection"), { code: "EPIPE" });
}

class BunDriver extends StagingDriver {
  #socket: BunSocket;
  /** A partial write waits for `drain`: resolves it with the count taken. */
  #writable: (() => void) | undefined;

  constructor(socket: BunSocket) {
    super();
    this.#socket = socket;
  }

  /** The connection's socket events go to `SocketConn`. */
  get conn(): SocketConn {
    return this.sink;
  }

  protected write(bytes: Uint8Array): number | Promise<number> {
    const n = written(this.#socket.write(bytes));
    if (n >= bytes.byteLength) return n;
    // The kernel is full: the rest goes once Bun reports `drain`.
    return new Promise((resolve) => (this.#writable = () => resolve(n)));
  }

  protected writeNow(bytes: Uint8Array): number {
    return written(this.#socket.write(bytes));
  }

  /** Bun's `drain`: the socket takes bytes again. */
  onWritable(): void {
    const writable = this.#writable;
    this.#writable = undefined;
    writable?.();
  }

  protected closeWrite(): void {
    this.#socket.shutdown();
  }
  pause(): void {
    this.#socket.pause();
  }
  resume(): void {
    this.#socket.resume();
  }
  protected release(): void {
    this.#socket.end();
  }
  protected close(): void {
    this.#socket.terminate();
  }
}

/** Socket events, routed to the `SocketConn` each socket carries in its `data` slot. */
function handlers(onOpen: (socket: BunSocket) => void): BunHandlers {
  return {
    open: onOpen,
    // An ArrayBuffer per read: a Buffer (the default) makes JSC build its ArrayBuffer on first
    // use of `.buffer`, which every view of the bytes needs; here it exists from the start.
    binaryType: "arraybuffer",
    data: (socket, data) => socket.data?.conn.onData(new Uint8Array(data)),
    drain: (socket) => socket.data?.onWritable(),
    end: (socket) => socket.data?.conn.onEnd(),
    close: (socket) => socket.data?.conn.onClose(),
    error: (socket, err) => socket.data?.conn.onError(err),
  };
}

function attach(
  socket: BunSocket,
  local: Address,
  remote: Address,
  label: string,
  keepAlive: boolean,
): SocketConn {
  if (local.transport === "tcp") {
    socket.setNoDelay(true);
    if (keepAlive) socket.setKeepAlive(true);
  }
  const driver = new BunDriver(socket);
  const conn = new SocketConn(driver, local, remote, label);
  driver.attach(conn);
  socket.data = driver;
  return conn;
}

function tcpSide(socket: BunSocket, side: "local" | "remote"): TcpAddress {
  return side === "local"
    ? { transport: "tcp", hostname: socket.localAddress, port: socket.localPort }
    : { transport: "tcp", hostname: socket.remoteAddress, port: socket.remotePort };
}

function listen(address: Address, options: ListenHandlers): Promise<RawListener> {
  const label = formatAddress(options.publicAddr ?? address);
  const unix = address.transport === "unix";
  const onOpen = (socket: BunSocket): void => {
    const local = unix ? options.publicAddr ?? address : tcpSide(socket, "local");
    const remote: Address = unix ? { transport: "unix", path: "" } : tcpSide(socket, "remote");
    options.onConn(attach(socket, local, remote, label, options.keepAlive ?? true));
  };
  let listener: BunListener;
  try {
    listener = Bun.listen({
      socket: handlers(onOpen),
      allowHalfOpen: true,
      ...(unix ? { unix: address.path } : { hostname: address.hostname, port: address.port }),
    });
  } catch (err) {
    return Promise.reject(systemError(err, "listen on", label));
  }
  const addr: Address = unix ? address : {
    transport: "tcp",
    hostname: address.hostname,
    port: listener.port ?? address.port,
  };
  return Promise.resolve({
    addr,
    close: () => {
      listener.stop(false);
      return Promise.resolve();
    },
  });
}

async function connect(
  address: UnixAddress | TcpAddress,
  options: { keepAlive?: boolean } = {},
): Promise<Conn> {
  const label = formatAddress(address);
  const keepAlive = options.keepAlive ?? true;
  let conn: SocketConn | undefined;
  const onOpen = (socket: BunSocket): void => {
    conn = address.transport === "unix"
      ? attach(socket, { transport: "unix", path: "" }, address, label, keepAlive)
      : attach(socket, tcpSide(socket, "local"), tcpSide(socket, "remote"), label, keepAlive);
  };
  try {
    const socket = await Bun.connect({
      socket: { ...handlers(onOpen), connectError: () => {} },
      allowHalfOpen: true,
      ...(address.transport === "unix"
        ? { unix: address.path }
        : { hostname: address.hostname, port: address.port }),
    });
    return conn ?? attach(socket, { transport: "unix", path: "" }, address, label, keepAlive);
  } catch (err) {
    throw systemError(err, "connect to", label);
  }
}

function stdio(
  s: string | undefined,
  fallback: "pipe" | "inherit" | "ignore",
): "pipe" | "inherit" | "ignore" {
  if (s === undefined) return fallback;
  return s === "pipe" ? "pipe" : s === "inherit" ? "inherit" : "ignore";
}

function spawn(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  let child: BunSubprocess;
  try {
    child = Bun.spawn([command, ...args], {
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      env: { ...process.env, ...options.env },
      stdin: stdio(options.stdin, "ignore"),
      stdout: stdio(options.stdout, "pipe"),
      stderr: stdio(options.stderr, "inherit"),
    });
  } catch (err) {
    throw systemError(err, "spawn", command, "path");
  }
  const sink = typeof child.stdin === "object" && child.stdin ? child.stdin : undefined;
  const stdin = sink
    ? new WritableStream<Uint8Array>({
      write: async (chunk) => {
        sink.write(chunk);
        await sink.flush();
      },
      close: async () => {
        await sink.end();
      },
    })
    : null;
  const stream = (s: BunSubprocess["stdout"]): ReadableStream<Uint8Array> | null =>
    s instanceof ReadableStream ? s : null;
  return {
    pid: child.pid,
    stdin,
    stdout: stream(child.stdout),
    stderr: stream(child.stderr),
    status: child.exited.then(() => {
      const signal = child.signalCode;
      const code = signal ? null : child.exitCode;
      return { code, signal, success: code === 0 };
    }),
    kill: (signal = "SIGTERM") => child.kill(signal),
  };
}

function serveHttp(
  options: { hostname: string; port: number },
  handler: HttpHandler,
): Promise<HttpServer> {
  try {
    const server = Bun.serve({
      ...options,
      fetch: handler,
      error: () => new Response(null, { status: 500 }),
    });
    return Promise.resolve({
      addr: { transport: "tcp", hostname: server.hostname, port: server.port },
      close: async () => {
        await server.stop(true);
      },
    });
  } catch (err) {
    return Promise.reject(
      systemError(err, "listen", `${options.hostname}:${options.port}`, "address"),
    );
  }
}

/** The Bun runtime. */
export const runtime: Runtime = {
  name: "bun",
  version: Bun.version,
  platform: process.platform,
  listen,
  connect,
  listenTls,
  connectTls,
  fs: nodeFs,
  spawn,
  serveHttp,
  process: nodeProcess,
  env: (name) => process.env[name],
  execPath: process.execPath,
  pid: process.pid,
};
