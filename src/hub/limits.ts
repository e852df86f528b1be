/**
 * Rate limits: token buckets with a policy for when they run dry, as the hub applies them to
 * everything published (`global`), to topics a pattern matches, to each served connection and
 * to each subscription.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { type Clock, TokenBucket } from "../internal/token_bucket.ts";

/**
 * What a limit does with a message past its rate:
 * - `"wait"`: holds it (and its publisher) back until the rate allows it; nothing is dropped;
 * - `"reject"`: refuses it with `IpcError` `ERATELIMIT`, which names the limit.
 */
export type LimitPolicy = "wait" | "reject";

/** A rate limit: a token bucket and its policy. */
export interface RateLimit {
  /** Messages a second, on average. Above 0. */
  rate: number;
  /** Messages let through at once after a quiet spell, at least 1. @default {rate, at least 1} */
  burst?: number;
  /** What happens past the rate. @default {"wait"} */
  policy?: LimitPolicy;
  /**
   * Lowers the rate (halving it, down to 1/64 of it) each time a message it let through is held
   * up by a full `"block"` subscription, and doubles it back (up to `rate`) each time one goes
   * through without waiting: publishers slow down while a subscriber lags, and go back to full
   * speed once it catches up. @default {false}
   */
  adaptive?: boolean;
}

/** The hub's own limits: see `hub.setLimits()`. */
export interface HubLimits {
  /** Every message published to the hub, whichever topic. */
  global?: RateLimit;
  /**
   * Messages to the topics a pattern matches, one bucket per pattern (shared by every topic it
   * matches). A message passes every limit that matches it.
   */
  topics?: Readonly<Record<string, RateLimit>>;
}

/** A limit's settings and counters, from `stats()`. */
export interface LimitStats {
  /** Which limit: `"global"`, `"topic orders.*"`, `"connection 3"`, `"subscription 7"`. */
  readonly name: string;
  /** Its rate, as set. */
  readonly rate: number;
  /** The rate it applies now: below `rate` while an adaptive limit holds back. */
  readonly currentRate: number;
  /** Its burst. */
  readonly burst: number;
  /** Its policy. */
  readonly policy: LimitPolicy;
  /** Whether it is adaptive. */
  readonly adaptive: boolean;
  /** Messages it let through at once. */
  readonly allowed: number;
  /** Messages it held back before letting them through. */
  readonly waited: number;
  /** Messages it refused. */
  readonly rejected: number;
}

/** The lowest share of its rate an adaptive limit goes down to. */
const MIN_FACTOR = 1 / 64;

/**
 * `limit` checked, with its defaults: an `IpcError` `EINVAL` naming `what` (the option) and the
 * bad value otherwise.
 */
export function checkRateLimit(op: string, what: string, limit: RateLimit): Required<RateLimit> {
  if (typeof limit !== "object" || limit === null) {
    throw invalid(op, what, limit, "an object { rate, burst?, policy?, adaptive? }");
  }
  const { rate, policy = "wait", adaptive = false } = limit;
  if (typeof rate !== "number" || !(rate > 0) || rate === Infinity) {
    throw invalid(op, `${what}.rate`, rate, "a number of messages a second above 0");
  }
  const burst = limit.burst ?? Math.max(1, rate);
  if (typeof burst !== "number" || !(burst >= 1) || burst === Infinity) {
    throw invalid(op, `${what}.burst`, burst, "a number of messages, at least 1 (one message)");
  }
  if (policy !== "wait" && policy !== "reject") {
    throw invalid(op, `${what}.policy`, policy, `"wait" or "reject"`);
  }
  if (typeof adaptive !== "boolean") throw invalid(op, `${what}.adaptive`, adaptive, "a boolean");
  return { rate, burst, policy, adaptive };
}

/** An `IpcError` `EINVAL`: `what` of `op` is `value`, and should be `expected`. */
export function invalid(op: string, what: string, value: unknown, expected: string): IpcError {
  const shown = typeof value === "string" ? JSON.stringify(value) : String(value);
  return new IpcError("EINVAL", `Cannot ${op} as ${what} is ${shown}: it must be ${expected}`, {
    op,
  });
}

/** One rate limit at work: its bucket, policy and counters. */
export class Limiter {
  readonly name: string;
  #limit: Required<RateLimit>;
  readonly #bucket: TokenBucket;
  /** The share of its rate an adaptive limit applies now. */
  #factor = 1;
  #allowed = 0;
  #waited = 0;
  #rejected = 0;

  constructor(name: string, limit: Required<RateLimit>, now?: Clock) {
    this.name = name;
    this.#limit = limit;
    this.#bucket = new TokenBucket(limit.rate, limit.burst, now);
  }

  get policy(): LimitPolicy {
    return this.#limit.policy;
  }

  get adaptive(): boolean {
    return this.#limit.adaptive;
  }

  /** New settings, from now on; the counters go on. */
  set(limit: Required<RateLimit>): void {
    this.#limit = limit;
    if (!limit.adaptive) this.#factor = 1;
    this.#bucket.set(limit.rate * this.#factor, limit.burst);
  }

  /**
   * Lets a message through: 0 when it may go now, else the milliseconds it must wait (`"wait"`).
   * @throws {IpcError} `ERATELIMIT` under `"reject"` when the rate is spent.
   */
  admit(op: string): number {
    if (this.#limit.policy === "reject") {
      if (this.tryTake()) return 0;
      throw new IpcError(
        "ERATELIMIT",
        `Cannot ${op} as the rate limit "${this.name}" (${this.currentRate} a second, burst ` +
          `${this.#limit.burst}) is spent: send more slowly, or raise the limit`,
        { op },
      );
    }
    const wait = this.#bucket.reserve();
    if (wait === 0) this.#allowed++;
    else this.#waited++;
    return wait;
  }

  /** Takes a token if there is one now, counting either way: for a check that drops, not throws. */
  tryTake(): boolean {
    if (this.#bucket.tryTake()) {
      this.#allowed++;
      return true;
    }
    this.#rejected++;
    return false;
  }

  /** A message it let through was held up by a full subscriber: an adaptive limit slows down. */
  congested(): void {
    if (!this.#limit.adaptive || this.#factor <= MIN_FACTOR) return;
    this.#factor = Math.max(MIN_FACTOR, this.#factor / 2);
    this.#bucket.set(this.#limit.rate * this.#factor, this.#limit.burst);
  }

  /** A message it let through went at once: an adaptive limit speeds back up. */
  relieved(): void {
    if (!this.#limit.adaptive || this.#factor === 1) return;
    this.#factor = Math.min(1, this.#factor * 2);
    this.#bucket.set(this.#limit.rate * this.#factor, this.#limit.burst);
  }

  get currentRate(): number {
    return this.#limit.rate * this.#factor;
  }

  stats(): LimitStats {
    const { rate, burst, policy, adaptive } = this.#limit;
    return {
      name: this.name,
      rate,
      currentRate: this.currentRate,
      burst,
      policy,
      adaptive,
      allowed: this.#allowed,
      waited: this.#waited,
      rejected: this.#rejected,
    };
  }
}

/**
 * Passes a message through `limiters` in turn: the milliseconds it must wait for the slowest
 * (0: none). A `"reject"` limit that refuses throws `ERATELIMIT`; the limits before it have
 * taken their token, as the message was on its way.
 */
export function admitAll(limiters: readonly Limiter[], op: string): number {
  let wait = 0;
  for (const limiter of limiters) {
    const ms = limiter.admit(op);
    if (ms > wait) wait = ms;
  }
  return wait;
}
