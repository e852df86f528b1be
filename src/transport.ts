/**
 * `listen()` and `connect()` over unix sockets and TCP, on top of the runtime adapters.
 *
 * A unix socket is bound under a private name in a fresh `0700` directory beside its path, given
 * its mode there, and then linked into place: no other user can connect before the mode is set,
 * and `link(2)` never replaces what is at the path, so a live socket is never stolen even by a
 * listener racing this one. Only when the private name would be longer than the OS allows does
 * it bind in place and set the mode just after.
 *
 * @module
 */

import {
  type Address,
  formatAddress,
  maxUnixPathBytes,
  parseAddress,
  type TcpAddress,
  type UnixAddress,
} from "./address.ts";
import {
  clientTlsConfig,
  type ConnectTlsOptions,
  type ListenTlsOptions,
  serverTlsConfig,
} from "./tls.ts";
import { IpcError, systemCode } from "./errors.ts";
import { abortable, checkTimeout, deadline, delay } from "./internal/async.ts";
import { ownerOf, ownerState, removeOwner, writeOwner } from "./internal/owner.ts";
import { getRuntime } from "./runtime/detect.ts";
import type {
  Conn,
  FileInfo,
  FileSystem,
  ListenHandlers,
  RawListener,
  Runtime,
} from "./runtime/types.ts";

/** Options for {@linkcode listen}. */
export interface ListenOptions {
  /** Permission bits of a unix socket file. @default {0o600} */
  mode?: number;
  /** Permission bits of parent directories that `listen` creates. @default {0o700} */
  dirMode?: number;
  /** Closes the listener when aborted; a `for await` over it then ends. */
  signal?: AbortSignal;
  /**
   * Accepted connections waiting for `accept()` at most. Past this, a new connection is closed
   * at once, so a flood of clients cannot grow memory while the server is busy.
   * @default {1024}
   */
  maxPending?: number;
  /**
   * Accepted TCP connections have keepalive probes on, at the system's interval, so that a peer
   * whose machine vanished is noticed in the end even by a connection nobody writes to.
   * @default {true}
   */
  keepAlive?: boolean;
  /**
   * The certificate, key and client authentication of a `tls://` listener: required there,
   * refused elsewhere. Accepted connections are those that completed the handshake (and whose
   * client certificate passed); their `tls` says who the client is.
   */
  tls?: ListenTlsOptions;
}

/** Options for {@linkcode connect}. */
export interface ConnectOptions {
  /** Abandons the attempt: `connect` rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Rejects with `ETIMEDOUT` after this many milliseconds; `Infinity` for no limit. NaN or a
   * negative number, or 0, is refused with a `RangeError`. @default {no limit}
   */
  timeout?: number;
  /** A TCP connection has keepalive probes on, at the system's interval. @default {true} */
  keepAlive?: boolean;
  /**
   * What a `tls://` connection trusts and presents; refused for other addresses. Without it, the
   * server is verified against the system's authorities.
   */
  tls?: ConnectTlsOptions;
}

/**
 * A listening socket: an async iterable of accepted connections.
 *
 * @example Accept connections until the listener closes
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen } from "@dockipc/dockipc";
 *
 * const listener = await listen("tcp://127.0.0.1:0");
 * const served = (async () => {
 *   for await (const conn of listener) await conn.readable.pipeTo(conn.writable);
 * })();
 * const client = await connect(listener.addr);
 * const writer = client.writable.getWriter();
 * await writer.write(new Uint8Array([1, 2, 3]));
 * await writer.close();
 * assert.deepEqual(new Uint8Array(await new Response(client.readable).arrayBuffer()), new Uint8Array([1, 2, 3]));
 * await listener.close();
 * await served;
 * ```
 */
export interface Listener extends AsyncIterable<Conn>, AsyncDisposable {
  /** Where it listens: for TCP with port 0, with the port the OS chose. */
  readonly addr: Address;
  /**
   * The next connection.
   *
   * @throws {IpcError} `ECLOSED` once the listener is closed.
   */
  accept(): Promise<Conn>;
  /**
   * Stops accepting, closes connections not yet accepted, and removes the socket file if it is
   * still the one this listener created. Connections already accepted stay open.
   */
  close(): Promise<void>;
}

/**
 * Listens on a unix socket or a TCP port.
 *
 * For a unix socket: a missing parent directory is created (`0700`); the socket file gets `mode`
 * (`0600`) before anyone can connect; an existing socket that nothing answers on is replaced; a
 * live socket fails with `EADDRINUSE`, and so does a path that is not a socket, which is left
 * untouched.
 *
 * @param address Where to listen: see {@linkcode parseAddress}.
 * @param options Mode, cancellation, the pending-connection bound.
 * @returns The listener.
 * For `tls://`: `options.tls` gives the certificate and key, and optionally the authority whose
 * client certificates are accepted (see {@linkcode ListenTlsOptions}).
 *
 * @throws {IpcError} `EADDRINVALID`, `EADDRINUSE`, `EACCES`, `ENOENT`; `EINVAL` for TLS options
 *   that cannot be used (missing, not PEM, on a plaintext address).
 *
 * @example Listen on a unix socket
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen } from "@dockipc/dockipc";
 *
 * const path = `/tmp/dockipc-doc-${Date.now()}.sock`;
 * await using listener = await listen(`unix:${path}`);
 * const client = await connect(path);
 * const server = await listener.accept();
 * assert.deepEqual(server.localAddr, { transport: "unix", path });
 * client.close();
 * server.close();
 * ```
 */
export function listen(address: string | Address, options: ListenOptions = {}): Promise<Listener> {
  return listenRefusing(address, options, undefined);
}

/**
 * A TLS client whose certificate a listener refuses: told why (a protocol's refusal message)
 * and closed by `refuse`, which owns the connection. Without it the connection is closed.
 */
export type RefuseClient = (conn: Conn, err: IpcError) => void;

/** {@linkcode listen}, with what to do with a refused TLS client. */
export async function listenRefusing(
  address: string | Address,
  options: ListenOptions,
  refuse: RefuseClient | undefined,
): Promise<Listener> {
  const { mode = 0o600, dirMode = 0o700, signal, maxPending = 1024, keepAlive = true } = options;
  signal?.throwIfAborted();
  const addr = parseAddress(address);
  const tls = serverTlsConfig(addr, options.tls);
  const runtime = await getRuntime();
  const listener = new QueueListener(maxPending, keepAlive, refuse);
  const raw = addr.transport === "tcp"
    ? await runtime.listen(addr, listener.handlers())
    : addr.transport === "tls"
    ? await runtime.listenTls(addr, tls!, listener.handlers())
    : await bindUnix(runtime, addr, { mode, dirMode }, listener);
  listener.start(
    raw,
    addr.transport === "unix" ? await lstatOrUndefined(runtime.fs, addr.path) : undefined,
  );
  if (addr.transport === "unix") await listener.lock(runtime.pid);
  if (signal?.aborted) {
    // Aborted while binding: the listener never reaches the caller, so close it here.
    await listener.close();
    signal.throwIfAborted();
  }
  if (signal) {
    const onAbort = (): void => void listener.close();
    signal.addEventListener("abort", onAbort, { once: true });
    listener.closed.then(() => signal.removeEventListener("abort", onAbort));
  }
  return listener;
}

/**
 * Connects to a unix socket or a TCP port. TCP connections have Nagle's algorithm off.
 *
 * @param address Where to connect: see {@linkcode parseAddress}.
 * @param options Cancellation and a time limit.
 * @returns The connection.
 * @throws {IpcError} `EADDRINVALID`, `ENOENT` (no socket file), `ECONNREFUSED` (nothing
 * accepts), `EBUSY` (the server's queue of connections to accept stayed full for a second, as
 * `connect` tried again), `ETIMEDOUT`, `EACCES`; for `tls://`, `ECERTUNTRUSTED`, `ECERTEXPIRED`,
 * `ECERTNAME` (the server's certificate), `ETLS` (the handshake failed otherwise, as with a
 * plaintext server) and `EINVAL` (bad TLS options); or the signal's reason when aborted.
 *
 * @example Refused when nothing listens
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect } from "@dockipc/dockipc";
 *
 * await assert.rejects(connect("/tmp/dockipc-nothing-here.sock"), { code: "ENOENT" });
 * ```
 */
export async function connect(
  address: string | Address,
  options: ConnectOptions = {},
): Promise<Conn> {
  const { signal, timeout, keepAlive = true } = options;
  signal?.throwIfAborted();
  const addr = parseAddress(address);
  const label = formatAddress(addr);
  const tls = clientTlsConfig(addr, options.tls);
  if (addr.transport !== "unix" && addr.port === 0) {
    throw new IpcError(
      "EADDRINVALID",
      `Cannot connect to "${label}" as port 0 is only for listening`,
      {
        op: "connect",
        address: label,
      },
    );
  }
  // Checked before connecting, so that a bad timeout opens nothing.
  if (timeout !== undefined) checkTimeout("connect", timeout);
  const runtime = await getRuntime();
  const connecting = addr.transport === "tls"
    ? runtime.connectTls(addr, tls!, { keepAlive })
    : connectRetrying(runtime, addr, { keepAlive });
  return await deadline(connecting, timeout ?? Infinity, {
    signal,
    onLate: (late) => late.close(),
    op: "connect",
    timedOut: (cause) =>
      new IpcError("ETIMEDOUT", `Cannot connect to "${label}" as ${timeout} ms passed`, {
        op: "connect",
        address: label,
        cause,
      }),
  });
}

/** The waits between connects to a server whose accept queue is full: 1.3 s in all. */
const FULL_QUEUE_WAITS = [5, 10, 20, 40, 80, 160, 320, 640];

/**
 * Connects; while the server's queue of connections to accept is full (a burst of connects),
 * tries again a few times. Bun reports a full queue as ECONNREFUSED, like a socket file that
 * nobody listens on, so on Bun a refused unix socket is tried again the same way.
 */
async function connectRetrying(
  runtime: Runtime,
  addr: UnixAddress | TcpAddress,
  options: { keepAlive: boolean },
): Promise<Conn> {
  for (let attempt = 0;; attempt++) {
    try {
      return await runtime.connect(addr, options);
    } catch (err) {
      if (err instanceof IpcError && err.code === "ECONNREFUSED" && addr.transport === "unix") {
        await refuseNonSocket(runtime.fs, addr, err);
      }
      const full = err instanceof IpcError &&
        (err.code === "EBUSY" ||
          (err.code === "ECONNREFUSED" && runtime.name === "bun" && addr.transport === "unix"));
      if (!full || attempt === FULL_QUEUE_WAITS.length) throw err;
      await delay(FULL_QUEUE_WAITS[attempt]!);
    }
  }
}

/**
 * A refused connect to a path that is no socket at all (a regular file, a directory) is told
 * apart from a socket nobody listens on: throws what it really is, or returns.
 */
async function refuseNonSocket(fs: FileSystem, addr: UnixAddress, err: IpcError): Promise<void> {
  const found = await lstatOrUndefined(fs, addr.path);
  if (found === undefined || found.isSocket) return;
  const what = found.isDirectory ? "a directory" : "a file that is not a socket";
  const label = formatAddress(addr);
  throw new IpcError("ECONNREFUSED", `Cannot connect to "${label}" as it is ${what}`, {
    op: "connect",
    address: label,
    cause: err,
  });
}

/** How long to wait for an existing socket to answer before calling it busy, in ms. */
const PROBE_TIMEOUT = 2000;

/** The part of a `Listener` the adapters feed, with the accept queue. */
class QueueListener implements Listener {
  addr!: Address;
  readonly closed: Promise<void>;
  #raw: RawListener | undefined;
  #identity: FileInfo | undefined;
  #fs: FileSystem | undefined;
  /** What this listener wrote in the socket's lock file, to remove it only if still its own. */
  #lockText: string | undefined;
  #pending: Conn[] = [];
  #waiting: { resolve: (conn: Conn) => void; reject: (err: unknown) => void }[] = [];
  #maxPending: number;
  readonly #keepAlive: boolean;
  readonly #refuse: RefuseClient | undefined;
  #error: unknown;
  #closing: Promise<void> | undefined;
  #resolveClosed!: () => void;

  constructor(maxPending: number, keepAlive: boolean, refuse: RefuseClient | undefined) {
    this.#maxPending = maxPending;
    this.#keepAlive = keepAlive;
    this.#refuse = refuse;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  handlers(publicAddr?: Address): ListenHandlers {
    return {
      ...(publicAddr ? { publicAddr } : {}),
      keepAlive: this.#keepAlive,
      onConn: (conn) => this.#push(conn),
      onRefused: (conn, err) => {
        if (this.#refuse === undefined || this.#closing) conn.close();
        else this.#refuse(conn, err);
      },
      onError: (err) => {
        this.#error = err;
      },
    };
  }

  start(raw: RawListener, identity: FileInfo | undefined): void {
    this.#raw = raw;
    this.#identity = identity;
    this.addr ??= raw.addr;
  }

  setUnix(addr: UnixAddress, fs: FileSystem): void {
    this.addr = addr;
    this.#fs = fs;
  }

  /**
   * Names this process in the socket's lock file, so that another `listen()` on the path knows
   * the socket is live without connecting to it (a connect can be refused by a live server
   * whose accept queue is full). Where it cannot be written, connecting is the only check.
   */
  async lock(pid: number): Promise<void> {
    const path = lockPathOf(this.addr as UnixAddress);
    this.#lockText = await writeOwner(this.#fs!, path, pid).catch(() => undefined);
  }

  #push(conn: Conn): void {
    if (this.#closing) return conn.close();
    const waiter = this.#waiting.shift();
    if (waiter) return waiter.resolve(conn);
    if (this.#pending.length >= this.#maxPending) return conn.close();
    this.#pending.push(conn);
  }

  accept(): Promise<Conn> {
    const conn = this.#pending.shift();
    if (conn) return Promise.resolve(conn);
    if (this.#closing) return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Conn> {
    while (true) {
      let conn: Conn;
      try {
        conn = await this.accept();
      } catch (err) {
        if (err instanceof IpcError && err.code === "ECLOSED") return;
        throw err;
      }
      yield conn;
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const err = this.#closedError();
    for (const w of this.#waiting.splice(0)) w.reject(err);
    for (const c of this.#pending.splice(0)) c.close();
    await this.#raw?.close();
    const { addr } = this;
    if (addr.transport === "unix" && this.#identity && this.#fs) {
      await removeIfSame(this.#fs, addr.path, this.#identity);
      if (this.#lockText !== undefined) {
        await removeOwner(this.#fs, lockPathOf(addr), this.#lockText);
      }
    }
    this.#resolveClosed();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #closedError(): IpcError {
    return new IpcError(
      "ECLOSED",
      `Cannot accept on "${formatAddress(this.addr)}" as the listener is closed`,
      {
        op: "accept",
        address: formatAddress(this.addr),
        ...(this.#error === undefined ? {} : { cause: this.#error }),
      },
    );
  }
}

async function bindUnix(
  runtime: Runtime,
  addr: UnixAddress,
  modes: { mode: number; dirMode: number },
  listener: QueueListener,
): Promise<RawListener> {
  const { fs } = runtime;
  const label = formatAddress(addr);
  const parent = dirname(addr.path);
  await ensureDir(fs, parent, modes.dirMode);
  listener.setUnix(addr, fs);
  const handlers = listener.handlers(addr);

  for (let attempt = 0; attempt < 3; attempt++) {
    await clearStale(runtime, addr);
    const privateDir = `${parent}/.dk${randomSuffix()}`;
    const privatePath = `${privateDir}/s`;
    if (new TextEncoder().encode(privatePath).length > maxUnixPathBytes()) {
      // No room for the private name: bind in place (bind(2) never replaces a file either).
      const raw = await runtime.listen(addr, handlers);
      try {
        await fs.chmod(addr.path, modes.mode);
      } catch (err) {
        await raw.close(); // never leave a socket listening with the wrong mode
        throw err;
      }
      return raw;
    }
    await fs.mkdir(privateDir, { mode: 0o700 });
    let raw: RawListener | undefined;
    try {
      await fs.chmod(privateDir, 0o700);
      raw = await runtime.listen({ transport: "unix", path: privatePath }, handlers);
      await fs.chmod(privatePath, modes.mode);
      await fs.link(privatePath, addr.path);
      return raw;
    } catch (err) {
      await raw?.close();
      if (err instanceof IpcError && err.code === "EEXIST") continue;
      throw err instanceof IpcError
        ? err
        : new IpcError("EIO", `Cannot listen on "${label}"`, { cause: err });
    } finally {
      await fs.remove(privateDir, { recursive: true }).catch(() => {});
    }
  }
  throw inUse(label, "another listener keeps taking the path");
}

/**
 * Makes the path free to bind: nothing there, or a socket nobody answers on (removed). A live
 * socket and anything that is not a socket are refused.
 */
async function clearStale(runtime: Runtime, addr: UnixAddress): Promise<void> {
  const label = formatAddress(addr);
  const found = await lstatOrUndefined(runtime.fs, addr.path);
  if (!found) return;
  if (!found.isSocket) {
    throw inUse(label, "the path exists and is not a socket; it was left untouched");
  }
  const lock = lockPathOf(addr);
  const owner = await ownerOf(runtime.fs, lock).catch(() => undefined);
  const state = owner === undefined ? "gone" : await ownerState(runtime.fs, owner);
  const holder = `process ${owner?.pid} listens there (its lock file is "${lock}")`;
  if (state === "running") throw inUse(label, holder);
  try {
    const probe = await abortable(
      runtime.connect(addr),
      AbortSignal.timeout(PROBE_TIMEOUT),
      (late) => late.close(),
    );
    probe.close();
  } catch (err) {
    const code = err instanceof IpcError ? err.code : systemCode(err);
    if (code === "ENOENT") return; // it went away meanwhile
    if (code === "ECONNREFUSED") {
      // On Bun a live server's full queue is refused too: a live pid there may still be it.
      if (state === "unsure" && runtime.name === "bun") throw inUse(label, holder);
      await removeIfSame(runtime.fs, addr.path, found);
      return;
    }
    throw inUse(label, "a socket there could not be checked; it was left untouched");
  }
  throw inUse(label, "another process is accepting there");
}

/** The lock file beside a unix socket: it names the process that listens there. */
function lockPathOf(addr: UnixAddress): string {
  return `${addr.path}.lock`;
}

function inUse(label: string, why: string): IpcError {
  return new IpcError("EADDRINUSE", `Cannot listen on "${label}" as ${why}`, {
    op: "listen",
    address: label,
  });
}

async function ensureDir(fs: FileSystem, dir: string, mode: number): Promise<void> {
  const found = await lstatOrUndefined(fs, dir);
  if (found !== undefined && !found.isDirectory && !found.isSymlink) {
    throw new IpcError("ENOENT", `Cannot listen in "${dir}" as it is a file, not a directory`, {
      op: "listen",
      path: dir,
    });
  }
  if (found) return;
  await fs.mkdir(dir, { recursive: true, mode });
  await fs.chmod(dir, mode);
}

/** Removes the file at `path` only if it is still the one described by `identity`. */
async function removeIfSame(fs: FileSystem, path: string, identity: FileInfo): Promise<void> {
  const now = await lstatOrUndefined(fs, path);
  if (!now || now.ino !== identity.ino || now.dev !== identity.dev) return;
  await fs.remove(path).catch((err) => {
    if (!(err instanceof IpcError && err.code === "ENOENT")) throw err;
  });
}

async function lstatOrUndefined(fs: FileSystem, path: string): Promise<FileInfo | undefined> {
  try {
    return await fs.lstat(path);
  } catch (err) {
    if (err instanceof IpcError && err.code === "ENOENT") return undefined;
    throw err;
  }
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : path.slice(0, i);
}

function randomSuffix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return Array.from(bytes, (b) => b.toString(36).padStart(2, "0")).join("").slice(0, 6);
}
