/**
 * The RPC client: one connection, many requests in flight, matched by id; timeouts and
 * cancellation that reach the server; reconnection with backoff.
 *
 * @module
 */

import { type Address, formatAddress } from "../address.ts";
import { closedError, IpcError, type IpcErrorCode } from "../errors.ts";
import { Channel } from "../frame/channel.ts";
import { maxFrameSizeOf } from "../frame/codec.ts";
import { backoff, checkTimeout, deadlineAfter, Deadlines, delay } from "../internal/async.ts";
import { firstRead, tokenBytes } from "../internal/serving.ts";
import { connect } from "../transport.ts";
import {
  INVALID,
  type Message,
  MessageEncoding,
  messageParser,
  Type,
  VERSION,
} from "./protocol.ts";

/**
 * An error the server's handler threw, as the client sees it: its `code` (the error's `code`
 * property, or its class name) and message. The stack travels only if the server opts in.
 *
 * @example Tell a handler's failure from a transport failure
 * ```ts
 * import assert from "node:assert/strict";
 * import { dial, RemoteError, serve } from "@dockipc/dockipc/rpc";
 *
 * await using server = await serve("tcp://127.0.0.1:0", () => {
 *   throw Object.assign(new Error("no such user"), { code: "ENOTFOUND" });
 * });
 * await using client = await dial(server.addr);
 * await assert.rejects(client.request("user 7"), (err) => {
 *   assert.ok(err instanceof RemoteError);
 *   assert.equal(err.code, "ENOTFOUND");
 *   assert.equal(err.message, "no such user");
 *   return true;
 * });
 * ```
 */
export class RemoteError extends Error {
  /** Always `"RemoteError"`. */
  override name = "RemoteError";
  /** The remote error's code, or its class name when it had none. */
  readonly code: string;
  /** The remote stack, when the server sends stacks (`exposeStack`). */
  readonly remoteStack: string | undefined;

  /**
   * Builds the error.
   *
   * @param code The remote error's code.
   * @param message The remote error's message.
   * @param remoteStack The remote stack, if sent.
   */
  constructor(code: string, message: string, remoteStack?: string) {
    super(message);
    this.code = code;
    this.remoteStack = remoteStack;
  }
}

/** How a lost connection is re-established: exponential backoff with full jitter. */
export interface ReconnectOptions {
  /** Attempts before giving up. @default {Infinity} */
  maxAttempts?: number;
  /** The first delay's upper bound, in ms. @default {100} */
  initialDelay?: number;
  /** No delay exceeds this, in ms. @default {5000} */
  maxDelay?: number;
  /** Each bound is the previous one times this. @default {2} */
  factor?: number;
}

/** Options of {@linkcode dial}. */
export interface DialOptions {
  /** The application the server must be. @default {"dockipc"} */
  app?: string;
  /** The server's shared secret. */
  token?: string | Uint8Array;
  /** Milliseconds for connecting and the handshake. @default {10000} */
  timeout?: number;
  /** Abandons the first connection attempt. */
  signal?: AbortSignal;
  /** The largest frame either way. @default {16777216} */
  maxFrameSize?: number;
  /** Re-connects after the connection is lost: `true` for the defaults. @default {false} */
  reconnect?: boolean | ReconnectOptions;
  /** While not connected, requests fail at once instead of waiting. @default {false} */
  failFast?: boolean;
  /** The default timeout of a request, in ms. @default {30000} */
  requestTimeout?: number;
}

/** Options of one request. */
export interface RpcRequestOptions {
  /** Cancels the request: it rejects with the reason and the server's handler sees its signal abort. */
  signal?: AbortSignal;
  /**
   * Milliseconds before the request fails with `ETIMEDOUT` (and is cancelled on the server);
   * `Infinity` for none. NaN or a negative number is refused with a `RangeError`.
   */
  timeout?: number;
  /** Safe to send again: if the connection drops while it is in flight, it is resent after reconnecting. */
  idempotent?: boolean;
}

/** A connection to an RPC server. */
export interface RpcClient extends AsyncDisposable {
  /**
   * Sends a request and resolves with the reply.
   *
   * @throws {RemoteError} The handler threw.
   * @throws {IpcError} `ETIMEDOUT`, `ECONNRESET` (the connection dropped while in flight), `ECLOSED`.
   */
  request(data: Uint8Array | string, options?: RpcRequestOptions): Promise<Uint8Array>;
  /** Sends a request whose reply is a stream of chunks; cancelling the stream cancels it. */
  requestStream(data: Uint8Array | string, options?: RpcRequestOptions): ReadableStream<Uint8Array>;
  /** Closes the connection; requests in flight reject with `ECLOSED`. */
  close(): void;
}

const utf8 = new TextEncoder();
const REFUSAL_CODES: readonly IpcErrorCode[] = [
  "EAUTH",
  "EPROTOCOL",
  "ECONNREFUSED",
  "ECLOSED",
  "ETIMEDOUT",
];

/** Where a request's outcome goes: a promise's callbacks, or a stream's controller. */
interface Outlet {
  /** A chunk of a streamed reply; absent for `request()`, which gathers them. */
  chunk?(data: Uint8Array): void;
  end(reply: Uint8Array): void;
  fail(err: unknown): void;
}

/** What a call needs from its client. */
interface CallHooks {
  /** The call settled: forget it. */
  finished(call: Call): void;
  /** Whether the server has the request, so a CANCEL is due. */
  sent(call: Call): boolean;
  /** Tells the server to stop the call. */
  cancel(call: Call): void;
}

const EMPTY = new Uint8Array(0);

/**
 * One request, from start until it settles. A class rather than closures: a client may have
 * thousands of these a second, and each closure would be an object for the collector.
 */
class Call {
  /** A call is its own REQUEST message: one object less per request. */
  readonly type: typeof Type.REQUEST = Type.REQUEST;
  readonly id: number;
  readonly data: Uint8Array;
  readonly idempotent: boolean;
  /** When it times out, in `Date.now()` milliseconds; `Infinity` for never. */
  readonly deadline: number;
  readonly #timeout: number;
  readonly #signal: AbortSignal | undefined;
  readonly #outlet: Outlet;
  readonly #hooks: CallHooks;
  readonly #label: string;
  #chunks: Uint8Array[] | undefined;
  settled = false;

  constructor(
    id: number,
    data: Uint8Array,
    options: RpcRequestOptions,
    timeout: number,
    outlet: Outlet,
    hooks: CallHooks,
    label: string,
  ) {
    this.id = id;
    this.data = data;
    this.idempotent = options.idempotent ?? false;
    this.#timeout = timeout;
    this.deadline = deadlineAfter(timeout);
    this.#signal = options.signal;
    this.#outlet = outlet;
    this.#hooks = hooks;
    this.#label = label;
    this.#signal?.addEventListener("abort", this, { once: true });
  }

  chunk(data: Uint8Array): void {
    if (this.#outlet.chunk !== undefined) this.#outlet.chunk(data);
    else (this.#chunks ??= []).push(data);
  }

  end(reply?: Uint8Array): void {
    if (this.settled) return;
    this.#finish();
    const chunks = this.#chunks;
    this.#outlet.end(chunks !== undefined ? concat(chunks) : reply ?? EMPTY);
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.#finish();
    this.#outlet.fail(err);
  }

  /** Gives up on the request: it rejects with `reason` and the server is told to stop. */
  cancel(reason: unknown): void {
    if (this.settled) return;
    // The CANCEL goes out before the slot is given to a queued call, so the server reads it
    // before a request that may have to wait for that slot.
    if (this.#hooks.sent(this)) this.#hooks.cancel(this);
    this.#finish();
    this.#outlet.fail(reason);
  }

  /** Fails it with `ETIMEDOUT` and cancels it on the server. */
  expire(): void {
    this.cancel(
      new IpcError(
        "ETIMEDOUT",
        `Request to "${this.#label}" had no reply within ${this.#timeout} ms`,
        {
          op: "request",
          address: this.#label,
        },
      ),
    );
  }

  /** The signal's abort listener. */
  handleEvent(): void {
    this.cancel(this.#signal?.reason);
  }

  #finish(): void {
    this.settled = true;
    this.#signal?.removeEventListener("abort", this);
    this.#hooks.finished(this);
  }
}

interface Session {
  readonly channel: Channel<Message>;
  /** How many requests the server runs at once for this connection: more wait here. */
  readonly maxInflight: number;
  /** Frames that came with the server's WELCOME, to handle before reading more. */
  readonly early: Message[];
  /** The server said it is shutting down: send nothing more here. */
  goaway: boolean;
}

/**
 * Connects to an RPC server and completes the handshake.
 *
 * @param address The server's address.
 * @param options The handshake's app id and token, timeouts, reconnection.
 * @returns The client.
 * @throws {IpcError} As `connect()` does; `EAUTH` for a wrong token; `EPROTOCOL` for another app
 * or protocol version; `ECONNREFUSED` when the server is full.
 *
 * @example Many requests at once over one connection
 * ```ts
 * import assert from "node:assert/strict";
 * import { dial, serve } from "@dockipc/dockipc/rpc";
 *
 * await using server = await serve("tcp://127.0.0.1:0", async (request) => {
 *   await new Promise((resolve) => setTimeout(resolve, 10 - request[0]!)); // later ones finish first
 *   return request;
 * });
 * await using client = await dial(server.addr, { reconnect: true });
 * const replies = await Promise.all([1, 2, 3].map((n) => client.request(new Uint8Array([n]))));
 * assert.deepEqual(replies.map((r) => r[0]), [1, 2, 3]);
 * ```
 */
export async function dial(
  address: string | Address,
  options: DialOptions = {},
): Promise<RpcClient> {
  const client = new Client(address, options);
  await client.open(options.signal);
  return client;
}

class Client implements RpcClient {
  readonly #address: string | Address;
  readonly #options: DialOptions;
  readonly #label: string;
  #session: Session | undefined;
  #closed = false;
  /** Why requests cannot be sent now, once reconnecting has given up or is off. */
  #down: IpcError | undefined;
  #reconnecting: Promise<void> | undefined;
  readonly #pending = new Map<number, Call>();
  /** Calls waiting for a connection, or for the server to have room (its `maxInflight`). */
  #queued: Call[] = [];
  #nextId = 0;
  /** Every request not yet settled, sent or waiting for a connection, for timeouts. */
  readonly #deadlines = new Deadlines();
  readonly #hooks: CallHooks = {
    finished: (call) => {
      this.#pending.delete(call.id);
      this.#deadlines.delete(call);
      if (this.#queued.length > 0) this.#pump();
    },
    sent: (call) => this.#pending.get(call.id) === call,
    cancel: (call) => this.#write({ type: Type.CANCEL, id: call.id }),
  };

  constructor(address: string | Address, options: DialOptions) {
    this.#address = address;
    this.#options = options;
    this.#label = typeof address === "string" ? address : formatAddress(address);
  }

  async open(signal?: AbortSignal): Promise<void> {
    this.#attach(await this.#connect(signal));
  }

  request(data: Uint8Array | string, options: RpcRequestOptions = {}): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.#start(data, options, { end: resolve, fail: reject });
    });
  }

  requestStream(
    data: Uint8Array | string,
    options: RpcRequestOptions = {},
  ): ReadableStream<Uint8Array> {
    let call: Call | undefined;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        call = this.#start(data, options, {
          chunk: (c) => controller.enqueue(c),
          end: (reply) => {
            if (reply.length > 0) controller.enqueue(reply);
            controller.close();
          },
          fail: (err) => controller.error(err),
        });
      },
      cancel: (reason) => call?.cancel(reason),
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const err = closedError("request", "client");
    for (const p of [...this.#pending.values()]) p.fail(err);
    this.#failQueued(err);
    this.#deadlines.clear();
    this.#session?.channel.close();
    this.#session = undefined;
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /** Starts a request. */
  #start(data: Uint8Array | string, options: RpcRequestOptions, outlet: Outlet): Call {
    const timeout = options.timeout ?? this.#options.requestTimeout ?? 30_000;
    checkTimeout("request", timeout);
    const bytes = typeof data === "string" ? utf8.encode(data) : data;
    const call = new Call(this.#newId(), bytes, options, timeout, outlet, this.#hooks, this.#label);
    if (options.signal?.aborted) {
      queueMicrotask(() => call.handleEvent());
      return call;
    }
    this.#deadlines.add(call);
    this.#submit(call);
    return call;
  }

  /**
   * Sends a call, or queues it until a connection is up and the server has room: past the
   * server's `maxInflight` the server would stop reading this connection, and a CANCEL sent
   * then could not reach it.
   */
  #submit(call: Call): void {
    const session = this.#session;
    if (session !== undefined && !session.goaway) {
      if (this.#pending.size < session.maxInflight) {
        this.#pending.set(call.id, call);
        this.#transmit(session, call, call);
      } else {
        this.#queued.push(call);
      }
      return;
    }
    if (this.#closed) return call.fail(closedError("request", "client"));
    if (this.#down !== undefined) return call.fail(this.#down);
    if (this.#options.failFast) {
      return call.fail(
        new IpcError(
          "ECONNRESET",
          `Cannot request "${this.#label}" as the client is not connected`,
          {
            op: "request",
            address: this.#label,
          },
        ),
      );
    }
    this.#queued.push(call);
    this.#startReconnect();
  }

  /** Sends queued calls while the server has room for them. */
  #pump(): void {
    const session = this.#session;
    if (session === undefined || session.goaway) return;
    while (this.#queued.length > 0 && this.#pending.size < session.maxInflight) {
      const call = this.#queued.shift()!;
      if (call.settled) continue;
      this.#pending.set(call.id, call);
      this.#transmit(session, call, call);
    }
  }

  /** Fails every call still waiting for room. */
  #failQueued(err: unknown): void {
    const queued = this.#queued;
    this.#queued = [];
    for (const call of queued) call.fail(err);
  }

  #write(message: Message): void {
    if (this.#session !== undefined) this.#transmit(this.#session, message);
  }

  #newId(): number {
    do this.#nextId = (this.#nextId + 1) >>> 0; while (this.#pending.has(this.#nextId));
    return this.#nextId;
  }

  async #connect(signal?: AbortSignal): Promise<Session> {
    const timeout = this.#options.timeout ?? 10_000;
    const connectOptions = signal === undefined ? { timeout } : { timeout, signal };
    const limit = maxFrameSizeOf(
      "dial()",
      this.#options.maxFrameSize === undefined ? {} : { maxFrameSize: this.#options.maxFrameSize },
    );
    const channel = new Channel(
      await connect(this.#address, connectOptions),
      messageParser(limit),
      new MessageEncoding(limit),
    );
    try {
      const token = this.#options.token;
      await channel.send({
        type: Type.HELLO,
        version: VERSION,
        app: this.#options.app ?? "dockipc",
        token: tokenBytes(token),
      });
      const first = await firstRead(
        channel,
        timeout,
        () =>
          new IpcError(
            "ETIMEDOUT",
            `Cannot connect to "${this.#label}" as the handshake took over ${timeout} ms`,
            { op: "connect", address: this.#label },
          ),
      );
      if (first === undefined) {
        throw new IpcError(
          "ECONNRESET",
          `Cannot connect to "${this.#label}" as it closed during the handshake`,
          {
            op: "connect",
            address: this.#label,
          },
        );
      }
      const answer = first[0]!;
      if (answer.type === Type.REFUSED) {
        const code = (REFUSAL_CODES as readonly string[]).includes(answer.code)
          ? answer.code as IpcErrorCode
          : "EPROTOCOL";
        throw new IpcError(
          code,
          `Cannot connect to "${this.#label}" as the server refused: ${answer.message}`,
          {
            op: "connect",
            address: this.#label,
          },
        );
      }
      if (answer.type !== Type.WELCOME || answer.version !== VERSION) {
        throw new IpcError(
          "EPROTOCOL",
          `Cannot connect to "${this.#label}" as it answered the handshake wrongly`,
          {
            op: "connect",
            address: this.#label,
          },
        );
      }
      return {
        channel,
        early: first.slice(1),
        goaway: false,
        maxInflight: Math.max(1, answer.maxInflight),
      };
    } catch (err) {
      channel.close();
      throw err;
    }
  }

  /** Makes `session` current, resends what may be resent, and reads its replies. */
  #attach(session: Session): void {
    this.#session = session;
    this.#down = undefined;
    for (const p of this.#pending.values()) this.#transmit(session, p, p);
    this.#pump();
    void this.#read(session);
  }

  async #read(session: Session): Promise<void> {
    let lost: unknown = new IpcError(
      "ECONNRESET",
      `The connection to "${this.#label}" was closed by the server`,
      {
        op: "request",
        address: this.#label,
      },
    );
    try {
      for (
        let batch: Message[] | undefined = session.early;
        batch;
        batch = await session.channel.read()
      ) {
        for (const message of batch) this.#dispatch(session, message);
      }
    } catch (err) {
      lost = err instanceof IpcError && err.code !== "ECLOSED"
        ? new IpcError(
          "ECONNRESET",
          `The connection to "${this.#label}" was lost: ${err.message}`,
          {
            op: "request",
            address: this.#label,
            cause: err,
          },
        )
        : lost;
    }
    session.channel.close();
    if (this.#session !== session) return;
    this.#session = undefined;
    if (this.#closed) return;
    const resend = this.#options.reconnect !== undefined && this.#options.reconnect !== false;
    for (const p of [...this.#pending.values()]) {
      if (!(resend && p.idempotent)) p.fail(lost);
    }
    if (!resend) {
      this.#down = lost as IpcError;
      this.#failQueued(lost);
      return;
    }
    this.#startReconnect();
  }

  /** Hands one message from the server to the request it answers. */
  #dispatch(session: Session, m: Message): void {
    switch (m.type) {
      case Type.REPLY:
        this.#pending.get(m.id)?.end(m.data);
        break;
      case Type.CHUNK:
        this.#pending.get(m.id)?.chunk(m.data);
        break;
      case Type.END:
        this.#pending.get(m.id)?.end();
        break;
      case Type.ERROR:
        this.#pending.get(m.id)?.fail(new RemoteError(m.code, m.message, m.stack || undefined));
        break;
      case Type.GOAWAY:
        session.goaway = true;
        break;
      case INVALID:
        throw m.error;
      default:
        throw new IpcError("EPROTOCOL", `Cannot read a ${m.type} message from an RPC server`, {
          op: "request",
        });
    }
  }

  /**
   * Sends a message on `session`. A request over `maxFrameSize` fails its call; a failed
   * channel is noticed by its read loop, which fails or keeps what is pending.
   */
  #transmit(session: Session, message: Message, call?: Call): void {
    const refused = (err: unknown): void => {
      if (err instanceof IpcError && err.code === "EFRAMETOOLARGE") call?.fail(err);
    };
    try {
      session.channel.send(message)?.catch(refused);
    } catch (err) {
      refused(err);
    }
  }

  #startReconnect(): void {
    const reconnect = this.#options.reconnect;
    if (this.#reconnecting !== undefined || this.#closed) return;
    if (reconnect === undefined || reconnect === false) {
      this.#down ??= new IpcError(
        "ECONNRESET",
        `Cannot request "${this.#label}" as the connection is lost`,
        {
          op: "request",
          address: this.#label,
        },
      );
      this.#failQueued(this.#down);
      return;
    }
    const schedule = backoff({ maxDelay: 5000, ...(reconnect === true ? {} : reconnect) });
    this.#reconnecting = (async () => {
      let last: unknown;
      for (const wait of schedule) {
        await delay(wait);
        if (this.#closed) return;
        try {
          this.#attach(await this.#connect());
          return;
        } catch (err) {
          last = err;
        }
      }
      this.#down = new IpcError(
        "ECONNRESET",
        `Cannot reconnect to "${this.#label}": ${(last as Error)?.message}`,
        {
          op: "connect",
          address: this.#label,
          cause: last,
        },
      );
      for (const p of [...this.#pending.values()]) p.fail(this.#down);
      this.#failQueued(this.#down);
    })().finally(() => (this.#reconnecting = undefined));
  }
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
