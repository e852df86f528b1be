/**
 * Latency histograms with fixed buckets, as Prometheus keeps them: a count per upper bound,
 * a sum and a total, so that any number of observations costs the same memory.
 *
 * @module
 */

/** The buckets' upper bounds, in seconds: from 10 µs to 10 s, about three to a decade. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.00001,
  0.000025,
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
]);

/** A latency histogram at one moment, from a `stats()` call. */
export interface HistogramSnapshot {
  /** The buckets' upper bounds, in seconds, ascending. */
  readonly buckets: readonly number[];
  /** Per bucket, the observations at or below its bound (cumulative, as Prometheus counts). */
  readonly counts: readonly number[];
  /** Every observation, those above the last bound too. */
  readonly count: number;
  /** Their sum, in seconds. */
  readonly sum: number;
}

/** Counts durations into {@linkcode LATENCY_BUCKETS}. */
export class Histogram {
  readonly #counts = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  #count = 0;
  #sum = 0;

  /** Counts one duration, in milliseconds (as `performance.now()` differences are). */
  observe(ms: number): void {
    const seconds = ms / 1000;
    this.#count++;
    this.#sum += seconds;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]!) {
        this.#counts[i]!++;
        return;
      }
    }
  }

  /** The counts now, cumulative per bucket. */
  snapshot(): HistogramSnapshot {
    let running = 0;
    return {
      buckets: LATENCY_BUCKETS,
      counts: this.#counts.map((n) => running += n),
      count: this.#count,
      sum: this.#sum,
    };
  }
}

/**
 * The quantile `q` (0–1) of a snapshot, in seconds: the upper bound of the bucket it falls in
 * (`Infinity` past the last); `undefined` when nothing was observed.
 */
export function quantile(snapshot: HistogramSnapshot, q: number): number | undefined {
  if (snapshot.count === 0) return undefined;
  const rank = q * snapshot.count;
  for (let i = 0; i < snapshot.counts.length; i++) {
    if (snapshot.counts[i]! >= rank) return snapshot.buckets[i]!;
  }
  return Infinity;
}
