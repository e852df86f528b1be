/**
 * The few async helpers dockipc needs (the JSR `@std/async` cannot be installed where this
 * project is built): `delay`, a backoff schedule, `deadline` and `abortable`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { refTimer } from "../runtime/platform.ts";
import { IndexedHeap } from "./heap.ts";

/**
 * Resolves after `ms` milliseconds; rejects with the signal's reason if it aborts first.
 * The timer does not keep the process alive past an abort.
 */
export function delay(ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = later(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The longest delay a timer takes: 2^31 - 1 ms, about 24.8 days. Runtimes fire longer ones at once. */
export const MAX_TIMER = 2 ** 31 - 1;

/** How many holds keep the process alive, and the one timer that does it for all of them. */
let holds = 0;
let holder: ReturnType<typeof setInterval> | undefined;

/**
 * Keeps the process alive until the returned release is called (more calls do nothing), as a
 * socket does on Node and Bun while it is open: for what a runtime would otherwise let the
 * process end under (an idle connection on Deno, a reader waiting for a log's appends). One
 * interval timer stands for every hold.
 */
export function holdProcess(): () => void {
  if (holds++ === 0) holder = setInterval(() => {}, MAX_TIMER);
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    if (--holds === 0) {
      clearInterval(holder);
      holder = undefined;
    }
  };
}

/** Whether `value` is a promise or any other thenable: what `await` would wait for. */
export function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | undefined)?.then === "function";
}

/** `setTimeout`, except that a delay past {@linkcode MAX_TIMER} (`Infinity` too) sets no timer. */
export function later(run: () => void, ms: number): ReturnType<typeof setTimeout> | undefined {
  return ms >= MAX_TIMER ? undefined : setTimeout(run, ms);
}

/**
 * Waits for `promise`, but no longer than `ms`: resolves when it settles (rejecting as it does)
 * or when the time is up, whichever comes first. For bounded waits that go on either way, such
 * as closing.
 */
export async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = later(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The `Date.now()` time `ms` from now, for {@linkcode Expiring}: `Infinity` for a delay past
 * {@linkcode MAX_TIMER}, which means no limit, as for {@linkcode later}.
 */
export function deadlineAfter(ms: number): number {
  return ms >= MAX_TIMER ? Infinity : Date.now() + ms;
}

/** What {@linkcode Deadlines} times out. */
export interface Expiring {
  /** When it times out, as a `Date.now()` time; `Infinity` for never. */
  readonly deadline: number;
  /** Called once, after the deadline, when it has already been taken out of the set. */
  expire(): void;
}

/** Expirations run in one turn at most; the rest run in the next, so that others get a turn. */
const EXPIRE_AT_ONCE = 10_000;

/**
 * The timeouts of many operations on one timer, set for the earliest deadline, over a heap: an
 * operation costs O(log n) to add and to delete, and they expire in deadline order (in the order
 * added among equal deadlines). An operation is added as it starts and deleted as it settles.
 * When none is left the timer stays set but stops keeping the process alive: a run of small
 * requests, one at a time, would otherwise set and clear a timer each (on Deno that cost RPC a
 * fifth of its round trips), where a later request's deadline is usually past the timer's and
 * needs nothing.
 */
export class Deadlines {
  readonly #heap = new IndexedHeap<Expiring>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires; `Infinity` when there is none. */
  #at = Infinity;
  /** The timer keeps the process alive: some operation is waiting for it. */
  #held = false;

  /** Operations waiting for their deadline. */
  get size(): number {
    return this.#heap.size;
  }

  /** Times `item` out at its deadline, unless it is deleted first. Added again, it moves. */
  add(item: Expiring): void {
    if (!(item.deadline < Infinity)) return;
    this.#heap.add(item, item.deadline);
    if (item.deadline < this.#at) this.#arm(item.deadline);
    else if (!this.#held) this.#hold(true);
  }

  /** `item` settled: it no longer times out. */
  delete(item: Expiring): void {
    if (this.#heap.delete(item) && this.#heap.size === 0 && this.#held) this.#hold(false);
  }

  /** Forgets every operation and stops the timer. */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
    this.#held = false;
    this.#heap.clear();
  }

  #hold(keepAlive: boolean): void {
    this.#held = keepAlive;
    if (this.#timer !== undefined) refTimer(this.#timer, keepAlive);
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#at = at;
    // A deadline past the longest timer is looked at again when that timer fires.
    this.#timer = setTimeout(this.#fire, Math.min(MAX_TIMER, Math.max(0, at - Date.now())));
    this.#held = true;
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#at = Infinity;
    this.#held = false;
    const now = Date.now();
    const heap = this.#heap;
    // What an `expire()` adds waits for the next turn, even when it is due already.
    const addedBefore = heap.added;
    for (let n = 0; n < EXPIRE_AT_ONCE; n++) {
      const top = heap.peek();
      if (top === undefined || top.key > now || top.order >= addedBefore) break;
      heap.pop();
      top.value.expire();
    }
    // An `expire()` may have armed the timer already, for an operation it added.
    const next = heap.peek();
    if (next !== undefined && next.key < this.#at) this.#arm(next.key);
    else if (next !== undefined && !this.#held) this.#hold(true);
  };
}

/**
 * Checks a `timeout` option, in ms: a number above 0. `Infinity`, or anything past
 * {@linkcode MAX_TIMER}, means no timeout.
 */
export function checkTimeout(op: string, ms: number): void {
  if (typeof ms !== "number" || !(ms > 0)) {
    throw new RangeError(
      `Cannot ${op} as timeout must be a number of ms above 0 (Infinity for none): got ${ms}`,
    );
  }
}

/** How a retry schedule grows. */
export interface BackoffOptions {
  /** The first delay's upper bound, in ms. @default {100} */
  initialDelay?: number;
  /** No delay exceeds this, in ms. @default {30000} */
  maxDelay?: number;
  /** Each bound is the previous one times this. @default {2} */
  factor?: number;
  /** How many delays the schedule yields before it ends. @default {Infinity} */
  maxAttempts?: number;
  /**
   * `"full"`: each delay is uniformly random between 0 and its bound, so that many clients
   * that lost the same server do not all come back at once. `"none"`: the bound itself.
   * @default {"full"}
   */
  jitter?: "full" | "none";
  /** The source of randomness, for reproducible schedules. @default {Math.random} */
  random?: () => number;
}

/**
 * The delays of an exponential backoff with full jitter: `min(maxDelay, initialDelay *
 * factor ** n)`, times a random number in [0, 1). Ends after `maxAttempts` delays.
 */
export function* backoff(options: BackoffOptions = {}): Generator<number, void, void> {
  const {
    initialDelay = 100,
    maxDelay = 30_000,
    factor = 2,
    maxAttempts = Infinity,
    jitter = "full",
    random = Math.random,
  } = options;
  if (!(initialDelay >= 0) || !(maxDelay >= 0) || !(factor >= 1) || !(maxAttempts >= 0)) {
    throw new RangeError(
      "Cannot make a backoff schedule as initialDelay and maxDelay must be >= 0, factor >= 1 " +
        `and maxAttempts >= 0: current values are ${initialDelay}, ${maxDelay}, ${factor}, ${maxAttempts}`,
    );
  }
  let bound = initialDelay;
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const capped = Math.min(bound, maxDelay);
    yield jitter === "full" ? Math.floor(random() * capped) : capped;
    bound = Math.min(bound * factor, maxDelay);
  }
}

/**
 * Settles like `promise`, unless `ms` pass first (rejects with `ETIMEDOUT`) or the signal aborts
 * (rejects with its reason). `onLate` receives the value if it arrives after that, so that a
 * resource opened too late can be closed rather than leaked.
 */
export function deadline<T>(
  promise: Promise<T>,
  ms: number,
  options: {
    signal?: AbortSignal | undefined;
    onLate?: (value: T) => void;
    op?: string;
    /** The error for running out of time, when the caller has a better one to give. */
    timedOut?: (cause: unknown) => Error;
  } = {},
): Promise<T> {
  const op = options.op ?? "finish";
  checkTimeout(op, ms);
  if (ms >= MAX_TIMER) return abortable(promise, options.signal, options.onLate); // no deadline
  const timeout = AbortSignal.timeout(ms);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  return abortable(promise, signal, options.onLate).catch((err: unknown) => {
    if (err === timeout.reason && !options.signal?.aborted) {
      throw options.timedOut?.(err) ??
        new IpcError("ETIMEDOUT", `Cannot ${op} as ${ms} ms passed`, { op, cause: err });
    }
    throw err;
  });
}

/**
 * Settles like `promise`, unless the signal aborts first: then rejects with its reason, and
 * hands a value that arrives later to `onLate`.
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  onLate?: (value: T) => void,
): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.then(onLate, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const onAbort = (): void => {
      done = true;
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (done) onLate?.(value);
        else resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        if (!done) reject(err);
      },
    );
  });
}

/** A promise with its resolve and reject functions, like `Promise.withResolvers()`. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

/** `Promise.withResolvers()`, which not every supported runtime version has. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Microtasks without a new write after which a burst is over. Web Streams take one or two
 * microtasks between two writes queued in the same turn (measured on Deno, Bun and Node), so
 * three quiet ones mean the writer has stopped for now. Waiting costs microtasks, never a timer.
 */
const QUIET_TICKS = 3;

/**
 * Calls `onQuiet` once `touch()` has not been called for a few microtasks: the end of a burst
 * of writes. No timer and no promise is made per value: one flag per `touch()`.
 */
export class BurstTimer {
  readonly #onQuiet: () => void;
  #touched = false;
  #armed = false;
  #quiet = 0;

  constructor(onQuiet: () => void) {
    this.#onQuiet = onQuiet;
  }

  touch(): void {
    this.#touched = true;
    if (!this.#armed) {
      this.#armed = true;
      this.#quiet = 0;
      queueMicrotask(this.#tick);
    }
  }

  #tick = (): void => {
    if (this.#touched) {
      this.#touched = false;
      this.#quiet = 0;
    } else if (++this.#quiet >= QUIET_TICKS) {
      this.#armed = false;
      this.#onQuiet();
      return;
    }
    queueMicrotask(this.#tick);
  };
}
