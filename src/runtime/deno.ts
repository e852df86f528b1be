/**
 * The Deno adapter: `Deno.listen`/`Deno.connect` (unix and tcp), `Deno.open`, `Deno.Command`.
 *
 * @module
 */

import type { Address, TcpAddress, UnixAddress } from "../address.ts";
import { formatAddress } from "../address.ts";
import { atPath as at, systemError } from "../errors.ts";
import { delay, holdProcess } from "../internal/async.ts";
import { SocketConn } from "./_socket_conn.ts";
import { StagingDriver } from "./_staging.ts";
import { connectTls, listenTls } from "./_tls.ts";
import type {
  ChildProcess,
  Conn,
  FileHandle,
  FileInfo,
  FileSystem,
  HttpHandler,
  HttpServer,
  ListenHandlers,
  OpenOptions,
  ProcessIo,
  RawListener,
  Runtime,
  SpawnOptions,
} from "./types.ts";

/** A Deno socket as a `SocketDriver`. */
class DenoDriver extends StagingDriver {
  #conn: Deno.Conn;

  constructor(conn: Deno.Conn) {
    super();
    this.#conn = conn;
  }

  protected write(bytes: Uint8Array): Promise<number> {
    return this.#conn.write(bytes);
  }

  /** Deno's writes are ops, never synchronous. */
  protected writeNow(): number {
    return 0;
  }

  protected closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /**
   * One `conn.read`, its promise handed on as it is. A read that waits when the socket is
   * closed here rejects; `SocketConn` knows the close was its own and ends reading quietly.
   */
  readInto(view: Uint8Array): Promise<number | null> {
    return this.closed ? Promise.resolve(null) : this.#conn.read(view);
  }

  pause(): void {}
  resume(): void {}

  protected release(): void {
    this.destroy();
  }

  protected close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime.
    }
    queueMicrotask(() => this.sink.onClose());
  }
}

function toAddress(addr: Deno.Addr): Address {
  if (addr.transport === "unix" || addr.transport === "unixpacket") {
    return { transport: "unix", path: addr.path ?? "" };
  }
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return { transport: "tcp", hostname: addr.hostname, port: addr.port };
  }
  return { transport: "unix", path: "" };
}

function wrap(conn: Deno.Conn, label: string, keepAlive: boolean, localAddr?: Address): Conn {
  const local = localAddr ?? toAddress(conn.localAddr);
  if (local.transport === "tcp") {
    (conn as Deno.TcpConn).setNoDelay(true);
    if (keepAlive) (conn as Deno.TcpConn).setKeepAlive(true);
  }
  const driver = new DenoDriver(conn);
  const sink = new SocketConn(driver, local, toAddress(conn.remoteAddr), label);
  driver.attach(sink);
  // Deno waits only for pending operations: an open connection nothing reads would let the
  // process end, where on Node and Bun it keeps it alive until closed.
  void sink.closed.then(holdProcess());
  return sink;
}

function listen(address: Address, handlers: ListenHandlers): Promise<RawListener> {
  const label = formatAddress(handlers.publicAddr ?? address);
  let listener: Deno.Listener;
  try {
    listener = address.transport === "unix"
      ? Deno.listen({ transport: "unix", path: address.path })
      : Deno.listen({ transport: "tcp", hostname: address.hostname, port: address.port });
  } catch (err) {
    return Promise.reject(systemError(err, "listen on", label));
  }
  let closed = false;
  const localAddr = address.transport === "unix" ? handlers.publicAddr ?? address : undefined;
  const keepAlive = handlers.keepAlive ?? true;
  const accepting = (async () => {
    while (!closed) {
      try {
        handlers.onConn(wrap(await listener.accept(), label, keepAlive, localAddr));
      } catch (err) {
        if (closed) return;
        // Out of file descriptors and the like: report it and keep accepting.
        handlers.onError(systemError(err, "accept on", label));
        await delay(10);
      }
    }
  })();
  return Promise.resolve({
    addr: toAddress(listener.addr),
    close: () => {
      closed = true;
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      // The socket is only released once the pending accept() has returned.
      return accepting;
    },
  });
}

async function connect(
  address: UnixAddress | TcpAddress,
  options: { keepAlive?: boolean } = {},
): Promise<Conn> {
  const label = formatAddress(address);
  try {
    const conn = address.transport === "unix"
      ? await Deno.connect({ transport: "unix", path: address.path })
      : await Deno.connect({ transport: "tcp", hostname: address.hostname, port: address.port });
    return wrap(conn, label, options.keepAlive ?? true);
  } catch (err) {
    throw systemError(err, "connect to", label);
  }
}

function info(s: Deno.FileInfo): FileInfo {
  return {
    isFile: s.isFile,
    isDirectory: s.isDirectory,
    isSymlink: s.isSymlink,
    isSocket: s.isSocket ?? false,
    size: s.size,
    mode: s.mode ?? 0,
    mtimeMs: s.mtime?.getTime() ?? 0,
    ino: s.ino ?? 0,
    dev: s.dev,
  };
}

/** Closes the file of a `DenoFile` dropped unclosed (a log reader left half read, say). */
const unclosed = new FinalizationRegistry<Deno.FsFile>((file) => {
  try {
    file.close();
  } catch {
    // closed already
  }
});

class DenoFile implements FileHandle {
  #file: Deno.FsFile;
  #path: string;
  /** Async calls run one after another, since a positional one is a seek and then a read. */
  #queue: Promise<unknown> = Promise.resolve();
  /**
   * The file offset our own calls left, or undefined when unknown (after a failure, while an
   * async call runs, always in append mode). Sequential positional calls, a log's appends and
   * reads, then need no seek: half the system calls of a small append.
   */
  #offset: number | undefined;
  readonly #append: boolean;

  constructor(file: Deno.FsFile, path: string, append: boolean) {
    this.#file = file;
    this.#path = path;
    this.#append = append;
    this.#offset = append ? undefined : 0;
    unclosed.register(this, file, this);
  }

  /**
   * Starts a call at `position`, or at the offset without one: seeks there unless the offset is
   * known to be there already, and returns where the call starts (undefined if unknown). The
   * offset is unknown until the call ends (`#moved`).
   */
  #startSync(position: number | undefined): number | undefined {
    const from = position ?? this.#offset;
    const seek = position !== undefined && position !== this.#offset;
    this.#offset = undefined;
    if (seek) this.#file.seekSync(position, Deno.SeekMode.Start);
    return from;
  }

  async #start(position: number | undefined): Promise<number | undefined> {
    const from = position ?? this.#offset;
    const seek = position !== undefined && position !== this.#offset;
    this.#offset = undefined;
    if (seek) await this.#file.seek(position, Deno.SeekMode.Start);
    return from;
  }

  /** After a positional call moved `n` bytes from `position`: where the offset now is. */
  #moved(position: number, n: number): void {
    this.#offset = this.#append ? undefined : position + n;
  }

  #run<T>(op: string, run: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(() => at(op, this.#path, run));
    this.#queue = next.catch(() => {});
    return next;
  }

  read(buf: Uint8Array, position: number): Promise<number> {
    return this.#run("read", async () => {
      await this.#start(position);
      const n = (await this.#file.read(buf)) ?? 0;
      this.#moved(position, n);
      return n;
    });
  }

  write(data: Uint8Array, position?: number): Promise<void> {
    return this.#run("write", async () => {
      const from = await this.#start(position);
      let off = 0;
      while (off < data.byteLength) off += await this.#file.write(data.subarray(off));
      if (from !== undefined) this.#moved(from, off);
    });
  }

  writeSync(data: Uint8Array, position?: number): void {
    try {
      const from = this.#startSync(position);
      let off = 0;
      while (off < data.byteLength) off += this.#file.writeSync(data.subarray(off));
      if (from !== undefined) this.#moved(from, off);
    } catch (err) {
      throw systemError(err, "write", this.#path, "path");
    }
  }

  datasync(): Promise<void> {
    return this.#run("sync", () => this.#file.syncData());
  }

  datasyncSync(): void {
    try {
      this.#file.syncDataSync();
    } catch (err) {
      throw systemError(err, "sync", this.#path, "path");
    }
  }

  sync(): Promise<void> {
    return this.#run("sync", () => this.#file.sync());
  }

  truncate(length: number): Promise<void> {
    return this.#run("truncate", () => this.#file.truncate(length));
  }

  async stat(): Promise<FileInfo> {
    return info(await this.#run("stat", () => this.#file.stat()));
  }

  readonly tryLock = (exclusive: boolean): Promise<boolean> =>
    this.#run("lock", () => this.#file.tryLock(exclusive));

  close(): Promise<void> {
    unclosed.unregister(this);
    return this.#run("close", () => Promise.resolve(this.#file.close()));
  }
}

const denoFs: FileSystem = {
  open: (path, o: OpenOptions) =>
    at("open", path, async () => {
      const write = !!(o.write || o.append || o.create || o.createNew || o.truncate);
      const file = await Deno.open(path, {
        read: o.read ?? true,
        write,
        append: o.append ?? false,
        create: o.create ?? false,
        createNew: o.createNew ?? false,
        truncate: o.truncate ?? false,
        mode: o.mode ?? 0o600,
      });
      return new DenoFile(file, path, o.append ?? false);
    }),
  stat: (path) => at("stat", path, async () => info(await Deno.stat(path))),
  lstat: (path) => at("stat", path, async () => info(await Deno.lstat(path))),
  mkdir: (path, options) =>
    at(
      "create directory",
      path,
      () =>
        Deno.mkdir(path, { recursive: options.recursive ?? false, mode: options.mode ?? 0o777 }),
    ),
  readDir: (path) =>
    at("read directory", path, async () => {
      const names: string[] = [];
      for await (const entry of Deno.readDir(path)) names.push(entry.name);
      return names;
    }),
  readFile: (path) => at("read", path, () => Deno.readFile(path)),
  rename: (from, to) => at("rename", from, () => Deno.rename(from, to)),
  link: (from, to) => at("link", to, () => Deno.link(from, to)),
  remove: (path, options = {}) =>
    at("remove", path, () => Deno.remove(path, { recursive: options.recursive ?? false })),
  chmod: (path, mode) => at("change mode of", path, () => Deno.chmod(path, mode)),
  syncDir: (path) =>
    at("sync", path, async () => {
      const dir = await Deno.open(path, { read: true });
      try {
        await dir.sync();
      } finally {
        dir.close();
      }
    }),
  makeTempDir: (prefix) => at("create directory", prefix, () => Deno.makeTempDir({ prefix })),
};

function stdio(
  s: string | undefined,
  fallback: "piped" | "inherit" | "null",
): "piped" | "inherit" | "null" {
  if (s === undefined) return fallback;
  return s === "pipe" ? "piped" : s === "inherit" ? "inherit" : "null";
}

function spawn(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args: [...args],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: options.env }),
      stdin: stdio(options.stdin, "null"),
      stdout: stdio(options.stdout, "piped"),
      stderr: stdio(options.stderr, "inherit"),
    }).spawn();
  } catch (err) {
    throw systemError(err, "spawn", command, "path");
  }
  const piped = (s: string | undefined, fallback: string): boolean => (s ?? fallback) === "pipe";
  return {
    pid: child.pid,
    stdin: piped(options.stdin, "null") ? child.stdin : null,
    stdout: piped(options.stdout, "pipe") ? child.stdout : null,
    stderr: piped(options.stderr, "inherit") ? child.stderr : null,
    status: child.status.then((s) => ({
      code: s.signal ? null : s.code,
      signal: s.signal,
      success: s.success,
    })),
    kill: (signal = "SIGTERM") => {
      try {
        child.kill(signal);
      } catch {
        // Already ended.
      }
    },
  };
}

async function serveHttp(
  options: { hostname: string; port: number },
  handler: HttpHandler,
): Promise<HttpServer> {
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ ...options, onListen: resolve }, handler);
  } catch (err) {
    throw systemError(err, "listen", `${options.hostname}:${options.port}`, "address");
  }
  const addr = await listening;
  return {
    addr: { transport: "tcp", hostname: addr.hostname, port: addr.port },
    close: async () => {
      await server.shutdown();
    },
  };
}

const denoProcess: ProcessIo = {
  args: Deno.args,
  stdin: () => Deno.stdin.readable,
  write: async (fd, data) => {
    const out = fd === 1 ? Deno.stdout : Deno.stderr;
    for (let done = 0; done < data.length;) done += await out.write(data.subarray(done));
  },
  isTerminal: (fd) => [Deno.stdin, Deno.stdout, Deno.stderr][fd]!.isTerminal(),
  columns: () => {
    try {
      return Deno.stdout.isTerminal() ? Deno.consoleSize().columns : undefined;
    } catch {
      return undefined;
    }
  },
  onSignal: (signal, listener) => {
    Deno.addSignalListener(signal, listener);
    return () => Deno.removeSignalListener(signal, listener);
  },
  exit: (code) => Deno.exit(code),
};

/** The Deno runtime. */
export const runtime: Runtime = {
  name: "deno",
  version: Deno.version.deno,
  platform: Deno.build.os,
  listen,
  connect,
  listenTls,
  connectTls,
  fs: denoFs,
  spawn,
  serveHttp,
  process: denoProcess,
  env: (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined; // no --allow-env: as if unset
    }
  },
  get execPath(): string {
    return Deno.execPath();
  },
  pid: Deno.pid,
};
