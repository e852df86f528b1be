/**
 * The Node adapter: `node:net` sockets, `node:fs` files (shared with Bun), `node:child_process`.
 *
 * @module
 */

import { spawn as spawnChild } from "node:child_process";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import process from "node:process";
import { Readable, Writable } from "node:stream";
import type { Address, TcpAddress, UnixAddress } from "../address.ts";
import { formatAddress } from "../address.ts";
import { systemError } from "../errors.ts";
import { nodeFs } from "./node_fs.ts";
import { nodeProcess } from "./node_process.ts";
import { tcpPeer, wrapSocket as wrap } from "./_node_socket.ts";
import { connectTls, listenTls } from "./_tls.ts";

/** Connections the kernel queues for `accept`: the system caps it at its somaxconn. */
const backlog = 4096;
import type {
  ChildProcess,
  ChildStatus,
  Conn,
  HttpHandler,
  HttpServer,
  ListenHandlers,
  RawListener,
  Runtime,
  SpawnOptions,
} from "./types.ts";

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
        handlers.onConn(wrap(socket, local, remote, label, handlers.keepAlive ?? true));
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
    // Node's own backlog (511) drops a burst of connects that Deno's and Bun's take; this one
    // is capped by the system's somaxconn (4096 on Linux).
    if (address.transport === "unix") server.listen({ path: address.path, backlog }, onListening);
    else server.listen({ host: address.hostname, port: address.port, backlog }, onListening);
  });
}

function connect(
  address: UnixAddress | TcpAddress,
  options: { keepAlive?: boolean } = {},
): Promise<Conn> {
  const label = formatAddress(address);
  const keepAlive = options.keepAlive ?? true;
  const socket = address.transport === "unix"
    ? createConnection({ path: address.path, allowHalfOpen: true })
    : createConnection({ host: address.hostname, port: address.port, allowHalfOpen: true });
  return new Promise((resolve, reject) => {
    socket.once("error", (err) => reject(systemError(err, "connect to", label)));
    socket.once("connect", () => {
      socket.removeAllListeners("error");
      if (address.transport === "unix") {
        resolve(wrap(socket, { transport: "unix", path: "" }, address, label, keepAlive));
      } else {
        resolve(
          wrap(socket, tcpPeer(socket, "local"), tcpPeer(socket, "remote"), label, keepAlive),
        );
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

/** `node:http`'s request as the Fetch API's `Request`. */
function toRequest(req: IncomingMessage, host: string): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const method = req.method ?? "GET";
  const bodied = method !== "GET" && method !== "HEAD";
  return new Request(new URL(req.url ?? "/", `http://${host}`), {
    method,
    headers,
    ...(bodied ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" } : {}),
  });
}

/** Writes a Fetch API `Response` through `node:http`, its body as it comes. */
async function send(res: ServerResponse, response: Response): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (response.body !== null) {
    for await (const chunk of response.body) {
      if (!res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve));
    }
  }
  res.end();
}

function serveHttp(
  options: { hostname: string; port: number },
  handler: HttpHandler,
): Promise<HttpServer> {
  const label = `${options.hostname}:${options.port}`;
  const server = createHttpServer((req, res) => {
    void (async () => {
      try {
        await send(res, await handler(toRequest(req, label)));
      } catch {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      }
    })();
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(systemError(err, "listen", label, "address")));
    server.listen(options.port, options.hostname, () => {
      const bound = server.address() as { address: string; port: number };
      resolve({
        addr: { transport: "tcp", hostname: bound.address, port: bound.port },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** The Node runtime. */
export const runtime: Runtime = {
  name: "node",
  version: process.versions.node,
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
