/**
 * The write-ahead log: appends with group commit, rotation onto prepared segments, recovery,
 * readers that follow the writer, retention and snapshots.
 *
 * @module
 */

import { closedError, IpcError } from "../errors.ts";
import { delay } from "../internal/async.ts";
import { getRuntime } from "../runtime/detect.ts";
import type { FileHandle, FileSystem } from "../runtime/types.ts";
import {
  BAD,
  corrupt,
  decodeSegmentHeader,
  encodeRecord,
  NEED,
  readFully,
  recordSize,
  SEGMENT_HEADER,
  SegmentScanner,
  VALID,
} from "./record.ts";
import { recover, type WalRecovery } from "./repair.ts";
import {
  type DirLock,
  installSegment,
  join,
  listSegments,
  lockDir,
  PREPARED,
  prepareFile,
  type Segment,
} from "./segment.ts";
import { loadSnapshot, type WalSnapshot, writeSnapshot } from "./snapshot.ts";

/**
 * When an append resolves:
 * - `"always"`: after `fdatasync` made it durable; appends waiting at the same time share one
 *   sync (group commit).
 * - `"batch"`: after the sync that follows within `syncInterval`.
 * - `"none"`: once the operating system has the bytes (they survive this process crashing, not
 *   the machine losing power).
 */
export type SyncMode = "always" | "batch" | "none";

/** Limits that drop the oldest segments, applied each time a segment fills up. */
export interface RetentionOptions {
  /** Keep at most this many bytes of segments. */
  maxBytes?: number;
  /** Drop segments whose last write is older than this, in ms. */
  maxAge?: number;
  /** Keep at most this many segments. */
  maxSegments?: number;
}

/** What `onSlowSync` receives. */
export interface SlowSync {
  /** How long the sync took, in ms. */
  readonly ms: number;
  /** The file synced. */
  readonly path: string;
}

/** Options for {@linkcode Wal.open}. */
export interface WalOptions {
  /** When appends resolve; see {@linkcode SyncMode}. @default {"always"} */
  sync?: SyncMode;
  /** The longest a `"batch"` append waits for its sync, in ms. @default {10} */
  syncInterval?: number;
  /** A segment is closed and the next one begun past this many bytes. @default {64 MiB} */
  segmentSize?: number;
  /**
   * Write each segment full of zeros before use (ahead of need, off the append path), so a sync
   * need not grow the file: about 1.4 times as many syncs per second with `"always"`. Where syncs
   * are large (64 KiB or more on average in the segment before), or with `"batch"` and `"none"`,
   * the zeros would mostly double the bytes written, so the next segment is not zero-filled.
   * @default {true with sync: "always", else false}
   */
  preallocate?: boolean;
  /** The largest record accepted, in bytes (at most 2 GiB - 1). @default {16 MiB} */
  maxRecordSize?: number;
  /**
   * Run `fdatasync` on the calling thread rather than hopping to a worker thread: 92–96 % of C's
   * sync rate instead of 68–73 %, but the event loop waits for the disk during each sync. Turn it
   * off in a process that must keep answering sockets while the disk is slow. `"batch"` syncs
   * off the thread by default, so appends keep being written while a sync runs.
   * @default {true with sync: "always", else false}
   */
  blockingSync?: boolean;
  /**
   * `"truncate"`: when a record in the middle of the log is damaged, cut the log there (keeping
   * the cut bytes in `.broken` files) instead of failing with `ECORRUPT`.
   */
  repair?: "truncate";
  /**
   * Open for reading only, while another process (or another `Wal`) writes: no lock is taken and
   * nothing is changed on disk. Following readers poll the files every `pollInterval` ms.
   * @default {false}
   */
  readOnly?: boolean;
  /** How often a read-only log's following readers look for new records, in ms. @default {50} */
  pollInterval?: number;
  /** Drops old segments when a segment fills up. @default {no limits} */
  retention?: RetentionOptions;
  /** Called after each sync that took longer than `slowSyncThreshold`. */
  onSlowSync?: (info: SlowSync) => void;
  /** The sync duration, in ms, above which `onSlowSync` is called. @default {1000} */
  slowSyncThreshold?: number;
}

/** One record of the log. */
export interface WalRecord {
  /** The record's sequence number: 1 for the log's first record, then one more each. */
  readonly seq: number;
  /**
   * The record's bytes: a view into a read buffer of up to 1 MiB that neighbouring records share;
   * copy it to keep it for long.
   */
  readonly data: Uint8Array;
}

/** Which records {@linkcode Wal.read} returns. */
export interface ReadOptions {
  /** The first sequence to return. @default {the log's first record} */
  from?: number;
  /** The last sequence to return. @default {the last acknowledged one, or no end when following} */
  to?: number;
  /** Keep the stream open and return records as their appends are acknowledged. @default {false} */
  follow?: boolean;
  /** Ends the stream with the signal's reason. */
  signal?: AbortSignal;
}

/** An append waiting for its durability point. */
interface Waiter {
  last: number;
  value: number | number[];
  resolve: (v: never) => void;
  reject: (err: unknown) => void;
}

/** Encoded records waiting to be written into one segment. */
interface Run {
  /** The segment these records go to exists on disk. */
  installed: boolean;
  /** For a segment still to be made: its first sequence and chain seed. */
  firstSeq: number;
  seed: number;
  /** The file offset of `bytes[0]`. */
  pos: number;
  bytes: Uint8Array;
  words: Int32Array;
  len: number;
  lastSeq: number;
}

const MiB = 1024 * 1024;
const RUN_BYTES = 64 * 1024;
const MAX_RECORD = 0x7fff_ffff;
const MODES: readonly SyncMode[] = ["always", "batch", "none"];
const utf8 = new TextEncoder();

/** Makes room in `run` for `size` more bytes, at least doubling it so growth stays linear. */
function reserve(run: Run, size: number): void {
  if (run.len + size <= run.bytes.length) return;
  const bytes = new Uint8Array(Math.max(run.bytes.length * 2, run.len + size));
  bytes.set(run.bytes.subarray(0, run.len));
  run.bytes = bytes;
  run.words = new Int32Array(bytes.buffer);
}

function newRun(
  installed: boolean,
  firstSeq: number,
  seed: number,
  pos: number,
  size: number,
): Run {
  const bytes = new Uint8Array(size);
  return {
    installed,
    firstSeq,
    seed,
    pos,
    bytes,
    words: new Int32Array(bytes.buffer),
    len: 0,
    lastSeq: firstSeq - 1,
  };
}

/** Refuses an option that is given but is not a finite number of at least `min`. */
function atLeast(name: string, v: number | undefined, min: number): void {
  if (v === undefined) return;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
    throw new RangeError(`Cannot open the log as ${name} must be a number >= ${min}: got ${v}`);
  }
}

function seqArg(op: string, seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new RangeError(`Cannot ${op} as the sequence must be an integer >= 0: got ${seq}`);
  }
}

/**
 * A write-ahead log in a directory: records appended with a stated durability, read back in order
 * from any sequence, kept across crashes. One writer at a time (others get `ELOCKED`); readers may
 * open the log read-only alongside it.
 *
 * @example Append, then read back
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { Wal } from "@dockipc/dockipc/wal";
 *
 * const dir = mkdtempSync(`${tmpdir()}/wal-`);
 * {
 *   await using wal = await Wal.open(dir, { sync: "always", segmentSize: 1 << 20 });
 *   assert.equal(await wal.append("first"), 1);
 *   assert.deepEqual(await wal.appendBatch(["second", "third"]), [2, 3]);
 * }
 * await using wal = await Wal.open(dir, { segmentSize: 1 << 20 });
 * const texts: string[] = [];
 * for await (const rec of wal.read({ from: 2 })) texts.push(new TextDecoder().decode(rec.data));
 * assert.deepEqual(texts, ["second", "third"]);
 * ```
 */
export class Wal implements AsyncDisposable {
  /** The log's directory. */
  readonly dir: string;
  /** What recovery found and cut when the log was opened. */
  readonly recovery: WalRecovery;
  /** When appends resolve. */
  readonly syncMode: SyncMode;
  /** Whether the log was opened read-only. */
  readonly readOnly: boolean;

  #fs: FileSystem;
  #lock: DirLock | undefined;
  #segments: Segment[];
  #snapshot: WalSnapshot | undefined;
  #segmentSize: number;
  #maxRecordSize: number;
  #syncInterval: number;
  #preallocate: boolean;
  #blockingSync: boolean;
  #retention: RetentionOptions;
  #onSlowSync: ((info: SlowSync) => void) | undefined;
  #slowSync: number;
  #pollInterval: number;

  /** The active segment's file. */
  #file: FileHandle | undefined;
  #filePath = "";
  /** Records encoded and not yet written, by segment; the last run takes new appends. */
  #runs: Run[] = [];
  #nextSeq: number;
  #crc: number;
  #writtenSeq: number;
  #ackedSeq: number;
  #waiters: Waiter[] = [];
  #waitHead = 0;
  #followers: (() => void)[] = [];
  #flushQueued = false;
  /** Async steps (rotation, async syncs, retention) run one after another on this chain. */
  #io: Promise<void> = Promise.resolve();
  #ioBusy = 0;
  #syncing = false;
  #syncTimer: ReturnType<typeof setTimeout> | undefined;
  #prepared: Promise<string | undefined> | undefined;
  /** Syncs of the active segment: how large they are decides whether the next is zero-filled. */
  #segmentSyncs = 0;
  #failed: IpcError | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(
    fs: FileSystem,
    dir: string,
    options: WalOptions,
    state: {
      lock: DirLock | undefined;
      segments: Segment[];
      snapshot: WalSnapshot | undefined;
      recovery: WalRecovery;
      nextSeq: number;
      crc: number;
    },
  ) {
    this.#fs = fs;
    this.dir = dir;
    this.syncMode = options.sync ?? "always";
    this.readOnly = options.readOnly ?? false;
    this.#segmentSize = options.segmentSize ?? 64 * MiB;
    this.#maxRecordSize = options.maxRecordSize ?? 16 * MiB;
    this.#syncInterval = options.syncInterval ?? 10;
    this.#preallocate = options.preallocate ?? this.syncMode === "always";
    this.#blockingSync = options.blockingSync ?? this.syncMode === "always";
    this.#retention = options.retention ?? {};
    this.#onSlowSync = options.onSlowSync;
    this.#slowSync = options.slowSyncThreshold ?? 1000;
    this.#pollInterval = options.pollInterval ?? 50;
    this.#lock = state.lock;
    this.#segments = state.segments;
    this.#snapshot = state.snapshot;
    this.recovery = state.recovery;
    this.#nextSeq = state.nextSeq;
    this.#crc = state.crc;
    this.#writtenSeq = this.#ackedSeq = state.nextSeq - 1;
  }

  /**
   * Opens the log in `dir`, creating the directory and the first segment if needed. Recovery
   * checks every record: a torn or zero-filled tail is cut back to the last valid record (see
   * {@linkcode Wal.recovery}); damage in the middle fails with `ECORRUPT` naming the file and
   * byte offset, unless `repair: "truncate"` is given. Another writer holding the log fails the
   * open with `ELOCKED`.
   *
   * @example Durable appends with group commit
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), { segmentSize: 1 << 20 });
   * // Concurrent appends share fdatasync calls; each resolves once its record is durable.
   * const seqs = await Promise.all(["a", "b", "c"].map((s) => wal.append(s)));
   * assert.deepEqual(seqs, [1, 2, 3]);
   * assert.equal(wal.recovery.truncatedBytes, 0);
   * ```
   */
  static async open(dir: string, options: WalOptions = {}): Promise<Wal> {
    if (typeof dir !== "string" || dir === "") {
      throw new TypeError(`Cannot open the log as dir must be a non-empty path: got ${dir}`);
    }
    if (options.sync !== undefined && !MODES.includes(options.sync)) {
      throw new RangeError(
        `Cannot open the log as sync must be "always", "batch" or "none": got ${options.sync}`,
      );
    }
    if (options.repair !== undefined && options.repair !== "truncate") {
      throw new RangeError(
        `Cannot open the log as repair must be "truncate": got ${options.repair}`,
      );
    }
    atLeast("segmentSize", options.segmentSize, 4096);
    atLeast("maxRecordSize", options.maxRecordSize, 0);
    if ((options.maxRecordSize ?? 0) > MAX_RECORD) {
      throw new RangeError(
        `Cannot open the log as maxRecordSize must be at most ${MAX_RECORD}: got ${options.maxRecordSize}`,
      );
    }
    atLeast("syncInterval", options.syncInterval, 0);
    atLeast("pollInterval", options.pollInterval, 1);
    atLeast("slowSyncThreshold", options.slowSyncThreshold, 0);
    const retention = options.retention ?? {};
    atLeast("retention.maxBytes", retention.maxBytes, 1);
    atLeast("retention.maxAge", retention.maxAge, 0);
    atLeast("retention.maxSegments", retention.maxSegments, 1);

    const rt = await getRuntime();
    const fs = rt.fs;
    const readOnly = options.readOnly ?? false;
    if (!readOnly) await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const lock = readOnly ? undefined : await lockDir(fs, dir, rt.pid);
    try {
      const { segments, temps } = await listSegments(fs, dir);
      if (!readOnly) { for (const t of temps) await fs.remove(t); }
      const snapshot = await loadSnapshot(fs, dir);
      const log = await recover(fs, segments, {
        readOnly,
        repair: options.repair,
        maxRecordSize: options.maxRecordSize ?? 16 * MiB,
      });
      // An empty log with a snapshot (its segments removed by hand) goes on after the snapshot.
      const nextSeq = log.segments.length === 0 ? (snapshot?.seq ?? 0) + 1 : log.chain.seq;
      const wal = new Wal(fs, dir, options, {
        lock,
        segments: log.segments,
        snapshot,
        recovery: log.recovery,
        nextSeq,
        crc: log.chain.crc,
      });
      if (!readOnly) await wal.#start(log.tailOffset);
      return wal;
    } catch (err) {
      await lock?.release();
      throw err;
    }
  }

  /** Opens the last segment for appending, or makes the first one. */
  async #start(tailOffset: number): Promise<void> {
    const last = this.#segments.at(-1);
    if (last === undefined) {
      const prepared = this.#preallocate ? await this.#prepare() : undefined;
      const { file, segment } = await installSegment(
        this.#fs,
        this.dir,
        prepared,
        this.#nextSeq,
        this.#crc,
      );
      this.#segments.push(segment);
      this.#file = file;
      this.#filePath = segment.path;
      this.#runs = [newRun(true, this.#nextSeq, this.#crc, SEGMENT_HEADER, RUN_BYTES)];
    } else {
      this.#file = await this.#fs.open(last.path, { read: true, write: true });
      this.#filePath = last.path;
      this.#runs = [newRun(true, this.#nextSeq, this.#crc, tailOffset, RUN_BYTES)];
    }
  }

  /** Writes a zero-filled file for the next segment. */
  async #prepare(): Promise<string | undefined> {
    const path = join(this.dir, PREPARED);
    await prepareFile(this.#fs, path, this.#segmentSize);
    return path;
  }

  /** Prepares the next segment, once the current one is half full at `pos` bytes. */
  #prepareNext(pos: number): void {
    if (!this.#preallocate) return;
    // Zeros pay off when syncs are small, as each then finds its blocks already written. When
    // syncs carry 64 KiB or more each, the disk's bandwidth is the limit, and writing every byte
    // twice would halve it: the next segment then grows as it is written.
    if (this.#segmentSyncs > 0 && pos / this.#segmentSyncs >= 64 * 1024) {
      this.#prepared = Promise.resolve(undefined);
      return;
    }
    // A failure here only costs speed: rotation then makes the segment without preallocation.
    this.#prepared = this.#prepare().catch(() => undefined);
  }

  /** The first sequence still in the log (after retention), or the next one when it is empty. */
  get firstSeq(): number {
    return Math.min(this.#segments[0]?.firstSeq ?? this.#nextSeq, this.#ackedSeq + 1);
  }

  /** The last acknowledged sequence: what readers see. 0 when the log has no records. */
  get lastSeq(): number {
    return this.#ackedSeq;
  }

  /** The newest snapshot, for restoring state on open; `undefined` when none was written. */
  get snapshot(): WalSnapshot | undefined {
    return this.#snapshot;
  }

  #check(op: string): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#closed) throw closedError(op, "log");
    if (this.readOnly) {
      throw new IpcError(
        "EACCES",
        `Cannot ${op} as the log in "${this.dir}" was opened read-only`,
        {
          op,
          path: this.dir,
        },
      );
    }
  }

  /** A record's bytes, checked against `maxRecordSize`. */
  #bytes(item: Uint8Array | string): Uint8Array {
    const data = typeof item === "string" ? utf8.encode(item) : item;
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot append as a record must be a Uint8Array or a string: got ${typeof item}`,
      );
    }
    if (data.length > this.#maxRecordSize) {
      throw new IpcError(
        "EFRAMETOOLARGE",
        `Cannot append a record of ${data.length} bytes as maxRecordSize is ${this.#maxRecordSize}`,
        { op: "append", path: this.dir },
      );
    }
    return data;
  }

  /** Encodes one record into the current run, starting a new segment's run when it is full. */
  #encode(data: Uint8Array): number {
    const size = recordSize(data.length);
    let run = this.#runs[this.#runs.length - 1]!;
    const end = run.pos + run.len;
    if (end + size > this.#segmentSize && end > SEGMENT_HEADER) {
      run = newRun(false, this.#nextSeq, this.#crc, SEGMENT_HEADER, Math.max(RUN_BYTES, size));
      this.#runs.push(run);
    } else reserve(run, size);
    const seq = this.#nextSeq++;
    this.#crc = encodeRecord(run.bytes, run.words, run.len, seq, data, this.#crc);
    run.len += size;
    run.lastSeq = seq;
    return seq;
  }

  /**
   * Appends a record; resolves with its sequence once it reached the log's durability point
   * ({@linkcode SyncMode}). Rejects with `EFRAMETOOLARGE` past `maxRecordSize`, and with the
   * disk's error (`EIO`) if a write or sync fails, after which the log refuses further appends.
   *
   * @example Append a record
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), { sync: "none" });
   * assert.equal(await wal.append(new Uint8Array([1, 2, 3])), 1);
   * assert.equal(wal.lastSeq, 1);
   * ```
   */
  append(data: Uint8Array | string): Promise<number> {
    try {
      this.#check("append");
      const seq = this.#encode(this.#bytes(data));
      return this.#wait(seq, seq);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Appends records as one write; resolves with their sequences, in order, once the last
   * reached the durability point. A bad item refuses the whole batch before anything is written.
   *
   * @example Append a batch
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), { sync: "batch" });
   * assert.deepEqual(await wal.appendBatch(["a", "b", "c"]), [1, 2, 3]);
   * ```
   */
  appendBatch(items: Iterable<Uint8Array | string>): Promise<number[]> {
    try {
      this.#check("append");
      let size = 0;
      const list = Array.from(items, (item) => {
        const data = this.#bytes(item);
        size += recordSize(data.length);
        return data;
      });
      reserve(this.#runs[this.#runs.length - 1]!, size);
      const seqs = list.map((item) => this.#encode(item));
      if (seqs.length === 0) return Promise.resolve([]);
      return this.#wait(seqs[seqs.length - 1]!, seqs);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #wait<T extends number | number[]>(last: number, value: T): Promise<T> {
    const p = new Promise<T>((resolve, reject) => {
      this.#waiters.push({ last, value, resolve: resolve as (v: never) => void, reject });
    });
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushTask);
    }
    return p;
  }

  #flushTask = (): void => {
    this.#flushQueued = false;
    if (this.#failed !== undefined) return;
    const run = this.#runs[0]!;
    if (this.#runs.length === 1 && run.installed && this.#ioBusy === 0) {
      if (!this.#writeRun(run)) return;
      this.#afterWrite();
    } else {
      this.#enqueue(() => this.#drainRuns());
    }
  };

  /** Writes a run's pending bytes; `false` when the write failed (the log has failed). */
  #writeRun(run: Run): boolean {
    if (run.len === 0) return true;
    try {
      this.#file!.writeSync(run.bytes.subarray(0, run.len), run.pos);
    } catch (err) {
      this.#fail(err);
      return false;
    }
    const written = run.len;
    run.pos += written;
    run.len = 0;
    // The next segment is prepared once this one is half full, in time and not for tiny logs.
    if (this.#prepared === undefined && run.pos > this.#segmentSize / 2) this.#prepareNext(run.pos);
    // A buffer grown for a burst is given back once writes no longer need most of it.
    if (run.bytes.length > 16 * RUN_BYTES && written < run.bytes.length / 4) {
      run.bytes = new Uint8Array(RUN_BYTES);
      run.words = new Int32Array(run.bytes.buffer);
    }
    this.#writtenSeq = run.lastSeq;
    return true;
  }

  /** Writes every run, making the segments that are due. Runs on the I/O chain. */
  async #drainRuns(): Promise<void> {
    while (this.#failed === undefined) {
      const run = this.#runs[0]!;
      if (!run.installed) await this.#rotate(run);
      if (!this.#writeRun(run)) return;
      if (this.#runs.length === 1) break;
      this.#runs.shift();
    }
    this.#afterWrite();
  }

  /** Acknowledges what the mode allows after a write. */
  #afterWrite(): void {
    if (this.syncMode === "none") this.#ack(this.#writtenSeq);
    else if (this.syncMode === "always") this.#syncNow();
    else if (this.#syncTimer === undefined && this.#writtenSeq > this.#ackedSeq) {
      this.#syncTimer = setTimeout(() => {
        this.#syncTimer = undefined;
        this.#syncNow();
      }, this.#syncInterval);
    }
  }

  /** Syncs what is written and acknowledges it: on this thread, or on the I/O chain. */
  #syncNow(): void {
    if (this.#failed !== undefined || this.#writtenSeq <= this.#ackedSeq) return;
    if (this.#blockingSync && this.#ioBusy === 0) {
      const target = this.#writtenSeq;
      const t0 = performance.now();
      try {
        this.#file!.datasyncSync();
      } catch (err) {
        this.#fail(err);
        return;
      }
      this.#synced(t0, target);
    } else if (!this.#syncing) {
      this.#syncing = true;
      this.#enqueue(() => {
        this.#syncing = false;
        return this.#syncWritten();
      });
    }
  }

  /**
   * Syncs what is written, off this thread, and acknowledges it. Runs on the I/O chain. Unless
   * `always`, nothing is done when all is acknowledged already (which in `"none"` mode does not
   * mean synced: explicit syncs pass `always`).
   */
  async #syncWritten(always = false): Promise<void> {
    const target = this.#writtenSeq;
    if (!always && target <= this.#ackedSeq) return;
    const t0 = performance.now();
    await this.#file!.datasync();
    this.#synced(t0, target);
  }

  /** After a sync that began at `t0`: reports it if slow, counts it, acknowledges to `target`. */
  #synced(t0: number, target: number): void {
    const ms = performance.now() - t0;
    if (ms > this.#slowSync && this.#onSlowSync !== undefined) {
      try {
        this.#onSlowSync({ ms, path: this.#filePath });
      } catch {
        // A failing hook must not fail the log.
      }
    }
    this.#segmentSyncs++;
    this.#ack(target);
  }

  /** Runs an async step after the ones before it; a failure fails the log. */
  #enqueue(step: () => Promise<void>): Promise<void> {
    this.#ioBusy++;
    const next = this.#io.then(async () => {
      if (this.#failed !== undefined) return;
      try {
        await step();
      } catch (err) {
        this.#fail(err);
      } finally {
        this.#ioBusy--;
      }
    });
    this.#io = next;
    return next;
  }

  /** Resolves every append up to `seq`. */
  #ack(seq: number): void {
    if (seq <= this.#ackedSeq) return;
    this.#ackedSeq = seq;
    const w = this.#waiters;
    let i = this.#waitHead;
    for (; i < w.length && w[i]!.last <= seq; i++) w[i]!.resolve(w[i]!.value as never);
    if (i === w.length) {
      w.length = 0;
      this.#waitHead = 0;
    } else this.#waitHead = i;
    this.#wake();
  }

  #wake(): void {
    if (this.#followers.length === 0) return;
    const f = this.#followers;
    this.#followers = [];
    for (const wake of f) wake();
  }

  /** After a failed write or sync nothing more is acknowledged: a failed fsync may lose data. */
  #fail(err: unknown): void {
    if (this.#failed !== undefined) return;
    const cause = err instanceof IpcError ? err : undefined;
    this.#failed = new IpcError(
      cause?.code ?? "EIO",
      `Cannot append to the log in "${this.dir}" as a write or sync failed: ${
        err instanceof Error ? err.message : String(err)
      }; reopen the log to recover`,
      { op: "append", path: this.#filePath, cause: err },
    );
    const w = this.#waiters;
    for (let i = this.#waitHead; i < w.length; i++) w[i]!.reject(this.#failed);
    w.length = 0;
    this.#waitHead = 0;
    this.#wake();
  }

  /** Closes the active segment and opens the next one, made from the prepared file. */
  async #rotate(run: Run): Promise<void> {
    const old = this.#file!;
    await old.datasync(); // everything acknowledged later is then durable in both files
    await old.close();
    const prepared = await this.#prepared;
    this.#prepared = undefined;
    const { file, segment } = await installSegment(
      this.#fs,
      this.dir,
      prepared,
      run.firstSeq,
      run.seed,
    );
    this.#file = file;
    this.#filePath = segment.path;
    this.#segments.push(segment);
    this.#segmentSyncs = 0;
    run.installed = true;
    await this.#applyRetention();
  }

  async #applyRetention(): Promise<void> {
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
    await this.#removeSegments(Math.min(drop, segs.length - 1));
  }

  /** Removes the `count` oldest segments (never the active one). */
  async #removeSegments(count: number): Promise<void> {
    if (count <= 0) return;
    const gone = this.#segments.splice(0, count);
    for (const s of gone) await this.#fs.remove(s.path);
    await this.#fs.syncDir(this.dir);
  }

  /**
   * Writes every appended record to the operating system now, without waiting for a sync.
   *
   * @example Flush before handing the file to another tool
   * ```ts
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), { sync: "batch" });
   * void wal.append("x");
   * await wal.flush();
   * ```
   */
  async flush(): Promise<void> {
    this.#check("flush");
    await this.#enqueue(() => this.#drainRuns());
    if (this.#failed !== undefined) throw this.#failed;
  }

  /**
   * Writes and syncs every appended record, whatever the mode, and resolves their appends.
   *
   * @example Make "none" appends durable at a point of your choosing
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), { sync: "none" });
   * for (let i = 0; i < 100; i++) void wal.append(`event ${i}`);
   * await wal.sync();
   * assert.equal(wal.lastSeq, 100);
   * ```
   */
  async sync(): Promise<void> {
    this.#check("sync");
    await this.#enqueue(async () => {
      await this.#drainRuns();
      await this.#syncWritten(true);
    });
    if (this.#failed !== undefined) throw this.#failed;
  }

  /**
   * Removes whole segments whose records all come before `seq`; resolves with the new
   * {@linkcode Wal.firstSeq}. The active segment is never removed.
   *
   * @example Drop what a consumer has processed
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), {
   *   sync: "none",
   *   segmentSize: 4096,
   * });
   * for (let i = 0; i < 200; i++) await wal.append(new Uint8Array(100));
   * assert.ok(await wal.truncateBefore(150) > 1);
   * ```
   */
  async truncateBefore(seq: number): Promise<number> {
    seqArg("truncate the log", seq);
    this.#check("truncate the log");
    await this.#enqueue(async () => {
      const segs = this.#segments;
      let count = 0;
      while (count < segs.length - 1 && segs[count + 1]!.firstSeq <= seq) count++;
      await this.#removeSegments(count);
    });
    if (this.#failed !== undefined) throw this.#failed;
    return this.firstSeq;
  }

  /**
   * Saves `state` as a snapshot covering every record up to `seq` (synced first), atomically,
   * then removes the segments it covers. {@linkcode Wal.snapshot} returns it after a reopen.
   *
   * @example Checkpoint and restore
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * const dir = mkdtempSync(`${tmpdir()}/wal-`);
   * {
   *   await using wal = await Wal.open(dir, { sync: "none" });
   *   const seq = await wal.append("set x=1");
   *   await wal.checkpoint(seq, new TextEncoder().encode('{"x":1}'));
   * }
   * await using wal = await Wal.open(dir);
   * assert.equal(wal.snapshot?.seq, 1);
   * assert.equal(new TextDecoder().decode(wal.snapshot?.state), '{"x":1}');
   * ```
   */
  async checkpoint(seq: number, state: Uint8Array): Promise<WalSnapshot> {
    seqArg("checkpoint", seq);
    if (!(state instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot checkpoint as the state must be a Uint8Array: got ${typeof state}`,
      );
    }
    this.#check("checkpoint");
    if (seq >= this.#nextSeq) {
      throw new RangeError(
        `Cannot checkpoint at seq ${seq} as the log's last record is ${this.#nextSeq - 1}`,
      );
    }
    await this.sync();
    let snap: WalSnapshot | undefined;
    await this.#enqueue(async () => {
      snap = await writeSnapshot(this.#fs, this.dir, seq, state);
      this.#snapshot = snap;
      const segs = this.#segments;
      let count = 0;
      while (count < segs.length - 1 && segs[count + 1]!.firstSeq <= seq + 1) count++;
      await this.#removeSegments(count);
    });
    if (this.#failed !== undefined || snap === undefined) throw this.#failed;
    return snap;
  }

  /**
   * Reads records in order as a stream, which is also async iterable. Without `follow` it ends
   * at `to` or at the last record acknowledged when reading began; with `follow` it waits for
   * new appends as they are acknowledged (on a read-only log, it polls the files). A record
   * whose checksum fails is never returned: the stream errors with `ECORRUPT` instead. Reading
   * from before {@linkcode Wal.firstSeq} errors with `ENOENT`, since retention removed those;
   * so does a reader that falls so far behind that retention removes the records it was coming
   * to.
   *
   * @example Follow the log
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), { sync: "none" });
   * const reader = wal.read({ follow: true, to: 3 });
   * for (const s of ["a", "b", "c"]) await wal.append(s);
   * const seqs: number[] = [];
   * for await (const rec of reader) seqs.push(rec.seq);
   * assert.deepEqual(seqs, [1, 2, 3]);
   * ```
   */
  read(options: ReadOptions = {}): ReadableStream<WalRecord> {
    if (options.from !== undefined) seqArg("read the log", options.from);
    if (options.to !== undefined) seqArg("read the log", options.to);
    if (this.#closed) throw closedError("read", "log");
    const next = this.#batches(options);
    const stream = new ReadableStream<WalRecord>({
      pull: async (controller): Promise<void> => {
        const batch = await next.batch();
        if (batch === undefined) return controller.close();
        for (const rec of batch) controller.enqueue(rec);
      },
      cancel: next.close,
    }, { highWaterMark: 0 });
    // `for await` takes records straight from the batches: a stream chunk per record costs
    // 5 to 20 times more than the record itself. The stream is locked while iterating.
    const iterate = (): AsyncIterableIterator<WalRecord> => {
      const reader = stream.getReader();
      let batch: WalRecord[] = [];
      let i = 0;
      const done = (): IteratorResult<WalRecord> => {
        reader.releaseLock();
        return { done: true, value: undefined };
      };
      return {
        next(): Promise<IteratorResult<WalRecord>> {
          if (i < batch.length) return Promise.resolve({ done: false, value: batch[i++]! });
          return next.batch().then((more) => {
            if (more === undefined) return done();
            batch = more;
            i = 1;
            return { done: false, value: more[0]! };
          });
        },
        async return(): Promise<IteratorResult<WalRecord>> {
          await next.close();
          return done();
        },
        [Symbol.asyncIterator](): AsyncIterableIterator<WalRecord> {
          return this;
        },
      };
    };
    Object.defineProperty(stream, Symbol.asyncIterator, { value: iterate });
    Object.defineProperty(stream, "values", { value: iterate });
    return stream;
  }

  /**
   * The records `read()` returns, a batch at a time: each call resolves with what one buffer of
   * the file holds (at least one record), or `undefined` at the end. Closes its file at the end,
   * on error, and on `close()`.
   */
  #batches(options: ReadOptions): {
    batch: () => Promise<WalRecord[] | undefined>;
    close: () => Promise<void>;
  } {
    const { follow = false, signal } = options;
    const to = options.to ?? (follow || this.readOnly ? Infinity : this.#ackedSeq);
    let from = options.from ?? -1;
    let scanner: SegmentScanner | undefined;
    let ended = false;
    const close = async (): Promise<void> => {
      ended = true;
      const s = scanner;
      scanner = undefined;
      await s?.file.close().catch(() => {});
    };
    const batch = async (): Promise<WalRecord[] | undefined> => {
      const out: WalRecord[] = [];
      try {
        if (ended) return undefined;
        if (from === -1) from = this.firstSeq;
        scanner ??= await this.#openAt(from);
        let fresh = false;
        while (true) {
          signal?.throwIfAborted();
          const seq = scanner.chain.seq;
          if (seq > to) break;
          if (seq > (this.readOnly ? Infinity : this.#ackedSeq)) {
            if (!follow || this.#closed) break;
            if (out.length > 0) return out;
            await this.#waitForAppend(signal);
            fresh = false;
            continue;
          }
          const status = scanner.step();
          if (status === VALID) {
            fresh = false;
            if (seq >= from) out.push({ seq, data: scanner.data });
            continue;
          }
          if (out.length > 0) return out; // what this buffer held; the next call reads on
          if (status === NEED || !fresh) {
            // The buffer ends, or was read before these bytes reached the file: read again.
            scanner.size = (await scanner.file.stat()).size;
            await scanner.refill();
            fresh = true;
            continue;
          }
          // The segment ends here: the next one must start where it stopped.
          const after = await this.#nextSegment(scanner);
          if (after !== undefined) {
            await scanner.file.close().catch(() => {});
            scanner = after;
            fresh = false;
            continue;
          }
          // Retention or truncateBefore removed what follows while this reader was behind.
          const first = (await this.#currentSegments())[0]?.firstSeq ?? seq;
          if (first > seq) throw this.#removed(seq, first);
          if (!this.readOnly) {
            throw corrupt(
              scanner.path,
              scanner.offset,
              status === BAD ? scanner.why : `record seq ${seq} is missing`,
            );
          }
          // A writer may be in the middle of this record: it is not returned, and a follower
          // looks again later.
          if (!follow || this.#closed) break;
          await delay(this.#pollInterval, signal ? { signal } : {});
          fresh = false;
        }
      } catch (err) {
        await close();
        throw err;
      }
      await close();
      return out.length > 0 ? out : undefined;
    };
    return { batch, close };
  }

  /** Resolves on the next acknowledgement or close, or rejects when the signal aborts. */
  #waitForAppend(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = (): void => reject(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#followers.push(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }

  /** The segments as the writer knows them, or as the directory lists them when read-only. */
  async #currentSegments(): Promise<Segment[]> {
    return this.readOnly ? (await listSegments(this.#fs, this.dir)).segments : this.#segments;
  }

  /** A scanner at the start of the segment that holds `seq`. */
  async #openAt(seq: number): Promise<SegmentScanner> {
    const segs = await this.#currentSegments();
    let i = segs.length - 1;
    while (i > 0 && segs[i]!.firstSeq > seq) i--;
    const seg = segs[i];
    if (seg === undefined || seq < seg.firstSeq) {
      throw this.#removed(seq, seg?.firstSeq ?? this.#nextSeq);
    }
    const s = await this.#openSegment(seg);
    if (s === undefined) return this.#openAt(seq); // removed meanwhile: look again
    return s;
  }

  /** The error for a read that reaches records that retention or `truncateBefore` removed. */
  #removed(seq: number, first: number): IpcError {
    return new IpcError(
      "ENOENT",
      `Cannot read the log in "${this.dir}" from seq ${seq} as it starts at ${first}: earlier records were removed`,
      { op: "read", path: this.dir },
    );
  }

  /** Opens a segment and checks its header; `undefined` when the file is gone. */
  async #openSegment(seg: Segment, chain?: { crc: number; seq: number }): Promise<
    SegmentScanner | undefined
  > {
    let file: FileHandle;
    try {
      file = await this.#fs.open(seg.path, { read: true });
    } catch (err) {
      if (err instanceof IpcError && err.code === "ENOENT") return undefined;
      throw err;
    }
    try {
      const size = (await file.stat()).size;
      const head = new Uint8Array(SEGMENT_HEADER);
      await readFully(file, head, 0);
      const header = decodeSegmentHeader(head);
      if (typeof header === "string") throw corrupt(seg.path, 0, header);
      if (chain !== undefined && (header.firstSeq !== chain.seq || header.seed !== chain.crc)) {
        throw corrupt(seg.path, 0, "it does not continue the segment before it");
      }
      return new SegmentScanner(
        file,
        seg.path,
        size,
        SEGMENT_HEADER,
        { crc: header.seed, seq: header.firstSeq },
        this.#maxRecordSize,
      );
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  /** The scanner for the segment after the one `s` finished, when it exists. */
  async #nextSegment(s: SegmentScanner): Promise<SegmentScanner | undefined> {
    const seg = (await this.#currentSegments()).find((x) => x.firstSeq === s.chain.seq);
    if (seg === undefined || seg.path === s.path) return undefined;
    return this.#openSegment(seg, s.chain);
  }

  /**
   * Writes and syncs what is pending, then closes the files and gives up the lock. Appends
   * after this reject with `ECLOSED`; readers end.
   *
   * @example Close explicitly
   * ```ts
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * const wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`));
   * await wal.append("bye");
   * await wal.close();
   * ```
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    if (this.readOnly) {
      this.#wake();
      return;
    }
    if (this.#failed === undefined) {
      await this.#enqueue(async () => {
        await this.#drainRuns();
        await this.#syncWritten(true);
      });
    }
    clearTimeout(this.#syncTimer);
    await this.#io;
    const prepared = await this.#prepared;
    if (prepared !== undefined) await this.#fs.remove(prepared).catch(() => {});
    await this.#file?.close().catch(() => {});
    this.#wake();
    await this.#lock?.release();
    if (this.#failed !== undefined) throw this.#failed;
  }

  /** The same as {@linkcode Wal.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
