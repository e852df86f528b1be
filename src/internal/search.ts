/**
 * Binary search over anything kept in order: sorted arrays, typed arrays, points on a ring.
 *
 * @module
 */

/**
 * The first index in `[0, length)` at which `before(i)` is false, or `length` when there is
 * none. `before` must hold for a run of indexes from 0 and for none after it (the order of the
 * thing searched), as for "the value at `i` is below the one looked for".
 */
export function partitionPoint(length: number, before: (i: number) => boolean): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
