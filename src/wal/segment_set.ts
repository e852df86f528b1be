/**
 * The log's segments, as its writer manages them: the active one and the ones before it, the
 * zeros ahead of the active one's records, rotation, retention, removal of what a checkpoint
 * covers, and the snapshot.
 *
 * @module
 */

import type { FileHandle, FileSystem } from "../runtime/types.ts";
import type { RetentionOptions } from "./options.ts";
import type { Preallocation } from "./preallocation.ts";
import { SEGMENT_HEADER } from "./record.ts";
import { installSegment, listSegments, type Segment } from "./segment.ts";
import { type WalSnapshot, writeSnapshot } from "./snapshot.ts";

/** The file appends go to, and where in it. */
export interface ActiveSegment {
  readonly file: FileHandle;
  readonly path: string;
  /** The offset the next record goes to. */
  readonly offset: number;
}

/** A log directory's segments, oldest first; the last is the active one. */
export class SegmentSet {
  readonly dir: string;
  readonly #fs: FileSystem;
  readonly #readOnly: boolean;
  readonly #segments: Segment[];
  readonly #retention: RetentionOptions;
  readonly #preallocation: Preallocation | undefined;
  #snapshot: WalSnapshot | undefined;

  constructor(
    fs: FileSystem,
    dir: string,
    options: {
      segments: Segment[];
      snapshot: WalSnapshot | undefined;
      readOnly: boolean;
      retention: RetentionOptions;
      preallocation: Preallocation | undefined;
    },
  ) {
    this.#fs = fs;
    this.dir = dir;
    this.#segments = options.segments;
    this.#snapshot = options.snapshot;
    this.#readOnly = options.readOnly;
    this.#retention = options.retention;
    this.#preallocation = options.preallocation;
  }

  /** The newest snapshot, if one was written. */
  get snapshot(): WalSnapshot | undefined {
    return this.#snapshot;
  }

  /** The first sequence of the oldest segment, if there is one. */
  get firstSeq(): number | undefined {
    return this.#segments[0]?.firstSeq;
  }

  /** How many segment files the log has. */
  get count(): number {
    return this.#segments.length;
  }

  /** The segments as the writer knows them, or as the directory lists them when read-only. */
  async current(): Promise<Segment[]> {
    return this.#readOnly ? (await listSegments(this.#fs, this.dir)).segments : this.#segments;
  }

  /**
   * Opens the last segment for appending at `tailOffset`, or makes the first one, starting at
   * `firstSeq` with chain seed `seed`.
   */
  async openActive(tailOffset: number, firstSeq: number, seed: number): Promise<ActiveSegment> {
    const last = this.#segments.at(-1);
    if (last !== undefined) {
      const file = await this.#fs.open(last.path, { read: true, write: true });
      this.#preallocation?.activated((await file.stat()).size);
      return { file, path: last.path, offset: tailOffset };
    }
    return this.#install(firstSeq, seed);
  }

  /** Whether to write zeros ahead now: the active segment has `pos` bytes after `syncs` syncs. */
  growDue(pos: number, syncs: number): boolean {
    return this.#preallocation?.due(pos, syncs) ?? false;
  }

  /** Writes the next zeros ahead of the active segment's records, which end at `pos`. */
  grow(file: FileHandle, pos: number): Promise<void> {
    return this.#preallocation?.grow(file, pos) ?? Promise.resolve();
  }

  /**
   * Cuts the zeros after the active segment's records, which end at `end`, so that a closed or
   * sealed segment holds its records and nothing else. Not synced: zeros left after a crash are
   * only room.
   */
  seal(file: FileHandle, end: number): Promise<void> {
    return file.truncate(end);
  }

  /**
   * Seals the active segment, which ends at `end`, syncs and closes it (so that everything
   * acknowledged later is durable in both files), and makes the next one.
   */
  async rotate(
    old: FileHandle,
    end: number,
    firstSeq: number,
    seed: number,
  ): Promise<ActiveSegment> {
    await this.seal(old, end);
    await old.datasync();
    await old.close();
    return this.#install(firstSeq, seed);
  }

  async #install(firstSeq: number, seed: number): Promise<ActiveSegment> {
    const { file, segment } = await installSegment(this.#fs, this.dir, firstSeq, seed);
    this.#segments.push(segment);
    this.#preallocation?.activated(SEGMENT_HEADER);
    return { file, path: segment.path, offset: SEGMENT_HEADER };
  }

  /** Drops the oldest segments past the retention limits (never the active one). */
  async applyRetention(): Promise<void> {
    const { maxBytes, maxAge, maxSegments } = this.#retention;
    if (maxBytes === undefined && maxAge === undefined && maxSegments === undefined) return;
    const segs = this.#segments;
    let drop = 0;
    if (maxSegments !== undefined) drop = Math.max(0, segs.length - maxSegments);
    if (maxBytes !== undefined || maxAge !== undefined) {
      const now = Date.now();
      let bytes = 0;
      for (let i = segs.length - 1; i >= drop; i--) {
        const info = await this.#fs.stat(segs[i]!.path);
        bytes += info.size;
        const old = maxAge !== undefined && i < segs.length - 1 && now - info.mtimeMs > maxAge;
        if ((maxBytes !== undefined && bytes > maxBytes) || old) {
          drop = Math.max(drop, i + 1);
          break;
        }
      }
    }
    await this.#remove(Math.min(drop, segs.length - 1));
  }

  /** Removes the segments whose successor starts at or before `seq` (never the active one). */
  async removeUpTo(seq: number): Promise<void> {
    const segs = this.#segments;
    let count = 0;
    while (count < segs.length - 1 && segs[count + 1]!.firstSeq <= seq) count++;
    await this.#remove(count);
  }

  /** Removes the `count` oldest segments. */
  async #remove(count: number): Promise<void> {
    if (count <= 0) return;
    const gone = this.#segments.splice(0, count);
    for (const s of gone) await this.#fs.remove(s.path);
    await this.#fs.syncDir(this.dir);
  }

  /** Saves `state` as the snapshot at `seq`, then removes the segments it covers. */
  async checkpoint(seq: number, state: Uint8Array): Promise<WalSnapshot> {
    const snap = await writeSnapshot(this.#fs, this.dir, seq, state);
    this.#snapshot = snap;
    await this.removeUpTo(seq + 1);
    return snap;
  }
}
