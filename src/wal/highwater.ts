/**
 * The synced high-water mark: the `HIGHWATER` file names a sequence that was durable in the log
 * (its sync had completed) when the file was written. Recovery cannot tell records a bad disk
 * lost (zeros where they were written) from space never written; the mark tells it that records
 * up to it were acknowledged, so their loss is reported instead of passed over.
 *
 * The file is 16 bytes: the magic "DKHW", the sequence as a u64, and the CRC-32C of those 12
 * bytes, little-endian. One written torn or damaged is no mark at all.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { FileHandle, FileSystem } from "../runtime/types.ts";
import { crc32c } from "./crc32c.ts";
import type { WalRecovery } from "./repair.ts";
import { join } from "./segment.ts";

/** The file's name in the log's directory. */
export const HIGHWATER = "HIGHWATER";

const MAGIC = 0x5748_4b44; // "DKHW", little-endian
const SIZE = 16;

/** The mark in `dir`, or `undefined` when there is none (or it is damaged). */
export async function readHighWater(fs: FileSystem, dir: string): Promise<number | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(join(dir, HIGHWATER));
  } catch (err) {
    if (err instanceof IpcError && err.code === "ENOENT") return undefined;
    throw err;
  }
  if (bytes.length !== SIZE) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, SIZE);
  if (view.getUint32(0, true) !== MAGIC) return undefined;
  if (view.getUint32(12, true) !== crc32c(0, bytes.subarray(0, 12))) return undefined;
  return Number(view.getBigUint64(4, true));
}

/** The writer's mark: written off the append path, one write at a time. */
export class HighWaterMark {
  readonly #fs: FileSystem;
  readonly #dir: string;
  readonly #path: string;
  #file: FileHandle | undefined;
  /** The sequence on disk. */
  #written: number;

  constructor(fs: FileSystem, dir: string, written: number) {
    this.#fs = fs;
    this.#dir = dir;
    this.#path = join(dir, HIGHWATER);
    this.#written = written;
  }

  /** The sequence the file holds now. */
  get written(): number {
    return this.#written;
  }

  /** Makes the file say `seq` (durable once this resolves). */
  async write(seq: number): Promise<void> {
    const bytes = new Uint8Array(SIZE);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, MAGIC, true);
    view.setBigUint64(4, BigInt(seq), true);
    view.setUint32(12, crc32c(0, bytes.subarray(0, 12)), true);
    const opening = this.#file === undefined;
    this.#file ??= await this.#fs.open(this.#path, { write: true, create: true });
    await this.#file.write(bytes, 0);
    await this.#file.datasync();
    if (opening) await this.#fs.syncDir(this.#dir); // a file it made is there after a crash
    this.#written = seq;
  }

  async close(): Promise<void> {
    await this.#file?.close().catch(() => {});
    this.#file = undefined;
  }
}

/**
 * Compares the mark with what recovery found, `lastSeq` being the last record there: a mark past
 * it means acknowledged records are gone, which fails with `ECORRUPT` unless `repair` is
 * "truncate" (then the recovery says how many, and a writer's mark comes down to `lastSeq`).
 * Returns the recovery to report and the writer's mark.
 */
export async function checkHighWater(
  fs: FileSystem,
  dir: string,
  lastSeq: number,
  recovery: WalRecovery,
  options: { readOnly: boolean; repair: "truncate" | undefined },
): Promise<{ recovery: WalRecovery; highWater: HighWaterMark }> {
  const mark = await readHighWater(fs, dir);
  const highWater = new HighWaterMark(fs, dir, Math.min(mark ?? 0, lastSeq));
  if (mark === undefined || mark <= lastSeq) return { recovery, highWater };
  if (options.repair !== "truncate") {
    throw new IpcError(
      "ECORRUPT",
      `Cannot open the log in "${dir}" as records ${lastSeq + 1} to ${mark} were acknowledged ` +
        `(its synced high-water mark says so) but are gone: the disk lost writes. Open it with ` +
        `repair: "truncate" to go on without them`,
      { op: "open", path: dir },
    );
  }
  if (!options.readOnly) await highWater.write(lastSeq);
  return { recovery: { ...recovery, repaired: true, lostRecords: mark - lastSeq }, highWater };
}
