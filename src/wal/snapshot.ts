/**
 * Snapshots: a state that covers the log up to a sequence, written atomically.
 *
 * @module
 */

import type { FileSystem } from "../runtime/types.ts";
import { crc32c } from "./crc32c.ts";
import {
  corrupt,
  getU32,
  getU64,
  putU32,
  putU64,
  SNAPSHOT_HEADER,
  SNAPSHOT_MAGIC,
  VERSION,
} from "./record.ts";
import { join } from "./segment.ts";

/** A saved state and the last sequence it covers. */
export interface WalSnapshot {
  /** The state covers every record up to and including this sequence. */
  readonly seq: number;
  /** The saved bytes, as given to `checkpoint`. */
  readonly state: Uint8Array;
  /** The snapshot's file. */
  readonly path: string;
}

const SNAPSHOT_RE = /^snapshot-(\d{20})\.snap$/;

function snapshotName(seq: number): string {
  return `snapshot-${String(seq).padStart(20, "0")}.snap`;
}

/** The snapshot files in `dir`, newest first. */
async function listSnapshots(fs: FileSystem, dir: string): Promise<string[]> {
  return (await fs.readDir(dir)).filter((n) => SNAPSHOT_RE.test(n)).sort().reverse();
}

/**
 * Writes `state` as the snapshot at `seq`: to a temporary file, synced, renamed into place, and
 * the directory synced; then removes older snapshots. A crash at any point leaves either the old
 * snapshot or the new one, never a partial file under a snapshot's name.
 */
export async function writeSnapshot(
  fs: FileSystem,
  dir: string,
  seq: number,
  state: Uint8Array,
): Promise<WalSnapshot> {
  const bytes = new Uint8Array(SNAPSHOT_HEADER + state.length);
  bytes.set(SNAPSHOT_MAGIC, 0);
  putU32(bytes, 8, VERSION);
  putU32(bytes, 12, state.length);
  putU64(bytes, 16, seq);
  bytes.set(state, SNAPSHOT_HEADER);
  putU32(bytes, 24, crc32c(crc32c(0, bytes, 0, 24), bytes, SNAPSHOT_HEADER));
  const name = snapshotName(seq);
  const tmp = join(dir, `${name}.tmp`);
  const file = await fs.open(tmp, { write: true, create: true, truncate: true });
  try {
    await file.write(bytes, 0);
    await file.datasync();
  } finally {
    await file.close();
  }
  const path = join(dir, name);
  await fs.rename(tmp, path);
  await fs.syncDir(dir);
  for (const old of await listSnapshots(fs, dir)) {
    if (old !== name) await fs.remove(join(dir, old)).catch(() => {});
  }
  return { seq, state: bytes.subarray(SNAPSHOT_HEADER), path };
}

/** The newest snapshot in `dir`; a damaged one fails with `ECORRUPT` rather than hide. */
export async function loadSnapshot(fs: FileSystem, dir: string): Promise<WalSnapshot | undefined> {
  const [newest] = await listSnapshots(fs, dir);
  if (newest === undefined) return undefined;
  const path = join(dir, newest);
  const bytes = await fs.readFile(path);
  let why: string | undefined;
  if (bytes.length < SNAPSHOT_HEADER || SNAPSHOT_MAGIC.some((b, i) => bytes[i] !== b)) {
    why = "it is not a snapshot file";
  } else if (getU32(bytes, 8) !== VERSION) {
    why = `it has format version ${getU32(bytes, 8)}, and this code reads ${VERSION}`;
  } else if (getU32(bytes, 12) !== bytes.length - SNAPSHOT_HEADER) {
    why = `it claims ${getU32(bytes, 12)} state bytes and holds ${bytes.length - SNAPSHOT_HEADER}`;
  } else if (
    getU32(bytes, 24) !== crc32c(crc32c(0, bytes, 0, 24), bytes, SNAPSHOT_HEADER)
  ) {
    why = "it fails its checksum";
  }
  if (why !== undefined) throw corrupt(path, 0, why);
  return { seq: getU64(bytes, 16), state: bytes.subarray(SNAPSHOT_HEADER), path };
}
