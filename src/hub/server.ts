/**
 * Serves a {@linkcode Hub} over a socket: each connection's subscriptions are subscriptions of
 * the hub, fed to the client as far as the client's credit allows.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { IpcError } from "../errors.ts";
import {
  type HandshakeRules,
  listenForClients,
  readHello,
  Refusal,
  serveSessions,
  type Session as ServedSession,
} from "../internal/serving.ts";
import { delay } from "../internal/async.ts";
import { Channel } from "../frame/channel.ts";
import { maxFrameSizeOf } from "../frame/codec.ts";
import type { Conn } from "../runtime/types.ts";
import type { ListenOptions } from "../transport.ts";
import { type Hub, PUBLISH, RESOLVED } from "./hub.ts";
import { HubEncoding, type HubMessage, hubParser, INVALID, Op, VERSION } from "./protocol.ts";
import { type Message, type Subscription, TAKE } from "./subscription.ts";

/** Options of {@linkcode serveHub}. */
export interface ServeHubOptions extends Pick<ListenOptions, "mode" | "signal"> {
  /** Clients must name the same application. @default {"dockipc"} */
  app?: string;
  /** A shared secret clients must present; compared in constant time. */
  token?: string | Uint8Array;
  /** Connections at once; more are refused at the handshake. @default {1024} */
  maxConnections?: number;
  /** Subscriptions per connection; a SUB past it is refused with ERR. @default {1024} */
  maxSubscriptions?: number;
  /**
   * The most messages the hub holds for one remote subscription, whatever `buffer` its client
   * asks for; past it the subscription's overflow policy applies. This bounds what a client that
   * stops reading can make the server hold. @default {65536}
   */
  maxSubscriptionBuffer?: number;
  /**
   * The most payload bytes the hub holds for one remote subscription, whatever `maxBytes` its
   * client asks for (or none). @default {67108864 (64 MiB)}
   */
  maxSubscriptionBytes?: number;
  /** Milliseconds a new connection has to complete its handshake. @default {5000} */
  handshakeTimeout?: number;
  /** The largest frame either way; a client sending a larger one is disconnected. @default {16777216} */
  maxFrameSize?: number;
}

/** A hub served over a socket. */
export interface HubServer extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Address;
  /** Connections open now. */
  readonly connections: number;
  /**
   * Stops accepting and tells clients to go (GOAWAY), sends each subscription what it already
   * holds as far as credit allows, then closes. When `signal` aborts first, it closes at once.
   */
  shutdown(options?: { signal?: AbortSignal }): Promise<void>;
  /** Closes every connection now. The hub itself stays open. */
  close(): void;
}

/** PUBs a connection may have waiting for the hub before it is read no further... */
const PUB_QUEUE = 1024;
/** ...and the payload bytes they may hold. */
const PUB_QUEUE_BYTES = 16 * 1024 * 1024;

/** The ERR that reports `err` about `id` (0: the connection); `fallback` when it has no code. */
function errOf(id: number, err: unknown, fallback = "EPROTOCOL"): HubMessage {
  const code = err instanceof IpcError || err instanceof Refusal ? err.code : fallback;
  return { op: Op.ERR, id, code, message: err instanceof Error ? err.message : String(err) };
}

/** A client's subscription: the hub's subscription and the credit the client granted. */
class Remote {
  readonly sid: number;
  readonly sub: Subscription;
  credit: number;
  wake: (() => void) | undefined;

  constructor(sid: number, sub: Subscription, credit: number) {
    this.sid = sid;
    this.sub = sub;
    this.credit = credit;
  }
}

/**
 * Serves `hub` at `address` to {@linkcode connectHub} clients in any runtime: they publish into
 * it, subscribe to it and make requests of it as if it were in their own process.
 *
 * @param hub The hub to serve; it stays open when the server closes.
 * @param address Where to listen: a unix socket path or a TCP address.
 * @param options The handshake's app id and token, and the server's limits.
 * @returns The running server.
 * @throws {IpcError} As `listen()` does.
 *
 * @example Serve a hub and use it from a client
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectHub, Hub, serveHub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * await using server = await serveHub(hub, "tcp://127.0.0.1:0");
 * await using remote = await connectHub(server.addr);
 * const sub = remote.subscribe("greetings.*");
 * await remote.flush(); // the subscription is in place
 * await hub.publish("greetings.en", "hello");
 * const { value } = await sub.next();
 * assert.equal(new TextDecoder().decode(value?.data), "hello");
 * ```
 */
export async function serveHub(
  hub: Hub,
  address: string | Address,
  options: ServeHubOptions = {},
): Promise<HubServer> {
  const {
    app = "dockipc",
    maxConnections = 1024,
    maxSubscriptions = 1024,
    maxSubscriptionBuffer = 65536,
    maxSubscriptionBytes = 64 * 1024 * 1024,
    handshakeTimeout = 5000,
    maxFrameSize,
  } = options;
  for (const [name, v] of Object.entries({ maxSubscriptionBuffer, maxSubscriptionBytes })) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(
        `Cannot serve the hub as ${name} must be a whole number above 0: got ${v}`,
      );
    }
  }
  const frameLimit = maxFrameSizeOf(
    "serveHub()",
    maxFrameSize === undefined ? {} : { maxFrameSize },
  );
  const { listener, token } = await listenForClients(address, options);
  const state = { sessions: new Set<ServedSession>(), draining: false };
  const rules: HandshakeRules = {
    protocol: "hub",
    version: VERSION,
    app,
    token,
    appCode: "EAUTH",
    handshakeTimeout,
    maxConnections,
    state,
  };

  class Session implements ServedSession {
    readonly conn: Conn;
    readonly channel: Channel<HubMessage>;
    readonly remotes = new Map<number, Remote>();
    /** PUBs waiting for the hub, in arrival order: a queue in an array, `#pubHead` its first. */
    #pubs: (Message | undefined)[] = [];
    #pubHead = 0;
    #pubBytes = 0;
    #publisher: Promise<void> | undefined;
    #room: (() => void) | undefined;

    constructor(conn: Conn) {
      this.conn = conn;
      this.channel = new Channel(conn, hubParser(frameLimit), new HubEncoding(frameLimit), {
        lastWords: (err) => errOf(0, err),
      });
    }

    async run(): Promise<void> {
      try {
        let batch: HubMessage[] | undefined = await this.#handshake();
        while (batch !== undefined) {
          for (const m of batch) {
            const waiting = this.#serve(m);
            if (waiting !== undefined) await waiting;
          }
          batch = await this.channel.read();
        }
        await this.channel.end().catch(() => {});
      } catch (err) {
        await this.#refuse(err);
      } finally {
        this.abort();
      }
    }

    /** Sends a message; after the channel failed there is nobody to tell, and it is dropped. */
    #send(m: HubMessage): Promise<void> {
      try {
        return this.channel.send(m)?.catch(() => {}) ?? Promise.resolve();
      } catch {
        return Promise.resolve();
      }
    }

    /** Tells the client what is wrong with it (ERR 0), then closes its connection. */
    async #refuse(err: unknown): Promise<void> {
      await this.#send(errOf(0, err));
      await this.channel.end().catch(() => {});
      this.abort();
    }

    /**
     * Publishes a PUB into the hub, or queues it behind the ones still waiting. The connection
     * goes on being read while a `"block"` subscriber holds publishing up, so that credit
     * (perhaps from this very client) still gets through; past `PUB_QUEUE` waiting messages, or
     * `PUB_QUEUE_BYTES` of their payloads, it is read no further, which holds the publisher back.
     */
    #publish(env: Message): Promise<void> | undefined {
      if (this.#publisher === undefined) {
        const published = hub[PUBLISH](env);
        if (published !== RESOLVED) this.#publisher = this.#publishAll(published);
        return undefined;
      }
      this.#pubs.push(env);
      this.#pubBytes += env.data.length;
      if (this.#pubs.length - this.#pubHead < PUB_QUEUE && this.#pubBytes < PUB_QUEUE_BYTES) {
        return undefined;
      }
      return new Promise((resolve) => (this.#room = resolve));
    }

    /** Waits for a publish that did not finish at once, then publishes the queue in order. */
    async #publishAll(first: Promise<void>): Promise<void> {
      let waiting: Promise<void> | undefined = first;
      while (true) {
        try {
          if (waiting !== undefined) await waiting;
        } catch (err) {
          // A client of ours checks topics first: this one does not speak the protocol.
          return this.#refuse(err);
        }
        if (
          this.#room !== undefined && this.#pubs.length - this.#pubHead < PUB_QUEUE / 2 &&
          this.#pubBytes < PUB_QUEUE_BYTES / 2
        ) {
          const room = this.#room;
          this.#room = undefined;
          room();
        }
        if (this.#pubHead === this.#pubs.length) break;
        const env = this.#pubs[this.#pubHead]!;
        this.#pubs[this.#pubHead++] = undefined;
        this.#pubBytes -= env.data.length;
        const published = hub[PUBLISH](env);
        waiting = published === RESOLVED ? undefined : published;
      }
      this.#pubs = [];
      this.#pubHead = 0;
      this.#pubBytes = 0;
      this.#publisher = undefined;
    }

    async #handshake(): Promise<HubMessage[]> {
      const rest = await readHello(this.channel, rules, (m) => {
        if (m.op === INVALID) return m.error.message;
        if (m.op !== Op.HELLO) {
          return "The first message was not a handshake: is this a dockipc hub client?";
        }
        return m;
      });
      await this.#send({ op: Op.WELCOME, version: VERSION });
      return rest;
    }

    /** Serves one message; a promise only when reading must wait (the PUB queue is full). */
    #serve(m: HubMessage): Promise<void> | undefined {
      switch (m.op) {
        case Op.PUB:
          return this.#publish(m.env);
        case Op.SUB:
          this.#subscribe(m);
          return;
        case Op.UNSUB: {
          const remote = this.remotes.get(m.sid);
          this.remotes.delete(m.sid);
          remote?.sub.unsubscribe();
          remote?.wake?.();
          return;
        }
        case Op.CREDIT: {
          const remote = this.remotes.get(m.sid);
          if (remote === undefined) return; // unsubscribed meanwhile
          remote.credit += m.n;
          remote.wake?.();
          return;
        }
        case Op.REQ:
          void this.#request(m.id, m.timeout, m.env);
          return;
        case Op.PING:
          void this.#send({ op: Op.PONG });
          return;
        case Op.FLUSH: {
          // After the PUBs before it: "flushed" means published.
          const published = this.#publisher ?? Promise.resolve();
          void published.then(() => this.#send({ op: Op.FLUSHED }));
          return;
        }
        case INVALID:
          throw m.error;
        default:
          throw new Refusal("EPROTOCOL", `A client may not send message type ${m.op}`);
      }
    }

    #subscribe(m: Extract<HubMessage, { op: typeof Op.SUB }>): void {
      if (this.remotes.has(m.sid)) {
        throw new Refusal("EPROTOCOL", `Subscription ${m.sid} is already in use`);
      }
      if (this.remotes.size >= maxSubscriptions) {
        void this.#send({
          op: Op.ERR,
          id: m.sid,
          code: "EPROTOCOL",
          message: `The hub allows ${maxSubscriptions} subscriptions per connection`,
        });
        return;
      }
      let sub: Subscription;
      try {
        sub = hub.subscribe(m.pattern, {
          buffer: Math.min(Math.max(1, m.buffer), maxSubscriptionBuffer),
          overflow: m.overflow,
          maxBytes: m.maxBytes === 0
            ? maxSubscriptionBytes
            : Math.min(m.maxBytes, maxSubscriptionBytes),
          ...(m.queue === undefined ? {} : { queue: m.queue }),
        });
      } catch (err) {
        void this.#send(errOf(m.sid, err));
        return;
      }
      const remote = new Remote(m.sid, sub, m.credit);
      this.remotes.set(m.sid, remote);
      // A pump ends when its subscription does, or with the connection (a send then rejects).
      void this.#pump(remote).catch(() => {});
    }

    /**
     * Sends a subscription's messages while the client has credit for them: whatever is
     * buffered at once, then waits for the next.
     */
    async #pump(remote: Remote): Promise<void> {
      const { sub, sid } = remote;
      while (true) {
        // Credit first: a message taken from the subscription would make room in its buffer
        // that the client has not granted, and the overflow policy would see one too many.
        while (remote.credit === 0 && this.remotes.get(sid) === remote) {
          await new Promise<void>((resolve) => (remote.wake = resolve));
          remote.wake = undefined;
        }
        let batch = sub[TAKE](remote.credit);
        if (batch.length === 0) {
          const next = await sub.next().catch((err: unknown) => err as IpcError);
          if (next instanceof IpcError || next.done) {
            if (next instanceof IpcError && next.code === "ESLOWCONSUMER") {
              // The "error" policy: this client is too slow, and only it pays for that.
              await this.#send(errOf(sid, next));
              await this.#refuse(next);
            }
            return;
          }
          batch = [next.value];
        }
        for (const message of batch) {
          remote.credit--;
          const sending = this.channel.send({ op: Op.MSG, sid, env: message });
          if (sending !== undefined) await sending;
        }
      }
    }

    async #request(id: number, timeout: number, env: Message): Promise<void> {
      try {
        const reply = await hub.request(env.topic, env.data, {
          headers: env.headers,
          ...(timeout === 0 ? {} : { timeout }),
          ...(env.key === undefined ? {} : { key: env.key }),
        });
        await this.#send({ op: Op.RES, id, env: reply });
      } catch (err) {
        await this.#send(errOf(id, err, "EREMOTE"));
      }
    }

    /** Ends every subscription of this connection and closes it. */
    abort(): void {
      for (const remote of this.remotes.values()) {
        remote.sub.unsubscribe();
        remote.wake?.();
      }
      this.remotes.clear();
      this.conn.close();
    }

    /** Shutdown: tell the client, send what subscriptions hold as credit allows, then close. */
    async drain(signal: AbortSignal | undefined): Promise<void> {
      await this.#send({ op: Op.GOAWAY });
      for (const remote of this.remotes.values()) {
        while (remote.sub.stats().pending > 0 && remote.credit > 0 && !signal?.aborted) {
          await delay(1);
        }
        remote.sub.unsubscribe();
      }
      await this.channel.end().catch(() => {});
      this.abort();
    }
  }

  return serveSessions(listener, (conn) => new Session(conn), state, options.signal);
}
