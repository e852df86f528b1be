/**
 * A subscription: a bounded buffer of messages with an overflow policy, read as an async
 * iterable or a `ReadableStream`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { checkRateLimit, invalid, Limiter, type LimitStats, type RateLimit } from "./limits.ts";
import type { DeliveryProbe } from "./probe.ts";

/** A published message, as every matching subscription receives it. Shared: do not modify. */
export interface Message {
  /** The topic it was published to. */
  readonly topic: string;
  /** The payload; a string given to `publish()` arrives as its UTF-8 bytes. */
  readonly data: Uint8Array;
  /** Headers given to `publish()`; an empty object when none were. */
  readonly headers: Readonly<Record<string, string>>;
  /** The hub's publish sequence: 1 for the first message it took, then 2, 3, … */
  readonly seq: number;
  /** The key given to `publish()`, which picks the member of a queue group. */
  readonly key?: string | undefined;
  /** The topic to publish a reply to, for a request. */
  readonly reply?: string | undefined;
  /**
   * The hub's sequence of the message within its topic: 1, 2, 3, … per topic (past the first
   * 10,000 topics, the later ones share one sequence, which then skips). Set while the hub has
   * an `ordered` subscription (numbering costs plain publishing nothing otherwise); through a
   * served hub, on the messages of an `ordered` subscription.
   */
  readonly topicSeq?: number;
  /**
   * Who published it: 0 for the hub's own callers, else the id of the served hub's connection it
   * came through. Set as `topicSeq` is.
   */
  readonly publisher?: number;
  /**
   * Its publisher's sequence: 1, 2, 3, … for the messages one publisher published. Set as
   * `topicSeq` is.
   */
  readonly pubSeq?: number;
  /**
   * On the first message an `ordered` subscription gives after it skipped messages: what it
   * skipped. Absent on every other message.
   */
  readonly gap?: Gap;
}

/**
 * Messages an `ordered` subscription skipped before the message that carries this:
 * - `"overflow"`: its overflow policy (`"drop-oldest"`, `"drop-newest"`) or its rate limit
 *   (`"reject"`) dropped `count` messages, the first of them with hub sequence `from`;
 * - `"reconnect"`: its connection to a served hub was lost and made again: whatever was
 *   published meanwhile is missed, how many cannot be known (`count` is `undefined`); `from`
 *   is the sequence after the last message it had (the numbering starts over if the server did).
 *
 * A queue group that gains or loses members skips nothing (a member that leaves takes only
 * what it held), so it makes no gap.
 */
export interface Gap {
  /** What skipped the messages. */
  readonly reason: "overflow" | "reconnect";
  /** How many were skipped; `undefined` when that cannot be known (`"reconnect"`). */
  readonly count: number | undefined;
  /** The hub sequence of the first message skipped (that may have been, for `"reconnect"`). */
  readonly from: number;
}

/**
 * The header that carries a message's priority, 0 (the default, lowest) to 9, in decimal:
 * `publish()` sets it from `priority`. A subscription with a backlog hands out higher
 * priorities first, equal ones in publish order.
 */
export const PRIORITY_HEADER = "dockipc-priority";

/** Priorities run from 0 (the default, lowest) to this. */
export const MAX_PRIORITY = 9;

/** `priority` checked: a whole number from 0 to {@linkcode MAX_PRIORITY}, or `EINVAL`. */
export function checkPriority(priority: unknown): number {
  const p = priority as number;
  if (!Number.isInteger(p) || p < 0 || p > MAX_PRIORITY) {
    throw invalid("publish", "priority", priority, `a whole number from 0 to ${MAX_PRIORITY}`);
  }
  return priority as number;
}

/** A message's priority, from its header: 0 without one (or with one that is not 0 to 9). */
export function priorityOf(message: Message): number {
  if (message.headers === NO_HEADERS) return 0;
  const header = message.headers[PRIORITY_HEADER];
  if (header === undefined || header.length !== 1) return 0;
  const p = header.charCodeAt(0) - 48;
  return p >= 0 && p <= MAX_PRIORITY ? p : 0;
}

/** The headers of a message published without any: one frozen empty object, shared. */
export const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * What a full subscription does with a new message:
 * - `"block"`: the publisher waits until the subscriber has read enough (backpressure);
 * - `"drop-oldest"`: the oldest buffered message is dropped to make room;
 * - `"drop-newest"`: the new message is dropped;
 * - `"error"`: the subscription ends with `IpcError` `ESLOWCONSUMER`.
 */
export type OverflowPolicy = "block" | "drop-oldest" | "drop-newest" | "error";

/** Options of `hub.subscribe()`. */
export interface SubscribeOptions {
  /** How many messages may wait unread. @default {1024} */
  buffer?: number;
  /** How many payload bytes may wait unread; one message is taken whatever its size. @default {Infinity} */
  maxBytes?: number;
  /** What happens when the buffer is full. @default {"block"} */
  overflow?: OverflowPolicy;
  /** Joins a queue group: each message matching `pattern` goes to one member of the group. */
  queue?: string;
  /**
   * Publish order, checked: messages leave in the order they came whatever their priority; the
   * first message after skipped ones carries a {@linkcode Gap}; `stats()` counts gaps and any
   * message out of its topic's order (there should be none). @default {false}
   */
  ordered?: boolean;
  /**
   * Hands messages to the reader at most at this rate. `"wait"`: faster ones wait in the buffer
   * (under its overflow policy); `"reject"`: faster ones are dropped (and counted). In a client
   * of a served hub it applies in the client. Changed later with `setRate()`.
   */
  rate?: RateLimit;
  /** Unsubscribes when aborted. */
  signal?: AbortSignal;
}

/** Counters of one subscription, from `hub.stats()`. */
export interface SubscriptionStats {
  /** The subscription's `id`. */
  readonly id: number;
  /** Its pattern. */
  readonly pattern: string;
  /** Its queue group, if any. */
  readonly queue: string | undefined;
  /** Its overflow policy. */
  readonly overflow: OverflowPolicy;
  /** Messages the subscriber has read. */
  readonly delivered: number;
  /** Payload bytes of those messages. */
  readonly bytes: number;
  /** Messages dropped by the overflow policy. */
  readonly dropped: number;
  /** Messages buffered, not yet read, including publishers waiting under `"block"`. */
  readonly pending: number;
  /** Payload bytes buffered. */
  readonly pendingBytes: number;
  /** Whether it is `ordered`. */
  readonly ordered: boolean;
  /** Gaps it reported (an `ordered` subscription). */
  readonly gaps: number;
  /** Messages delivered out of their topic's order (an `ordered` subscription): always 0. */
  readonly outOfOrder: number;
  /** Its rate limit, if it has one. */
  readonly limit: LimitStats | undefined;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

type Resolve = (result: IteratorResult<Message> | Promise<never>) => void;

interface Waiting {
  message: Message;
  resolve: () => void;
}

/**
 * A `ReadableStream` of what `next()` gives, read only as its reader asks (nothing is taken
 * ahead), that calls `cancel` when cancelled: the `readable` of a subscription or a consumer.
 */
export function pulled<T>(
  next: () => Promise<IteratorResult<T>>,
  cancel: () => unknown,
): ReadableStream<T> {
  return new ReadableStream<T>({
    pull: async (controller) => {
      const result = await next();
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel: async () => void await cancel(),
  }, { highWaterMark: 0 });
}

/** The key of the method that ends a subscription with an error; not exported to users. */
export const END: unique symbol = Symbol("end");
/** The key of the method that takes buffered messages at once; not exported to users. */
export const TAKE: unique symbol = Symbol("take");
/** The key of the method that stops delivery but leaves what is buffered to be read. */
export const STOP: unique symbol = Symbol("stop");
/** The key of the method that reports a reconnection as a gap; not exported to users. */
export const RECONNECTED: unique symbol = Symbol("reconnected");

/**
 * Hears of an `ordered` subscription's gaps (by the topic of the message that reports one) and
 * out-of-order messages, for the hub's stats per topic.
 */
export type OrderListener = (topic: string, kind: "gap" | "outOfOrder") => void;

/** A gap being gathered. */
interface OpenGap {
  reason: "overflow" | "reconnect";
  count: number | undefined;
  from: number;
}

/** Topics whose last sequence an `ordered` subscription remembers, at most; then it starts over. */
const MAX_ORDERED_TOPICS = 10_000;

/**
 * Subscriptions whose waiting reader has messages to take. They are woken together, once the
 * code that published has yielded: a publish then costs one microtask however many readers it
 * reaches, and a reader that wakes finds every message published meanwhile already buffered,
 * which it takes without waiting again.
 */
let toWake: HubSubscription[] = [];
const WAKE: unique symbol = Symbol("wake");

function wakeReaders(): void {
  const subs = toWake;
  toWake = [];
  for (const sub of subs) sub[WAKE]();
}

/**
 * Messages matching a pattern, in publish order, from a bounded buffer.
 *
 * Read it with `for await` (leaving the loop unsubscribes) or through `readable`; use one of
 * the two. `unsubscribe()` stops delivery at once: buffered messages are discarded and
 * publishers waiting on it are released. With the `"error"` policy an overflow ends the
 * subscription with `IpcError` `ESLOWCONSUMER`, which the next read throws.
 *
 * @example Read two messages
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub } from "@dockipc/dockipc/hub";
 *
 * const hub = new Hub();
 * const sub = hub.subscribe("orders.*");
 * await hub.publish("orders.created", "a");
 * await hub.publish("orders.paid", "b");
 * const seen: string[] = [];
 * for await (const message of sub) {
 *   seen.push(message.topic);
 *   if (seen.length === 2) break;
 * }
 * assert.deepEqual(seen, ["orders.created", "orders.paid"]);
 * ```
 */
export interface Subscription extends AsyncIterable<Message>, AsyncDisposable {
  /** A number unique within its hub. */
  readonly id: number;
  /** The pattern it was made with. */
  readonly pattern: string;
  /** Its queue group, if any. */
  readonly queue: string | undefined;
  /** Resolves once it has ended, for whatever reason. Never rejects. */
  readonly closed: Promise<void>;
  /** The messages as a `ReadableStream`; cancelling it unsubscribes. */
  readonly readable: ReadableStream<Message>;
  /** Reads the next message; `{ done: true }` once unsubscribed. */
  next(): Promise<IteratorResult<Message>>;
  /** Iterates over the messages; leaving the loop early unsubscribes. */
  [Symbol.asyncIterator](): AsyncIterator<Message>;
  /** Stops delivery now: buffered messages are discarded, waiting publishers released. */
  unsubscribe(): void;
  /** Its counters. */
  stats(): SubscriptionStats;
  /**
   * Sets its rate limit from now on (see `SubscribeOptions.rate`), or removes it (`undefined`).
   * @throws {IpcError} `EINVAL` for a bad limit.
   */
  setRate(limit: RateLimit | undefined): void;
}

/**
 * The hub's side of a {@linkcode Subscription}: the bounded buffer, the overflow policy, and
 * what the hub, a served hub and a remote hub call on it. Not exported to users.
 */
export class HubSubscription implements Subscription {
  /** A number unique within its hub. */
  readonly id: number;
  /** The pattern it was made with. */
  readonly pattern: string;
  /** Its queue group, if any. */
  readonly queue: string | undefined;
  /** Resolves once it has ended, for whatever reason. Never rejects. */
  readonly closed: Promise<void>;

  readonly #buffer: number;
  readonly #maxBytes: number;
  readonly #overflow: OverflowPolicy;
  readonly #detach: (sub: HubSubscription) => void;
  #resolveClosed!: () => void;
  /**
   * Buffered messages: `#items[#head]` to `#items[#tail - 1]`. The array is kept and refilled
   * from the start whenever it empties, which with readers that keep up is after every message.
   * Its length stays under the larger of `buffer + 1024` and `2 * buffer`.
   */
  #items: (Message | undefined)[] = [];
  #head = 0;
  #tail = 0;
  #pendingBytes = 0;
  /** Publishers waiting under `"block"`, in publish order. */
  #waiting: Waiting[] = [];
  /** A reader waiting for a message: the usual case, kept apart from the rare others. */
  #reader: Resolve | undefined;
  /** Further readers waiting, when `next()` is called again before it settles. */
  #readers: Resolve[] = [];
  #wakeQueued = false;
  #ended = false;
  #error: IpcError | undefined;
  #delivered = 0;
  #bytes = 0;
  #dropped = 0;
  #readable: ReadableStream<Message> | undefined;
  readonly #ordered: boolean;
  readonly #onOrder: OrderListener | undefined;
  /** Messages skipped since the last one buffered: the gap the next one carries (`ordered`). */
  #gap: OpenGap | undefined;
  /** The last `topicSeq` taken, by topic (`ordered`). */
  #topicSeqs: Map<string, number> | undefined;
  #gaps = 0;
  #outOfOrder = 0;
  #limit: Limiter | undefined;
  /** `#limit` when its policy is `"wait"`, and when it is `"reject"`: one test on each path. */
  #pace: Limiter | undefined;
  #reject: Limiter | undefined;
  /** A paced read waiting for its turn: what ends it early. */
  #sleeper: { timer: ReturnType<typeof setTimeout>; wake: () => void } | undefined;

  readonly #onDelivered: (() => void) | undefined;
  /**
   * Runs as each message is handed to the reader: `onDelivered`, and while the hub times a
   * message this subscription holds, the check for it. One optional call either way, so that
   * timing costs the other messages nothing.
   */
  #afterTake: ((message: Message) => void) | undefined;

  /**
   * Made by the hub; `detach` removes it from the hub's routes. `onDelivered` runs as each
   * message is handed to the reader (a remote hub grants credit from it); `onOrder` hears of an
   * `ordered` subscription's gaps and out-of-order messages.
   */
  constructor(
    id: number,
    pattern: string,
    options: SubscribeOptions,
    detach: (sub: HubSubscription) => void,
    onDelivered?: () => void,
    onOrder?: OrderListener,
  ) {
    this.#onDelivered = onDelivered;
    this.#onOrder = onOrder;
    this.#afterTake = onDelivered;
    this.id = id;
    this.pattern = pattern;
    this.queue = options.queue;
    this.#buffer = options.buffer ?? 1024;
    this.#maxBytes = options.maxBytes ?? Infinity;
    this.#overflow = options.overflow ?? "block";
    this.#detach = detach;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    if (!Number.isInteger(this.#buffer) || this.#buffer < 1) {
      throw new RangeError(
        `Cannot subscribe as buffer is not a whole number above 0: current value is ${this.#buffer}`,
      );
    }
    if (!(this.#maxBytes > 0)) {
      throw new RangeError(
        `Cannot subscribe as maxBytes is not above 0: current value is ${this.#maxBytes}`,
      );
    }
    if (!["block", "drop-oldest", "drop-newest", "error"].includes(this.#overflow)) {
      throw new RangeError(
        `Cannot subscribe as overflow is not a known policy: current value is ${this.#overflow}`,
      );
    }
    const ordered = options.ordered ?? false;
    if (typeof ordered !== "boolean") throw invalid("subscribe", "ordered", ordered, "a boolean");
    this.#ordered = ordered;
    if (ordered) this.#topicSeqs = new Map();
    if (options.rate !== undefined) this.setRate(options.rate);
  }

  /** Whether it is `ordered`. */
  get ordered(): boolean {
    return this.#ordered;
  }

  /**
   * Sets its rate limit from now on, or removes it (`undefined`).
   * @throws {IpcError} `EINVAL` for a bad limit.
   */
  setRate(limit: RateLimit | undefined): void {
    if (limit === undefined) {
      this.#limit = this.#pace = this.#reject = undefined;
      return;
    }
    const checked = checkRateLimit("subscribe", "rate", limit);
    if (this.#limit === undefined) this.#limit = new Limiter(`subscription ${this.id}`, checked);
    else this.#limit.set(checked);
    this.#pace = checked.policy === "wait" ? this.#limit : undefined;
    this.#reject = checked.policy === "reject" ? this.#limit : undefined;
  }

  /** The messages as a `ReadableStream`; cancelling it unsubscribes. */
  get readable(): ReadableStream<Message> {
    return this.#readable ??= pulled(() => this.next(), () => this.unsubscribe());
  }

  /** Reads the next message; `{ done: true }` once unsubscribed. */
  next(): Promise<IteratorResult<Message>> {
    if (this.#pace !== undefined) return this.#paced();
    if (this.#head < this.#tail) {
      return Promise.resolve({ done: false, value: this.#take() });
    }
    return this.#next();
  }

  /** The next message, once its rate limit lets it go. */
  async #paced(): Promise<IteratorResult<Message>> {
    const result = await this.#next();
    const wait = result.done ? 0 : this.#pace?.admit("read") ?? 0;
    if (wait > 0) {
      await new Promise<void>((wake) => {
        this.#sleeper = { timer: setTimeout(wake, wait), wake };
      });
      this.#sleeper = undefined;
    }
    return result;
  }

  #next(): Promise<IteratorResult<Message>> {
    if (this.#head < this.#tail) {
      return Promise.resolve({ done: false, value: this.#take() });
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve(DONE);
    return new Promise((resolve) => {
      if (this.#reader === undefined) this.#reader = resolve;
      else this.#readers.push(resolve);
    });
  }

  /** Iterates over the messages; leaving the loop early unsubscribes. */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return {
      next: () => this.next(),
      return: (): Promise<IteratorResult<Message>> => {
        this.unsubscribe();
        return Promise.resolve(DONE);
      },
    };
  }

  /** Stops delivery now: buffered messages are discarded, waiting publishers released. */
  unsubscribe(): void {
    this.#end(undefined);
  }

  /** Unsubscribes, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    this.unsubscribe();
    return this.closed;
  }

  /** Its counters. */
  stats(): SubscriptionStats {
    return {
      id: this.id,
      pattern: this.pattern,
      queue: this.queue,
      overflow: this.#overflow,
      delivered: this.#delivered,
      bytes: this.#bytes,
      dropped: this.#dropped,
      pending: this.#tail - this.#head + this.#waiting.length,
      pendingBytes: this.#pendingBytes,
      ordered: this.#ordered,
      gaps: this.#gaps,
      outOfOrder: this.#outOfOrder,
      limit: this.#limit?.stats(),
    };
  }

  /**
   * Takes a message from the hub: returns undefined once it is buffered (or dropped by the
   * policy), or a promise that resolves once a full `"block"` subscription has taken it.
   * Messages are taken in the order this is called.
   */
  offer(message: Message): Promise<void> | undefined {
    if (this.#ended) return undefined;
    if (this.#reject !== undefined && !this.#reject.tryTake()) {
      this.#drop(message);
      return undefined;
    }
    if (this.#waiting.length === 0 && !this.#full(message)) {
      this.#push(message);
      if (this.#reader !== undefined && !this.#wakeQueued) {
        this.#wakeQueued = true;
        if (toWake.push(this) === 1) queueMicrotask(wakeReaders);
      }
      return undefined;
    }
    switch (this.#overflow) {
      case "block":
        return new Promise((resolve) => this.#waiting.push({ message, resolve }));
      case "drop-newest":
        this.#drop(message);
        return undefined;
      case "drop-oldest":
        while (this.#head < this.#tail && this.#full(message)) {
          const oldest = this.#shift();
          this.#pendingBytes -= oldest.data.length;
          this.#drop(oldest);
        }
        // What was dropped came before what is left: the oldest left carries the gap.
        if (this.#gap !== undefined && this.#head < this.#tail) {
          this.#items[this.#head] = this.#withGap(this.#items[this.#head]!);
        }
        this.#push(message);
        return undefined;
      case "error":
        this.#dropped += this.#tail - this.#head + 1;
        this.#end(
          new IpcError(
            "ESLOWCONSUMER",
            `Cannot deliver to subscription ${this.id} ("${this.pattern}") as its buffer is full: it reads too slowly`,
            { op: "publish" },
          ),
        );
        return undefined;
    }
  }

  /** Hands buffered messages to the readers waiting for them. */
  [WAKE](): void {
    this.#wakeQueued = false;
    while (this.#reader !== undefined && this.#head < this.#tail) {
      const reader = this.#reader;
      this.#reader = this.#readers.length > 0 ? this.#readers.shift() : undefined;
      reader({ done: false, value: this.#take() });
    }
  }

  #full(message: Message): boolean {
    const pending = this.#tail - this.#head;
    return pending >= this.#buffer ||
      (pending > 0 && this.#pendingBytes + message.data.length > this.#maxBytes);
  }

  #push(message: Message): void {
    this.#pendingBytes += message.data.length;
    // A message with headers may have a priority; after a gap it carries the gap.
    if (message.headers !== NO_HEADERS || this.#gap !== undefined) {
      return this.#pushSpecial(message);
    }
    this.#items[this.#tail++] = message;
  }

  /**
   * Buffers a message that carries a gap, or may have a priority: with a backlog, one of some
   * priority goes before those of lower priority (not in an `ordered` subscription).
   */
  #pushSpecial(message: Message): void {
    if (this.#gap !== undefined) message = this.#withGap(message);
    if (this.#tail > this.#head && !this.#ordered) {
      const priority = priorityOf(message);
      if (priority > 0) return this.#insert(message, priority);
    }
    this.#items[this.#tail++] = message;
  }

  /** Puts `message` after the buffered messages of its priority or higher, before the rest. */
  #insert(message: Message, priority: number): void {
    const items = this.#items;
    let at = this.#tail;
    while (at > this.#head && priorityOf(items[at - 1]!) < priority) at--;
    for (let i = this.#tail; i > at; i--) items[i] = items[i - 1];
    items[at] = message;
    this.#tail++;
  }

  /** A message skipped: counted, and in an `ordered` subscription, part of the next gap. */
  #drop(message: Message): void {
    this.#dropped++;
    if (!this.#ordered) return;
    // A message that carried a gap takes it along: that gap joins this one.
    const carried = message.gap;
    const gap = this.#gap ??= { reason: "overflow", count: 0, from: message.seq };
    if (carried?.reason === "reconnect" || gap.count === undefined) {
      gap.reason = "reconnect";
      gap.count = undefined;
    } else gap.count += 1 + (carried?.count ?? 0);
    const from = carried?.from ?? message.seq;
    if (from < gap.from) gap.from = from;
  }

  /** `message` with the gap gathered before it (and any it carried already), which is closed. */
  #withGap(message: Message): Message {
    const open = this.#gap!;
    this.#gap = undefined;
    const carried = message.gap;
    const unknown = open.count === undefined ||
      (carried !== undefined && carried.count === undefined);
    const gap: Gap = {
      reason: unknown ? "reconnect" : open.reason,
      count: unknown ? undefined : open.count! + (carried?.count ?? 0),
      from: Math.min(open.from, carried?.from ?? open.from),
    };
    return { ...message, gap };
  }

  /**
   * The connection to a served hub was made again: the next message carries a `"reconnect"`
   * gap from the sequence after `lastSeq`, and topics' sequences start over.
   */
  [RECONNECTED](lastSeq: number): void {
    if (!this.#ordered) return;
    this.#topicSeqs?.clear();
    this.#gap = { reason: "reconnect", count: undefined, from: lastSeq + 1 };
  }
  #shift(): Message {
    const items = this.#items;
    const message = items[this.#head]!;
    items[this.#head++] = undefined;
    if (this.#head === this.#tail) {
      this.#head = this.#tail = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#tail) {
      // Move the rest to the front once the consumed part is most of it: amortised O(1).
      items.copyWithin(0, this.#head, this.#tail).fill(
        undefined,
        this.#tail - this.#head,
        this.#tail,
      );
      this.#tail -= this.#head;
      this.#head = 0;
    }
    return message;
  }

  #take(): Message {
    const message = this.#shift();
    this.#pendingBytes -= message.data.length;
    this.#count(message);
    // Room was made: let waiting publishers in, oldest first.
    while (this.#waiting.length > 0 && !this.#full(this.#waiting[0]!.message)) {
      const waiting = this.#waiting.shift()!;
      this.#push(waiting.message);
      waiting.resolve();
    }
    return message;
  }

  #count(message: Message): void {
    this.#delivered++;
    this.#bytes += message.data.length;
    if (this.#topicSeqs !== undefined) this.#check(message);
    this.#afterTake?.(message);
  }

  /**
   * An `ordered` subscription counts the gap a message reports, and checks it against the last
   * message of its topic.
   */
  #check(message: Message): void {
    if (message.gap !== undefined) {
      this.#gaps++;
      this.#onOrder?.(message.topic, "gap");
    }
    if (!message.topicSeq) return; // published before the hub numbered messages
    const seqs = this.#topicSeqs!;
    const last = seqs.get(message.topic);
    if (last !== undefined && message.topicSeq! <= last) {
      this.#outOfOrder++;
      this.#onOrder?.(message.topic, "outOfOrder");
    }
    if (last === undefined && seqs.size >= MAX_ORDERED_TOPICS) seqs.clear();
    seqs.set(message.topic, message.topicSeq!);
  }

  /** Tells `probe` when `timed`, about to be offered, is taken (or until another is timed). */
  time(timed: Message, probe: DeliveryProbe): void {
    const onDelivered = this.#onDelivered;
    this.#afterTake = (message) => {
      onDelivered?.();
      if (message !== timed) return;
      this.#afterTake = onDelivered;
      probe.delivered(message);
    };
  }

  /**
   * Takes up to `max` buffered messages without waiting, as `next()` would one by one: for a
   * served hub, which forwards them a batch at a time.
   */
  [TAKE](max: number): Message[] {
    const out: Message[] = [];
    while (out.length < max && this.#head < this.#tail) out.push(this.#take());
    return out;
  }

  /** Ends the subscription with `error`, as the `"error"` policy does: for a remote hub. */
  [END](error: IpcError): void {
    this.#end(error);
  }

  /**
   * Stops delivery, as a hub that closes does: nothing more comes, what is buffered can still
   * be read, and then the subscription ends.
   */
  [STOP](): void {
    this.#end(undefined, true);
  }

  #end(error: IpcError | undefined, keep = false): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    if (keep) {
      // Publishers held back by a full "block" buffer were promised delivery: theirs join it.
      for (const waiting of this.#waiting) this.#push(waiting.message);
    } else {
      this.#items = [];
      this.#head = this.#tail = 0;
      this.#pendingBytes = 0;
    }
    for (const waiting of this.#waiting) waiting.resolve();
    this.#waiting = [];
    // Readers waiting for a wake that is still queued take what is buffered first.
    if (keep) this[WAKE]();
    const readers = this.#reader === undefined ? [] : [this.#reader, ...this.#readers];
    this.#reader = undefined;
    this.#readers = [];
    for (const reader of readers) reader(error === undefined ? DONE : Promise.reject(error));
    if (this.#sleeper !== undefined) {
      clearTimeout(this.#sleeper.timer);
      this.#sleeper.wake();
    }
    this.#detach(this);
    this.#resolveClosed();
  }
}
