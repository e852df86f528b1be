/**
 * Zeros written ahead of the active segment's records, a step at a time, so that a sync of
 * records need not grow the file, without writing a whole segment before the first append.
 *
 * @module
 */

import type { FileHandle } from "../runtime/types.ts";

/** How far ahead of the records the zeros reach: one step is written when half of it is left. */
export const PREALLOCATION_STEP = 1024 * 1024;

const ZEROS = new Uint8Array(PREALLOCATION_STEP);

/** Syncs that carry this much on average are limited by the disk's bandwidth, not its latency. */
const LARGE_SYNC = 64 * 1024;

/** The zeroed room ahead of the active segment's records. */
export class Preallocation {
  readonly #segmentSize: number;
  /** The active file's size: records, then zeros up to here. */
  #end = 0;
  /** Not worth it in this segment: syncs are large, or the disk is full. */
  #off = false;

  constructor(segmentSize: number) {
    this.#segmentSize = segmentSize;
  }

  /** A segment became the active one, its file `size` bytes long. */
  activated(size: number): void {
    this.#end = size;
    this.#off = false;
  }

  /**
   * Whether to grow the file now, with records up to `pos` after `syncs` syncs of this segment.
   * Zeros pay off when syncs are small, as each then finds its blocks already written; when
   * syncs carry 64 KiB or more each, writing every byte twice would halve the disk's bandwidth.
   */
  due(pos: number, syncs: number): boolean {
    const end = this.#end;
    if (
      this.#off || Math.max(end, pos) >= this.#segmentSize || pos + PREALLOCATION_STEP / 2 <= end
    ) {
      return false;
    }
    if (syncs > 0 && pos / syncs >= LARGE_SYNC) this.#off = true;
    return !this.#off;
  }

  /**
   * Writes the next step of zeros after the records, which end at `pos`, and syncs it. Call it
   * only while no record is being written. A failure (a full disk) only costs speed: what it
   * wrote is cut, and the segment then grows as it is written.
   */
  async grow(file: FileHandle, pos: number): Promise<void> {
    const from = Math.max(this.#end, pos);
    const to = Math.min(from + PREALLOCATION_STEP, this.#segmentSize);
    try {
      await file.write(ZEROS.subarray(0, to - from), from);
      await file.datasync();
      this.#end = to;
    } catch {
      this.#off = true;
      await file.truncate(from).catch(() => {});
    }
  }
}
