/**
 * A client of a served hub with the in-process hub's API: subscriptions with credit-based flow
 * control, requests, and resubscription after a reconnection, on the session layer.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { closedError, IpcError, type IpcErrorCode, RemoteError } from "../errors.ts";
import { deadline, type Deferred, deferred, waitAtMost } from "../internal/async.ts";
import { nextTurn } from "../runtime/platform.ts";
import {
  type ConnectionEvent,
  DEFAULT_REQUEST_TIMEOUT,
  DEFAULT_TIMEOUT,
  SessionClient,
  type SessionOptions,
} from "../session/client.ts";
import {
  awaitReply,
  type HandleOptions,
  type Handler,
  handleWith,
  headersOf,
  type PublishOptions,
  type PubSub,
  readerBuffer,
  type RequestOptions,
  RESOLVED,
  type StoredStreams,
  type StreamSummary,
  unsequenced,
} from "./hub.ts";
import type { ConsumeOptions, ConsumerInfo } from "./consumer.ts";
import { Consumed, type Consumer, ConsumerReader, type ReaderLink } from "./consumer_reader.ts";
import {
  HUB,
  type HubMessage,
  jsonBody,
  Op,
  parseBody,
  type SettleFailure,
  type Settlement,
} from "./protocol.ts";
import type {
  PublishAck,
  ReadStreamOptions,
  StoredMessage,
  StreamConfig,
  StreamInfo,
} from "./stream.ts";
import {
  END,
  HubSubscription,
  type Message,
  RECONNECTED,
  STOP,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionStats,
} from "./subscription.ts";
import type { ServedHubStats } from "./server.ts";
import { topicMatches, TopicMemo, validatePattern, validateTopic } from "./topics.ts";

/** Options of {@linkcode connectHub}: the options every dockipc client takes. */
export type ConnectHubOptions = SessionOptions;

/** A subscription of this client, kept across reconnections. */
interface Sub {
  readonly sid: number;
  readonly sub: HubSubscription;
  readonly pattern: string;
  readonly options: SubscribeOptions;
  readonly buffer: number;
  /** Messages taken by the reader whose credit is not yet returned. */
  ungranted: number;
  /** It was made on a connection: the next one makes it again, which an ordered one reports. */
  made: boolean;
  /** The hub sequence of the last message it got. */
  lastSeq: number;
}

interface Pending {
  resolve: (m: Message) => void;
  reject: (err: unknown) => void;
}

/** A request, sent or waiting for the server to have room. */
interface Waiting extends Pending {
  send(): void;
}

/** A stored publish, call, settlement or consume waiting for the server's answer. */
interface Call {
  resolve(m: HubMessage): void;
  reject(err: unknown): void;
}

/** A reader of a consumer, kept across reconnections. */
interface Reader {
  readonly cid: number;
  readonly stream: string;
  /** Its options as the server gets them; an ephemeral reader's `deliver` moves on. */
  options: ConsumeOptions;
  readonly buffer: number;
  readonly reader: ConsumerReader;
  readonly link: ReaderLink;
  /** Delivered and not yet acknowledged or terminated: an ephemeral one starts there again. */
  readonly unfinished: Set<number>;
  /** The highest sequence delivered. */
  last: number;
  /** Resolves the first CONSUMING. */
  readonly ready: Deferred<string>;
  /** The consumer's name, once the server said it. */
  name: string;
  /** Its acks of this turn of the event loop, to go in one SETTLE. */
  acks: AckBatch | undefined;
}

/** Acks of one reader sent together, and the server's answer to them. */
interface AckBatch {
  readonly seqs: number[];
  readonly answer: Deferred<readonly SettleFailure[]>;
}

const utf8 = new TextEncoder();

/** The error a server's code and message stand for. */
function errorFrom(code: string, message: string, op: string): Error {
  return code === "TypeError"
    ? new TypeError(message)
    : code === "RangeError"
    ? new RangeError(message)
    : new IpcError(code as IpcErrorCode, message, { op });
}

/**
 * A hub served by {@linkcode serveHub} in another process, used through the same calls as an
 * in-process {@linkcode Hub}. Subscriptions survive reconnection: they are made again on the new
 * connection. Messages published while the connection is down wait for it, up to
 * `queueTimeout`, then fail; requests in flight when it drops fail with `ECONNRESET`.
 *
 * @example Publish from one client, receive in another
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectHub, Hub, serveHub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * await using server = await serveHub(hub, "tcp://127.0.0.1:0");
 * await using a = await connectHub(server.addr);
 * await using b = await connectHub(server.addr);
 * const sub = b.subscribe("jobs.>");
 * await b.flush();
 * await a.publish("jobs.resize", "photo.jpg", { headers: { size: "small" } });
 * const { value } = await sub.next();
 * assert.equal(value?.topic, "jobs.resize");
 * assert.deepEqual(value?.headers, { size: "small" });
 * ```
 */
export interface RemoteHub extends PubSub, StoredStreams, AsyncDisposable {
  /** The server's address. */
  readonly addr: Address;
  /** Whether a connection to the server is up now. */
  readonly connected: boolean;
  /**
   * Cancels a delayed message of a plain topic still waiting in the server's hub, by the `id`
   * it was published with (see `Hub.cancel()`): resolves with whether there was one.
   */
  cancel(id: string): Promise<boolean>;
  /**
   * The connection's changes from now on (`disconnected`, `reconnecting`, `reconnected`,
   * `error`), as an async iterable that ends when the client is closed or gives up. Each call
   * follows on its own; one that is not read keeps the latest 256 events.
   */
  status(): AsyncIterableIterator<ConnectionEvent>;
  /** This client's counters: its connection, what it published, its requests, its subscriptions. */
  stats(): RemoteHubStats;
  /**
   * The counters of the server's hub, as `Hub.stats()` gives them, and the server's
   * connections: what `dockipc stats` shows.
   */
  serverStats(): Promise<ServedHubStats>;
  /**
   * Resolves once the server has processed everything this client sent before (FLUSH, then
   * FLUSHED): subscriptions made before are in place, publishes made before were delivered.
   * Rejects with `ECONNRESET` if the connection drops first, or with the error of a publish the
   * server refused after taking it (`ERATELIMIT` from a `"reject"` rate limit, `EPERM` from the
   * user's permissions), once.
   */
  flush(): Promise<void>;
  /**
   * Drains every subscription: the server takes no more messages for it and sends what it
   * already holds (as its reader makes room), then ends it; its reader takes what is left and
   * then sees the end. Waits for that at most `timeout` ms, then closes as `close()` does.
   */
  drain(): Promise<void>;
  /** Closes the connection at once, discarding whatever has not been written yet. */
  abort(): void;
}

/** A {@linkcode RemoteHub}'s counters, from `stats()`. */
export interface RemoteHubStats {
  /** Whether a connection to the server is up now. */
  readonly connected: boolean;
  /** Connections made again after one was lost. */
  readonly reconnects: number;
  /** Messages this client handed to its connection (or its outage queue) to publish. */
  readonly published: number;
  /** Requests waiting for their reply, and those waiting for room under the server's `maxInflight`. */
  readonly requests: { readonly inFlight: number; readonly waiting: number };
  /** Each subscription's counters, as the in-process hub counts them. */
  readonly subscriptions: readonly SubscriptionStats[];
  /**
   * Publishes the server refused after taking them (a rate limit with the `"reject"` policy):
   * each makes the next `publish()` (or `flush()`) reject with its error.
   */
  readonly refused: number;
}

/** What ends a subscription or reader: an ERR's error, as an `IpcError`. */
function asIpcError(err: Error): IpcError {
  return err instanceof IpcError ? err : new IpcError("EPROTOCOL", err.message, { op: "hub" });
}

/** The client behind {@linkcode RemoteHub}; not exported to users. */
class HubClient implements RemoteHub {
  /** The server's address. */
  readonly addr: Address;
  readonly #session: SessionClient<HubMessage>;
  readonly #subs = new Map<number, Sub>();
  readonly #pending = new Map<number, Pending>();
  /** Requests waiting for room under the server's maxInflight, oldest first. */
  readonly #waiting: Waiting[] = [];
  readonly #requestTimeout: number;
  readonly #timeout: number;
  /** Subscriptions being drained: called once the server has ended each. */
  readonly #drains = new Map<number, () => void>();
  readonly #calls = new Map<number, Call>();
  /** The answers of `#calls`, settled or not, until they settle: what `close()` waits for. */
  readonly #answers = new Set<Promise<HubMessage>>();
  readonly #readers = new Map<number, Reader>();
  /** The server's streams, from STREAMS; `#storedBy` caches which stores a topic. */
  #streams: readonly StreamSummary[] = [];
  readonly #storedBy = new TopicMemo<StreamSummary | undefined>();
  /** Resolves with the first STREAMS of a connection: publishing needs to know them. */
  #streamsKnown: Deferred<void> = deferred();
  #nextId = 0;
  #lastTopic = "";
  #published = 0;
  /** The last publish the server refused, not yet reported; and how many it refused. */
  #refusal: Error | undefined;
  #refused = 0;

  private constructor(address: string | Address, options: ConnectHubOptions) {
    this.#requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT;
    this.#timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this.#session = new SessionClient(address, options, HUB, {
      connected: () => {
        // Everything this client holds, again on this connection.
        for (const s of this.#subs.values()) {
          if (s.made) s.sub[RECONNECTED](s.lastSeq);
          this.#sendSub(s);
        }
        for (const r of this.#readers.values()) this.#sendConsume(r);
      },
      receive: (m) => this.#receive(m),
      disconnected: (error, retrying) => this.#disconnected(error, retrying),
    });
    this.addr = this.#session.addr;
  }

  /** Connects and shakes hands; see {@linkcode connectHub}. */
  static async connect(address: string | Address, options: ConnectHubOptions): Promise<RemoteHub> {
    const remote = new HubClient(address, options);
    await remote.#session.open();
    // The server says which topics it stores right after its WELCOME.
    try {
      await deadline(remote.#streamsKnown.promise, remote.#timeout, {
        timedOut: () =>
          new IpcError(
            "EPROTOCOL",
            `The hub at ${remote.#session.label} did not list its streams`,
            {
              op: "connect",
            },
          ),
      });
    } catch (err) {
      remote.abort();
      throw err;
    }
    return remote;
  }

  get connected(): boolean {
    return this.#session.connected;
  }

  status(): AsyncIterableIterator<ConnectionEvent> {
    return this.#session.status();
  }

  stats(): RemoteHubStats {
    return {
      connected: this.#session.connected,
      reconnects: this.#session.reconnects,
      published: this.#published,
      refused: this.#refused,
      requests: { inFlight: this.#pending.size, waiting: this.#waiting.length },
      subscriptions: [...this.#subs.values()].map((s) => s.sub.stats()),
    };
  }

  #receive(m: HubMessage): void {
    switch (m.type) {
      case Op.MSG:
      case Op.OMSG: {
        const s = this.#subs.get(m.sid);
        if (s === undefined) return; // unsubscribed while it travelled
        s.lastSeq = m.env.seq;
        void s.sub.offer(m.env);
        return;
      }
      case Op.RES: {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        p?.resolve(m.env);
        return;
      }
      case Op.PUBACK:
      case Op.RESULT:
      case Op.SETTLED: {
        const call = this.#calls.get(m.id);
        this.#calls.delete(m.id);
        call?.resolve(m);
        return;
      }
      case Op.CONSUMING: {
        const r = this.#readers.get(m.cid);
        if (r === undefined) return;
        r.name = m.name;
        r.ready.resolve(m.name);
        return;
      }
      case Op.DELIVER: {
        const r = this.#readers.get(m.cid);
        if (r === undefined) return; // closed while it travelled
        const seq = m.env.seq;
        if (r.options.ordered && seq <= r.last) return; // seen: a restarted consumer sends it again
        r.last = Math.max(r.last, seq);
        if (!r.options.ordered) r.unfinished.add(seq);
        r.reader.push(new Consumed(m.env, m.attempt, r.link, r.stream));
        return;
      }
      case Op.STREAMS: {
        this.#streams = parseBody(m.body, "streams") as StreamSummary[];
        this.#storedBy.clear();
        this.#streamsKnown.resolve();
        return;
      }
      case Op.ERR: {
        const err = m.code === "EREMOTE"
          ? new RemoteError(m.remoteCode, m.message, { op: "request" })
          : errorFrom(m.code, m.message, "hub");
        if (m.id === 0) {
          // A PUB the server took and then refused: the next publish() reports it.
          this.#refusal = err;
          this.#refused++;
          return;
        }
        const call = this.#calls.get(m.id);
        if (call !== undefined) {
          this.#calls.delete(m.id);
          call.reject(err);
          return;
        }
        const r = this.#readers.get(m.id);
        if (r !== undefined) {
          // Refused, or its consumer was deleted: the reader ends with why.
          this.#readers.delete(m.id);
          r.ready.reject(err);
          r.reader.end(asIpcError(err));
          return;
        }
        const p = this.#pending.get(m.id);
        if (p !== undefined) {
          this.#pending.delete(m.id);
          p.reject(err);
          return;
        }
        const s = this.#subs.get(m.id);
        if (s !== undefined) {
          this.#subs.delete(m.id);
          s.sub[END](asIpcError(err));
        }
        return;
      }
      case Op.END: {
        const s = this.#subs.get(m.sid);
        if (s !== undefined) this.#endSub(s);
        return;
      }
      default:
        throw new IpcError("EPROTOCOL", `A hub server may not send message type ${m.type}`);
    }
  }

  /**
   * The connection is gone: requests in flight fail. Once it is gone for good, subscriptions
   * end with the same error too (their readers would otherwise wait forever).
   */
  #disconnected(error: IpcError, retrying: boolean): void {
    // A drain waits for nothing more from this connection.
    for (const done of this.#drains.values()) done();
    this.#drains.clear();
    const pending = [...this.#pending.values(), ...this.#calls.values()];
    this.#pending.clear();
    this.#calls.clear();
    for (const p of pending) p.reject(error);
    // The next connection lists the streams again; once gone for good, nothing waits for that.
    this.#streamsKnown = deferred();
    if (!retrying) {
      this.#streamsKnown.promise.catch(() => {});
      this.#streamsKnown.reject(error);
    }
    for (const r of this.#readers.values()) {
      // An ephemeral consumer ends with its connection: a new one starts where this one was.
      if (r.options.durable === undefined) {
        const from = Math.min(r.last + 1, ...r.unfinished);
        r.unfinished.clear();
        if (r.last > 0) r.options = { ...r.options, deliver: { seq: from } };
      } else r.unfinished.clear();
    }
    if (retrying) {
      this.#sendWaiting(); // to the next connection, through the outage queue
      return;
    }
    for (const w of this.#waiting.splice(0)) w.reject(error);
    const subs = [...this.#subs.values()];
    this.#subs.clear();
    for (const s of subs) s.sub[END](error);
    const readers = [...this.#readers.values()];
    this.#readers.clear();
    for (const r of readers) {
      r.ready.reject(error);
      r.reader.end(error);
    }
  }

  #check(op: string): void {
    const refused = this.#session.unavailable(op);
    if (refused !== undefined) throw refused;
  }

  /**
   * Publishes a message through the server. Resolves once it is handed to the connection (the
   * socket's backpressure, and through it a `"block"` subscriber's, holds it back); during an
   * outage it waits for the reconnection up to `queueTimeout`, then rejects with `ETIMEDOUT`.
   * A topic one of the server's streams stores resolves once it is stored, with its
   * {@linkcode PublishAck}; if the connection drops first it rejects with `ECONNRESET`, and
   * publishing again with the same `id` stores it once. A delayed one (`delay`, `notBefore`)
   * resolves once it waits in the server's hub, or rejects with `ELIMIT` past the connection's
   * bound. When the server refused an earlier publish after taking it (`ERATELIMIT` from a
   * `"reject"` rate limit, `EPERM` from the user's permissions), this one rejects with that error
   * (once), and is not sent.
   */
  publish(
    topic: string,
    data: Uint8Array | string,
    options: PublishOptions = {},
  ): Promise<PublishAck | void> {
    try {
      // Most publishers repeat one topic: it is checked once.
      if (topic !== this.#lastTopic) {
        validateTopic(topic);
        this.#lastTopic = topic;
      }
      const bytes = typeof data === "string" ? utf8.encode(data) : data;
      if (!(bytes instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot publish as data is not a Uint8Array or a string: current type is ${typeof data}`,
        );
      }
      this.#reportRefusal();
      const env = unsequenced(topic, bytes, headersOf(options), options.key, options.reply);
      // A delayed publish is answered too, as a stored one is: it may be refused (ELIMIT).
      if (
        options.delay !== undefined || options.notBefore !== undefined ||
        (this.#streams.length > 0 && this.#storedIn(topic) !== undefined)
      ) {
        return this.#publishStored(env);
      }
      const sent = this.#session.send({ type: Op.PUB, env }, "publish");
      if (sent === undefined) {
        this.#published++;
        return RESOLVED;
      }
      return sent.then(() => void this.#published++);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Throws the refusal of an earlier publish the server took, once. */
  #reportRefusal(): void {
    const refusal = this.#refusal;
    if (refusal === undefined) return;
    this.#refusal = undefined;
    throw refusal;
  }

  async cancel(id: string): Promise<boolean> {
    return await this.#invoke<boolean>("cancel", id) === true;
  }

  /** The stream of the server's that stores `topic`, if any. */
  #storedIn(topic: string): StreamSummary | undefined {
    return this.#storedBy.get(
      topic,
      (topic) => this.#streams.find((s) => s.subjects.some((p) => topicMatches(p, topic))),
    );
  }

  /** Publishes with SPUB, and resolves with the PUBACK. */
  async #publishStored(env: Message): Promise<PublishAck | void> {
    const m = await this.#call("publish", (id) => ({ type: Op.SPUB, id, env }));
    this.#published++;
    if (m.type !== Op.PUBACK) return; // the stream was deleted meanwhile: delivered, not stored
    const { stream, seq, duplicate, durability } = m;
    return { stream, seq, duplicate, durability };
  }

  /**
   * Sends the message `make` builds with a new id, and resolves with the server's answer to it;
   * rejects with its ERR, or `ECONNRESET` when the connection drops first. While disconnected it
   * waits for the reconnection as `publish()` does.
   */
  async #call(op: string, make: (id: number) => HubMessage): Promise<HubMessage> {
    this.#check(op);
    // Sent now, not after an await: an ack made before the reader closes goes before UNCONSUME.
    const id = ++this.#nextId;
    const answer = new Promise<HubMessage>((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      try {
        this.#session.send(make(id), op)?.catch((err) => {
          this.#calls.delete(id);
          reject(err);
        });
      } catch (err) {
        this.#calls.delete(id);
        reject(err);
      }
    });
    this.#answers.add(answer);
    const settled = (): void => void this.#answers.delete(answer);
    answer.then(settled, settled);
    return await answer;
  }

  /** Calls a stream or consumer operation of the server's hub; resolves with its result. */
  async #invoke<T>(method: string, ...args: unknown[]): Promise<T> {
    const m = await this.#call(method, (id) => ({
      type: Op.CALL,
      id,
      method,
      body: jsonBody(args),
    }));
    return parseBody((m as { body: Uint8Array }).body, "result") as T;
  }

  addStream(config: StreamConfig): Promise<StreamInfo> {
    return this.#invoke("addStream", config);
  }

  updateStream(config: StreamConfig): Promise<StreamInfo> {
    return this.#invoke("updateStream", config);
  }

  async deleteStream(name: string): Promise<void> {
    await this.#invoke("deleteStream", name);
  }

  purge(name: string): Promise<StreamInfo> {
    return this.#invoke("purge", name);
  }

  streamInfo(name: string): Promise<StreamInfo> {
    return this.#invoke("streamInfo", name);
  }

  streams(): Promise<StreamInfo[]> {
    return this.#invoke("streams");
  }

  consumerInfo(stream: string, consumer: string): Promise<ConsumerInfo> {
    return this.#invoke("consumerInfo", stream, consumer);
  }

  consumers(stream: string): Promise<ConsumerInfo[]> {
    return this.#invoke("consumers", stream);
  }

  async deleteConsumer(stream: string, consumer: string): Promise<void> {
    await this.#invoke("deleteConsumer", stream, consumer);
  }

  serverStats(): Promise<ServedHubStats> {
    return this.#invoke("stats");
  }

  /**
   * The messages a stream holds, as `Hub.readStream()` gives them: read through an ordered
   * consumer, from `from` (or the first stored `since`) to `to` (the last as the read begins).
   */
  async *readStream(
    name: string,
    options: ReadStreamOptions = {},
  ): AsyncGenerator<StoredMessage, void, void> {
    const info = await this.streamInfo(name);
    const to = Math.min(options.to ?? info.lastSeq, info.lastSeq);
    const from = Math.max(options.from ?? info.firstSeq, info.firstSeq);
    if (from > to) return;
    const deliver = options.since === undefined ? { seq: from } : { time: Number(options.since) };
    await using reader = await this.consume(name, { ordered: true, deliver });
    for await (const m of reader) {
      if (m.seq < from) continue;
      if (m.seq > to) return;
      const { topic, data, headers, seq, key, reply, stream, timestamp, id } = m;
      yield { topic, data, headers, seq, key, reply, stream, timestamp, id };
      if (m.seq === to) return;
    }
  }

  /**
   * Reads a stream of the server's hub through a consumer, as `Hub.consume()` does: the consumer
   * and its state live on the server. A durable reader is attached again on a new connection
   * (what it held is delivered again); an ephemeral consumer is made again from the oldest
   * message it had not finished, so messages may come twice. Acks on a lost connection fail
   * with `ENOTPENDING` or `ECONNRESET`.
   */
  async consume(stream: string, options: ConsumeOptions = {}): Promise<Consumer> {
    this.#check("consume");
    options.signal?.throwIfAborted();
    const buffer = readerBuffer(options);
    const cid = ++this.#nextId;
    const { signal: _, ...rest } = options;
    const deliver = rest.deliver;
    const sent: ConsumeOptions = typeof deliver === "object" && "time" in deliver
      ? { ...rest, deliver: { time: Number(deliver.time) } }
      : rest;
    const link: ReaderLink = {
      settle: (seq, how, arg) => how === "ack" ? this.#ack(r, seq) : this.#settle(r, seq, how, arg),
      info: () => this.consumerInfo(stream, r.name),
      close: () => {
        // Its acks go before UNCONSUME, which gives back what it holds.
        this.#sendAcks(r);
        if (this.#readers.delete(cid)) this.#sendQuietly({ type: Op.UNCONSUME, cid });
        return RESOLVED;
      },
    };
    const reader = new ConsumerReader(stream, "", {
      buffer,
      ordered: options.ordered ?? false,
      signal: options.signal,
    }, link);
    const r: Reader = {
      cid,
      stream,
      options: sent,
      buffer,
      reader,
      link,
      unfinished: new Set(),
      last: 0,
      ready: deferred(),
      name: "",
      acks: undefined,
    };
    this.#readers.set(cid, r);
    await this.#streamsKnown.promise;
    this.#sendConsume(r);
    const name = await r.ready.promise;
    Object.defineProperty(reader, "name", { value: name });
    return reader;
  }

  #sendConsume(r: Reader): void {
    if (!this.#session.connected) return; // on the next connection
    this.#sendQuietly({
      type: Op.CONSUME,
      cid: r.cid,
      buffer: r.buffer,
      stream: r.stream,
      body: jsonBody(r.options),
    });
  }

  /** Settles `seq` otherwise than by an ack: `nak`, `term` or `working`, one message a SETTLE. */
  async #settle(r: Reader, seq: number, how: Settlement, arg?: number | string): Promise<void> {
    const [failure] = await this.#sendSettle(r, [seq], how, arg === undefined ? "" : String(arg));
    if (failure !== undefined) throw errorFrom(failure.code, failure.message, how);
    if (how === "term") r.unfinished.delete(seq);
  }

  /** Sends a SETTLE; resolves with the messages of it that could not be settled. */
  async #sendSettle(
    r: Reader,
    seqs: readonly number[],
    how: Settlement,
    arg: string,
  ): Promise<readonly SettleFailure[]> {
    const m = await this.#call(how, (id) => ({ type: Op.SETTLE, id, cid: r.cid, seqs, how, arg }));
    return (m as { failed: readonly SettleFailure[] }).failed;
  }

  /**
   * Acks `seq` together with the reader's other acks of this turn of the event loop: one SETTLE
   * and one SETTLED for all of them. A quarter of the reader's buffer goes at once, so that the
   * server gives room back while a long loop of acks runs. One promise per ack, no more: a
   * reader acks every message.
   */
  #ack(r: Reader, seq: number): Promise<void> {
    try {
      this.#check("ack");
    } catch (err) {
      return Promise.reject(err);
    }
    let batch = r.acks;
    if (batch === undefined) {
      const b: AckBatch = batch = r.acks = { seqs: [], answer: deferred() };
      nextTurn(() => this.#sendAcks(r, b));
    }
    const at = batch.seqs.push(seq) - 1;
    if (batch.seqs.length >= Math.max(1, r.buffer >> 2)) this.#sendAcks(r, batch);
    return batch.answer.promise.then((failed) => {
      const failure = failed.length === 0 ? undefined : failed.find((f) => f.at === at);
      if (failure !== undefined) throw errorFrom(failure.code, failure.message, "ack");
      r.unfinished.delete(seq);
    });
  }

  /** Sends the reader's gathered acks, unless `batch` went already. */
  #sendAcks(r: Reader, batch = r.acks): void {
    if (batch === undefined || r.acks !== batch) return;
    r.acks = undefined;
    this.#sendSettle(r, batch.seqs, "ack", "").then(batch.answer.resolve, batch.answer.reject);
  }

  /**
   * Subscribes through the server. The server holds at most `buffer` messages for it and sends
   * no more than this client has room for (credit); the overflow policy applies there.
   */
  subscribe(pattern: string, options: SubscribeOptions = {}): Subscription {
    this.#check("subscribe");
    validatePattern(pattern);
    const sid = ++this.#nextId;
    const buffer = options.buffer ?? 1024;
    const sub = new HubSubscription(
      sid,
      pattern,
      options,
      () => {
        if (this.#subs.delete(sid)) this.#sendQuietly({ type: Op.UNSUB, sid });
      },
      () => this.#delivered(s),
    );
    const s: Sub = { sid, sub, pattern, options, buffer, ungranted: 0, made: false, lastSeq: 0 };
    this.#subs.set(sid, s);
    this.#sendSub(s);
    if (options.signal !== undefined) {
      options.signal.addEventListener("abort", () => sub.unsubscribe(), { once: true });
    }
    return sub;
  }

  /** Sends on the connection up now; without one, or if it fails, there is nothing to do. */
  #sendQuietly(message: HubMessage): boolean {
    try {
      const sent = this.#session.trySend(message);
      if (sent === false) return false;
      sent?.catch(() => {});
      return true;
    } catch {
      return false;
    }
  }

  #sendSub(s: Sub): void {
    if (!this.#session.connected) return; // made on the next connection
    s.ungranted = 0;
    s.made = true;
    this.#sendQuietly({
      type: Op.SUB,
      sid: s.sid,
      buffer: s.buffer,
      credit: Math.max(0, s.buffer - s.sub.stats().pending),
      maxBytes: s.options.maxBytes ?? 0,
      overflow: s.options.overflow ?? "block",
      ordered: s.options.ordered ?? false,
      pattern: s.pattern,
      queue: s.options.queue,
    });
  }

  /** The reader took a message: return credit a quarter of the buffer at a time. */
  #delivered(s: Sub): void {
    if (++s.ungranted < Math.ceil(s.buffer / 4)) return;
    const n = s.ungranted;
    s.ungranted = 0;
    this.#sendQuietly({ type: Op.CREDIT, sid: s.sid, n });
  }

  /**
   * Sends a request through the server, which makes it of its hub: resolves with the first
   * reply; rejects with `ENORESPONDERS` when nothing handles the topic, a `RemoteError`
   * (`EREMOTE`) when the handler threw, `ETIMEDOUT`, and `ECONNRESET` when the connection drops meanwhile.
   */
  request(
    topic: string,
    data: Uint8Array | string,
    options: RequestOptions = {},
  ): Promise<Message> {
    try {
      this.#check("request");
      validateTopic(topic);
      const { timeout = this.#requestTimeout, signal } = options;
      signal?.throwIfAborted();
      const bytes = typeof data === "string" ? utf8.encode(data) : data;
      const id = ++this.#nextId;
      // The server times the request out itself; the extra second bounds one that never answers.
      return awaitReply(topic, timeout, timeout + 1000, signal, (settle) => {
        const waiting: Waiting = {
          resolve: (m) => settle(undefined, m),
          reject: (e) => settle(e),
          send: () => {
            this.#pending.set(id, waiting);
            this.#session.send({
              type: Op.REQ,
              id,
              timeout: Math.min(timeout, 0xffff_ffff), // past a u32, the server's wait is unbounded too
              env: unsequenced(topic, bytes, options.headers, options.key, undefined),
            }, "request")?.catch((err) => settle(err));
          },
        };
        // Past the server's maxInflight it would read this connection no further (and the
        // replies of this client's own handlers could not reach it): the rest wait here.
        if (this.#pending.size < this.#session.maxInflight) waiting.send();
        else this.#waiting.push(waiting);
        return () => {
          this.#pending.delete(id);
          const i = this.#waiting.indexOf(waiting);
          if (i >= 0) this.#waiting.splice(i, 1);
          this.#sendWaiting(); // its room, if it had any, goes to the next
        };
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Answers requests on `pattern`; see {@linkcode Hub.handle}. */
  handle(pattern: string, handler: Handler, options: HandleOptions = {}): Subscription {
    return handleWith(this, pattern, handler, options);
  }

  /**
   * Resolves once the server has processed everything this client sent before (FLUSH, then
   * FLUSHED): subscriptions made before are in place, publishes made before were delivered.
   * Rejects with `ECONNRESET` if the connection drops first.
   */
  flush(): Promise<void> {
    return this.#session.flush().then(() => this.#reportRefusal());
  }

  /**
   * Drains every subscription: the server takes no more messages for it and sends what it
   * already holds (as its reader makes room), then ends it; its reader takes what is left and
   * then sees the end. Waits for that at most `timeout` ms, then closes as `close()` does.
   */
  async drain(): Promise<void> {
    const subs = [...this.#subs.values()];
    if (this.#session.connected && subs.length > 0) {
      const ended = subs.map((s) =>
        new Promise<void>((resolve) => this.#drains.set(s.sid, resolve))
      );
      for (const s of subs) this.#sendQuietly({ type: Op.DRAIN, sid: s.sid });
      // Bounded: a reader that stops reading leaves the server holding messages for want of
      // credit, and those are not waited for past `timeout`.
      await waitAtMost(Promise.all(ended), this.#timeout);
    }
    for (const s of [...this.#subs.values()]) this.#endSub(s);
    await this.close();
  }

  /** Ends a subscription as the server ended it: what it holds can still be read. */
  #endSub(s: Sub): void {
    this.#subs.delete(s.sid);
    s.sub[STOP]();
    this.#drains.get(s.sid)?.();
    this.#drains.delete(s.sid);
  }

  /**
   * Ends every subscription and closes the connection: pending requests fail with `ECLOSED`,
   * and everything already published is handed to the kernel, and read by the server, before
   * the connection closes. `[Symbol.asyncDispose]` does the same.
   */
  async close(): Promise<void> {
    for (const r of this.#readers.values()) this.#sendAcks(r);
    // Stored publishes and acks already sent are answered first (bounded by `timeout`): their
    // promises then say what happened rather than only that the client closed.
    if (this.#answers.size > 0 && this.#session.connected) {
      await waitAtMost(Promise.allSettled(this.#answers), this.#timeout);
    }
    this.#end();
    await this.#session.close();
  }

  /** Closes the connection at once, discarding whatever has not been written yet. */
  abort(): void {
    this.#end();
    this.#session.abort();
  }

  #end(): void {
    const subs = [...this.#subs.values()];
    this.#subs.clear();
    // Their UNSUBs go before the end of the connection: the server stops sending.
    for (const s of subs) {
      this.#sendQuietly({ type: Op.UNSUB, sid: s.sid });
      s.sub.unsubscribe();
    }
    const pending = [
      ...this.#pending.values(),
      ...this.#waiting.splice(0),
      ...this.#calls.values(),
    ];
    this.#pending.clear();
    this.#calls.clear();
    for (const p of pending) p.reject(closedError("request", "hub client"));
    const readers = [...this.#readers.values()];
    this.#readers.clear();
    for (const r of readers) {
      this.#sendQuietly({ type: Op.UNCONSUME, cid: r.cid });
      r.ready.reject(closedError("consume", "hub client"));
      r.reader.end();
    }
  }

  /** Sends requests that waited while the server has room for them. */
  #sendWaiting(): void {
    while (this.#waiting.length > 0 && this.#pending.size < this.#session.maxInflight) {
      this.#waiting.shift()!.send();
    }
  }

  /** The same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Connects to a hub served by {@linkcode serveHub}, from any runtime.
 *
 * @param address The server's unix socket path or TCP address.
 * @param options The handshake's app id and token, reconnection, liveness and limits.
 * @returns The client, once the handshake succeeded.
 * @throws {IpcError} `ECONNREFUSED`/`ENOENT` when nothing listens, `EAUTH` for a wrong app id
 * or token, `EPROTOCOL` for a version mismatch or a peer that is not a hub.
 *
 * @example Connect and publish
 * ```ts
 * import { connectHub, Hub, serveHub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * await using server = await serveHub(hub, "tcp://127.0.0.1:0", { app: "demo" });
 * await using client = await connectHub(server.addr, { app: "demo" });
 * await client.publish("events.started", "now");
 * ```
 */
export function connectHub(
  address: string | Address,
  options: ConnectHubOptions = {},
): Promise<RemoteHub> {
  return HubClient.connect(address, options);
}
