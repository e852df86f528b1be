/**
 * Delayed delivery: when a message is due (`delay`, `notBefore`, carried as the header
 * `dockipc-not-before`), and the hub's schedule of messages waiting for their time, all on one
 * timer over a heap. Also who published a message, for the bounds on what one publisher may
 * have waiting.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { Deadlines, type Expiring } from "../internal/async.ts";
import { invalid } from "./limits.ts";
import type { Message } from "./subscription.ts";

/**
 * The header that carries when a delayed message is due, as `Date.now()` milliseconds in
 * decimal: `publish()` sets it from `delay` or `notBefore`, and it stays on the message (and
 * in a stream's record, where it is the stored schedule).
 */
export const NOT_BEFORE_HEADER = "dockipc-not-before";

/** The largest delay, in ms, that `publish()` takes: about 24.8 days (the longest timer). */
export const MAX_DELAY = 2 ** 31 - 1;

/**
 * When a message published with `delay` (ms from now) or `notBefore` (a `Date` or `Date.now()`
 * ms) is due, as `Date.now()` ms; `undefined` when neither is given. A `notBefore` in the past
 * means now.
 * @throws {IpcError} `EINVAL` for a negative, non-finite or too large delay, both options, or a
 * `notBefore` that is not a time.
 */
export function dueOf(
  delay: number | undefined,
  notBefore: Date | number | undefined,
  now: number,
): number | undefined {
  if (delay !== undefined) {
    if (notBefore !== undefined) {
      throw invalid("publish", "delay", delay, "left out when notBefore is given (one or other)");
    }
    if (typeof delay !== "number" || !(delay >= 0) || delay > MAX_DELAY) {
      throw invalid("publish", "delay", delay, `a number of ms from 0 to ${MAX_DELAY}`);
    }
    return now + delay;
  }
  if (notBefore === undefined) return undefined;
  const at = notBefore instanceof Date ? notBefore.getTime() : notBefore;
  if (typeof at !== "number" || !Number.isFinite(at) || at - now > MAX_DELAY) {
    throw invalid(
      "publish",
      "notBefore",
      notBefore,
      `a Date or a Date.now() time at most ${MAX_DELAY} ms from now`,
    );
  }
  return at;
}

/**
 * When `message` is due, from its {@linkcode NOT_BEFORE_HEADER}; `undefined` for a message
 * without one.
 * @throws {IpcError} `EINVAL` for a header that is not a whole number of ms (from a peer, that
 * loses it its connection).
 */
export function notBeforeOf(message: Message): number | undefined {
  const header = message.headers[NOT_BEFORE_HEADER];
  if (header === undefined) return undefined;
  const at = Number(header);
  if (!/^[0-9]{1,16}$/.test(header) || !Number.isSafeInteger(at)) {
    throw invalid("publish", `the header ${NOT_BEFORE_HEADER}`, header, "Date.now() ms in decimal");
  }
  return at;
}

/**
 * Who published a message: the hub's own callers (id 0), or one connection of a served hub. It
 * numbers its messages (`pubSeq`) and bounds the delayed ones it may have waiting.
 */
export class Publisher {
  /** 0 for the hub's own callers; a served connection's id. */
  readonly id: number;
  /** Says who it is in an error: `"this hub's callers"`, `"connection 3"`. */
  readonly name: string;
  /** The option that sets `maxScheduled`, named in the error. */
  readonly option: string;
  /** Delayed messages it may have waiting at most. */
  readonly maxScheduled: number;
  /** Messages it published: the last one's `pubSeq`. */
  seq = 0;
  /** Delayed messages it has waiting. */
  scheduled = 0;

  constructor(id: number, name: string, maxScheduled: number, option: string) {
    this.id = id;
    this.name = name;
    this.maxScheduled = maxScheduled;
    this.option = option;
  }
}

/** A message waiting for its time. */
class Scheduled implements Expiring {
  readonly deadline: number;
  readonly message: Message;
  readonly publisher: Publisher;
  /** Its id, when it can be cancelled by it. */
  readonly id: string | undefined;
  /** A stream stored it: it is not lost when the hub closes before it is due. */
  readonly stored: boolean;
  readonly #due: (entry: Scheduled) => void;

  constructor(
    deadline: number,
    message: Message,
    publisher: Publisher,
    id: string | undefined,
    stored: boolean,
    due: (entry: Scheduled) => void,
  ) {
    this.deadline = deadline;
    this.message = message;
    this.publisher = publisher;
    this.id = id;
    this.stored = stored;
    this.#due = due;
  }

  expire(): void {
    this.#due(this);
  }
}

/** Counters of a hub's schedule, from `hub.stats()`. */
export interface ScheduleStats {
  /** Delayed messages waiting for their time. */
  readonly waiting: number;
  /** Delayed messages delivered when due. */
  readonly delivered: number;
  /** Delayed messages cancelled by id. */
  readonly cancelled: number;
  /** Delayed publishes refused because a bound on waiting messages was reached. */
  readonly refused: number;
}

/**
 * The messages of a hub waiting for their time, on one timer over a heap (see `Deadlines`):
 * each costs O(log n) to add, cancel and deliver, and memory in proportion. Due ones are
 * delivered in due order, equal times in publish order.
 */
export class Schedule {
  readonly #deadlines = new Deadlines();
  /** The waiting messages that were published with an id, by id: for `cancel()`. */
  readonly #byId = new Map<string, Scheduled>();
  readonly #deliver: (message: Message) => void;
  readonly #max: number;
  readonly #maxOption: string;
  /** Waiting messages no stream stored: lost if the hub closes before they are due. */
  #unstored = 0;
  #delivered = 0;
  #cancelled = 0;
  #refused = 0;

  /** Delivers each message with `deliver` when due; holds `max` at most (option `maxOption`). */
  constructor(deliver: (message: Message) => void, max: number, maxOption: string) {
    this.#deliver = deliver;
    this.#max = max;
    this.#maxOption = maxOption;
  }

  /** Messages waiting. */
  get size(): number {
    return this.#deadlines.size;
  }

  /**
   * Schedules `message` for `at` (`Date.now()` ms), cancellable by `id` when given; `stored`
   * when a stream holds it (its consumers have their own schedule: this one is for the hub's
   * subscribers).
   * @throws {IpcError} `ELIMIT` when the hub's or the publisher's bound is reached, `EEXIST`
   * when a message of that id is waiting already.
   */
  add(
    message: Message,
    at: number,
    publisher: Publisher,
    id: string | undefined,
    stored: boolean,
  ): void {
    const bound = this.size >= this.#max
      ? { who: "this hub", max: this.#max, option: this.#maxOption }
      : publisher.scheduled >= publisher.maxScheduled
      ? { who: publisher.name, max: publisher.maxScheduled, option: publisher.option }
      : undefined;
    if (bound !== undefined) {
      this.#refused++;
      throw new IpcError(
        "ELIMIT",
        `Cannot publish a delayed message as ${bound.who} has ${bound.max} waiting already ` +
          `(${bound.option}): wait for some to be delivered, cancel some, or raise ${bound.option}`,
        { op: "publish" },
      );
    }
    if (id !== undefined && this.#byId.has(id)) {
      throw new IpcError(
        "EEXIST",
        `Cannot publish a delayed message with id "${id}" as one with that id is waiting ` +
          "already: cancel it first, or use another id",
        { op: "publish" },
      );
    }
    const entry = new Scheduled(at, message, publisher, id, stored, this.#due);
    publisher.scheduled++;
    if (!stored) this.#unstored++;
    if (id !== undefined) this.#byId.set(id, entry);
    this.#deadlines.add(entry);
  }

  /** Cancels the waiting message published with `id`: false when there is none. */
  cancel(id: string): boolean {
    const entry = this.#byId.get(id);
    if (entry === undefined) return false;
    this.#forget(entry);
    this.#deadlines.delete(entry);
    this.#cancelled++;
    return true;
  }

  /** Its counters. */
  stats(): ScheduleStats {
    return {
      waiting: this.size,
      delivered: this.#delivered,
      cancelled: this.#cancelled,
      refused: this.#refused,
    };
  }

  /** Stops the timer and forgets every waiting message: how many no stream stored. */
  clear(): number {
    const lost = this.#unstored;
    this.#deadlines.clear();
    this.#byId.clear();
    this.#unstored = 0;
    return lost;
  }

  #forget(entry: Scheduled): void {
    entry.publisher.scheduled--;
    if (!entry.stored) this.#unstored--;
    if (entry.id !== undefined) this.#byId.delete(entry.id);
  }

  readonly #due = (entry: Scheduled): void => {
    this.#forget(entry);
    this.#delivered++;
    this.#deliver(entry.message);
  };
}
