/**
 * The RPC server: accepts connections, checks each one's handshake, and runs the handler for
 * every request, many at once per connection, up to a bound.
 *
 * @module
 */

import type { Address } from "../address.ts";
import type { PeerCertificate } from "../runtime/types.ts";
import { chunkBytes, replyBytes, type ReplyValue } from "../codec.ts";
import { errorCode, IpcError } from "../errors.ts";
import {
  type Dispatcher,
  type ServedConn,
  type Server,
  type ServerOptions,
  serveSessions,
} from "../session/server.ts";
import { Histogram, type HistogramSnapshot } from "../internal/histogram.ts";
import { RPC, type RpcMessage, Type } from "./protocol.ts";

/** What a handler gets besides the request. */
export interface RpcContext {
  /** Aborts when the client cancels the request or gives up on it, or the server shuts down. */
  readonly signal: AbortSignal;
  /** The client's address. */
  readonly remoteAddr: Address;
  /** The name of the user the client authenticated as (`users`); undefined without one. */
  readonly user: string | undefined;
  /** The client's verified certificate, over `tls://` when it sent one. */
  readonly peerCertificate: PeerCertificate | undefined;
}

/**
 * A handler's reply: bytes, text (sent as UTF-8), a JSON value (sent as JSON, as `json.encode`
 * would), nothing (an empty reply), or a stream of chunks, each bytes or text. Anything else
 * fails the request with `ECODEC`, saying what the handler returned.
 */
export type RpcReply = ReplyValue | ReadableStream<Uint8Array | string>;

/** Answers one request. What it throws reaches the client as a `RemoteError`. */
export type RpcHandler = (request: Uint8Array, context: RpcContext) => RpcReply | Promise<RpcReply>;

/** Options of {@linkcode serve}: the server options every dockipc server takes, and RPC's own. */
export interface ServeOptions extends ServerOptions {
  /** Requests running at once per connection; the server reads no further until one ends. @default {64} */
  maxInflight?: number;
  /** Sends handler stacks to clients, for development. @default {false} */
  exposeStack?: boolean;
}

/** A running RPC server: see {@linkcode Server}. */
export interface RpcServer extends Server {
  /** Its counters, and how long its requests took. */
  stats(): RpcServerStats;
}

/** An RPC server's counters, from `stats()`. */
export interface RpcServerStats {
  /** Where it listens. */
  readonly addr: Address;
  /** Connections open now. */
  readonly connections: number;
  /** Requests answered, with a reply or an error. */
  readonly requests: number;
  /** Of those, the ones whose handler threw. */
  readonly failed: number;
  /** Requests refused for want of permission (`EPERM`: the user's `rpc` is false). */
  readonly denied: number;
  /** Requests running now. */
  readonly inFlight: number;
  /** From a request's arrival until its reply (or its stream's end) was handed to the socket. */
  readonly latency: HistogramSnapshot;
}

/** What every connection of one server counts into. */
interface Counters {
  requests: number;
  failed: number;
  denied: number;
  inFlight: number;
  readonly latency: Histogram;
}

/**
 * Serves `handler` at `address`: each request a client sends is answered with what the
 * handler returns, several at once per connection, replies in any order.
 *
 * @param address Where to listen: a unix socket path or a TCP address.
 * @param handler Answers each request.
 * @param options The handshake's app id and token, and the server's limits.
 * @returns The running server.
 * @throws {IpcError} As `listen()` does.
 *
 * @example A server and a client
 * ```ts
 * import assert from "node:assert/strict";
 * import { dial, serve } from "@dockipc/dockipc/rpc";
 *
 * await using server = await serve("tcp://127.0.0.1:0", (request) =>
 *   new TextDecoder().decode(request).toUpperCase());
 * await using client = await dial(server.addr);
 * const reply = await client.request("hello");
 * assert.equal(new TextDecoder().decode(reply), "HELLO");
 * ```
 */
export function serve(
  address: string | Address,
  handler: RpcHandler,
  options: ServeOptions = {},
): Promise<RpcServer> {
  if (typeof handler !== "function") {
    return Promise.reject(
      new TypeError(`Cannot serve RPC as the handler must be a function: got ${typeof handler}`),
    );
  }
  const { maxInflight = 64, exposeStack = false } = options;
  const counters: Counters = {
    requests: 0,
    failed: 0,
    denied: 0,
    inFlight: 0,
    latency: new Histogram(),
  };
  return serveSessions(address, options, {
    codec: RPC,
    owner: "serve()",
    maxInflight,
    dispatcher: (served) =>
      new RpcDispatcher(served, handler, { maxInflight, exposeStack, counters }),
  }).then((server) =>
    Object.assign(server, {
      stats: (): RpcServerStats => ({
        addr: server.addr,
        connections: server.connections,
        requests: counters.requests,
        failed: counters.failed,
        denied: counters.denied,
        inFlight: counters.inFlight,
        latency: counters.latency.snapshot(),
      }),
    })
  );
}

/** Runs one connection's requests: many at once, up to `maxInflight`. */
class RpcDispatcher implements Dispatcher<RpcMessage> {
  readonly #served: ServedConn<RpcMessage>;
  readonly #handler: RpcHandler;
  readonly #maxInflight: number;
  readonly #exposeStack: boolean;
  readonly #counters: Counters;
  readonly #inflight = new Map<number, Running>();
  /** Who waits for a request to end: the read loop at `maxInflight`, and `finish()`. */
  #waiters: (() => void)[] = [];

  constructor(
    served: ServedConn<RpcMessage>,
    handler: RpcHandler,
    options: { maxInflight: number; exposeStack: boolean; counters: Counters },
  ) {
    this.#served = served;
    this.#handler = handler;
    this.#maxInflight = options.maxInflight;
    this.#exposeStack = options.exposeStack;
    this.#counters = options.counters;
  }

  serve(m: RpcMessage): Promise<void> | undefined {
    switch (m.type) {
      case Type.REQUEST:
        // A client keeps to the maxInflight it was told, so this waits only for one that does
        // not (or a reply still on its way): the connection is read no further.
        if (this.#inflight.size >= this.#maxInflight) return this.#startWhenRoom(m.id, m.data);
        this.#start(m.id, m.data);
        return undefined;
      case Type.CANCEL:
        this.#inflight.get(m.id)?.abort(cancelled());
        return undefined;
      default:
        throw new IpcError("EPROTOCOL", `Cannot serve a ${m.type} message from an RPC client`);
    }
  }

  settled(): undefined {
    return undefined; // requests start in the order they are read
  }

  busy(): boolean {
    return this.#inflight.size > 0;
  }

  async finish(): Promise<void> {
    while (this.#inflight.size > 0) await this.#requestEnded();
  }

  release(reason: IpcError): void {
    for (const request of this.#inflight.values()) request.abort(reason);
  }

  async #startWhenRoom(id: number, data: Uint8Array): Promise<void> {
    while (this.#inflight.size >= this.#maxInflight) await this.#requestEnded();
    this.#start(id, data);
  }

  #start(id: number, data: Uint8Array): void {
    if (this.#inflight.has(id)) {
      throw new IpcError(
        "EPROTOCOL",
        `Cannot serve request ${id} as one with that id is in flight`,
      );
    }
    // The server's abort and shutdown's signal reach the request through `release()`.
    const request = new Running(this.#served);
    this.#inflight.set(id, request);
    void this.#answer(id, data, request);
  }

  /** The request ended: free its slot, and let whoever waits for one go on. */
  #ended(id: number): void {
    this.#inflight.delete(id);
    const waiters = this.#waiters;
    if (waiters.length > 0) {
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
    this.#served.idle();
  }

  #requestEnded(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async #answer(id: number, data: Uint8Array, request: Running): Promise<void> {
    const served = this.#served;
    const counters = this.#counters;
    const start = performance.now();
    counters.inFlight++;
    try {
      if (served.user?.rpc === false) {
        counters.denied++;
        return served.send({
          type: Type.ERROR,
          id,
          code: "EPERM",
          message: `User "${served.user.name}" may not make RPC requests: its rpc is false`,
          stack: "",
        });
      }
      if (served.draining) {
        return served.send({
          type: Type.ERROR,
          id,
          code: "ECLOSED",
          message: "The server is shutting down",
          stack: "",
        });
      }
      try {
        const reply = await this.#handler(data, request);
        if (request.aborted) {
          if (reply instanceof ReadableStream) await reply.cancel(request.reason).catch(() => {});
          return;
        }
        if (reply instanceof ReadableStream) {
          for await (const chunk of reply) {
            if (request.aborted) return;
            const data = chunkBytes(chunk, "The handler's stream");
            await served.reply({ type: Type.CHUNK, id, data });
          }
          await served.send({ type: Type.END, id });
        } else {
          const data = replyBytes(reply, "The handler");
          await served.reply({ type: Type.REPLY, id, data });
        }
      } catch (err) {
        counters.failed++;
        if (request.aborted) return;
        const e = err instanceof Error ? err : new Error(String(err));
        await served.send({
          type: Type.ERROR,
          id,
          code: errorCode(e),
          message: e.message,
          stack: this.#exposeStack ? e.stack ?? "" : "",
        });
      }
    } finally {
      counters.inFlight--;
      counters.requests++;
      counters.latency.observe(performance.now() - start);
      this.#ended(id);
    }
  }
}

/**
 * A request being handled, and the context its handler gets. The signal is made only when the
 * handler asks for it: most handlers never do, and an AbortController per request is a cost
 * every request would pay.
 */
class Running implements RpcContext {
  readonly #served: ServedConn<RpcMessage>;
  #controller: AbortController | undefined;
  #reason: { value: unknown } | undefined;

  constructor(served: ServedConn<RpcMessage>) {
    this.#served = served;
  }

  get remoteAddr(): Address {
    return this.#served.conn.remoteAddr;
  }

  get user(): string | undefined {
    return this.#served.user?.name;
  }

  get peerCertificate(): PeerCertificate | undefined {
    return this.#served.conn.tls?.peerCertificate;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason.value);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#reason !== undefined;
  }

  get reason(): unknown {
    return this.#reason?.value;
  }

  abort(reason: unknown): void {
    if (this.#reason !== undefined) return;
    this.#reason = { value: reason };
    this.#controller?.abort(reason);
  }
}

function cancelled(): IpcError {
  return new IpcError("ECLOSED", "The client cancelled the request", { op: "serve" });
}
