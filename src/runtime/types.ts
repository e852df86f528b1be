/**
 * The `Runtime` interface: everything dockipc needs from Deno, Bun or Node, and nothing more.
 *
 * Only the adapters in this folder touch `Deno`, `Bun` or `node:*`; every other module speaks
 * these types, so a new runtime is one new file.
 *
 * @module
 */

import type { Address, TcpAddress, TlsAddress, UnixAddress } from "../address.ts";
import type { IpcError } from "../errors.ts";

/**
 * A connected byte stream: a unix or TCP socket as a pair of Web Streams.
 *
 * Reading: `readable` yields the bytes as they arrive and reads from the socket only as fast as
 * it is read, so a slow reader leaves the data in the kernel rather than in memory. It ends when
 * the peer stops writing, and errors with `ECONNRESET` when the peer vanishes mid-stream. A chunk
 * belongs to the reader once read: no one writes into it again.
 *
 * `readable` is a plain stream of chunks, not a byte stream: a read of a byte stream costs several
 * times as much in every runtime, since each chunk's buffer is transferred. A BYOB reader is
 * therefore refused. A chunk may be a view of a larger buffer holding earlier chunks of the same
 * connection; that memory is never written to again.
 *
 * Writing: a `writable` write resolves once dockipc no longer needs the chunk: its bytes are in
 * the kernel, or in a bounded copy of dockipc's own (at most 64 KiB ahead of the socket). So
 * awaiting writes is backpressure, and the buffer may be reused once its write has resolved.
 * `writable.close()` flushes and then ends the sending direction only (the peer's `readable`
 * ends), while this side can go on reading.
 *
 * `close()` ends both directions at once: pending data is discarded, `readable` ends and every
 * later write rejects with `ECLOSED`. The connection is also fully closed, and `closed` resolves,
 * once both directions have ended on their own.
 *
 * @example Echo one message
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen } from "@dockipc/dockipc";
 *
 * await using listener = await listen("tcp://127.0.0.1:0");
 * const client = await connect(listener.addr);
 * const server = await listener.accept();
 * server.readable.pipeTo(server.writable); // echo until the client stops writing
 *
 * const writer = client.writable.getWriter();
 * await writer.write(new TextEncoder().encode("ping"));
 * await writer.close();
 * const reply = await new Response(client.readable).text();
 * assert.equal(reply, "ping");
 * await client.closed;
 * ```
 */
export interface Conn extends AsyncDisposable {
  /** Bytes from the peer. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer. */
  readonly writable: WritableStream<Uint8Array>;
  /** This end's address. A unix client has an unnamed socket: its path is `""`. */
  readonly localAddr: Address;
  /** The peer's address. A unix server's peer is usually unnamed: its path is `""`. */
  readonly remoteAddr: Address;
  /** Resolves once the socket is closed and its resources are released. Never rejects. */
  readonly closed: Promise<void>;
  /** What the TLS handshake established, on a `tls://` connection; undefined otherwise. */
  readonly tls?: TlsInfo | undefined;
  /** Closes both directions now. Calling it again does nothing. */
  close(): void;
}

/**
 * A certificate the peer presented and the TLS handshake verified against the trusted
 * authorities (`ca`): who the peer is, as its certificate says.
 */
export interface PeerCertificate {
  /** The subject's distinguished name, as `"CN=alice,O=Example"`. */
  readonly subject: string;
  /** The subject's common name (`CN`), if it has one. */
  readonly commonName: string | undefined;
  /**
   * The subject alternative names, each as OpenSSL writes it: `"DNS:host.example"`,
   * `"IP Address:127.0.0.1"`, `"email:alice@example.com"`, `"URI:spiffe://example/alice"`.
   */
  readonly subjectAltNames: readonly string[];
  /** The issuer's distinguished name. */
  readonly issuer: string;
  /** The SHA-256 fingerprint of the certificate, as upper-case hex pairs joined by `:`. */
  readonly fingerprint: string;
  /** When the certificate's validity starts. */
  readonly validFrom: Date;
  /** When the certificate's validity ends. */
  readonly validTo: Date;
}

/** What a TLS connection's handshake established. */
export interface TlsInfo {
  /** The protocol version, such as `"TLSv1.3"`. */
  readonly protocol: string;
  /**
   * The peer's verified certificate: on a server, the client's (when it sent one); on a client,
   * the server's.
   */
  readonly peerCertificate: PeerCertificate | undefined;
}

/** A TLS server's certificate and what it asks of clients, as the transport checked them. */
export interface TlsServerConfig {
  /** PEM: the server's certificate chain and its private key. */
  readonly cert: string;
  readonly key: string;
  /** PEM: the authorities that sign client certificates; a client cert is asked for with one. */
  readonly ca: string | undefined;
  /** A client without a certificate is refused (`ECERTREQUIRED`). */
  readonly requireClientCert: boolean;
  /** Milliseconds a connection has to complete its TLS handshake before it is closed. */
  readonly handshakeTimeout: number;
  /** Connections in their TLS handshake at once: one more closes the oldest. */
  readonly maxHandshakes: number;
}

/** What a TLS client trusts and presents. */
export interface TlsClientConfig {
  /** PEM: the authorities to trust; the system's when undefined. */
  readonly ca: string | undefined;
  /** PEM: a client certificate and its key, for servers that ask for one. */
  readonly cert: string | undefined;
  readonly key: string | undefined;
  /** The name the server's certificate must hold; the address's host name by default. */
  readonly serverName: string | undefined;
}

/** A bound listening socket inside an adapter; `transport.ts` turns it into a `Listener`. */
export interface RawListener {
  /** The bound address: for TCP with port 0, the port the OS chose. */
  readonly addr: Address;
  /** Stops accepting. Connections already handed out stay open. */
  close(): Promise<void>;
}

/** What an adapter calls as connections arrive on a `RawListener`, and how it names them. */
export interface ListenHandlers {
  /**
   * The address accepted connections report as `localAddr` and errors name, when it is not the
   * bound one (the transport binds a unix socket under a private name, then links it in place).
   */
  publicAddr?: Address;
  /** Whether accepted TCP connections have keepalive probes turned on. */
  keepAlive?: boolean;
  /** A connection was accepted. */
  onConn(conn: Conn): void;
  /**
   * A TLS connection completed its handshake but its client certificate is refused (missing
   * where required, expired, not signed by the `ca`): the listener's to tell and close.
   */
  onRefused?(conn: Conn, err: IpcError): void;
  /** Accepting failed in a way that ends the listener. */
  onError(err: unknown): void;
}

/** What `FileSystem.stat` and `FileHandle.stat` report. */
export interface FileInfo {
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly isSymlink: boolean;
  readonly isSocket: boolean;
  readonly size: number;
  /** Permission bits and file type, as `st_mode`. */
  readonly mode: number;
  /** Modification time, in milliseconds since the epoch. */
  readonly mtimeMs: number;
  /** Inode number and device: together they tell whether a path still names the same file. */
  readonly ino: number;
  readonly dev: number;
}

/** How to open a file; the flags match `open(2)`. */
export interface OpenOptions {
  /** @default {true} */
  read?: boolean;
  /** @default {false} */
  write?: boolean;
  /** Every write goes to the end of the file (`O_APPEND`). @default {false} */
  append?: boolean;
  /** Create the file if it is missing. @default {false} */
  create?: boolean;
  /** The file must not exist yet (`O_EXCL`); an existing one fails with `EEXIST`. */
  createNew?: boolean;
  /** @default {false} */
  truncate?: boolean;
  /** Permission bits for a created file. @default {0o600} */
  mode?: number;
}

/**
 * An open file. Positions are byte offsets from the start of the file. Async calls on one handle
 * run in order; do not start a sync call while an async one on the same handle is pending.
 */
export interface FileHandle {
  /** Reads into `buf` at `position`; resolves with the count read, 0 at the end of the file. */
  read(buf: Uint8Array, position: number): Promise<number>;
  /** Writes all of `data`, at `position` or (without it) at the current end for append files. */
  write(data: Uint8Array, position?: number): Promise<void>;
  /** The same as `write`, blocking the thread: the fastest path for small appends. */
  writeSync(data: Uint8Array, position?: number): void;
  /** `fdatasync(2)`: the data and the size are durable when it resolves. */
  datasync(): Promise<void>;
  /** The same as `datasync`, blocking the thread (no hop to a worker thread). */
  datasyncSync(): void;
  /** `fsync(2)`: data and all metadata. */
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  stat(): Promise<FileInfo>;
  /**
   * Tries to take an advisory lock on the whole file without waiting; `true` when taken.
   * `undefined` on a runtime that has no file locks (callers fall back to a lock file).
   */
  readonly tryLock: ((exclusive: boolean) => Promise<boolean>) | undefined;
  close(): Promise<void>;
}

/** The file operations the write-ahead log and the unix transport need. */
export interface FileSystem {
  open(path: string, options: OpenOptions): Promise<FileHandle>;
  /** Follows symbolic links. */
  stat(path: string): Promise<FileInfo>;
  /** Does not follow a symbolic link at `path`. */
  lstat(path: string): Promise<FileInfo>;
  mkdir(path: string, options: { recursive?: boolean; mode?: number }): Promise<void>;
  /** The names in a directory, in no particular order. */
  readDir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Uint8Array>;
  rename(from: string, to: string): Promise<void>;
  /** Adds a second name for a file; fails if `to` exists (never replaces it). */
  link(from: string, to: string): Promise<void>;
  /** Removes a file or an empty directory; with `recursive`, a whole tree. */
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** Makes a directory's entries (created, renamed or removed files) durable. */
  syncDir(path: string): Promise<void>;
  /** A new empty directory, readable only by this user, under the system's temp folder. */
  makeTempDir(prefix: string): Promise<string>;
}

/** How a child process's standard stream is connected. */
export type Stdio = "pipe" | "inherit" | "null";

/** Options for `Runtime.spawn`. */
export interface SpawnOptions {
  cwd?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** @default {"null"} */
  stdin?: Stdio;
  /** @default {"pipe"} */
  stdout?: Stdio;
  /** @default {"inherit"} */
  stderr?: Stdio;
}

/** How a child process ended. */
export interface ChildStatus {
  /** The exit code, or `null` when a signal ended it. */
  readonly code: number | null;
  /** The signal that ended it, such as `"SIGKILL"`, or `null`. */
  readonly signal: string | null;
  /** Whether it exited with code 0. */
  readonly success: boolean;
}

/** A running child process. */
export interface ChildProcess {
  readonly pid: number;
  readonly stdin: WritableStream<Uint8Array> | null;
  readonly stdout: ReadableStream<Uint8Array> | null;
  readonly stderr: ReadableStream<Uint8Array> | null;
  /** Resolves when the process has ended. */
  readonly status: Promise<ChildStatus>;
  /** Sends a signal. @default {"SIGTERM"} */
  kill(signal?: "SIGTERM" | "SIGKILL" | "SIGINT" | "SIGHUP" | "SIGSTOP" | "SIGCONT"): void;
}

/** A running HTTP server, from `Runtime.serveHttp`. */
export interface HttpServer {
  /** The bound address: with port 0, the port the OS chose. */
  readonly addr: TcpAddress;
  /** Stops accepting, ends open connections, and resolves once the server is gone. */
  close(): Promise<void>;
}

/** Answers one HTTP request: the Fetch API's types, on every runtime. */
export type HttpHandler = (request: Request) => Response | Promise<Response>;

/** The signals a command line program reacts to (SIGHUP: read its configuration again). */
export type ProcessSignal = "SIGINT" | "SIGTERM" | "SIGHUP";

/**
 * This process's standard streams, arguments and exit: what a command line program needs.
 * Writes resolve once the bytes are handed to the system, so exiting afterwards loses nothing.
 */
export interface ProcessIo {
  /** The arguments after the script's path. */
  readonly args: readonly string[];
  /** Standard input, as bytes: read it once. */
  stdin(): ReadableStream<Uint8Array>;
  /** Writes all of `data` to standard output (1) or standard error (2). */
  write(fd: 1 | 2, data: Uint8Array): Promise<void>;
  /** Whether a standard stream is a terminal (not a pipe or a file). */
  isTerminal(fd: 0 | 1 | 2): boolean;
  /** The terminal's width in columns, when standard output is a terminal. */
  columns(): number | undefined;
  /** Calls `listener` on each `signal`, instead of the default exit; returns what removes it. */
  onSignal(signal: ProcessSignal, listener: () => void): () => void;
  /** Ends the process with `code` now. */
  exit(code: number): never;
}

/** The name of a supported runtime. */
export type RuntimeName = "deno" | "bun" | "node";

/** Everything dockipc needs from the runtime it runs on. */
export interface Runtime {
  readonly name: RuntimeName;
  /** The runtime's own version, such as `"2.9.6"`. */
  readonly version: string;
  /** The operating system, as `process.platform` spells it (`"linux"`, `"darwin"`). */
  readonly platform: string;
  /** Binds a listening socket. A unix path must be free: `transport.ts` checks it first. */
  listen(address: Address, handlers: ListenHandlers): Promise<RawListener>;
  /**
   * Opens a connection. TCP connections have Nagle's algorithm turned off, and keepalive probes
   * (at the system's interval) on unless `keepAlive` is false.
   */
  connect(address: UnixAddress | TcpAddress, options?: { keepAlive?: boolean }): Promise<Conn>;
  /** Binds a TLS listening socket; every adapter uses the runtime's `node:tls`. */
  listenTls(
    address: TlsAddress,
    config: TlsServerConfig,
    handlers: ListenHandlers,
  ): Promise<RawListener>;
  /** Opens a TLS connection and completes its handshake, verifying the server. */
  connectTls(
    address: TlsAddress,
    config: TlsClientConfig,
    options?: { keepAlive?: boolean },
  ): Promise<Conn>;
  readonly fs: FileSystem;
  spawn(command: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
  /**
   * Serves HTTP on `hostname:port` with the runtime's own server (`Deno.serve`, `Bun.serve`,
   * `node:http`); `port` 0 lets the system choose.
   */
  serveHttp(options: { hostname: string; port: number }, handler: HttpHandler): Promise<HttpServer>;
  /** This process's standard streams, arguments and exit. */
  readonly process: ProcessIo;
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /** The path of the running runtime's executable. */
  readonly execPath: string;
  readonly pid: number;
}
