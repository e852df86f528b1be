/**
 * The in-process pub/sub hub: routes published messages to the subscriptions whose pattern
 * matches, one member per queue group, with request/reply on top.
 *
 * @module
 */

import { replyBytes, type ReplyValue } from "../codec.ts";
import { closedError, errorCode, IpcError, RemoteError } from "../errors.ts";
import { DEFAULT_REQUEST_TIMEOUT } from "../session/client.ts";
import {
  checkTimeout,
  deadlineAfter,
  Deadlines,
  type Deferred,
  deferred,
  type Expiring,
  isThenable,
} from "../internal/async.ts";
import { Histogram, type HistogramSnapshot } from "../internal/histogram.ts";
import { HashRing } from "./_ring.ts";
import {
  admitAll,
  checkRateLimit,
  type HubLimits,
  invalid,
  Limiter,
  type LimitStats,
} from "./limits.ts";
import { DeliveryProbe } from "./probe.ts";
import {
  dueOf,
  NOT_BEFORE_HEADER,
  notBeforeOf,
  Publisher,
  Schedule,
  type ScheduleStats,
} from "./schedule.ts";
import {
  checkPriority,
  HubSubscription,
  type Message,
  NO_HEADERS,
  type OrderListener,
  PRIORITY_HEADER,
  STOP,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionStats,
} from "./subscription.ts";
import type {
  PublishAck,
  ReadStreamOptions,
  StoredMessage,
  StreamConfig,
  StreamInfo,
  StreamStats,
} from "./stream.ts";
import { StreamStore } from "./streams.ts";
import type { ConsumeOptions, ConsumerInfo, DeadLetterSink, StreamConsumer } from "./consumer.ts";
import type { SyncMode } from "../wal/options.ts";
import { type Consumer, readLocally } from "./consumer_reader.ts";
import { topicMatches, TopicTrie, validatePattern, validateTopic } from "./topics.ts";

/** Options of `hub.publish()`. */
export interface PublishOptions {
  /** Travels with the message. */
  headers?: Record<string, string>;
  /** Picks the member of each queue group: one key always goes to the same member. */
  key?: string;
  /** Where a reply should be published; `request()` sets it for you. */
  reply?: string;
  /**
   * The message's id, for a stream's topic: published again within the stream's
   * `duplicateWindow`, it is not stored again. Travels as the header `dockipc-msg-id`. A delayed
   * message of a plain topic can be cancelled by it (`hub.cancel(id)`).
   */
  id?: string;
  /**
   * Delivers the message this many ms from now, not before (0 to about 24.8 days). Travels as
   * the header `dockipc-not-before`; a stream's topic stores it at once, with that header, and
   * its consumers deliver it when it is due, after a restart too.
   */
  delay?: number;
  /** Delivers the message at this time (a `Date` or `Date.now()` ms), not before; one in the past means now. */
  notBefore?: Date | number;
  /**
   * 0 (the default, lowest) to 9: a subscription with a backlog hands out higher priorities
   * first, equal ones in publish order. Travels as the header `dockipc-priority`.
   */
  priority?: number;
}

/** A reader's `buffer` option, checked: a whole number above 0, 256 by default. */
export function readerBuffer(options: ConsumeOptions): number {
  const buffer = options.buffer ?? 256;
  if (!Number.isSafeInteger(buffer) || buffer < 1) {
    throw new RangeError(`Cannot consume as buffer must be a whole number above 0: got ${buffer}`);
  }
  return buffer;
}

/** The header that carries a message's id (`PublishOptions.id`), across processes too. */
export const MSG_ID_HEADER = "dockipc-msg-id";

/**
 * The headers a dead letter carries beside its original ones: the stream and consumer it came
 * from, its stream sequence, its topic, how many deliveries it had, and why it was given up
 * (`"maxDeliver"`, or `"term"` followed by the reason given to `term()`).
 */
export const DEAD_LETTER_HEADERS = {
  stream: "dockipc-dead-stream",
  consumer: "dockipc-dead-consumer",
  seq: "dockipc-dead-seq",
  topic: "dockipc-dead-topic",
  attempts: "dockipc-dead-attempts",
  reason: "dockipc-dead-reason",
} as const;

/** The headers of a message with a priority and nothing else, by priority. */
const PRIORITY_HEADERS: readonly (Readonly<Record<string, string>> | undefined)[] = Array.from(
  { length: 10 },
  (_, p) => p === 0 ? undefined : Object.freeze({ [PRIORITY_HEADER]: String(p) }),
);

/**
 * A publish's headers, with its id, due time and priority among them as
 * {@linkcode MSG_ID_HEADER}, `NOT_BEFORE_HEADER` and `PRIORITY_HEADER`.
 * @throws {IpcError} `EINVAL` for a bad `delay`, `notBefore` or `priority`.
 */
export function headersOf(
  options: PublishOptions | undefined,
): Readonly<Record<string, string>> | undefined {
  if (options === undefined) return undefined;
  const { id, delay, notBefore, priority } = options;
  if (
    id === undefined && delay === undefined && notBefore === undefined && priority === undefined
  ) {
    return options.headers;
  }
  if (id === undefined && delay === undefined && notBefore === undefined && !options.headers) {
    // Priority alone: one shared header object per priority, as messages share their headers.
    return PRIORITY_HEADERS[checkPriority(priority)];
  }
  const headers = { ...options.headers };
  if (id !== undefined) {
    if (typeof id !== "string" || id === "") {
      throw new TypeError(`Cannot publish as id must be a non-empty string: got ${id}`);
    }
    headers[MSG_ID_HEADER] = id;
  }
  const due = dueOf(delay, notBefore, Date.now());
  if (due !== undefined) headers[NOT_BEFORE_HEADER] = String(Math.ceil(due));
  if (priority !== undefined && checkPriority(priority) > 0) {
    headers[PRIORITY_HEADER] = String(priority);
  }
  return headers;
}

/** A publish waiting for its store before it is delivered. */
interface InOrder {
  readonly message: Message;
  readonly publisher: Publisher;
  /** Its store settled: with the ack (or `undefined`, no stream), or with the failure. */
  settled: boolean;
  failed: boolean;
  outcome: unknown;
  /** What its `publish()` returned. */
  readonly done: Deferred<PublishAck | void>;
}

/** Options of `new Hub()`. */
export interface HubOptions {
  /**
   * A directory for stored streams (made `0700` when missing): one directory per stream. Without
   * it the hub holds no streams.
   */
  store?: string;
  /**
   * Opens a stream's (or a consumer's) log whose records fail their checksum by cutting it at
   * the first bad record, as `Wal.open(dir, { repair: "truncate" })` does, instead of failing
   * with `ECORRUPT`: what followed that record is lost. Use it once, after reading the error.
   */
  repair?: "truncate";
  /** Rate limits on publishing: see {@linkcode Hub.setLimits}. */
  limits?: HubLimits;
  /**
   * Delayed messages (`delay`, `notBefore`) waiting at most, from every publisher together;
   * past it a delayed publish fails with `ELIMIT`. A served hub bounds each connection too.
   * @default {1000000}
   */
  maxScheduled?: number;
}

/** Options of `hub.request()`. */
export interface RequestOptions {
  /** Travels with the request. */
  headers?: Record<string, string>;
  /** Picks the member of a queue group of handlers. */
  key?: string;
  /** Rejects with its reason when aborted. */
  signal?: AbortSignal;
  /**
   * Milliseconds to wait for the reply before rejecting with `ETIMEDOUT`; `Infinity` waits as
   * long as it takes. 0, NaN or a negative number rejects with a `RangeError`. @default {10000}
   */
  timeout?: number;
}

/** Answers a request; its return value is the reply's payload. A throw is sent back as an error. */
/**
 * Answers a request: with bytes, text (sent as UTF-8), a JSON value (sent as JSON, as
 * `json.encode` would) or nothing (an empty reply). Anything else fails the request with
 * `ECODEC`; what it throws fails the request with a `RemoteError`.
 */
export type Handler = (message: Message) => ReplyValue | Promise<ReplyValue>;

/** Options of `hub.handle()`. */
export interface HandleOptions {
  /** Joins a queue group of handlers: each request goes to one of them. */
  queue?: string;
  /** Requests that may wait for this handler. @default {1024} */
  buffer?: number;
}

/** Counters of one topic, from `hub.stats()`. */
export interface TopicStats {
  /** The topic, or `(other)` for topics past the first 10,000, counted together. */
  readonly topic: string;
  /** Messages published to it. */
  readonly published: number;
  /** Payload bytes published to it. */
  readonly bytes: number;
  /** Subscriptions its messages were handed to (a message to three subscribers counts three). */
  readonly routed: number;
  /** Gaps `ordered` subscriptions reported, on a message of this topic. */
  readonly gaps: number;
  /** Messages of this topic an `ordered` subscription got out of order: always 0. */
  readonly outOfOrder: number;
}

/** A snapshot of the hub's counters; `toPrometheus()` formats it. */
export interface HubStats {
  /** One entry per topic published to. */
  readonly topics: readonly TopicStats[];
  /** One entry per open subscription. */
  readonly subscriptions: readonly SubscriptionStats[];
  /** Requests made of this hub still waiting for their reply. */
  readonly requests: number;
  /** One entry per stored stream (none before the store has opened). */
  readonly streams: readonly StreamStats[];
  /** One entry per consumer of a stored stream. */
  readonly consumers: readonly ConsumerInfo[];
  /**
   * Latency histograms: `delivery` from publish to a subscriber's taking the message (one
   * message in 64 is timed; a served hub's subscriber takes it as it is sent to the client),
   * `request` from `request()` to its reply (every request; failed ones too, not timed-out ones).
   */
  readonly latency: { readonly delivery: HistogramSnapshot; readonly request: HistogramSnapshot };
  /** The hub's rate limits (global, then per topic pattern). */
  readonly limits: readonly LimitStats[];
  /** Delayed messages: waiting, delivered, cancelled, refused. */
  readonly scheduled: ScheduleStats;
}

/**
 * The header that carries a handler's error back to `request()`, which then rejects with a
 * `RemoteError` (code `EREMOTE`). A reply published by hand with this header fails its request
 * the same way; `ERROR_CODE_HEADER`, if present, becomes its `remoteCode`.
 *
 * @example Fail a request by hand
 * ```ts
 * import assert from "node:assert/strict";
 * import { ERROR_HEADER, Hub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * (async () => {
 *   for await (const m of hub.subscribe("jobs.run")) {
 *     await hub.publish(m.reply!, "", { headers: { [ERROR_HEADER]: "no capacity" } });
 *   }
 * })();
 * await assert.rejects(hub.request("jobs.run", "x"), /no capacity/);
 * ```
 */
export const ERROR_HEADER = "dockipc-error";

/** The header that carries a failed handler's error code (see {@linkcode ERROR_HEADER}). */
export const ERROR_CODE_HEADER = "dockipc-error-code";

/** Topics counted one by one; the rest are counted together under `OTHER_TOPICS`. */
const MAX_TOPIC_STATS = 10_000;
const OTHER_TOPICS = "(other)";
/** Routes cached at most; the cache starts over past that. */
const MAX_ROUTES = 4096;

const EMPTY = new Uint8Array(0);
/** What `publish()` returns when every subscription took the message at once: compare to it. */
export const RESOLVED: Promise<void> = Promise.resolve();

/** Set by `Hub`'s static block: its private publish of a message built elsewhere. */
let publishOn: (
  hub: Hub,
  message: Message,
  publisher: Publisher | undefined,
) => Promise<PublishAck | void>;
/** Set by `Hub`'s static block: a consumer of its store, for a served hub's readers. */
let consumerOn: (hub: Hub, stream: string, options: ConsumeOptions) => Promise<ServedConsumer>;
/** Set by `Hub`'s static block: calls `listener` with its streams now and on every change. */
let watchOn: (hub: Hub, listener: StreamsListener) => () => void;

/** What a served hub's connection needs to know of each stream: which publishes it stores. */
export interface StreamSummary {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly durability: SyncMode;
}

/** Hears of the streams a hub holds: see {@linkcode watchStreams}. */
export type StreamsListener = (streams: readonly StreamSummary[]) => void;

/** A consumer of a hub's store, and what to call once a remote reader of it leaves. */
export interface ServedConsumer {
  readonly consumer: StreamConsumer;
  readonly left: () => Promise<void>;
}

/** A consumer of `hub`'s stream, as `consume()` makes or joins it, for a served hub's readers. */
export function consumerOf(
  hub: Hub,
  stream: string,
  options: ConsumeOptions,
): Promise<ServedConsumer> {
  return consumerOn(hub, stream, options);
}

/**
 * Calls `listener` with `hub`'s streams once its store is open (at once, with none, for a hub
 * without one), then after each change; returns what stops it.
 */
export function watchStreams(hub: Hub, listener: StreamsListener): () => void {
  return watchOn(hub, listener);
}
/** Set by `Hub`'s static block: its private subscribe, which returns the hub's own side. */
let subscribeOn: (hub: Hub, pattern: string, options: SubscribeOptions) => HubSubscription;

/** Subscribes on `hub` as `hub.subscribe()` does, for a served hub, which needs the hub's side. */
export function subscribeTo(
  hub: Hub,
  pattern: string,
  options: SubscribeOptions,
): HubSubscription {
  return subscribeOn(hub, pattern, options);
}

/**
 * Publishes `message` on `hub` as it is, its `seq` set there: for a served hub, whose decoder
 * built the message, which saves making it again; `publisher` numbers it and bounds its delayed
 * messages (the hub's own callers' when not given). For the hub's own files; not exported to users.
 */
export function publishMessage(
  hub: Hub,
  message: Message,
  publisher?: Publisher,
): Promise<PublishAck | void> {
  return publishOn(hub, message, publisher);
}

/** How the reply topics of `request()` begin. */
export const INBOX = "_INBOX.";

/** A message to publish: its `seq` is 0 until the hub that takes it sets one. */
export function unsequenced(
  topic: string,
  data: Uint8Array,
  headers: Readonly<Record<string, string>> | undefined,
  key: string | undefined,
  reply: string | undefined,
): Message {
  return {
    topic,
    data,
    headers: headers ?? NO_HEADERS,
    seq: 0,
    key,
    reply,
  };
}

/** A message's fields the hub sets as it takes and delivers it. */
type Numbering = { seq: number; topicSeq: number; publisher: number; pubSeq: number };
const utf8 = new TextEncoder();

interface TopicCounters {
  topic: string;
  published: number;
  bytes: number;
  routed: number;
  gaps: number;
  outOfOrder: number;
}

/** The members of one queue group on one pattern; each message goes to one of them. */
class QueueGroup {
  readonly members: HubSubscription[] = [];
  #next = 0;
  #ring: HashRing<HubSubscription> | undefined;

  add(member: HubSubscription): void {
    this.members.push(member);
    this.#ring = undefined;
  }

  remove(member: HubSubscription): void {
    const i = this.members.indexOf(member);
    if (i >= 0) this.members.splice(i, 1);
    this.#ring = undefined;
  }

  /** Round robin, or the key's owner on the consistent-hash ring. */
  pick(key: string | undefined): HubSubscription | undefined {
    if (key !== undefined) {
      this.#ring ??= new HashRing(this.members, (m) => String(m.id));
      return this.#ring.owner(key);
    }
    if (this.members.length === 0) return undefined;
    if (this.#next >= this.members.length) this.#next = 0;
    return this.members[this.#next++];
  }
}

type Target = HubSubscription | QueueGroup;

interface Route {
  targets: readonly Target[];
  counters: TopicCounters;
  /** The rate limits a message to the topic passes, when there are any. */
  limits: readonly Limiter[] | undefined;
}

/**
 * Tells adaptive `limits` how a message they let through went: held up by a full `"block"`
 * subscriber (`held`), they slow down; taken at once, they speed back up.
 */
function adapt(limits: readonly Limiter[], held: boolean): void {
  for (const limit of limits) {
    if (held) limit.congested();
    else limit.relieved();
  }
}

/** A publish held back by a `"wait"` rate limit until its deadline. */
interface Held {
  readonly deadline: number;
  expire(): void;
  fail(error: unknown): void;
}

let hubs = 0;

/**
 * What {@linkcode Hub} and `RemoteHub` share: the same calls and the same `Message`, in one
 * process or across processes, so code written against it runs on either.
 */
export interface PubSub extends AsyncDisposable {
  /**
   * Publishes a message; see {@linkcode Hub.publish}. Resolves with a {@linkcode PublishAck}
   * when a stream of an in-process hub stored it.
   */
  publish(
    topic: string,
    data: Uint8Array | string,
    options?: PublishOptions,
  ): Promise<PublishAck | void>;
  /** Subscribes to a pattern; see {@linkcode Hub.subscribe}. */
  subscribe(pattern: string, options?: SubscribeOptions): Subscription;
  /** Sends a request and waits for one reply; see {@linkcode Hub.request}. */
  request(topic: string, data: Uint8Array | string, options?: RequestOptions): Promise<Message>;
  /** Answers requests on a pattern; see {@linkcode Hub.handle}. */
  handle(pattern: string, handler: Handler, options?: HandleOptions): Subscription;
  /**
   * Stops delivery and fails pending requests with `ECLOSED`; nothing accepted is lost: see
   * {@linkcode Hub.close} and `RemoteHub.close()`. Further calls fail with `ECLOSED`.
   */
  close(): Promise<void>;
  /** Closes at once, discarding what is buffered or not yet written. */
  abort(): void;
}

/**
 * What {@linkcode Hub} and `RemoteHub` share for stored streams: the same calls, in one process
 * or across processes (where the streams and consumers live in the server's hub).
 */
export interface StoredStreams {
  /** Adds a stream; see {@linkcode Hub.addStream}. */
  addStream(config: StreamConfig): Promise<StreamInfo>;
  /** Changes a stream's settings; see {@linkcode Hub.updateStream}. */
  updateStream(config: StreamConfig): Promise<StreamInfo>;
  /** Removes a stream and its messages; see {@linkcode Hub.deleteStream}. */
  deleteStream(name: string): Promise<void>;
  /** Removes a stream's messages; see {@linkcode Hub.purge}. */
  purge(name: string): Promise<StreamInfo>;
  /** A stream's settings and state; see {@linkcode Hub.streamInfo}. */
  streamInfo(name: string): Promise<StreamInfo>;
  /** Every stream; see {@linkcode Hub.streams}. */
  streams(): Promise<StreamInfo[]>;
  /** A stream's messages, in order; see {@linkcode Hub.readStream}. */
  readStream(name: string, options?: ReadStreamOptions): AsyncGenerator<StoredMessage, void, void>;
  /** Reads a stream through a consumer; see {@linkcode Hub.consume}. */
  consume(stream: string, options?: ConsumeOptions): Promise<Consumer>;
  /** A consumer's settings and state; see {@linkcode Hub.consumerInfo}. */
  consumerInfo(stream: string, consumer: string): Promise<ConsumerInfo>;
  /** A stream's consumers; see {@linkcode Hub.consumers}. */
  consumers(stream: string): Promise<ConsumerInfo[]>;
  /** Removes a consumer; see {@linkcode Hub.deleteConsumer}. */
  deleteConsumer(stream: string, consumer: string): Promise<void>;
}

/** The timeouts of every request of every hub in this process, on one timer. */
const deadlines = new Deadlines();

/**
 * The body of `request()` in either hub: `start(settle)` sends the request and arranges for
 * `settle` to receive the reply, and returns what undoes that; the promise rejects with
 * `ETIMEDOUT` after `ms`, or with the signal's reason.
 */
export function awaitReply(
  topic: string,
  timeout: number,
  ms: number,
  signal: AbortSignal | undefined,
  start: (settle: (error: unknown, reply?: Message) => void) => () => void,
): Promise<Message> {
  return new Promise<Message>((resolve, reject) => {
    try {
      checkTimeout("request", timeout);
    } catch (err) {
      return reject(err);
    }
    let undo: (() => void) | undefined;
    let settled = false;
    const settle = (error: unknown, reply?: Message): void => {
      if (settled) return;
      settled = true;
      deadlines.delete(timing);
      signal?.removeEventListener("abort", onAbort);
      undo?.();
      if (reply !== undefined) resolve(reply);
      else reject(error);
    };
    const onAbort = (): void => settle(signal?.reason);
    const timing: Expiring = {
      deadline: deadlineAfter(ms),
      expire: () =>
        settle(
          new IpcError(
            "ETIMEDOUT",
            `Cannot request "${topic}" as no reply came within ${timeout} ms`,
            {
              op: "request",
            },
          ),
        ),
    };
    deadlines.add(timing);
    signal?.addEventListener("abort", onAbort, { once: true });
    const undoStart = start(settle);
    if (settled) undoStart(); // settled while starting
    else undo = undoStart;
  });
}

/** Serves `handler` on `pattern` of any {@linkcode PubSub}: the body of `handle()`. */
export function handleWith(
  pubsub: PubSub,
  pattern: string,
  handler: Handler,
  options: HandleOptions,
): Subscription {
  const sub = pubsub.subscribe(pattern, options);
  // A handler that answers at once and a reply taken at once are not awaited: each await
  // would cost microtasks, and replies made fewer microtasks apart leave in one socket write.
  void (async () => {
    for await (const request of sub) {
      let reply: Uint8Array = EMPTY;
      let headers: Record<string, string> | undefined;
      try {
        const answer = handler(request);
        reply = replyBytes(isThenable(answer) ? await answer : answer, "The handler");
      } catch (err) {
        headers = {
          [ERROR_HEADER]: err instanceof Error ? err.message : String(err),
          [ERROR_CODE_HEADER]: errorCode(err),
        };
      }
      if (request.reply !== undefined) {
        const replyOptions: PublishOptions = headers === undefined ? {} : { headers };
        const sent = pubsub.publish(request.reply, reply, replyOptions);
        if (sent !== RESOLVED) await sent.catch(() => {});
      }
    }
  })().catch(() => {}); // the subscription ended with an error: nothing more to answer
  return sub;
}

/**
 * A pub/sub hub in one process. Topics are dot-separated tokens; patterns add `*` (one token)
 * and `>` (one or more trailing tokens). Each subscription has a bounded buffer and an
 * overflow policy; messages from one publisher reach each subscription in publish order.
 *
 * @example Publish, subscribe, request
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * const sub = hub.subscribe("sensors.>", { buffer: 100, overflow: "drop-oldest" });
 * await hub.publish("sensors.kitchen.temp", "21.5");
 * const { value } = await sub.next();
 * assert.equal(value?.topic, "sensors.kitchen.temp");
 * assert.equal(new TextDecoder().decode(value?.data), "21.5");
 *
 * hub.handle("math.double", (m) => String(Number(new TextDecoder().decode(m.data)) * 2));
 * const reply = await hub.request("math.double", "21");
 * assert.equal(new TextDecoder().decode(reply.data), "42");
 * ```
 */
export class Hub implements PubSub, StoredStreams {
  readonly #trie = new TopicTrie<Target>();
  #routes = new Map<string, Route>();
  readonly #topics = new Map<string, TopicCounters>();
  readonly #groups = new Map<string, QueueGroup>();
  readonly #subscriptions = new Set<HubSubscription>();
  readonly #inboxes = new Map<string, (reply: Message | IpcError) => void>();
  readonly #inboxPrefix = `${INBOX}${++hubs}${Math.random().toString(36).slice(2, 10)}.`;
  #nextInbox = 0;
  #nextId = 0;
  #seq = 0;
  #closed = false;
  /** The store, once open; `#storeOpening` is set when the hub was given one. */
  #store: StreamStore | undefined;
  readonly #storeOpening: Promise<StreamStore> | undefined;
  /** Publishes waiting for their store, in publish order: later ones are delivered after them. */
  readonly #inOrder: InOrder[] = [];
  #delivering = false;
  /** Who hears of changes to the streams: served connections. */
  readonly #watchers = new Set<StreamsListener>();
  /** Times sampled messages from publish to delivery. */
  readonly #probe = new DeliveryProbe();
  /** Times requests made of this hub until their reply. */
  readonly #requestLatency = new Histogram();
  /** The hub's own callers, as a publisher. */
  readonly #self: Publisher;
  /** Delayed messages waiting for their time. */
  readonly #schedule: Schedule;
  /** The rate limits: global, then by topic pattern. */
  #global: Limiter | undefined;
  readonly #topicLimits = new Map<string, Limiter>();
  /** Whether there is any limit: a publish looks no further when there is none. */
  #limited = false;
  /**
   * Ordered subscriptions open: while there is one, messages carry their numbering (`topicSeq`,
   * `publisher`, `pubSeq`); without, they are smaller and publishing costs less.
   */
  #ordered = 0;
  /** Publishes held back by a `"wait"` limit, on one timer. */
  readonly #held = new Deadlines();
  readonly #holding = new Set<Held>();
  /** Hears of ordered subscriptions' gaps and out-of-order messages. */
  readonly #onOrder: OrderListener = (topic, kind) => {
    const counters = this.#topics.get(topic) ?? this.#topics.get(OTHER_TOPICS);
    if (counters !== undefined) counters[kind === "gap" ? "gaps" : "outOfOrder"]++;
  };

  /**
   * A hub, with a store of streams when `options.store` names a directory.
   *
   * @throws {TypeError} If `store` is not a non-empty path.
   */
  constructor(options: HubOptions = {}) {
    const { store, repair, maxScheduled = 1_000_000 } = options;
    if (!Number.isSafeInteger(maxScheduled) || maxScheduled < 0) {
      throw invalid("make a hub", "maxScheduled", maxScheduled, "a whole number from 0");
    }
    this.#self = new Publisher(0, "this hub's own callers", maxScheduled, "maxScheduled");
    this.#schedule = new Schedule((m) => this.#sendLater(m), maxScheduled, "maxScheduled");
    if (options.limits !== undefined) this.setLimits(options.limits);
    if (store === undefined) return;
    if (repair !== undefined && repair !== "truncate") {
      throw new RangeError(`Cannot make a hub as repair must be "truncate": got ${repair}`);
    }
    if (typeof store !== "string" || store === "") {
      throw new TypeError(`Cannot make a hub as store must be a directory's path: got ${store}`);
    }
    this.#storeOpening = StreamStore.open(store, this.#deadLetter, repair === "truncate").then(
      (opened) => {
        if (this.#closed) return opened.close().then(() => opened);
        return this.#store = opened;
      },
    );
    this.#storeOpening.catch(() => {}); // reported by each call that needs the store
  }

  /**
   * Publishes a message to every subscription whose pattern matches `topic`, and to one
   * member of each matching queue group.
   *
   * @param topic Dot-separated tokens, no wildcards.
   * @param data The payload; a string is sent as its UTF-8 bytes.
   * @param options Headers, a key for queue groups, a reply topic, an id for deduplication, a
   * delay or time to deliver it (`delay`, `notBefore`), a priority.
   * @returns Resolves once every matching subscription has taken the message according to its
   * policy: at once, unless a `"block"` subscription is full or a `"wait"` rate limit holds it
   * back. A delayed message: once it waits for its time. For a topic a stream stores, once it is
   * stored too, with its {@linkcode PublishAck}.
   * @throws {IpcError} `ETOPICINVALID` for a bad topic, `ECLOSED` after `close()` (as a rejection);
   * `EINVAL` for a bad `delay`, `notBefore` or `priority`, `ELIMIT` past `maxScheduled` waiting
   * messages, `ERATELIMIT` from a `"reject"` limit; for a stream's topic `EFRAMETOOLARGE` past its
   * `maxMessageSize`, and the log's errors (`ENOSPC`, `EIO`).
   */
  publish(
    topic: string,
    data: Uint8Array | string,
    options?: PublishOptions,
  ): Promise<PublishAck | void> {
    try {
      const bytes = typeof data === "string" ? utf8.encode(data) : data;
      if (!(bytes instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot publish as data is not a Uint8Array or a string: current type is ${typeof data}`,
        );
      }
      const message = unsequenced(topic, bytes, headersOf(options), options?.key, options?.reply);
      if (this.#limited || this.#ordered > 0) return this.#admit(message, this.#self);
      this.#self.seq++;
      return this.#publishOrStore(message, this.#self);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Numbers `message` as its publisher's next, and lets it through the rate limits: at once,
   * after a wait, or not at all (`ERATELIMIT`).
   */
  #admit(message: Message, publisher: Publisher): Promise<PublishAck | void> {
    const pubSeq = ++publisher.seq;
    if (this.#ordered > 0) {
      const numbered = message as Numbering;
      numbered.publisher = publisher.id;
      numbered.pubSeq = pubSeq;
    }
    if (this.#limited) {
      try {
        if (this.#closed) throw closedError("publish", "hub");
        const limits = this.#route(message.topic).limits;
        const wait = limits === undefined ? 0 : admitAll(limits, "publish");
        if (wait > 0) return this.#hold(wait, () => this.#publishOrStore(message, publisher));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.#publishOrStore(message, publisher);
  }

  /** Runs `go` after `ms`, on the hub's one timer for held publishes; `ECLOSED` if it closes first. */
  #hold<T>(ms: number, go: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const held: Held = {
        deadline: Date.now() + ms,
        expire: () => {
          this.#holding.delete(held);
          go().then(resolve, reject);
        },
        fail: (error) => {
          this.#holding.delete(held);
          reject(error);
        },
      };
      this.#holding.add(held);
      this.#held.add(held);
    });
  }

  /**
   * Publishes `message`, stored first when a stream takes its topic. Deliveries keep publish
   * order: while a publish waits for its store, later ones (stored or not) are delivered after
   * it, though they are stored meanwhile (sharing its sync).
   */
  #publishOrStore(message: Message, publisher: Publisher): Promise<PublishAck | void> {
    if (this.#storeOpening !== undefined) {
      const store = this.#store;
      if (
        store === undefined || this.#inOrder.length > 0 ||
        (!store.empty && store.streamFor(message.topic) !== undefined)
      ) {
        return this.#storeThenPublish(message, publisher);
      }
    }
    return this.#publish(message, publisher, false);
  }

  #storeThenPublish(message: Message, publisher: Publisher): Promise<PublishAck | void> {
    if (this.#closed) return Promise.reject(closedError("publish", "hub"));
    const entry: InOrder = {
      message,
      publisher,
      settled: false,
      failed: false,
      outcome: undefined,
      done: deferred(),
    };
    this.#inOrder.push(entry);
    this.#storeOf(message).then((ack) => {
      entry.outcome = ack;
      entry.settled = true;
      void this.#deliverInOrder();
    }, (err) => {
      entry.outcome = err;
      entry.failed = entry.settled = true;
      void this.#deliverInOrder();
    });
    return entry.done.promise;
  }

  /**
   * Delivers, from the oldest, every publish whose store has settled, and settles each: all that
   * are ready at once, so that their publishers go on together (and their next stores share a
   * sync).
   */
  async #deliverInOrder(): Promise<void> {
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      const queue = this.#inOrder;
      while (queue.length > 0 && queue[0]!.settled) {
        const e = queue.shift()!;
        if (e.failed) {
          e.done.reject(e.outcome);
          continue;
        }
        const ack = e.outcome as PublishAck | undefined;
        // A duplicate was delivered when it was first stored.
        if (ack === undefined || !ack.duplicate) {
          const delivered = this.#publish(e.message, e.publisher, ack !== undefined);
          if (delivered !== RESOLVED) {
            try {
              await delivered;
            } catch (err) {
              e.done.reject(err);
              continue;
            }
          }
        }
        e.done.resolve(ack);
      }
    } finally {
      this.#delivering = false;
    }
  }

  /** Publishes what a consumer gave up on to its dead letter topic, headers saying why. */
  readonly #deadLetter: DeadLetterSink = (message, consumer, attempts, reason) => {
    const { stream, consumer: name, seq, topic, attempts: tries, reason: why } =
      DEAD_LETTER_HEADERS;
    const headers = {
      ...message.headers,
      [stream]: message.stream,
      [name]: consumer.name,
      [seq]: String(message.seq),
      [topic]: message.topic,
      [tries]: String(attempts),
      [why]: reason,
      // Published again after a failure or a crash, a dead letter is stored once.
      [MSG_ID_HEADER]: `dead.${message.stream}.${consumer.name}.${message.seq}`,
    };
    return this.#publishOrStore(
      unsequenced(consumer.deadLetter, message.data, headers, message.key, undefined),
      this.#self,
    );
  };

  /** Stores `message` in the stream its topic belongs to; `undefined` when none does. */
  async #storeOf(message: Message): Promise<PublishAck | undefined> {
    validateTopic(message.topic);
    const stream = (await this.#openStore("publish")).streamFor(message.topic);
    return stream?.store(message, message.headers[MSG_ID_HEADER] ?? "");
  }

  /** The store, once open; `ENOENT` for a hub made without one. */
  async #openStore(op: string): Promise<StreamStore> {
    if (this.#closed) throw closedError(op, "hub");
    if (this.#storeOpening === undefined) {
      throw new IpcError(
        "ENOENT",
        `Cannot ${op} as this hub has no store: make it with new Hub({ store: dir })`,
        { op },
      );
    }
    return this.#store ?? await this.#storeOpening;
  }

  /**
   * Adds a stream: from now on, every message published to a topic its `subjects` match is
   * stored before `publish()` resolves, with a {@linkcode PublishAck}.
   *
   * @throws {IpcError} `EEXIST` for a name in use or subjects that overlap another stream's,
   * `ENOENT` for a hub without a store, and the log's errors (`ENOSPC`, `EIO`).
   * @throws {TypeError} For a bad name or subjects; {RangeError} for a bad limit.
   *
   * @example A stream of orders
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Hub } from "@dockipc/dockipc/hub";
   *
   * const store = mkdtempSync(`${tmpdir()}/store-`);
   * {
   *   await using hub = new Hub({ store });
   *   await hub.addStream({ name: "orders", subjects: ["orders.>"], maxMessages: 1000 });
   *   const ack = await hub.publish("orders.eu", "order 1", { id: "o-1" });
   *   assert.deepEqual(ack, { stream: "orders", seq: 1, duplicate: false, durability: "always" });
   *   assert.equal((await hub.publish("orders.eu", "order 1", { id: "o-1" }))?.duplicate, true);
   * }
   * // After a restart the messages are there, and so is the duplicate window.
   * await using hub = new Hub({ store });
   * for await (const m of hub.readStream("orders")) assert.equal(m.id, "o-1");
   * assert.equal((await hub.publish("orders.eu", "order 1", { id: "o-1" }))?.duplicate, true);
   * ```
   */
  async addStream(config: StreamConfig): Promise<StreamInfo> {
    const stream = await (await this.#openStore("add a stream")).put(config, false);
    this.#streamsChanged();
    return stream.info();
  }

  /** Changes a stream's settings (not its durability); new limits apply at once. */
  async updateStream(config: StreamConfig): Promise<StreamInfo> {
    const stream = await (await this.#openStore("update a stream")).put(config, true);
    this.#streamsChanged();
    await stream.applyLimits();
    return stream.info();
  }

  /** Removes a stream and every message in it; `ENOENT` when there is none of that name. */
  async deleteStream(name: string): Promise<void> {
    await (await this.#openStore("delete a stream")).remove(name);
    this.#streamsChanged();
  }

  /** Removes every message of a stream; its sequence numbers go on from where they were. */
  async purge(name: string): Promise<StreamInfo> {
    const stream = (await this.#openStore("purge a stream")).get(name, "purge the stream");
    await stream.purge();
    return stream.info();
  }

  /** A stream's settings and state; `ENOENT` when there is none of that name. */
  async streamInfo(name: string): Promise<StreamInfo> {
    return (await this.#openStore("look at a stream")).get(name, "look at the stream").info();
  }

  /** Every stream's settings and state, by name. */
  async streams(): Promise<StreamInfo[]> {
    return (await this.#openStore("list the streams")).all().map((s) => s.info());
  }

  /**
   * The messages a stream holds, in order, each with its stream sequence (`seq`), time and id:
   * from `from` or from the first stored `since` a time (its first, by default) to `to` (its
   * last as the read begins).
   */
  async *readStream(
    name: string,
    options: ReadStreamOptions = {},
  ): AsyncGenerator<StoredMessage, void, void> {
    const stream = (await this.#openStore("read a stream")).get(name, "read the stream");
    yield* stream.messages(options);
  }

  /**
   * Reads a stream through a consumer: a durable one (made with these settings, or joined: its
   * readers share its messages) or an ephemeral one. Each message must be acknowledged
   * (`ack()`), or it is delivered again after `ackWait`, and after `maxDeliver` attempts it goes
   * to `deadLetter`. A durable consumer's position is stored: after a restart it goes on where
   * it was, and what was not acknowledged is delivered again.
   *
   * @param stream The stream's name.
   * @param options The consumer's name and settings, and this reader's buffer.
   * @returns The reader, once its consumer is ready.
   * @throws {IpcError} `ENOENT` for an unknown stream or a hub without a store, `EEXIST` for a
   * durable that exists with another filter or dead letter topic, or a work queue's consumer
   * whose filter overlaps another's.
   * @throws {TypeError} For a bad name or filter; {RangeError} for a bad limit or `deliver`.
   *
   * @example Redelivery, then a dead letter
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Hub } from "@dockipc/dockipc/hub";
   *
   * await using hub = new Hub({ store: mkdtempSync(`${tmpdir()}/store-`) });
   * await hub.addStream({ name: "mail", subjects: ["mail.>"] });
   * const dead = hub.subscribe("mail.dead");
   * await hub.publish("mail.send", "to: nobody");
   * await using sender = await hub.consume("mail", {
   *   durable: "sender",
   *   maxDeliver: 2,
   *   deadLetter: "mail.dead",
   * });
   * for await (const m of sender) {
   *   await m.nak(); // failed: try again
   *   if (m.attempt === 2) break;
   * }
   * const { value } = await dead.next();
   * assert.equal(value?.headers["dockipc-dead-reason"], "maxDeliver");
   * assert.equal(value?.headers["dockipc-dead-attempts"], "2");
   * ```
   */
  async consume(stream: string, options: ConsumeOptions = {}): Promise<Consumer> {
    options.signal?.throwIfAborted();
    const buffer = readerBuffer(options);
    const { consumer, left } = await this.#consumer(stream, options);
    return readLocally(
      consumer,
      { buffer, ordered: consumer.config.ordered, signal: options.signal },
      left,
    );
  }

  /** The consumer `consume()` makes or joins, and what to call once its reader leaves. */
  async #consumer(stream: string, options: ConsumeOptions): Promise<ServedConsumer> {
    const store = await this.#openStore("consume a stream");
    const consumer = await store.consumer(stream, options);
    return { consumer, left: () => store.dropEphemeral(consumer) };
  }

  /** A consumer's settings and state; `ENOENT` for an unknown stream or consumer. */
  async consumerInfo(stream: string, consumer: string): Promise<ConsumerInfo> {
    const store = await this.#openStore("look at a consumer");
    return store.getConsumer(stream, consumer, "look at the consumer").info();
  }

  /** The consumers of a stream, by name; `ENOENT` for an unknown stream. */
  async consumers(stream: string): Promise<ConsumerInfo[]> {
    const store = await this.#openStore("list the consumers");
    return store.consumersOf(stream, "list the consumers").map((c) => c.info());
  }

  /**
   * Removes a consumer: its readers end with `ENOENT`, and a durable one's stored position is
   * deleted. `ENOENT` for an unknown stream or consumer.
   */
  async deleteConsumer(stream: string, consumer: string): Promise<void> {
    await (await this.#openStore("delete a consumer")).removeConsumer(stream, consumer);
  }

  /** Tells the watchers which streams there are now. */
  #streamsChanged(): void {
    if (this.#store === undefined || this.#watchers.size === 0) return;
    const streams = this.#summaries();
    for (const watcher of this.#watchers) watcher(streams);
  }

  /** What a served connection is told of the streams: see {@linkcode StreamSummary}. */
  #summaries(): StreamSummary[] {
    return (this.#store?.all() ?? []).map(({ config: { name, subjects, durability } }) => ({
      name,
      subjects,
      durability,
    }));
  }

  static {
    publishOn = (hub, message, publisher) => hub.#admit(message, publisher ?? hub.#self);
    consumerOn = (hub, stream, options) => hub.#consumer(stream, options);
    watchOn = (hub, listener) => {
      hub.#watchers.add(listener);
      if (hub.#storeOpening === undefined) listener([]);
      else {
        // Only the new watcher is told: the others know already.
        hub.#storeOpening.then(() => {
          if (hub.#watchers.has(listener)) listener(hub.#summaries());
        }, () => listener([]));
      }
      return () => void hub.#watchers.delete(listener);
    };
    subscribeOn = (hub, pattern, options) => hub.#subscribe(pattern, options);
  }

  /**
   * Publishes `message` now, or schedules it when it is due later (`stored` when a stream holds
   * it, so that a close does not lose it).
   */
  /**
   * Delivers `message`, its `seq` and `topicSeq` (0) set here; or, unless it is `due` already,
   * schedules it when it is due later (`stored` when a stream holds it, so that a close does not
   * lose it).
   */
  #publish(message: Message, publisher: Publisher, stored: boolean, due = false): Promise<void> {
    try {
      if (this.#closed) throw closedError("publish", "hub");
      if (message.headers !== NO_HEADERS && !due && this.#later(message, publisher, stored)) {
        return RESOLVED;
      }
      const numbered = message as Numbering;
      const seq = numbered.seq = ++this.#seq;
      if (message.topic.startsWith(this.#inboxPrefix)) {
        this.#inboxes.get(message.topic)?.(message);
        return RESOLVED;
      }
      const route = this.#route(message.topic);
      // The topic's sequence is its count of messages published, which `#deliver` raises.
      if (this.#ordered > 0) numbered.topicSeq = route.counters.published + 1;
      // One message in 64 is timed. The sequence is at hand: testing it costs the others least.
      if ((seq & 63) === 0) this.#time(route, message);
      const delivered = this.#deliver(route, message);
      if (route.limits !== undefined) adapt(route.limits, delivered !== RESOLVED);
      return delivered;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Schedules `message` if it is due later: whether it did. */
  #later(message: Message, publisher: Publisher, stored: boolean): boolean {
    const due = notBeforeOf(message);
    if (due === undefined || due <= Date.now()) return false;
    const id = stored ? undefined : message.headers[MSG_ID_HEADER];
    this.#schedule.add(message, due, publisher, id, stored);
    return true;
  }

  /** Delivers a delayed message that is due: whoever published it heard of it when it was taken. */
  #sendLater(message: Message): void {
    if (this.#closed) return;
    this.#publish(message, this.#self, false, true).catch(() => {});
  }

  /**
   * Cancels a delayed message of a plain topic (one no stream stores) that is still waiting,
   * by the `id` it was published with.
   *
   * @returns Whether there was one to cancel.
   *
   * @example Cancel a reminder
   * ```ts
   * import assert from "node:assert/strict";
   * import { Hub } from "@dockipc/dockipc/hub";
   *
   * await using hub = new Hub();
   * await hub.publish("reminders", "stand up", { delay: 60_000, id: "r-1" });
   * assert.equal(hub.stats().scheduled.waiting, 1);
   * assert.equal(hub.cancel("r-1"), true);
   * assert.equal(hub.stats().scheduled.waiting, 0);
   * ```
   */
  cancel(id: string): boolean {
    return this.#schedule.cancel(id);
  }

  /**
   * Sets the hub's rate limits from now on, replacing the ones it had: `global` for every
   * message, `topics` for the topics each pattern matches. A limit that stays (same name) keeps
   * its counters and what it saved up; a publish held back by a `"wait"` limit still goes when
   * its time comes.
   *
   * @throws {IpcError} `EINVAL` for a bad limit (naming it), `ETOPICINVALID` for a bad pattern.
   *
   * @example Refuse a flood
   * ```ts
   * import assert from "node:assert/strict";
   * import { IpcError } from "@dockipc/dockipc";
   * import { Hub } from "@dockipc/dockipc/hub";
   *
   * await using hub = new Hub();
   * hub.setLimits({ topics: { "logs.>": { rate: 1, burst: 2, policy: "reject" } } });
   * await hub.publish("logs.app", "one");
   * await hub.publish("logs.app", "two");
   * await assert.rejects(
   *   hub.publish("logs.app", "three"),
   *   (err) => err instanceof IpcError && err.code === "ERATELIMIT",
   * );
   * assert.equal(hub.stats().limits[0]?.rejected, 1);
   * ```
   */
  setLimits(limits: HubLimits): void {
    if (typeof limits !== "object" || limits === null) {
      throw invalid("set the limits", "limits", limits, "an object { global?, topics? }");
    }
    const op = "set the limits";
    const global = limits.global === undefined
      ? undefined
      : checkRateLimit(op, "global", limits.global);
    const topics = Object.entries(limits.topics ?? {}).map(([pattern, limit]) => {
      validatePattern(pattern);
      return [pattern, checkRateLimit(op, `topics["${pattern}"]`, limit)] as const;
    });
    if (global === undefined) this.#global = undefined;
    else if (this.#global === undefined) this.#global = new Limiter("global", global);
    else this.#global.set(global);
    const kept = new Set(topics.map(([pattern]) => pattern));
    for (const pattern of this.#topicLimits.keys()) {
      if (!kept.has(pattern)) this.#topicLimits.delete(pattern);
    }
    for (const [pattern, limit] of topics) {
      const limiter = this.#topicLimits.get(pattern);
      if (limiter === undefined) {
        this.#topicLimits.set(pattern, new Limiter(`topic ${pattern}`, limit));
      } else limiter.set(limit);
    }
    this.#limited = this.#global !== undefined || this.#topicLimits.size > 0;
    this.#routes.clear();
  }

  /**
   * Subscribes to every topic `pattern` matches.
   *
   * @param pattern Tokens, `*` for one token, `>` for one or more trailing tokens.
   * @param options Buffer bounds, overflow policy, queue group, abort signal.
   * @returns The subscription, to read with `for await` or through `readable`.
   * @throws {IpcError} `ETOPICINVALID` for a bad pattern; `ECLOSED` after `close()`.
   * @throws {RangeError} For a bad buffer bound or policy.
   */
  subscribe(pattern: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe(pattern, options);
  }

  #subscribe(pattern: string, options: SubscribeOptions): HubSubscription {
    if (this.#closed) throw closedError("subscribe", "hub");
    validatePattern(pattern);
    const sub = new HubSubscription(
      ++this.#nextId,
      pattern,
      options,
      (s) => this.#detach(s),
      undefined,
      this.#onOrder,
    );
    this.#subscriptions.add(sub);
    if (sub.ordered) this.#ordered++;
    if (options.queue === undefined) {
      this.#trie.insert(pattern, sub);
    } else {
      const name = `${options.queue}\u0000${pattern}`;
      let group = this.#groups.get(name);
      if (group === undefined) {
        this.#groups.set(name, group = new QueueGroup());
        this.#trie.insert(pattern, group);
      }
      group.add(sub);
    }
    this.#routes.clear();
    const { signal } = options;
    if (signal !== undefined) {
      if (signal.aborted) sub.unsubscribe();
      else signal.addEventListener("abort", () => sub.unsubscribe(), { once: true });
    }
    return sub;
  }

  /**
   * Publishes a request and resolves with the first reply, through a reply topic private to
   * this call. With no subscriber on `topic` it rejects at once with `ENORESPONDERS`.
   *
   * @param topic Where the handlers listen.
   * @param data The request's payload.
   * @param options Headers, a key, a signal and a timeout.
   * @returns The reply.
   * @throws {IpcError} `ENORESPONDERS`, `ETIMEDOUT`, `ECLOSED`; a `RemoteError` (`EREMOTE`)
   * when the handler threw.
   */
  request(
    topic: string,
    data: Uint8Array | string,
    options: RequestOptions = {},
  ): Promise<Message> {
    const { signal, timeout = DEFAULT_REQUEST_TIMEOUT } = options;
    try {
      signal?.throwIfAborted();
      if (this.#closed) throw closedError("request", "hub");
      const route = this.#route(topic);
      if (!route.targets.some((t) => !(t instanceof QueueGroup) || t.members.length > 0)) {
        throw new IpcError(
          "ENORESPONDERS",
          `Cannot request "${topic}" as nothing subscribes to it`,
          {
            op: "request",
          },
        );
      }
    } catch (err) {
      return Promise.reject(err);
    }
    const inbox = `${this.#inboxPrefix}${++this.#nextInbox}`;
    const start = performance.now();
    return awaitReply(topic, timeout, timeout, signal, (settle) => {
      this.#inboxes.set(inbox, (reply) => {
        if (reply instanceof IpcError) return settle(reply);
        const failure = reply.headers[ERROR_HEADER];
        this.#requestLatency.observe(performance.now() - start);
        if (failure === undefined) settle(undefined, reply);
        else {
          settle(
            new RemoteError(
              reply.headers[ERROR_CODE_HEADER] ?? "Error",
              `Request "${topic}" failed in its handler: ${failure}`,
              { op: "request" },
            ),
          );
        }
      });
      const publishOptions: PublishOptions = { reply: inbox };
      if (options.headers !== undefined) publishOptions.headers = options.headers;
      if (options.key !== undefined) publishOptions.key = options.key;
      this.publish(topic, data, publishOptions).catch((err) => settle(err));
      return () => this.#inboxes.delete(inbox);
    });
  }

  /**
   * Answers requests on `pattern` with `handler`, one at a time, in arrival order. What the
   * handler returns is the reply; if it throws, the requester's `request()` rejects with
   * `EREMOTE` and the error's message. Messages without a reply topic are handled too.
   *
   * @param pattern The requests to answer.
   * @param handler Makes each reply.
   * @param options A queue group, and how many requests may wait.
   * @returns The subscription behind it: unsubscribe it to stop.
   */
  handle(pattern: string, handler: Handler, options: HandleOptions = {}): Subscription {
    return handleWith(this, pattern, handler, options);
  }

  /** A snapshot of the counters per topic and per subscription. */
  stats(): HubStats {
    return {
      topics: [...this.#topics.values()].map((c) => ({ ...c })),
      subscriptions: [...this.#subscriptions].map((s) => s.stats()),
      requests: this.#inboxes.size,
      streams: this.#store?.all().map((s) => s.stats()) ?? [],
      consumers: this.#store?.allConsumers().map((c) => c.info()) ?? [],
      latency: {
        delivery: this.#probe.histogram.snapshot(),
        request: this.#requestLatency.snapshot(),
      },
      limits: [
        ...(this.#global === undefined ? [] : [this.#global.stats()]),
        ...[...this.#topicLimits.values()].map((l) => l.stats()),
      ],
      scheduled: this.#schedule.stats(),
    };
  }

  /**
   * Closes the hub, losing nothing it accepted without saying so: every subscription stops
   * receiving, and its readers can still take what it holds (a resolved `publish()` is there),
   * after which it ends. Pending requests, and publishes a `"wait"` limit holds back, reject
   * with `ECLOSED`, and so do later calls. Delayed messages of plain topics that are not due yet
   * cannot be delivered: it rejects with `ECLOSED` saying how many there were, once closed
   * (delayed messages a stream stored are kept in it). `[Symbol.asyncDispose]` does the same.
   */
  close(): Promise<void> {
    const lost = this.#close((sub) => sub[STOP]());
    const closing = this.#closeStore();
    if (lost === 0) return closing;
    return closing.then(() => {
      throw new IpcError(
        "ECLOSED",
        `Closed the hub with ${lost} delayed message${lost === 1 ? "" : "s"} not yet due: ` +
          "they were not delivered (publish delayed messages to a stream's topic to keep them " +
          "across a close, or cancel them first)",
        { op: "close" },
      );
    });
  }

  /** Closes the hub and discards what subscriptions hold, and delayed messages: they end at once. */
  abort(): void {
    this.#close((sub) => sub.unsubscribe());
    void this.#closeStore().catch(() => {});
  }

  /** Closes the store's logs, once what they stored is synced. */
  #closeStore(): Promise<void> {
    if (this.#storeOpening === undefined) return RESOLVED;
    return this.#storeOpening.then((store) => store.close(), () => {});
  }

  /** The same as {@linkcode Hub.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Closes; how many delayed messages of plain topics were waiting. */
  #close(end: (sub: HubSubscription) => void): number {
    if (this.#closed) return 0;
    this.#closed = true;
    for (const sub of [...this.#subscriptions]) end(sub);
    for (const deliver of [...this.#inboxes.values()]) deliver(closedError("request", "hub"));
    this.#held.clear();
    for (const held of [...this.#holding]) held.fail(closedError("publish", "hub"));
    return this.#schedule.clear();
  }

  #route(topic: string): Route {
    let route = this.#routes.get(topic);
    if (route === undefined) {
      const targets = this.#trie.match(topic);
      let counters = this.#topics.get(topic);
      if (counters === undefined) {
        const name = this.#topics.size < MAX_TOPIC_STATS ? topic : OTHER_TOPICS;
        counters = this.#topics.get(name) ??
          { topic: name, published: 0, bytes: 0, routed: 0, gaps: 0, outOfOrder: 0 };
        this.#topics.set(name, counters);
      }
      if (this.#routes.size >= MAX_ROUTES) this.#routes = new Map();
      this.#routes.set(topic, route = { targets, counters, limits: this.#limitsOf(topic) });
    }
    return route;
  }

  /** The rate limits a message to `topic` passes: global first, then each matching pattern's. */
  #limitsOf(topic: string): Limiter[] | undefined {
    const limits: Limiter[] = [];
    if (this.#global !== undefined) limits.push(this.#global);
    for (const [pattern, limiter] of this.#topicLimits) {
      if (topicMatches(pattern, topic)) limits.push(limiter);
    }
    return limits.length === 0 ? undefined : limits;
  }

  #deliver(route: Route, message: Message): Promise<void> {
    const counters = route.counters;
    counters.published++;
    counters.bytes += message.data.length;
    let waiting: Promise<void>[] | undefined;
    for (const target of route.targets) {
      const sub = target instanceof HubSubscription ? target : target.pick(message.key);
      if (sub === undefined) continue;
      counters.routed++;
      const taken = sub.offer(message);
      if (taken !== undefined) (waiting ??= []).push(taken);
    }
    if (waiting === undefined) return RESOLVED;
    return waiting.length === 1 ? waiting[0]! : Promise.all(waiting).then(() => {});
  }

  /**
   * Times `message`, whose sequence makes it one to time (one in 64), unless another is being
   * timed: the subscriptions that may take it are told before it is offered, as a waiting reader
   * takes it within the offer.
   */
  #time(route: Route, message: Message): void {
    if (route.targets.length === 0 || !this.#probe.start(message)) return;
    for (const target of route.targets) {
      for (const sub of target instanceof HubSubscription ? [target] : target.members) {
        sub.time(message, this.#probe);
      }
    }
  }

  #detach(sub: HubSubscription): void {
    if (!this.#subscriptions.delete(sub)) return;
    if (sub.ordered) this.#ordered--;
    if (sub.queue === undefined) {
      this.#trie.remove(sub.pattern, sub);
    } else {
      const name = `${sub.queue}\u0000${sub.pattern}`;
      const group = this.#groups.get(name);
      group?.remove(sub);
      if (group !== undefined && group.members.length === 0) {
        this.#groups.delete(name);
        this.#trie.remove(sub.pattern, group);
      }
    }
    this.#routes.clear();
  }
}
