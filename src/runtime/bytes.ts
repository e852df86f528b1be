/**
 * Copying bytes as fast as the runtime can: the one place that copy depends on the runtime, for
 * the encoders and the write staging, which copy every payload.
 *
 * @module
 */

import { runtimeName } from "./platform.ts";

/** The copy of Node's `Buffer`, which Bun has too: it takes offsets, so it needs no view. */
type BufferCopy = (
  this: Uint8Array,
  target: Uint8Array,
  targetStart: number,
  sourceStart: number,
  sourceEnd: number,
) => number;

/**
 * Bun copies bytes with `memmove`, which from 2 KiB on may use `rep movsb`: several times slower
 * where source and target are not aligned alike, as a payload after a 4-byte prefix usually is
 * (measured in `docs/TRANSPORT.md`). So Bun copies in pieces below 2 KiB, with `Buffer`'s copy,
 * which needs no view per piece. V8 copies fast either way.
 */
const pieceCopy: BufferCopy | undefined = runtimeName() === "bun"
  ? (globalThis as unknown as { Buffer: { prototype: { copy: BufferCopy } } }).Buffer.prototype.copy
  : undefined;
const PIECE = 2048;

/** Copies `src` into `dst` at `at`, as `dst.set(src, at)` does, and as fast as the runtime can. */
export function copyBytes(dst: Uint8Array, at: number, src: Uint8Array): void {
  const n = src.length;
  if (pieceCopy === undefined || n < PIECE) {
    dst.set(src, at);
    return;
  }
  for (let off = 0; off < n; off += PIECE) {
    pieceCopy.call(src, dst, at + off, off, Math.min(n, off + PIECE));
  }
}
