/**
 * Publish-to-delivery latency, sampled: one message in 64 (by its hub sequence) is timed from the
 * hub's publish until a subscriber takes it, one at a time. The subscriptions it may go to are
 * told of it beforehand (`HubSubscription.time()`), so that the other messages cost the hub one
 * test of their sequence and the subscriptions nothing.
 *
 * @module
 */

import { Histogram } from "../internal/histogram.ts";

/** A timed message not taken within this many milliseconds is given up, and another timed. */
const GIVE_UP_MS = 60_000;

/** Times one message at a time from its publish to its first delivery. */
export class DeliveryProbe {
  /** The message being timed. */
  #message: object | undefined;
  #since = 0;
  readonly histogram: Histogram = new Histogram();

  /**
   * Starts timing `message` and returns true, unless another is being timed (and is not yet a
   * minute old).
   */
  start(message: object): boolean {
    const now = performance.now();
    if (this.#message !== undefined && now - this.#since < GIVE_UP_MS) return false;
    this.#message = message;
    this.#since = now;
    return true;
  }

  /** A subscriber took `message`: the end of its timing, if it is the one timed. */
  delivered(message: object): void {
    if (message !== this.#message) return; // a second subscriber of it, or a given-up one
    this.histogram.observe(performance.now() - this.#since);
    this.#message = undefined;
  }
}
