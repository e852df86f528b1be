/**
 * The RPC client: one connection, many requests in flight, matched by id; timeouts and
 * cancellation that reach the server; reconnection with backoff.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { closedError, IpcError, RemoteError } from "../errors.ts";
import { checkTimeout, deadlineAfter, Deadlines } from "../internal/async.ts";
import {
  type ConnectionEvent,
  DEFAULT_REQUEST_TIMEOUT,
  SessionClient,
  type SessionHandler,
  type SessionOptions,
} from "../session/client.ts";
import { RPC, type RpcMessage, Type } from "./protocol.ts";

/** Options of {@linkcode dial}: the options every dockipc client takes. */
export type DialOptions = SessionOptions;

/** Options of one request. */
export interface RpcRequestOptions {
  /** Cancels the request: it rejects with the reason and the server's handler sees its signal abort. */
  signal?: AbortSignal;
  /**
   * Milliseconds before the request fails with `ETIMEDOUT` (and is cancelled on the server);
   * `Infinity` for none. 0, NaN or a negative number is refused with a `RangeError`.
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
   * @throws {RemoteError} The handler threw (an `IpcError` with code `EREMOTE`).
   * @throws {IpcError} `ETIMEDOUT`, `ECONNRESET` (the connection dropped while in flight), `ECLOSED`.
   */
  request(data: Uint8Array | string, options?: RpcRequestOptions): Promise<Uint8Array>;
  /** Sends a request whose reply is a stream of chunks; cancelling the stream cancels it. */
  requestStream(data: Uint8Array | string, options?: RpcRequestOptions): ReadableStream<Uint8Array>;
  /** Whether a connection to the server is up now. */
  readonly connected: boolean;
  /**
   * The connection's changes from now on (`disconnected`, `reconnecting`, `reconnected`,
   * `error`), as an async iterable that ends when the client is closed or gives up. Each call
   * follows on its own; one that is not read keeps the latest 256 events.
   *
   * @example Log what happens to the connection
   * ```ts
   * import { dial, serve } from "@dockipc/dockipc/rpc";
   *
   * await using server = await serve("tcp://127.0.0.1:0", () => "pong");
   * const client = await dial(server.addr);
   * const log = (async () => {
   *   for await (const event of client.status()) console.log(event.type);
   * })();
   * await client.close(); // the events end
   * await log;
   * ```
   */
  status(): AsyncIterableIterator<ConnectionEvent>;
  /**
   * Lets the requests already made finish (new ones are refused with `ECLOSED`), then closes
   * as `close()` does.
   */
  drain(): Promise<void>;
  /**
   * Closes the client: requests in flight reject with `ECLOSED` and are cancelled on the
   * server; everything already written is handed to the kernel before the connection closes.
   * `[Symbol.asyncDispose]` does the same.
   */
  close(): Promise<void>;
  /** Closes the connection at once, discarding whatever has not been written yet. */
  abort(): void;
}

const utf8 = new TextEncoder();

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

/**
 * Connects to an RPC server and completes the handshake.
 *
 * @param address The server's address.
 * @param options The handshake's app id and token, timeouts, reconnection.
 * @returns The client.
 * @throws {IpcError} As `connect()` does; `EAUTH` for a wrong token or app id; `EPROTOCOL` for
 * another protocol version; `ECONNREFUSED` when the server is full.
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
  await client.open();
  return client;
}

class Client implements RpcClient {
  readonly #options: DialOptions;
  readonly #session: SessionClient<RpcMessage>;
  readonly #label: string;
  readonly #pending = new Map<number, Call>();
  /** Calls waiting for a connection, or for the server to have room (its `maxInflight`). */
  #queued: Call[] = [];
  #nextId = 0;
  #draining = false;
  /** Who waits for the last call to settle: `drain()`. */
  #idle: (() => void) | undefined;
  /** Every request not yet settled, sent or waiting for a connection, for timeouts. */
  readonly #deadlines = new Deadlines();
  readonly #hooks: CallHooks = {
    finished: (call) => {
      this.#pending.delete(call.id);
      this.#deadlines.delete(call);
      if (this.#queued.length > 0) this.#pump();
      if (this.#idle !== undefined && this.#pending.size === 0 && this.#queued.length === 0) {
        this.#idle();
      }
    },
    sent: (call) => this.#pending.get(call.id) === call,
    cancel: (call) => this.#transmit({ type: Type.CANCEL, id: call.id }),
  };

  constructor(address: string | Address, options: DialOptions) {
    this.#options = options;
    const handler: SessionHandler<RpcMessage> = {
      connected: () => this.#connected(),
      receive: (m) => this.#receive(m),
      disconnected: (error, retrying) => this.#disconnected(error, retrying),
    };
    this.#session = new SessionClient(address, options, RPC, handler);
    this.#label = this.#session.label;
  }

  open(): Promise<void> {
    return this.#session.open();
  }

  get connected(): boolean {
    return this.#session.connected;
  }

  status(): AsyncIterableIterator<ConnectionEvent> {
    return this.#session.status();
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

  async drain(): Promise<void> {
    this.#draining = true;
    if (this.#pending.size > 0 || this.#queued.length > 0) {
      await new Promise<void>((resolve) => (this.#idle = resolve));
    }
    await this.close();
  }

  close(): Promise<void> {
    this.#failAll((call, err) => call.cancel(err));
    return this.#session.close();
  }

  abort(): void {
    this.#failAll((call, err) => call.fail(err));
    this.#session.abort();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Ends every call with `ECLOSED`: `end(call, err)` fails or cancels it. */
  #failAll(end: (call: Call, err: IpcError) => void): void {
    this.#draining = true;
    const err = closedError("request", "client");
    for (const call of [...this.#pending.values()]) end(call, err);
    this.#failQueued(err);
    this.#deadlines.clear();
  }

  /** A connection is up: what may be sent again goes first, then what waited for room. */
  #connected(): void {
    for (const call of this.#pending.values()) this.#transmit(call, call);
    this.#pump();
  }

  /** Hands one message from the server to the request it answers. */
  #receive(m: RpcMessage): void {
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
        this.#pending.get(m.id)?.fail(
          new RemoteError(m.code, m.message, {
            op: "request",
            address: this.#label,
            remoteStack: m.stack || undefined,
          }),
        );
        break;
      default:
        throw new IpcError("EPROTOCOL", `Cannot read a ${m.type} message from an RPC server`, {
          op: "request",
        });
    }
  }

  /** Calls in flight fail, unless they are idempotent and a new connection is on its way. */
  #disconnected(error: IpcError, retrying: boolean): void {
    for (const call of [...this.#pending.values()]) {
      if (!(retrying && call.idempotent)) call.fail(error);
    }
    if (!retrying) this.#failQueued(error);
  }

  /** Starts a request. */
  #start(data: Uint8Array | string, options: RpcRequestOptions, outlet: Outlet): Call {
    const timeout = options.timeout ?? this.#options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT;
    checkTimeout("request", timeout);
    const bytes = typeof data === "string" ? utf8.encode(data) : data;
    const call = new Call(this.#newId(), bytes, options, timeout, outlet, this.#hooks, this.#label);
    if (options.signal?.aborted) {
      queueMicrotask(() => call.handleEvent());
      return call;
    }
    const refused = this.#draining
      ? closedError("request", "client")
      : this.#session.unavailable("request");
    if (refused !== undefined) {
      queueMicrotask(() => call.fail(refused));
      return call;
    }
    this.#deadlines.add(call);
    this.#submit(call);
    return call;
  }

  /**
   * Sends a call, or queues it until a connection is up and the server has room: past the
   * server's `maxInflight` the server would stop reading this connection, and a CANCEL sent
   * then could not reach it. A call waiting for a connection waits within its own timeout.
   */
  #submit(call: Call): void {
    if (this.#session.connected && this.#pending.size < this.#session.maxInflight) {
      this.#pending.set(call.id, call);
      this.#transmit(call, call);
    } else {
      this.#queued.push(call);
    }
  }

  /** Sends queued calls while the server has room for them. */
  #pump(): void {
    if (!this.#session.connected) return;
    const max = this.#session.maxInflight;
    while (this.#queued.length > 0 && this.#pending.size < max) {
      const call = this.#queued.shift()!;
      if (call.settled) continue;
      this.#pending.set(call.id, call);
      this.#transmit(call, call);
    }
  }

  /** Fails every call still waiting for room. */
  #failQueued(err: unknown): void {
    const queued = this.#queued;
    this.#queued = [];
    for (const call of queued) call.fail(err);
  }

  #newId(): number {
    do this.#nextId = (this.#nextId + 1) >>> 0; while (this.#pending.has(this.#nextId));
    return this.#nextId;
  }

  /**
   * Sends a message on the connection up now. A request over `maxFrameSize` fails its call; a
   * failed connection is noticed by the session, which fails or keeps what is pending.
   */
  #transmit(message: RpcMessage, call?: Call): void {
    const refused = (err: unknown): void => {
      if (err instanceof IpcError && err.code === "EFRAMETOOLARGE") call?.fail(err);
    };
    try {
      const sent = this.#session.trySend(message);
      if (sent) sent.catch(refused);
    } catch (err) {
      refused(err);
    }
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
