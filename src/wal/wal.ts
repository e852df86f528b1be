/**
 * The write-ahead log's facade: opening (checks, the lock, recovery), and the calls users make,
 * each handed to the part that does it: the writer (`writer.ts`), the segments
 * (`segment_set.ts`, with `preallocation.ts`) and the readers (`reader.ts`).
 *
 * @module
 */

import { closedError, IpcError } from "../errors.ts";
import { getRuntime } from "../runtime/detect.ts";
import type { FileSystem } from "../runtime/types.ts";
import type { ReadOptions, SyncMode, WalOptions, WalRecord } from "./options.ts";
import { checkHighWater, type HighWaterMark } from "./highwater.ts";
import { Preallocation } from "./preallocation.ts";
import { Followers, type LogView, readRecords } from "./reader.ts";
import { recover, type WalRecovery } from "./repair.ts";
import { type DirLock, listSegments, lockDir } from "./segment.ts";
import { SegmentSet } from "./segment_set.ts";
import { loadSnapshot, type WalSnapshot } from "./snapshot.ts";
import { WalWriter } from "./writer.ts";
import { Histogram, type HistogramSnapshot } from "../internal/histogram.ts";

/** A log's state and sync latency, from {@linkcode Wal.stats}. */
export interface WalStats {
  /** The log's directory. */
  readonly dir: string;
  /** The first sequence still in the log, or the next one when it is empty. */
  readonly firstSeq: number;
  /** The last acknowledged sequence; 0 when the log has no records. */
  readonly lastSeq: number;
  /** Segment files. */
  readonly segments: number;
  /** How long each `fdatasync` took (none for a read-only log). */
  readonly syncs: HistogramSnapshot;
}

const MiB = 1024 * 1024;
const MAX_RECORD = 0x7fff_ffff;
const MODES: readonly SyncMode[] = ["always", "batch", "none"];
const utf8 = new TextEncoder();

/** Refuses an option that is given but is not a finite number of at least `min`. */
function atLeast(name: string, v: number | undefined, min: number): void {
  if (v === undefined) return;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
    throw new RangeError(`Cannot open the log as ${name} must be a number >= ${min}: got ${v}`);
  }
}

function seqArg(op: string, seq: number, min = 0): void {
  if (!Number.isSafeInteger(seq) || seq < min) {
    const first = min === 1 ? " (records are numbered from 1)" : "";
    throw new RangeError(
      `Cannot ${op} as the sequence must be an integer >= ${min}${first}: got ${seq}`,
    );
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

  readonly #lock: DirLock | undefined;
  readonly #segments: SegmentSet;
  /** Undefined for a read-only log. */
  readonly #writer: WalWriter | undefined;
  /** The sequence after the last record found on open: a read-only log's end. */
  readonly #recoveredNext: number;
  readonly #maxRecordSize: number;
  readonly #followers = new Followers();
  readonly #view: LogView;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(
    fs: FileSystem,
    dir: string,
    options: WalOptions,
    state: {
      lock: DirLock | undefined;
      segments: SegmentSet;
      recovery: WalRecovery;
      highWater: HighWaterMark;
      nextSeq: number;
      crc: number;
    },
  ) {
    this.dir = dir;
    this.syncMode = options.sync ?? "always";
    this.readOnly = options.readOnly ?? false;
    this.#maxRecordSize = options.maxRecordSize ?? 16 * MiB;
    this.#lock = state.lock;
    this.#segments = state.segments;
    this.recovery = state.recovery;
    this.#recoveredNext = state.nextSeq;
    this.#writer = this.readOnly ? undefined : new WalWriter(state.segments, {
      syncMode: this.syncMode,
      segmentSize: options.segmentSize ?? 64 * MiB,
      syncInterval: options.syncInterval ?? 10,
      blockingSync: options.blockingSync ?? this.syncMode === "always",
      onSlowSync: options.onSlowSync,
      slowSyncThreshold: options.slowSyncThreshold ?? 1000,
      acknowledged: () => this.#followers.wake(),
      highWater: state.highWater,
    }, { nextSeq: state.nextSeq, crc: state.crc });
    this.#view = {
      dir,
      fs,
      readOnly: this.readOnly,
      maxRecordSize: this.#maxRecordSize,
      pollInterval: options.pollInterval ?? 50,
      closed: () => this.#closed,
      ackedSeq: () => this.lastSeq,
      nextSeq: () => this.#nextSeq,
      firstSeq: () => this.firstSeq,
      segments: () => this.#segments.current(),
      waitForAppend: (signal) => this.#followers.wait(signal),
      seekPoints: new Map(),
    };
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
    if (options.verify !== undefined && options.verify !== "last" && options.verify !== "all") {
      throw new RangeError(
        `Cannot open the log as verify must be "last" or "all": got ${options.verify}`,
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
        verify: options.verify ?? "last",
        repair: options.repair,
        maxRecordSize: options.maxRecordSize ?? 16 * MiB,
      });
      const segmentSize = options.segmentSize ?? 64 * MiB;
      const preallocate = options.preallocate ?? (options.sync ?? "always") === "always";
      const set = new SegmentSet(fs, dir, {
        segments: log.segments,
        snapshot,
        readOnly,
        retention: options.retention ?? {},
        preallocation: preallocate && !readOnly ? new Preallocation(segmentSize) : undefined,
      });
      // An empty log with a snapshot (its segments removed by hand) goes on after the snapshot.
      const nextSeq = log.segments.length === 0 ? (snapshot?.seq ?? 0) + 1 : log.chain.seq;
      const { recovery, highWater } = await checkHighWater(fs, dir, nextSeq - 1, log.recovery, {
        readOnly,
        repair: options.repair,
      });
      const wal = new Wal(fs, dir, options, {
        lock,
        segments: set,
        recovery,
        highWater,
        nextSeq,
        crc: log.chain.crc,
      });
      await wal.#writer?.start(log.tailOffset);
      return wal;
    } catch (err) {
      await lock?.release();
      throw err;
    }
  }

  /** The sequence the next append gets. */
  get #nextSeq(): number {
    return this.#writer?.nextSeq ?? this.#recoveredNext;
  }

  /** The first sequence still in the log (after retention), or the next one when it is empty. */
  get firstSeq(): number {
    return Math.min(this.#segments.firstSeq ?? this.#nextSeq, this.lastSeq + 1);
  }

  /** The last acknowledged sequence: what readers see. 0 when the log has no records. */
  get lastSeq(): number {
    return this.#writer?.ackedSeq ?? this.#recoveredNext - 1;
  }

  /** The newest snapshot, for restoring state on open; `undefined` when none was written. */
  get snapshot(): WalSnapshot | undefined {
    return this.#segments.snapshot;
  }

  /**
   * The log's state and how long its syncs took, for monitoring.
   *
   * @example Count the syncs
   * ```ts
   * import assert from "node:assert/strict";
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { Wal } from "@dockipc/dockipc/wal";
   *
   * await using wal = await Wal.open(mkdtempSync(`${tmpdir()}/wal-`), { sync: "always" });
   * await wal.append("one");
   * const stats = wal.stats();
   * assert.equal(stats.lastSeq, 1);
   * assert.ok(stats.syncs.count >= 1);
   * ```
   */
  stats(): WalStats {
    return {
      dir: this.dir,
      firstSeq: this.firstSeq,
      lastSeq: this.lastSeq,
      segments: this.#segments.count,
      syncs: this.#writer?.syncs.snapshot() ?? new Histogram().snapshot(),
    };
  }

  /** The writer, once the log may be written: it failed, closed or is read-only otherwise. */
  #check(op: string): WalWriter {
    const failed = this.#writer?.failed;
    if (failed !== undefined) throw failed;
    if (this.#closed) throw closedError(op, "log");
    if (this.#writer === undefined) {
      throw new IpcError(
        "EACCES",
        `Cannot ${op} as the log in "${this.dir}" was opened read-only`,
        {
          op,
          path: this.dir,
        },
      );
    }
    return this.#writer;
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

  /**
   * Appends a record; resolves with its sequence once it reached the log's durability point
   * ({@linkcode SyncMode}). Rejects with `EFRAMETOOLARGE` past `maxRecordSize`, and with the
   * disk's error (`ENOSPC` when it is full, else `EIO`) if a write or sync fails, after which the
   * log refuses further appends.
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
      return this.#check("append").append(this.#bytes(data));
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
      const writer = this.#check("append");
      return writer.appendBatch(Array.from(items, (item) => this.#bytes(item)));
    } catch (err) {
      return Promise.reject(err);
    }
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
    await this.#check("flush").flush();
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
    await this.#check("sync").sync();
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
    await this.#check("truncate the log").onChain(() => this.#segments.removeUpTo(seq));
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
    const writer = this.#check("checkpoint");
    if (seq >= writer.nextSeq) {
      throw new RangeError(
        `Cannot checkpoint at seq ${seq} as the log's last record is ${writer.nextSeq - 1}`,
      );
    }
    await writer.sync();
    return await writer.onChain(() => this.#segments.checkpoint(seq, state));
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
    if (options.from !== undefined) seqArg("read the log", options.from, 1);
    if (options.to !== undefined) seqArg("read the log", options.to);
    if (this.#closed) throw closedError("read", "log");
    return readRecords(this.#view, options);
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
    await this.#writer?.close();
    this.#followers.wake();
    await this.#lock?.release();
    const failed = this.#writer?.failed;
    if (failed !== undefined) throw failed;
  }

  /** The same as {@linkcode Wal.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
