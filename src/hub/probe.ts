/**
 * Publish-to-delivery latency, sampled: one message in 64 is timed from the hub's publish until a
 * subscriber takes it, one at a time, so the cost for the rest is one comparison.
 *
 * @module
 */

import { Histogram } from "../internal/histogram.ts";

/** Publishes between two timed ones: a power of two, as the hub tests it with a mask. */
export const SAMPLE_EVERY = 64;

/** A timed message not taken within this many milliseconds is given up, and another timed. */
const GIVE_UP_MS = 60_000;

/** Times one message at a time from its publish to its first delivery. */
export class DeliveryProbe {
  /** The message being timed: compared with each one a subscription hands out. */
  message: object | undefined;
  #since = 0;
  readonly histogram: Histogram = new Histogram();

  /** Starts timing `message`, unless another is being timed (and is not yet a minute old). */
  start(message: object): void {
    const now = performance.now();
    if (this.message !== undefined && now - this.#since < GIVE_UP_MS) return;
    this.message = message;
    this.#since = now;
  }

  /** The timed message was handed to its first subscriber. */
  delivered(): void {
    this.histogram.observe(performance.now() - this.#since);
    this.message = undefined;
  }
}
