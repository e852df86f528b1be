/**
 * Serves a {@linkcode Hub} over a socket: each connection's subscriptions are subscriptions of
 * the hub, fed to the client as far as the client's credit allows.
 *
 * @module
 */

import { type Address, formatAddress } from "../address.ts";
import { closedError, IpcError, RemoteError } from "../errors.ts";
import { delay } from "../internal/async.ts";
import { Refusal } from "../session/handshake.ts";
import {
  type Dispatcher,
  type ServedConn,
  type Server,
  type ServerOptions,
  serveSessions,
} from "../session/server.ts";
import {
  consumerOf,
  type Hub,
  type HubStats,
  INBOX,
  publishMessage,
  readerBuffer,
  RESOLVED,
  type ServedConsumer,
  subscribeTo,
  watchStreams,
} from "./hub.ts";
import type { ConsumeOptions, ConsumerMember } from "./consumer.ts";
import { checkRateLimit, invalid, Limiter, type LimitStats, type RateLimit } from "./limits.ts";
import { Publisher } from "./schedule.ts";
import { checkPermissions, type Permissions, permissionsOf } from "./permissions.ts";
import { STREAM_OPERATIONS, type StreamOperation, type User } from "../session/users.ts";
import { HUB, type HubMessage, jsonBody, Op, parseBody, type SettleFailure } from "./protocol.ts";
import { type HubSubscription, type Message, STOP, TAKE } from "./subscription.ts";
import type { PublishAck, StoredMessage } from "./stream.ts";

/** Options of {@linkcode serveHub}: the options every dockipc server takes, and the hub's own. */
export interface ServeHubOptions extends ServerOptions {
  /**
   * Requests through the hub a connection may have waiting for their reply; past it the
   * connection is read no further until one ends. @default {64}
   */
  maxInflight?: number;
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
  /**
   * Delayed messages (`delay`, `notBefore`) one connection may have waiting in the hub; past it
   * its delayed publishes fail with `ELIMIT` (the hub's own `maxScheduled` bounds them all).
   * @default {100000}
   */
  maxScheduled?: number;
  /** Rate limits the server applies: see {@linkcode HubServer.setLimits}. */
  limits?: ServerLimits;
}

/** The limits a hub server applies to its connections. */
export interface ServerLimits {
  /**
   * What each connection may publish: a bucket per connection. `"wait"` holds the connection
   * back (it is read no further until the rate allows), `"reject"` drops the message and tells
   * the client, whose next `publish()` rejects with `ERATELIMIT`.
   */
  connection?: RateLimit;
}

/** A hub served over a socket: see {@linkcode Server}. Closing it leaves the hub open. */
export interface HubServer extends Server {
  /** Each connection open now: who it is and what it does. */
  connectionStats(): ConnectionStats[];
  /**
   * Sets the server's limits from now on, for the connections open now and those to come;
   * `{}` removes them.
   * @throws {IpcError} `EINVAL` for a bad limit.
   */
  setLimits(limits: ServerLimits): void;
  /** Operations refused for want of permission (`EPERM`) since the server started. */
  readonly denied: number;
}

/** One client connection of a {@linkcode HubServer}, from `connectionStats()`. */
export interface ConnectionStats {
  /** Numbers the server's connections from 1, in the order they arrived. */
  readonly id: number;
  /** The client's address (a unix socket's client is usually unnamed: `unix:`). */
  readonly remoteAddr: string;
  /** When it connected, in milliseconds since the epoch. */
  readonly since: number;
  /** Messages it published. */
  readonly published: number;
  /** Its subscriptions now. */
  readonly subscriptions: number;
  /** Its readers of stored streams' consumers now. */
  readonly readers: number;
  /** Its requests waiting for their reply. */
  readonly requests: number;
  /** Its delayed messages waiting in the hub. */
  readonly scheduled: number;
  /** Its rate limit: its user's, else the server's for connections, when there is one. */
  readonly limit: LimitStats | undefined;
  /** The user it authenticated as; undefined for one with every right. */
  readonly user: string | undefined;
  /** Its operations refused for want of permission (`EPERM`). */
  readonly denied: number;
}

/** The hub's counters and its server's connections, from `RemoteHub.serverStats()`. */
export interface ServedHubStats extends HubStats {
  /** The server's connections, the asking one among them. */
  readonly connections: readonly ConnectionStats[];
}

/** Inboxes a connection was asked to answer and has not answered yet: the oldest go first. */
const MAX_ANSWERABLE = 65_536;

/** PUBs a connection may have waiting for the hub before it is read no further... */
const PUB_QUEUE = 1024;
/** ...and the payload bytes they may hold. */
const PUB_QUEUE_BYTES = 16 * 1024 * 1024;

/**
 * The ERR that reports `err` about subscription or request `id`; `fallback` when it has no code.
 * A `TypeError` or `RangeError` (a bad argument) keeps its name as its code.
 */
function errOf(id: number, err: unknown, fallback = "EPROTOCOL"): HubMessage {
  return {
    type: Op.ERR,
    id,
    code: codeOf(err, fallback),
    message: err instanceof Error ? err.message : String(err),
    remoteCode: err instanceof RemoteError ? err.remoteCode : "",
  };
}

/** The code an error travels with: its `IpcError` code, `TypeError`, `RangeError` or `fallback`. */
function codeOf(err: unknown, fallback: string): string {
  return err instanceof IpcError || err instanceof Refusal
    ? err.code
    : err instanceof TypeError || err instanceof RangeError
    ? err.name
    : fallback;
}

/** A client's subscription: the hub's subscription and the credit the client granted. */
class Remote {
  readonly sid: number;
  readonly sub: HubSubscription;
  credit: number;
  wake: (() => void) | undefined;
  /** The client asked to drain it: END goes once it has sent what it held. */
  draining = false;
  /** The hub's subscription has ended. */
  ended = false;

  constructor(sid: number, sub: HubSubscription, credit: number) {
    this.sid = sid;
    this.sub = sub;
    this.credit = credit;
  }
}

/** What a CALL may look at besides the hub: the server's connections. */
type CallContext = () => ConnectionStats[];

/** The operations a client may CALL, by name, with their arguments. */
const CALLS: Readonly<
  Record<string, (hub: Hub, args: unknown[], connections: CallContext) => Promise<unknown>>
> = {
  addStream: (hub, [config]) => hub.addStream(config as Parameters<Hub["addStream"]>[0]),
  updateStream: (hub, [config]) => hub.updateStream(config as Parameters<Hub["updateStream"]>[0]),
  deleteStream: (hub, [name]) => hub.deleteStream(name as string),
  purge: (hub, [name]) => hub.purge(name as string),
  streamInfo: (hub, [name]) => hub.streamInfo(name as string),
  streams: (hub) => hub.streams(),
  consumerInfo: (hub, [stream, name]) => hub.consumerInfo(stream as string, name as string),
  consumers: (hub, [stream]) => hub.consumers(stream as string),
  deleteConsumer: (hub, [stream, name]) => hub.deleteConsumer(stream as string, name as string),
  cancel: (hub, [id]) => {
    if (typeof id !== "string") throw invalid("cancel", "id", id, "a string");
    return Promise.resolve(hub.cancel(id));
  },
  stats: (hub, _, connections) =>
    Promise.resolve<ServedHubStats>({ ...hub.stats(), connections: connections() }),
};

/** A client's reader of a consumer: what the consumer gives it goes out as DELIVER. */
class RemoteReader implements ConsumerMember {
  readonly id: number;
  readonly window: number;
  held = 0;
  readonly cid: number;
  readonly served: ServedConsumer;
  readonly #send: (m: HubMessage) => void;

  constructor(
    id: number,
    cid: number,
    window: number,
    served: ServedConsumer,
    send: (m: HubMessage) => void,
  ) {
    this.id = id;
    this.cid = cid;
    this.window = window;
    this.served = served;
    this.#send = send;
  }

  give(message: StoredMessage, attempt: number): void {
    this.#send({ type: Op.DELIVER, cid: this.cid, attempt, env: message });
  }

  end(error?: IpcError): void {
    this.#send(errOf(this.cid, error ?? closedError("consume", "hub")));
  }
}

let remoteReaders = 0;

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
    maxInflight = 64,
    maxSubscriptions = 1024,
    maxSubscriptionBuffer = 65536,
    maxSubscriptionBytes = 64 * 1024 * 1024,
    maxScheduled = 100_000,
  } = options;
  if (!Number.isSafeInteger(maxScheduled) || maxScheduled < 0) {
    throw invalid("serve the hub", "maxScheduled", maxScheduled, "a whole number from 0");
  }
  for (
    const [name, v] of Object.entries({ maxInflight, maxSubscriptionBuffer, maxSubscriptionBytes })
  ) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(
        `Cannot serve the hub as ${name} must be a whole number above 0: got ${v}`,
      );
    }
  }
  checkPermissions(options.users);
  const dispatchers = new Set<HubDispatcher>();
  const connectionStats = (): ConnectionStats[] => [...dispatchers].map((d) => d.stats());
  const context: DispatcherContext = {
    denied: 0,
    userLimiters: new Map(),
    maxInflight,
    maxSubscriptions,
    maxSubscriptionBuffer,
    maxSubscriptionBytes,
    maxScheduled,
    connectionLimit: undefined,
    dispatchers,
    connectionStats,
  };
  const setLimits = (limits: ServerLimits): void => {
    if (typeof limits !== "object" || limits === null) {
      throw invalid("set the limits", "limits", limits, "an object { connection? }");
    }
    context.connectionLimit = limits.connection === undefined
      ? undefined
      : checkRateLimit("set the limits", "connection", limits.connection);
    for (const d of dispatchers) d.limit();
  };
  if (options.limits !== undefined) setLimits(options.limits);
  const server = await serveSessions(address, options, {
    codec: HUB,
    owner: "serveHub()",
    maxInflight,
    dispatcher: (served) => new HubDispatcher(hub, served, context),
  });
  const setUsers = server.setUsers.bind(server);
  const served = Object.assign(server, {
    connectionStats,
    setLimits,
    // Patterns are checked before the list is taken, so a bad one changes nothing.
    setUsers: async (users: readonly User[]): Promise<void> => {
      checkPermissions(users);
      context.userLimiters.clear();
      await setUsers(users);
    },
  });
  return Object.defineProperty(served, "denied", { get: () => context.denied }) as HubServer;
}

/** What every connection of one server shares: its limits, and the list of connections. */
interface DispatcherContext {
  readonly maxInflight: number;
  readonly maxSubscriptions: number;
  readonly maxSubscriptionBuffer: number;
  readonly maxSubscriptionBytes: number;
  readonly maxScheduled: number;
  /** Each connection's rate limit, checked, when there is one. */
  connectionLimit: Required<RateLimit> | undefined;
  /** The rate limits of users that have one, shared by their connections, by user name. */
  readonly userLimiters: Map<string, Limiter>;
  /** Operations refused for want of permission. */
  denied: number;
  readonly dispatchers: Set<HubDispatcher>;
  readonly connectionStats: CallContext;
}

/** Numbers connections across every served hub of this process. */
let connectionIds = 0;

/** One connection's publishes, subscriptions and requests. */
class HubDispatcher implements Dispatcher<HubMessage> {
  readonly #hub: Hub;
  readonly #served: ServedConn<HubMessage>;
  readonly #context: DispatcherContext;
  readonly #id = ++connectionIds;
  readonly #since = Date.now();
  #published = 0;
  /** This connection as the hub's publisher: it numbers its messages, bounds its delayed ones. */
  readonly #publisher: Publisher;
  /** Its rate limit: its user's, or its own when the server has one for connections. */
  #limiter: Limiter | undefined;
  /** Its own bucket under the server's limit for connections, kept with its counters. */
  #own: Limiter | undefined;
  /** What its user may do; undefined for a client with every right. */
  #access: Permissions | undefined;
  /** Its operations refused for want of permission. */
  #denied = 0;
  readonly remotes = new Map<number, Remote>();
  /** Requests made of the hub for this client, until their answers have been sent. */
  readonly #requests = new Set<Promise<void>>();
  /** Aborts this connection's requests when it goes. */
  readonly #gone = new AbortController();
  /** The readers of consumers of this connection, by cid. */
  readonly readers = new Map<number, RemoteReader>();
  /** Stops telling this client of changes to the streams. */
  readonly #unwatch: () => void;
  /** Answers being made (PUBACK, SETTLED, RESULT): a client that ends its side gets them. */
  readonly #answering = new Set<Promise<unknown>>();
  /** SPUBs being stored, and a reader of the connection waiting for fewer of them. */
  #storing = 0;
  #storeRoom: (() => void) | undefined;
  /** The SPUBs among the queued PUBs, with the id their PUBACK answers. */
  readonly #acked = new Map<Message, number>();
  /** PUBs waiting for the hub, in arrival order: a queue in an array, `#pubHead` its first. */
  #pubs: (Message | undefined)[] = [];
  #pubHead = 0;
  #pubBytes = 0;
  #publishing: Promise<void> | undefined;
  #room: (() => void) | undefined;
  /**
   * The inboxes of the requests this client was given, until it answers each: a reply is taken
   * only from a connection that got the request, as NATS's `allow_responses` does.
   */
  readonly #answerable = new Set<string>();

  constructor(hub: Hub, served: ServedConn<HubMessage>, context: DispatcherContext) {
    this.#hub = hub;
    this.#served = served;
    this.#context = context;
    this.#publisher = new Publisher(
      this.#id,
      `connection ${this.#id}`,
      context.maxScheduled,
      "serveHub()'s maxScheduled",
    );
    this.#access = served.user === undefined ? undefined : permissionsOf(served.user);
    this.limit();
    context.dispatchers.add(this);
    this.#unwatch = watchStreams(
      hub,
      (streams) => this.#sendQuietly({ type: Op.STREAMS, body: jsonBody(streams) }),
    );
  }

  /** Sends, and forgets: a send that fails means the connection is gone, which is handled there. */
  #sendQuietly(m: HubMessage): void {
    try {
      this.#served.send(m)?.catch(() => {});
    } catch {
      // gone
    }
  }

  /** Sends what `work` resolves with (or the ERR of `id` it fails with) once it settles. */
  #answer(id: number, work: Promise<HubMessage>, fallback: string): void {
    const answered = work.then(
      (m) => this.#sendQuietly(m),
      (err) => this.#sendQuietly(errOf(id, err, fallback)),
    ).finally(() => this.#answering.delete(answered));
    this.#answering.add(answered);
  }

  /** Serves one message; a promise only when reading must wait (the PUB queue is full). */
  serve(m: HubMessage): Promise<void> | undefined {
    switch (m.type) {
      case Op.PUB:
        return this.#publish(m.env);
      case Op.SPUB:
        return this.#publish(m.env, m.id);
      case Op.CALL:
        this.#answer(
          m.id,
          this.#call(m.method, m.body).then((body) => ({ type: Op.RESULT, id: m.id, body })),
          "EIO",
        );
        return;
      case Op.CONSUME:
        return this.#consume(m.cid, m.buffer, m.stream, m.body);
      case Op.SETTLE: {
        const reader = this.readers.get(m.cid);
        if (reader === undefined) {
          const closed = new IpcError(
            "ENOTPENDING",
            `Cannot ${m.how} as reader ${m.cid} is closed`,
          );
          this.#sendQuietly(errOf(m.id, closed));
          return;
        }
        const arg = m.how === "nak" ? Number(m.arg) : m.arg;
        const failed: SettleFailure[] = [];
        const settled = m.seqs.map((seq, at) =>
          reader.served.consumer.settle(reader, seq, m.how, arg).catch((err) => {
            const message = err instanceof Error ? err.message : String(err);
            failed.push({ at, code: codeOf(err, "EIO"), message });
          })
        );
        this.#answer(
          m.id,
          Promise.all(settled).then(() => ({ type: Op.SETTLED, id: m.id, failed })),
          "EIO",
        );
        return;
      }
      case Op.UNCONSUME: {
        const reader = this.readers.get(m.cid);
        if (reader !== undefined) this.#leave(reader);
        return;
      }
      case Op.SUB:
        return this.#subscribe(m);
      case Op.UNSUB: {
        const remote = this.remotes.get(m.sid);
        this.remotes.delete(m.sid);
        remote?.sub.unsubscribe();
        remote?.wake?.();
        return;
      }
      case Op.DRAIN: {
        const remote = this.remotes.get(m.sid);
        if (remote === undefined) return this.#served.send({ type: Op.END, sid: m.sid });
        // No more from the hub; the pump sends what it holds, then END.
        remote.draining = true;
        remote.sub[STOP]();
        remote.wake?.();
        return;
      }
      case Op.CREDIT: {
        const remote = this.remotes.get(m.sid);
        if (remote === undefined) return; // unsubscribed meanwhile
        remote.credit += m.n;
        remote.wake?.();
        return;
      }
      case Op.REQ: {
        const denied = this.#access?.publish(m.env.topic);
        if (denied !== undefined) return this.#deny(m.id, denied);
        // At maxInflight the connection is read no further until a request ends.
        if (this.#requests.size >= this.#context.maxInflight) {
          return this.#requestWhenRoom(m.id, m.timeout, m.env);
        }
        this.#startRequest(m.id, m.timeout, m.env);
        return;
      }
      default:
        throw new Refusal("EPROTOCOL", `A client may not send message type ${m.type}`);
    }
  }

  /** After the PUBs before it: FLUSHED means "published". */
  settled(): Promise<void> | undefined {
    return this.#publishing;
  }

  busy(): boolean {
    return this.#publishing !== undefined || this.#requests.size > 0 || this.#answering.size > 0;
  }

  /**
   * The client sent its last message. What it published goes on into the hub, even through a
   * `"block"` subscriber that holds it up. When the server is shutting down, that is waited for
   * (so that the client's next connection cannot overtake it), so are the answers to its
   * requests, and each subscription is sent what it already holds as far as credit allows.
   */
  async finish(): Promise<void> {
    // Stores, acks and calls the client is waiting for are answered first, whatever the case.
    while (this.#answering.size > 0) await Promise.all(this.#answering);
    if (!this.#served.draining) return;
    // Published before the client's next connection, whose PUBs would otherwise overtake these;
    // and the requests it made are answered.
    await this.#publishing;
    await Promise.all(this.#requests);
    for (const remote of this.remotes.values()) {
      while (remote.sub.stats().pending > 0 && remote.credit > 0) await delay(1);
      remote.sub.unsubscribe();
    }
  }

  /** Ends every subscription, request and reader of this connection. */
  /** This connection's counters. */
  stats(): ConnectionStats {
    return {
      id: this.#id,
      remoteAddr: formatAddress(this.#served.conn.remoteAddr),
      since: this.#since,
      published: this.#published,
      subscriptions: this.remotes.size,
      readers: this.readers.size,
      requests: this.#requests.size,
      scheduled: this.#publisher.scheduled,
      limit: this.#limiter?.stats(),
      user: this.#access?.user,
      denied: this.#denied,
    };
  }

  /**
   * Sets this connection's rate limit as it now is: its user's (shared by the user's
   * connections), else the server's for connections, else none.
   */
  limit(): void {
    const limit = this.#context.connectionLimit;
    if (limit === undefined) this.#own = undefined;
    else if (this.#own === undefined) this.#own = new Limiter(`connection ${this.#id}`, limit);
    else this.#own.set(limit);
    const rate = this.#access?.rate;
    if (rate === undefined) {
      this.#limiter = this.#own;
      return;
    }
    const { userLimiters } = this.#context;
    const name = this.#access!.user;
    let shared = userLimiters.get(name);
    if (shared === undefined) {
      shared = new Limiter(`user "${name}"`, rate);
      userLimiters.set(name, shared);
    }
    this.#limiter = shared;
  }

  /** The subscriptions and readers of every connection of user `name`'s. */
  #userSubscriptions(name: string): number {
    let n = 0;
    for (const d of this.#context.dispatchers) {
      if (d.#access?.user === name) n += d.remotes.size + d.readers.size;
    }
    return n;
  }

  /** Counts an operation refused (or ended) for want of permission; returns why. */
  #refused(denied: IpcError): IpcError {
    this.#denied++;
    this.#context.denied++;
    return denied;
  }

  /** Refuses operation `id` for want of permission: ERR with `denied`, counted. */
  #deny(id: number, denied: IpcError): undefined {
    this.#sendQuietly(errOf(id, this.#refused(denied)));
    return undefined;
  }

  /** The user's permissions changed: subscriptions and readers they no longer allow end. */
  reauthorize(): void {
    const user = this.#served.user;
    const access = user === undefined ? undefined : permissionsOf(user);
    this.#access = access;
    this.limit();
    if (access === undefined) return;
    for (const [sid, remote] of [...this.remotes]) {
      const denied = access.subscribe(remote.sub.pattern);
      if (denied === undefined) continue;
      this.remotes.delete(sid);
      remote.sub.unsubscribe();
      remote.wake?.();
      this.#deny(sid, denied);
    }
    const consume = access.stream("consume");
    if (consume !== undefined) {
      for (const reader of [...this.readers.values()]) {
        this.#leave(reader);
        reader.end(this.#refused(consume));
      }
    }
  }

  /**
   * Publishes `env` into the hub as this connection's, through its rate limit: what the hub's
   * publish returns, later when the limit holds it back.
   */
  #enter(env: Message, acked: boolean): Promise<PublishAck | void> {
    const limiter = this.#limiter;
    if (limiter === undefined) return publishMessage(this.#hub, env, this.#publisher);
    let wait: number;
    try {
      wait = limiter.admit("publish");
    } catch (err) {
      return Promise.reject(err);
    }
    if (wait > 0) {
      return delay(wait).then(() => publishMessage(this.#hub, env, this.#publisher));
    }
    const published = publishMessage(this.#hub, env, this.#publisher);
    // An adaptive limit slows down while a "block" subscriber holds plain publishes up.
    if (!acked) {
      if (published === RESOLVED) limiter.relieved();
      else limiter.congested();
    }
    return published;
  }

  /**
   * Whether a PUB's failure is the client's to hear of (a limit refused it) rather than a
   * sign that it does not speak the protocol.
   */
  #refusal(err: unknown): boolean {
    if (!(err instanceof IpcError)) return false;
    if (err.code !== "ERATELIMIT" && err.code !== "ELIMIT" && err.code !== "EEXIST") return false;
    this.#sendQuietly(errOf(0, err));
    return true;
  }

  release(): void {
    this.#context.dispatchers.delete(this);
    this.#gone.abort(closedError("request", "connection"));
    this.#unwatch();
    // What the readers held goes to the consumers' other readers at once.
    for (const reader of [...this.readers.values()]) this.#leave(reader);
    for (const remote of this.remotes.values()) {
      remote.sub.unsubscribe();
      remote.wake?.();
    }
    this.remotes.clear();
  }

  /**
   * Publishes a PUB into the hub, or queues it behind the ones still waiting. The connection
   * goes on being read while a `"block"` subscriber holds publishing up, so that credit
   * (perhaps from this very client) still gets through; past `PUB_QUEUE` waiting messages, or
   * `PUB_QUEUE_BYTES` of their payloads, it is read no further, which holds the publisher back.
   */
  #publish(env: Message, ackId?: number): Promise<void> | undefined {
    if (env.topic.startsWith(INBOX) && !this.#answerable.delete(env.topic)) return undefined;
    const denied = this.#access?.publish(env.topic);
    if (denied !== undefined) return this.#deny(ackId ?? 0, denied);
    this.#published++;
    if (this.#publishing === undefined) {
      const published = this.#enter(env, ackId !== undefined);
      if (ackId !== undefined) return this.#ack(ackId, published);
      if (published !== RESOLVED) this.#publishing = this.#publishAll(published);
      return undefined;
    }
    if (ackId !== undefined) this.#acked.set(env, ackId);
    this.#pubs.push(env);
    this.#pubBytes += env.data.length;
    if (this.#pubs.length - this.#pubHead < PUB_QUEUE && this.#pubBytes < PUB_QUEUE_BYTES) {
      return undefined;
    }
    return new Promise((resolve) => (this.#room = resolve));
  }

  /**
   * Answers SPUB `id` with PUBACK once `published` is stored (or with ERR). The hub keeps such
   * publishes in order itself, so the next one need not wait: concurrent ones share a sync. Past
   * `PUB_QUEUE` of them the connection is read no further.
   */
  #ack(id: number, published: Promise<PublishAck | void>): Promise<void> | undefined {
    this.#storing++;
    const acked = published.then((ack): HubMessage => {
      // Not stored: the stream was deleted meanwhile. Delivered, as a plain publish is.
      if (ack === undefined) return { type: Op.RESULT, id, body: jsonBody(null) };
      return { type: Op.PUBACK, id, ...ack };
    });
    this.#answer(id, acked, "EIO");
    acked.catch(() => {}).finally(() => {
      if (--this.#storing < PUB_QUEUE / 2 && this.#storeRoom !== undefined) {
        const room = this.#storeRoom;
        this.#storeRoom = undefined;
        room();
      }
    });
    if (this.#storing < PUB_QUEUE) return undefined;
    return new Promise((resolve) => (this.#storeRoom = resolve));
  }

  /** Waits for a publish that did not finish at once, then publishes the queue in order. */
  async #publishAll(first: Promise<PublishAck | void>): Promise<void> {
    let waiting: Promise<PublishAck | void> | undefined = first;
    while (true) {
      try {
        if (waiting !== undefined) await waiting;
      } catch (err) {
        // A client of ours checks topics first: this one does not speak the protocol.
        if (!this.#refusal(err)) {
          this.#publishing = undefined;
          return this.#served.refuse(err);
        }
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
      const ackId = this.#acked.get(env);
      const published = this.#enter(env, ackId !== undefined);
      if (ackId !== undefined) {
        this.#acked.delete(env);
        await this.#ack(ackId, published);
        waiting = undefined;
      } else waiting = published === RESOLVED ? undefined : published;
    }
    this.#pubs = [];
    this.#pubHead = 0;
    this.#pubBytes = 0;
    this.#publishing = undefined;
  }

  /** Makes a client's subscription; a promise when its refusal waits for the socket. */
  #subscribe(m: Extract<HubMessage, { type: typeof Op.SUB }>): Promise<void> | undefined {
    const { maxSubscriptions, maxSubscriptionBuffer, maxSubscriptionBytes } = this.#context;
    if (this.remotes.has(m.sid)) {
      throw new Refusal("EPROTOCOL", `Subscription ${m.sid} is already in use`);
    }
    const access = this.#access;
    if (access !== undefined) {
      const denied = access.subscribe(m.pattern);
      if (denied !== undefined) return this.#deny(m.sid, denied);
      const bound = this.#served.user?.maxSubscriptions;
      if (bound !== undefined && this.#userSubscriptions(access.user) >= bound) {
        return this.#served.send(errOf(
          m.sid,
          new IpcError(
            "ELIMIT",
            `User "${access.user}" has reached its maxSubscriptions (${bound})`,
          ),
        ));
      }
    }
    if (this.remotes.size >= maxSubscriptions) {
      return this.#served.send({
        type: Op.ERR,
        id: m.sid,
        code: "EPROTOCOL",
        message: `The hub allows ${maxSubscriptions} subscriptions per connection`,
        remoteCode: "",
      });
    }
    let sub: HubSubscription;
    try {
      sub = subscribeTo(this.#hub, m.pattern, {
        buffer: Math.min(Math.max(1, m.buffer), maxSubscriptionBuffer),
        overflow: m.overflow,
        ordered: m.ordered,
        maxBytes: m.maxBytes === 0
          ? maxSubscriptionBytes
          : Math.min(m.maxBytes, maxSubscriptionBytes),
        ...(m.queue === undefined ? {} : { queue: m.queue }),
      });
    } catch (err) {
      return this.#served.send(errOf(m.sid, err));
    }
    const remote = new Remote(m.sid, sub, m.credit);
    this.remotes.set(m.sid, remote);
    // One that ends with nothing left to send (the "error" policy empties it) needs no credit
    // to say so: a stalled client hears of it at once.
    void sub.closed.then(() => {
      remote.ended = true;
      remote.wake?.();
    });
    // A pump ends when its subscription does, or with the connection (a send then rejects).
    void this.#pump(remote).catch(() => {});
  }

  /**
   * Sends a subscription's messages while the client has credit for them: whatever is
   * buffered at once, then waits for the next.
   */
  async #pump(remote: Remote): Promise<void> {
    const { sub, sid } = remote;
    const served = this.#served;
    const type = sub.ordered ? Op.OMSG : Op.MSG;
    while (true) {
      // Credit first: a message taken from the subscription would make room in its buffer
      // that the client has not granted, and the overflow policy would see one too many.
      // A drained subscription with nothing left needs no credit to end.
      while (
        remote.credit === 0 && this.remotes.get(sid) === remote &&
        !((remote.draining || remote.ended) && sub.stats().pending === 0)
      ) {
        await new Promise<void>((resolve) => (remote.wake = resolve));
        remote.wake = undefined;
      }
      let batch = sub[TAKE](remote.credit);
      if (batch.length === 0) {
        const next = await sub.next().catch((err: unknown) => err as IpcError);
        if (next instanceof IpcError || next.done) {
          if (next instanceof IpcError && next.code === "ESLOWCONSUMER") {
            // The "error" policy: this client is too slow, and only it pays for that.
            await served.send(errOf(sid, next));
            await served.refuse(next);
          } else if (remote.draining && this.remotes.get(sid) === remote) {
            this.remotes.delete(sid);
            await served.send({ type: Op.END, sid });
          }
          return;
        }
        batch = [next.value];
      }
      for (const message of batch) {
        remote.credit--;
        if (message.reply?.startsWith(INBOX)) this.#mayAnswer(message.reply);
        const sending = served.send({ type, sid, env: message });
        if (sending !== undefined) await sending;
      }
    }
  }

  /** Runs a CALL of a stream or consumer operation: its result, as JSON. */
  async #call(method: string, body: Uint8Array): Promise<Uint8Array> {
    const call = Object.hasOwn(CALLS, method) ? CALLS[method] : undefined;
    if (call === undefined) {
      throw new IpcError("EPROTOCOL", `A hub has no operation "${method}" to call`);
    }
    if (this.#access !== undefined && STREAM_OPERATIONS.includes(method as StreamOperation)) {
      const denied = this.#access.stream(method as StreamOperation);
      if (denied !== undefined) throw this.#refused(denied);
    }
    const args = parseBody(body, "arguments");
    if (!Array.isArray(args)) {
      throw new IpcError("EPROTOCOL", "A CALL's arguments must be an array");
    }
    return jsonBody(await call(this.#hub, args, this.#context.connectionStats) ?? null);
  }

  /** Attaches reader `cid` of this client to a consumer; CONSUMING or ERR answers. */
  #consume(
    cid: number,
    buffer: number,
    stream: string,
    body: Uint8Array,
  ): Promise<void> | undefined {
    if (this.readers.has(cid)) throw new Refusal("EPROTOCOL", `Reader ${cid} is already in use`);
    const denied = this.#access?.stream("consume");
    if (denied !== undefined) return this.#deny(cid, denied);
    if (this.readers.size + this.remotes.size >= this.#context.maxSubscriptions) {
      return this.#served.send(
        errOf(
          cid,
          new IpcError(
            "EPROTOCOL",
            `The hub allows ${this.#context.maxSubscriptions} subscriptions and readers per connection`,
          ),
        ),
      );
    }
    void (async () => {
      try {
        const options = parseBody(body, "consumer options") as ConsumeOptions;
        const window = Math.min(readerBuffer({ buffer }), this.#context.maxSubscriptionBuffer);
        const served = await consumerOf(this.#hub, stream, options);
        const reader = new RemoteReader(
          ++remoteReaders,
          cid,
          window,
          served,
          (m) => this.#sendQuietly(m),
        );
        if (this.#gone.signal.aborted) return void served.left();
        this.readers.set(cid, reader);
        this.#sendQuietly({ type: Op.CONSUMING, cid, name: served.consumer.name });
        served.consumer.attach(reader);
      } catch (err) {
        this.#sendQuietly(errOf(cid, err, "EIO"));
      }
    })();
    return undefined;
  }

  /** Reader `reader` leaves its consumer: what it held goes to the others. */
  #leave(reader: RemoteReader): void {
    this.readers.delete(reader.cid);
    reader.served.consumer.detach(reader);
    reader.served.left().catch(() => {});
  }

  #mayAnswer(inbox: string): void {
    if (this.#answerable.size >= MAX_ANSWERABLE) {
      this.#answerable.delete(this.#answerable.values().next().value!);
    }
    this.#answerable.add(inbox);
  }

  async #requestWhenRoom(id: number, timeout: number, env: Message): Promise<void> {
    while (this.#requests.size >= this.#context.maxInflight) {
      await Promise.race(this.#requests);
    }
    this.#startRequest(id, timeout, env);
  }

  #startRequest(id: number, timeout: number, env: Message): void {
    const answered: Promise<void> = this.#request(id, timeout, env).finally(() =>
      this.#requests.delete(answered)
    );
    this.#requests.add(answered);
  }

  async #request(id: number, timeout: number, env: Message): Promise<void> {
    try {
      const reply = await this.#hub.request(env.topic, env.data, {
        // A connection that goes takes its requests with it.
        signal: this.#gone.signal,
        headers: env.headers,
        ...(timeout === 0 ? {} : { timeout }),
        ...(env.key === undefined ? {} : { key: env.key }),
      });
      await this.#served.send({ type: Op.RES, id, env: reply });
    } catch (err) {
      await this.#served.send(errOf(id, err, "EREMOTE"));
    }
  }
}
