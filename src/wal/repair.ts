/**
 * Recovery on open: checks the last segment (or, asked to, every segment) record by record, cuts
 * a torn or zeroed tail back to the last valid record (keeping a copy of the cut bytes), and
 * refuses corruption in the middle.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { FileHandle, FileSystem } from "../runtime/types.ts";
import {
  ALIGN,
  BAD,
  type Chain,
  corrupt,
  decodeSegmentHeader,
  getU32,
  getU64,
  NEED,
  readFully,
  RECORD_HEADER,
  SEGMENT_HEADER,
  SegmentScanner,
  VALID,
} from "./record.ts";
import { type Segment, writeOrRemove } from "./segment.ts";

/** What recovery on open found and did. */
export interface WalRecovery {
  /**
   * Bytes cut from the log: a torn tail, or everything after a repaired corruption. A read-only
   * log opened with `verify: "all"` cuts nothing: this is the torn tail that an open for writing
   * would cut.
   */
  readonly truncatedBytes: number;
  /** The last valid record's sequence, 0 when the log has none. */
  readonly lastSeq: number;
  /** Where the cut bytes were kept (`<segment>.broken`), for inspection. */
  readonly brokenFiles: readonly string[];
  /** Whether corruption in the middle was cut because `repair: "truncate"` was given. */
  readonly repaired: boolean;
  /**
   * Records that were acknowledged but are gone (a disk that lost writes left zeros where they
   * were): the log's synced high-water mark is past its last record. Without `repair:
   * "truncate"` such a log fails to open with `ECORRUPT`; with it, it opens, this says how many,
   * and their sequences are given out again.
   */
  readonly lostRecords: number;
}

/** The log as recovery left it. */
export interface RecoveredLog {
  readonly segments: Segment[];
  /** The checksum chain and next sequence after the last valid record. */
  readonly chain: Chain;
  /** The byte offset after the last valid record of the last segment. */
  readonly tailOffset: number;
  readonly recovery: WalRecovery;
}

/** How recovery treats damage. */
export interface RecoverOptions {
  /**
   * Look only: cut nothing, and stop at the end of the last segment's valid records, as a reader
   * does, leaving what follows them to the writer's recovery (unless `verify` is `"all"`).
   */
  readOnly: boolean;
  /** Check every segment, or only the last, the one a crash can leave torn. */
  verify: "last" | "all";
  repair: "truncate" | undefined;
  maxRecordSize: number;
}

const SCAN_CHUNK = 1024 * 1024;

/**
 * Looks at `[from, size)` of a file after a record that did not check out: where its last
 * non-zero byte ends, and whether a header of a later record seems to follow, which tells
 * corruption in the middle from a torn tail.
 */
async function examine(
  file: FileHandle,
  from: number,
  size: number,
  nextSeq: number,
): Promise<{ end: number; followed: boolean }> {
  let end = from;
  let followed = false;
  const maxSeq = nextSeq + 1 + Math.ceil((size - from) / RECORD_HEADER);
  for (let at = from; at < size; at += SCAN_CHUNK) {
    // Each read overlaps the next by a header, so a header across the boundary is seen whole.
    const buf = new Uint8Array(Math.min(SCAN_CHUNK + RECORD_HEADER, size - at));
    const n = await readFully(file, buf, at);
    const words = new Int32Array(buf.buffer, 0, n >>> 2);
    const stop = Math.min(n, SCAN_CHUNK);
    let last = -1;
    for (let i = stop - 1; i >= (stop & ~3); i--) if (buf[i] !== 0 && last < 0) last = i;
    for (let w = (stop >>> 2) - 1; last < 0 && w >= 0; w--) if (words[w] !== 0) last = w * 4 + 3;
    if (last >= 0) end = Math.max(end, at + ((last + ALIGN) & ~(ALIGN - 1)));
    for (
      let i = at === from ? ALIGN : 0;
      !followed && i + RECORD_HEADER <= n && i < stop;
      i += ALIGN
    ) {
      const seq = getU64(buf, i + 8);
      const length = getU32(buf, i);
      if (seq > nextSeq && seq <= maxSeq && length <= size - at - i - RECORD_HEADER) {
        followed = true;
      }
    }
    if (n < buf.length) break;
  }
  return { end: Math.min(end, size), followed };
}

/** Keeps a copy of `[from, to)` of `path` as `<path>.broken` (or `.broken.1`, …). */
async function keepBroken(
  fs: FileSystem,
  file: FileHandle,
  path: string,
  from: number,
  to: number,
): Promise<string> {
  const bytes = new Uint8Array(to - from);
  await readFully(file, bytes, from);
  for (let n = 0;; n++) {
    const name = n === 0 ? `${path}.broken` : `${path}.broken.${n}`;
    let out: FileHandle;
    try {
      out = await fs.open(name, { write: true, createNew: true });
    } catch (err) {
      if (err instanceof IpcError && err.code === "EEXIST") continue;
      throw err;
    }
    await writeOrRemove(fs, name, out, async () => {
      await out.write(bytes, 0);
      await out.datasync();
    });
    return name;
  }
}

/** Checks a segment's header against its name and the segment before it. */
function checkHeader(
  head: Uint8Array,
  seg: Segment,
  chain: Chain | undefined,
): Chain | string {
  const header = decodeSegmentHeader(head);
  if (typeof header === "string") return header;
  if (header.firstSeq !== seg.firstSeq) {
    return `its header says it starts at seq ${header.firstSeq} but its name says ${seg.firstSeq}`;
  }
  if (chain === undefined) return { crc: header.seed, seq: header.firstSeq };
  if (header.firstSeq !== chain.seq) {
    return `it starts at seq ${header.firstSeq} where ${chain.seq} was expected`;
  }
  if (header.seed !== chain.crc) {
    return "its checksum chain does not continue the previous segment's";
  }
  return chain;
}

/**
 * Checks the segments in order and leaves the log ending at its last valid record. With `verify:
 * "last"`, the segments before the last are taken as they are: each was synced whole before the
 * next was made, and readers check every record they read.
 */
export async function recover(
  fs: FileSystem,
  segments: readonly Segment[],
  options: RecoverOptions,
): Promise<RecoveredLog> {
  const all = options.verify === "all";
  const kept: Segment[] = all ? [] : segments.slice(0, -1);
  const look = options.readOnly && !all;
  const brokenFiles: string[] = [];
  let truncatedBytes = 0;
  let repaired = false;
  let chain: Chain | undefined;
  let tailOffset = SEGMENT_HEADER;
  for (let i = kept.length; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    const file = await fs.open(seg.path, { read: true });
    let damage: { at: number; why: string; end: number; whole: boolean } | undefined;
    let size = 0;
    try {
      size = (await file.stat()).size;
      const head = new Uint8Array(Math.min(SEGMENT_HEADER, size));
      await readFully(file, head, 0);
      const checked = checkHeader(head, seg, chain);
      if (typeof checked === "string") {
        damage = { at: 0, why: checked, end: size, whole: true };
      } else {
        chain = checked;
        const scanner = new SegmentScanner(
          file,
          seg.path,
          size,
          SEGMENT_HEADER,
          chain,
          options.maxRecordSize,
        );
        let status: number;
        while ((status = scanner.step()) === VALID || (status === NEED && await scanner.refill()));
        const at = scanner.offset;
        tailOffset = at;
        // Where the records stop is where a reader stops; the writer looks at what follows.
        const { end, followed } = look
          ? { end: at, followed: false }
          : await examine(file, at, size, chain.seq);
        if (status === BAD || end > at) {
          const why = status === BAD
            ? scanner.why
            : `the records end with a zero header and non-zero bytes follow up to byte ${end}`;
          if (!last || followed) {
            damage = { at, why: `${why}, and more records follow`, end, whole: false };
          } else if (!options.readOnly) {
            brokenFiles.push(await keepBroken(fs, file, seg.path, at, end));
            truncatedBytes += end - at;
            await cut(fs, seg.path, at, end, size);
          } else {
            truncatedBytes += end - at; // what a writer's open would cut: told, not done
          }
        }
      }
      if (damage?.whole && !all && i > 0) {
        // The last segment's header is damaged: where the log ends comes from the one before.
        return recover(fs, segments, { ...options, verify: "all" });
      }
      if (damage !== undefined) {
        if (options.readOnly || options.repair !== "truncate") {
          throw corrupt(
            seg.path,
            damage.at,
            damage.why,
            options.readOnly ? "" : '; open it with repair: "truncate" to cut the log there',
          );
        }
        repaired = true;
        if (damage.whole) {
          truncatedBytes += size;
          brokenFiles.push(await renameBroken(fs, seg.path));
        } else {
          brokenFiles.push(await keepBroken(fs, file, seg.path, damage.at, damage.end));
          truncatedBytes += damage.end - damage.at;
          await cut(fs, seg.path, damage.at, damage.end, size);
          kept.push(seg);
        }
        for (const later of segments.slice(i + 1)) {
          truncatedBytes += (await fs.stat(later.path)).size;
          brokenFiles.push(await renameBroken(fs, later.path));
        }
        break;
      }
      kept.push(seg);
    } finally {
      await file.close();
    }
  }
  chain ??= { crc: 0, seq: 1 };
  return {
    segments: kept,
    chain,
    tailOffset,
    recovery: { truncatedBytes, lastSeq: chain.seq - 1, brokenFiles, repaired, lostRecords: 0 },
  };
}

/** Moves a whole damaged segment aside as `<segment>.broken`. */
async function renameBroken(fs: FileSystem, path: string): Promise<string> {
  const to = `${path}.broken`;
  await fs.rename(path, to);
  return to;
}

/** Removes `[at, end)` from a segment: truncates when it reaches the end, zeroes it otherwise. */
async function cut(
  fs: FileSystem,
  path: string,
  at: number,
  end: number,
  size: number,
): Promise<void> {
  const file = await fs.open(path, { write: true });
  try {
    if (end >= size) await file.truncate(at);
    else await file.write(new Uint8Array(end - at), at);
    await file.datasync();
  } finally {
    await file.close();
  }
}
