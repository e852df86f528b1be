/**
 * The next segment's file, written full of zeros ahead of need and off the append path, so that
 * a sync in it need not grow the file.
 *
 * @module
 */

import type { FileSystem } from "../runtime/types.ts";
import { join, PREPARED, prepareFile } from "./segment.ts";

/** A prepared segment file: at most one at a time, made once the active segment is half full. */
export class Preallocation {
  readonly #fs: FileSystem;
  readonly #dir: string;
  readonly #segmentSize: number;
  #prepared: Promise<string | undefined> | undefined;

  constructor(fs: FileSystem, dir: string, segmentSize: number) {
    this.#fs = fs;
    this.#dir = dir;
    this.#segmentSize = segmentSize;
  }

  /** Writes the zero-filled file now; resolves with its path. */
  async make(): Promise<string> {
    const path = join(this.#dir, PREPARED);
    await prepareFile(this.#fs, path, this.#segmentSize);
    return path;
  }

  /**
   * The active segment has `pos` bytes after `syncs` syncs: once it is half full, prepare the
   * next file, unless syncs are large. Zeros pay off when syncs are small, as each then finds
   * its blocks already written; when syncs carry 64 KiB or more each, the disk's bandwidth is the
   * limit, and writing every byte twice would halve it: the next segment then grows as written.
   */
  written(pos: number, syncs: number): void {
    if (this.#prepared !== undefined || pos <= this.#segmentSize / 2) return;
    if (syncs > 0 && pos / syncs >= 64 * 1024) {
      this.#prepared = Promise.resolve(undefined);
      return;
    }
    // A failure here only costs speed: rotation then makes the segment without preallocation.
    this.#prepared = this.make().catch(() => undefined);
  }

  /** The prepared file's path, if one was made, for the next segment; forgets it. */
  async take(): Promise<string | undefined> {
    const prepared = await this.#prepared;
    this.#prepared = undefined;
    return prepared;
  }

  /** Removes a prepared file that no segment will use. */
  async discard(): Promise<void> {
    const prepared = await this.take();
    if (prepared !== undefined) await this.#fs.remove(prepared).catch(() => {});
  }
}
