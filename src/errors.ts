/**
 * The one error class of dockipc, its codes, and the translation of operating-system errors.
 *
 * @module
 */

/**
 * What went wrong, as a closed set of codes a caller can switch on.
 *
 * - `EADDRINVALID`: an address string or object could not be understood.
 * - `EADDRINUSE`: something else holds the address (a live socket, a file, a bound port).
 * - `EACCES`: the operating system refused access to a path or port.
 * - `ENOENT`: nothing exists at the path.
 * - `EEXIST`: a file exists where a new one was to be created.
 * - `ECONNREFUSED`: nothing accepts connections at the address.
 * - `ECONNRESET`: the peer went away while data was in flight.
 * - `ETIMEDOUT`: an operation did not finish within its time limit.
 * - `ECLOSED`: the object was closed by this process; nothing more can be done with it.
 * - `EFRAMETOOLARGE`, `ETRUNCATED`, `ELINETOOLONG`: framing refused or lost a frame.
 * - `EPROTOCOL`, `EAUTH`: a peer spoke a protocol wrongly, or could not prove who it is.
 * - `ESLOWCONSUMER`, `ENORESPONDERS`: pub/sub delivery failures.
 * - `ETOPICINVALID`: a pub/sub topic or pattern could not be used.
 * - `ENOTPENDING`: an ack, nak, term or working for a stream message that is not waiting for
 *   one from this reader (already acknowledged, redelivered elsewhere, or never delivered here).
 * - `ECODEC`: a value could not be encoded as a payload (`json`, `text`, a handler's answer),
 *   or bytes could not be decoded as the value they should hold.
 * - `EREMOTE`: the other side's handler failed; the message says how. Such an error is a
 *   {@linkcode RemoteError}.
 * - `ECORRUPT`, `ELOCKED`: write-ahead log integrity and ownership.
 * - `ENOSPC`: the disk (or the user's quota) is full.
 * - `EBUSY`: a server's queue of connections to accept stayed full while `connect` retried.
 * - `EINVAL`: an option or argument has a value that cannot be used; the message names both.
 * - `ERATELIMIT`: a rate limit with the `"reject"` policy refused a message; the message names
 *   the limit.
 * - `ELIMIT`: a bound on how many of something one client or hub may hold was reached (delayed
 *   messages waiting for their time); the message names the bound and its option.
 * - `EPERM`: the server's permissions do not let this client do that (publish to a topic,
 *   subscribe to a pattern, call a method, use a stream); the message names the rule.
 * - `ETLS`: a TLS handshake failed for a reason other than a certificate (a plaintext peer on
 *   the other end, no protocol or cipher in common).
 * - `ECERTUNTRUSTED`: the peer's certificate is not signed by a trusted authority (`ca`).
 * - `ECERTEXPIRED`: the peer's certificate has expired or is not valid yet.
 * - `ECERTREQUIRED`: the server requires a client certificate and the client sent none.
 * - `ECERTNAME`: the server's certificate is not for the name the client connected to.
 * - `EIO`: every other operating-system failure; `cause` holds the original error.
 */
export type IpcErrorCode =
  | "EADDRINVALID"
  | "EADDRINUSE"
  | "EACCES"
  | "ENOENT"
  | "EEXIST"
  | "ECONNREFUSED"
  | "ECONNRESET"
  | "ETIMEDOUT"
  | "ECLOSED"
  | "EFRAMETOOLARGE"
  | "ETRUNCATED"
  | "ELINETOOLONG"
  | "EPROTOCOL"
  | "EAUTH"
  | "ESLOWCONSUMER"
  | "ENORESPONDERS"
  | "ETOPICINVALID"
  | "ENOTPENDING"
  | "ECODEC"
  | "EREMOTE"
  | "ECORRUPT"
  | "ELOCKED"
  | "ENOSPC"
  | "EBUSY"
  | "EINVAL"
  | "ERATELIMIT"
  | "ELIMIT"
  | "EPERM"
  | "ETLS"
  | "ECERTUNTRUSTED"
  | "ECERTEXPIRED"
  | "ECERTREQUIRED"
  | "ECERTNAME"
  | "EIO";

/** Where an {@linkcode IpcError} happened: the operation, the address or path, the cause. */
export interface IpcErrorOptions {
  /** The operation that failed, such as `"listen"`, `"connect"`, `"read"` or `"write"`. */
  op?: string;
  /** The address involved, as written by the caller (`"unix:/run/app.sock"`). */
  address?: string;
  /** The file-system path involved. */
  path?: string;
  /** The underlying error, usually one thrown by the runtime. */
  cause?: unknown;
}

/**
 * The error every dockipc operation throws or rejects with, except `TypeError` and `RangeError`
 * for a wrong argument and an `AbortSignal`'s own reason when the caller aborts.
 *
 * @example Switch on the code
 * ```ts
 * import assert from "node:assert/strict";
 * import { IpcError } from "@dockipc/dockipc";
 *
 * const err = new IpcError("ECONNREFUSED", "Cannot connect to \"/tmp/x.sock\" as nothing accepts there", {
 *   op: "connect",
 *   address: "/tmp/x.sock",
 * });
 * assert.equal(err.code, "ECONNREFUSED");
 * assert.equal(err.name, "IpcError");
 * assert.ok(err instanceof Error);
 * ```
 */
export class IpcError extends Error {
  /** Always `"IpcError"`. */
  override name = "IpcError";
  /** What went wrong; see {@linkcode IpcErrorCode}. */
  readonly code: IpcErrorCode;
  /** The operation that failed, when known. */
  readonly op: string | undefined;
  /** The address involved, when there is one. */
  readonly address: string | undefined;
  /** The file-system path involved, when there is one. */
  readonly path: string | undefined;

  /**
   * Builds an error.
   *
   * @param code What went wrong.
   * @param message What happened and, where it helps, what to do about it.
   * @param options The operation, address or path, and the cause.
   */
  constructor(code: IpcErrorCode, message: string, options: IpcErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.op = options.op;
    this.address = options.address;
    this.path = options.path;
  }
}

/** Options of a {@linkcode RemoteError}: an {@linkcode IpcError}'s, and the remote stack. */
export interface RemoteErrorOptions extends IpcErrorOptions {
  /** The remote stack, when the server sends stacks. */
  remoteStack?: string | undefined;
}

/**
 * A handler on the other side failed: an RPC handler, or the handler of a hub request, in this
 * process or another. It is an {@linkcode IpcError} with code `EREMOTE`; `remoteCode` is what the
 * handler's error called itself (its `code` property if it was a string, else its class name).
 *
 * @example Tell a handler's failure from a transport failure
 * ```ts
 * import assert from "node:assert/strict";
 * import { IpcError, RemoteError } from "@dockipc/dockipc";
 * import { dial, serve } from "@dockipc/dockipc/rpc";
 *
 * await using server = await serve("tcp://127.0.0.1:0", () => {
 *   throw Object.assign(new Error("no such user"), { code: "ENOTFOUND" });
 * });
 * await using client = await dial(server.addr);
 * await assert.rejects(client.request("user 7"), (err) => {
 *   assert.ok(err instanceof RemoteError && err instanceof IpcError);
 *   assert.equal(err.code, "EREMOTE");
 *   assert.equal(err.remoteCode, "ENOTFOUND");
 *   assert.equal(err.message, "no such user");
 *   return true;
 * });
 * ```
 */
export class RemoteError extends IpcError {
  /** Always `"RemoteError"`. */
  override name = "RemoteError";
  /** The remote error's code, or its class name when it had none. */
  readonly remoteCode: string;
  /** The remote stack, when the server sends stacks (`exposeStack`). */
  readonly remoteStack: string | undefined;

  /**
   * Builds the error.
   *
   * @param remoteCode The remote error's code.
   * @param message The remote error's message.
   * @param options The operation, the address, and the remote stack if sent.
   */
  constructor(remoteCode: string, message: string, options: RemoteErrorOptions = {}) {
    super("EREMOTE", message, options);
    this.remoteCode = remoteCode;
    this.remoteStack = options.remoteStack;
  }
}

/** What an error calls itself: its `code` property if that is a string, else its class name. */
export function errorCode(err: unknown): string {
  const own = (err as { code?: unknown } | undefined)?.code;
  if (typeof own === "string") return own;
  return err instanceof Error ? err.name : "Error";
}

/** Operating-system error codes, as Node, Bun and Deno spell them, mapped to ours. */
const SYSTEM_CODES: Readonly<Record<string, IpcErrorCode>> = {
  ENOENT: "ENOENT",
  ENOTDIR: "ENOENT",
  NotFound: "ENOENT",
  EADDRINUSE: "EADDRINUSE",

  AddrInUse: "EADDRINUSE",
  EEXIST: "EEXIST",
  AlreadyExists: "EEXIST",
  EACCES: "EACCES",
  EPERM: "EACCES",
  PermissionDenied: "EACCES",
  ECONNREFUSED: "ECONNREFUSED",
  ConnectionRefused: "ECONNREFUSED",
  ECONNRESET: "ECONNRESET",
  ECONNABORTED: "ECONNRESET",
  EPIPE: "ECONNRESET",
  ConnectionReset: "ECONNRESET",
  ConnectionAborted: "ECONNRESET",
  BrokenPipe: "ECONNRESET",
  ETIMEDOUT: "ETIMEDOUT",
  TimedOut: "ETIMEDOUT",
  ENOSPC: "ENOSPC",
  EAGAIN: "EBUSY",
  WouldBlock: "EBUSY",
  EDQUOT: "ENOSPC",
  BadResource: "ECLOSED",
  Interrupted: "ECLOSED",
};

/** The reason attached to each code when the operating system reports it. */
const SYSTEM_REASONS: Readonly<Partial<Record<IpcErrorCode, string>>> = {
  ENOENT: "nothing exists at that path",
  EADDRINUSE: "the address is already in use",
  EEXIST: "a file already exists there",
  EACCES: "permission was denied",
  ECONNREFUSED: "nothing accepts connections there",
  ECONNRESET: "the peer closed the connection",
  ETIMEDOUT: "the operation timed out",
  ECLOSED: "it was already closed",
  ENOSPC: "the disk is full",
  EBUSY: "its queue of connections to accept is full: the server accepts too slowly",
};

/**
 * Reads the code of an error thrown by a runtime: Node and Bun set `code` ("ENOENT"), Deno sets
 * both `code` and a class name ("NotFound").
 */
export function systemCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { code, name } = err as { code?: unknown; name?: unknown };
  if (typeof code === "string") return code;
  return typeof name === "string" ? name : undefined;
}

/**
 * Turns an error thrown by a runtime into an {@linkcode IpcError}, keeping an `IpcError` as it is.
 *
 * @param err What the runtime threw.
 * @param op The operation, used in the message: `Cannot ${op} "${target}" as …`.
 * @param target The address or path, quoted in the message.
 * @param kind Whether `target` is an address or a path.
 */
export function systemError(
  err: unknown,
  op: string,
  target: string,
  kind: "address" | "path" = "address",
): IpcError {
  if (err instanceof IpcError) return err;
  const raw = systemCode(err);
  const code: IpcErrorCode = (raw === undefined ? undefined : SYSTEM_CODES[raw]) ?? "EIO";
  const reason = SYSTEM_REASONS[code] ??
    `the operating system reported ${raw ?? "an error"}: ${
      err instanceof Error ? err.message : String(err)
    }`;
  return new IpcError(code, `Cannot ${op} "${target}" as ${reason}`, {
    op,
    [kind]: target,
    cause: err,
  });
}

/** Runs a file operation and turns what it throws into an `IpcError` naming the path. */
export async function atPath<T>(op: string, path: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw systemError(err, op, path, "path");
  }
}

/** The error for any use of an object after this process closed it. */
export function closedError(op: string, what: string): IpcError {
  return new IpcError("ECLOSED", `Cannot ${op} as the ${what} is closed`, { op });
}
