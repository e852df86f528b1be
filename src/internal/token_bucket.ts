/**
 * A token bucket: `rate` tokens a second, at most `burst` saved up. A taker either takes a token
 * now or not at all (`tryTake`), or reserves the next one and learns how long to wait for it
 * (`reserve`): reservations queue in time, so the waiters go in the order they came.
 *
 * @module
 */

/**
 * Milliseconds on a clock; `Date.now()` unless a test says: read once per token taken, it is
 * the cheapest there is (`performance.now()` costs up to twice as much on Deno). A clock that
 * goes back (the wall clock set back) adds no tokens until it has passed where it was.
 */
export type Clock = () => number;

/** See the module doc. */
export class TokenBucket {
  #rate: number;
  #burst: number;
  /** Tokens at `#at`; below 0 when reservations are waiting for tokens to come. */
  #tokens: number;
  #at: number;
  readonly #now: Clock;

  /** A full bucket. `rate` and `burst` must be checked already (above 0, `burst` ≥ 1). */
  constructor(rate: number, burst: number, now: Clock = Date.now) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#now = now;
    this.#at = now();
  }

  /** Tokens a second. */
  get rate(): number {
    return this.#rate;
  }

  /** Tokens saved up at most. */
  get burst(): number {
    return this.#burst;
  }

  /** Takes a token if there is one now. */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  /** Takes the next token, now or in the future: the milliseconds until it is there (0: now). */
  reserve(): number {
    this.#refill();
    this.#tokens--;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#rate) * 1000;
  }

  /** Changes the rate and the burst from now on; what was saved up stays, up to the new burst. */
  set(rate: number, burst: number): void {
    this.#refill();
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = Math.min(this.#tokens, burst);
  }

  #refill(): void {
    const now = this.#now();
    if (now <= this.#at) return;
    const tokens = this.#tokens + ((now - this.#at) * this.#rate) / 1000;
    this.#tokens = tokens > this.#burst ? this.#burst : tokens;
    this.#at = now;
  }
}
