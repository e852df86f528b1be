/**
 * A consistent-hash ring for queue groups: each member owns 1024 points on a 32-bit circle, and
 * a key goes to the member owning the first point at or after the key's hash. A member that
 * leaves takes only its own points with it, so only its keys move.
 *
 * @module
 */

import { partitionPoint } from "../internal/search.ts";

/** Points per member: with 1024, members share the circle within a few percent of evenly. */
const VIRTUAL_NODES = 1024;

const scratch = new Uint8Array(1024);
const utf8 = new TextEncoder();

/** MurmurHash3 (x86, 32-bit) of `bytes`. */
export function murmur3(bytes: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const n = bytes.length;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (n & 3) {
    case 3:
      k ^= bytes[blocks + 2]! << 16;
    // falls through
    case 2:
      k ^= bytes[blocks + 1]! << 8;
    // falls through
    case 1:
      k ^= bytes[blocks]!;
      k = Math.imul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 of a string's UTF-8 bytes, without allocating for short strings. */
export function hashString(text: string): number {
  if (text.length * 3 <= scratch.length) {
    const { written } = utf8.encodeInto(text, scratch);
    return murmur3(scratch.subarray(0, written));
  }
  return murmur3(utf8.encode(text));
}

/** The ring over a fixed set of members; rebuild it when membership changes. */
export class HashRing<T> {
  readonly #points: Uint32Array;
  readonly #owners: T[];

  /** `id(member)` must be stable and unique: it places the member's points. */
  constructor(members: readonly T[], id: (member: T) => string) {
    const points: { hash: number; owner: T }[] = [];
    for (const member of members) {
      const name = id(member);
      for (let v = 0; v < VIRTUAL_NODES; v++) {
        points.push({ hash: hashString(`${name}#${v}`), owner: member });
      }
    }
    points.sort((a, b) => a.hash - b.hash);
    this.#points = Uint32Array.from(points, (p) => p.hash);
    this.#owners = points.map((p) => p.owner);
  }

  /** The member that owns `key`, or undefined for an empty ring. */
  owner(key: string): T | undefined {
    const points = this.#points;
    if (points.length === 0) return undefined;
    const hash = hashString(key);
    const lo = partitionPoint(points.length, (i) => points[i]! < hash);
    return this.#owners[lo === points.length ? 0 : lo];
  }
}
