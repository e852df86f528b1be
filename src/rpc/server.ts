/**
 * The RPC server: accepts connections, checks each one's handshake, and runs the handler for
 * every request, many at once per connection, up to a bound.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { closedError, IpcError } from "../errors.ts";
import { Channel } from "../frame/channel.ts";
import { maxFrameSizeOf } from "../frame/codec.ts";
import type { Conn } from "../runtime/types.ts";
import type { ListenOptions } from "../transport.ts";
import { later } from "../internal/async.ts";
import {
  type HandshakeRules,
  listenForClients,
  readHello,
  Refusal,
  serveSessions,
  type Session as ServedSession,
} from "../internal/serving.ts";
import {
  INVALID,
  type Message,
  MessageEncoding,
  messageParser,
  Type,
  VERSION,
} from "./protocol.ts";

/** What a handler gets besides the request. */
export interface RpcContext {
  /** Aborts when the client cancels the request or gives up on it, or the server shuts down. */
  readonly signal: AbortSignal;
  /** The client's address. */
  readonly remoteAddr: Address;
}

/** A handler's reply: bytes, text (sent as UTF-8), or a stream of chunks. */
export type RpcReply = Uint8Array | string | ReadableStream<Uint8Array>;

/** Answers one request. What it throws reaches the client as a `RemoteError`. */
export type RpcHandler = (request: Uint8Array, context: RpcContext) => RpcReply | Promise<RpcReply>;

/** Options of {@linkcode serve}. */
export interface ServeOptions extends Pick<ListenOptions, "mode" | "signal"> {
  /** Clients must name the same application. @default {"dockipc"} */
  app?: string;
  /** A shared secret clients must present; compared in constant time. */
  token?: string | Uint8Array;
  /** Connections at once; more are refused at the handshake. @default {1024} */
  maxConnections?: number;
  /** Requests running at once per connection; the server reads no further until one ends. @default {64} */
  maxInflight?: number;
  /** Milliseconds a new connection has to complete its handshake. @default {5000} */
  handshakeTimeout?: number;
  /** Milliseconds a connection may stay without requests before it is closed; 0: never. @default {0} */
  idleTimeout?: number;
  /** The largest frame either way. @default {16777216} */
  maxFrameSize?: number;
  /** Sends handler stacks to clients, for development. @default {false} */
  exposeStack?: boolean;
}

/** A running RPC server. */
export interface RpcServer extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Address;
  /** Connections open now. */
  readonly connections: number;
  /**
   * Stops accepting, tells clients to send nothing more, lets requests in flight finish, then
   * closes. When `signal` aborts first, handlers' signals abort and everything closes at once.
   */
  shutdown(options?: { signal?: AbortSignal }): Promise<void>;
  /** Closes everything now; handlers' signals abort. */
  close(): void;
}

const utf8 = new TextEncoder();

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
export async function serve(
  address: string | Address,
  handler: RpcHandler,
  options: ServeOptions = {},
): Promise<RpcServer> {
  const {
    app = "dockipc",
    maxConnections = 1024,
    maxInflight = 64,
    handshakeTimeout = 5000,
    idleTimeout = 0,
    maxFrameSize,
    exposeStack = false,
  } = options;
  const frameLimit = maxFrameSizeOf("serve()", maxFrameSize === undefined ? {} : { maxFrameSize });
  const { listener, token } = await listenForClients(address, options);
  const state = { sessions: new Set<ServedSession>(), draining: false };
  const rules: HandshakeRules = {
    protocol: "RPC",
    version: VERSION,
    app,
    token,
    appCode: "EPROTOCOL",
    handshakeTimeout,
    maxConnections,
    state,
  };

  class Session implements ServedSession {
    readonly conn: Conn;
    readonly channel: Channel<Message>;
    readonly inflight = new Map<number, Running>();
    /** Who waits for a request to end: the read loop at `maxInflight`, and a drain. */
    #waiters: (() => void)[] = [];
    #idle: ReturnType<typeof setTimeout> | undefined;

    constructor(conn: Conn) {
      this.conn = conn;
      this.channel = new Channel(
        conn,
        messageParser(frameLimit),
        new MessageEncoding(frameLimit),
      );
    }

    async run(): Promise<void> {
      try {
        let batch: Message[] | undefined = await this.#handshake();
        this.#armIdle();
        while (batch !== undefined) {
          for (const message of batch) {
            if (message.type === Type.REQUEST) {
              // A client keeps to the maxInflight it was told, so this waits only for one that
              // does not (or a reply still on its way): the connection is read no further.
              while (this.inflight.size >= maxInflight) await this.#requestEnded();
              this.#start(message.id, message.data);
            } else if (message.type === INVALID) throw message.error;
            else if (message.type === Type.CANCEL) {
              this.inflight.get(message.id)?.abort(cancelled());
            } else {
              throw new IpcError(
                "EPROTOCOL",
                `Cannot serve a ${message.type} message after the handshake`,
              );
            }
          }
          batch = await this.channel.read();
          this.#armIdle();
        }
        // The client stopped sending: finish what runs, then end our side too.
        await this.#drained();
        await this.channel.end().catch(() => {});
      } catch (err) {
        if (err instanceof Refusal) {
          await this.#send({ type: Type.REFUSED, code: err.code, message: err.message });
          await this.channel.end().catch(() => {});
        }
      } finally {
        clearTimeout(this.#idle);
        this.abort(closedError("serve", "connection"));
      }
    }

    /** Checks the client's HELLO and welcomes it; returns what came after the HELLO. */
    async #handshake(): Promise<Message[]> {
      const rest = await readHello(this.channel, rules, (m) => {
        if (m.type === INVALID) return m.error.message;
        if (m.type !== Type.HELLO) {
          return "The first message was not a handshake: is this a dockipc RPC client?";
        }
        return m;
      });
      await this.#send({ type: Type.WELCOME, version: VERSION, maxInflight });
      return rest;
    }

    #start(id: number, data: Uint8Array): void {
      if (this.inflight.has(id)) {
        throw new IpcError(
          "EPROTOCOL",
          `Cannot serve request ${id} as one with that id is in flight`,
        );
      }
      // close() and shutdown's signal reach the request through the session's end, which
      // aborts every request still running.
      const request = new Running(this.conn.remoteAddr);
      this.inflight.set(id, request);
      void this.#answer(id, data, request);
    }

    /** The request ended: free its slot, and let whoever waits for one go on. */
    #ended(id: number): void {
      this.inflight.delete(id);
      const waiters = this.#waiters;
      if (waiters.length > 0) {
        this.#waiters = [];
        for (const wake of waiters) wake();
      }
      this.#armIdle();
    }

    async #answer(id: number, data: Uint8Array, request: Running): Promise<void> {
      try {
        if (state.draining) {
          return this.#send({
            type: Type.ERROR,
            id,
            code: "ECLOSED",
            message: "The server is shutting down",
            stack: "",
          });
        }
        try {
          const reply = await handler(data, request);
          if (request.aborted) {
            if (reply instanceof ReadableStream) await reply.cancel(request.reason).catch(() => {});
            return;
          }
          if (reply instanceof ReadableStream) {
            for await (const chunk of reply) {
              if (request.aborted) return;
              await this.#reply({ type: Type.CHUNK, id, data: chunk });
            }
            await this.#send({ type: Type.END, id });
          } else {
            const bytes = typeof reply === "string" ? utf8.encode(reply) : reply;
            if (!(bytes instanceof Uint8Array)) {
              throw new TypeError(
                `The handler returned ${typeof reply}, not bytes, text or a stream`,
              );
            }
            await this.#reply({ type: Type.REPLY, id, data: bytes });
          }
        } catch (err) {
          if (request.aborted) return;
          const e = err instanceof Error ? err : new Error(String(err));
          const own = (e as Error & { code?: unknown }).code;
          const code = typeof own === "string" ? own : e.name;
          await this.#send({
            type: Type.ERROR,
            id,
            code,
            message: e.message,
            stack: exposeStack ? e.stack ?? "" : "",
          });
        }
      } finally {
        this.#ended(id);
      }
    }

    /**
     * Sends a reply or a chunk of one. One over `maxFrameSize` throws `EFRAMETOOLARGE`, which
     * the client then gets as the request's error; a broken connection is left to the read loop.
     */
    async #reply(message: Message): Promise<void> {
      try {
        await this.channel.send(message);
      } catch (err) {
        if (err instanceof IpcError && err.code === "EFRAMETOOLARGE") throw err;
      }
    }

    /** Sends a message; resolves at once unless the socket pushes back. Never rejects. */
    #send(message: Message): Promise<void> | undefined {
      try {
        return this.channel.send(message)?.catch(() => {});
      } catch {
        // The channel failed: the read loop ends the session.
        return undefined;
      }
    }

    #requestEnded(): Promise<void> {
      return new Promise((resolve) => this.#waiters.push(resolve));
    }

    async #drained(): Promise<void> {
      while (this.inflight.size > 0) await this.#requestEnded();
    }

    #armIdle(): void {
      if (idleTimeout <= 0) return;
      clearTimeout(this.#idle);
      if (this.inflight.size > 0) return;
      this.#idle = later(() => this.conn.close(), idleTimeout);
    }

    /** Aborts every request running and closes the connection. */
    abort(reason: IpcError = closedError("serve", "server")): void {
      for (const request of this.inflight.values()) request.abort(reason);
      this.conn.close();
    }

    /** Shutdown: tell the client, let what runs finish, send the last replies, then close. */
    async drain(): Promise<void> {
      // What runs is let finish: the shutdown signal reaches it through abort().
      await this.#send({ type: Type.GOAWAY });
      await this.#drained();
      await this.channel.end().catch(() => {});
      this.conn.close();
    }
  }

  return serveSessions(listener, (conn) => new Session(conn), state, options.signal);
}

/**
 * A request being handled, and the context its handler gets. The signal is made only when the
 * handler asks for it: most handlers never do, and an AbortController per request is a cost
 * every request would pay.
 */
class Running implements RpcContext {
  readonly remoteAddr: Address;
  #controller: AbortController | undefined;
  #reason: { value: unknown } | undefined;

  constructor(remoteAddr: Address) {
    this.remoteAddr = remoteAddr;
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
