/**
 * The log's writer: records encoded into runs, written with one call per run, and acknowledged
 * as the sync mode says, with group commit (appends waiting at once share one sync).
 *
 * @module
 */

import { Histogram } from "../internal/histogram.ts";
import { IpcError } from "../errors.ts";
import type { FileHandle } from "../runtime/types.ts";
import type { SlowSync, SyncMode } from "./options.ts";
import { encodeRecord, recordSize, SEGMENT_HEADER } from "./record.ts";
import type { SegmentSet } from "./segment_set.ts";
import type { HighWaterMark } from "./highwater.ts";

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

const RUN_BYTES = 64 * 1024;

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

/** How the writer writes and syncs. */
export interface WriterOptions {
  readonly syncMode: SyncMode;
  readonly segmentSize: number;
  readonly syncInterval: number;
  readonly blockingSync: boolean;
  readonly onSlowSync: ((info: SlowSync) => void) | undefined;
  readonly slowSyncThreshold: number;
  /** Called after each acknowledgement and on failure: readers that follow look again. */
  readonly acknowledged: () => void;
  /** Where the synced high-water mark goes. */
  readonly highWater: HighWaterMark;
}

/** How often, at most, the synced high-water mark is written while appends go on. */
const MARK_EVERY_MS = 1000;

/** Appends records to a log's segments; one writer per log. */
export class WalWriter {
  readonly #segments: SegmentSet;
  readonly #options: WriterOptions;
  #file: FileHandle | undefined;
  #filePath = "";
  /** Where the records in the active file end. */
  #fileEnd = 0;
  /** Runs of encoded records not yet written, one per segment they go to. */
  #runs: Run[] = [];
  #nextSeq: number;
  #crc: number;
  #writtenSeq: number;
  #ackedSeq: number;
  #waiters: Waiter[] = [];
  #waitHead = 0;
  #flushQueued = false;
  /** The I/O chain: async steps (rotations, off-thread syncs) run one after another. */
  #io: Promise<void> = Promise.resolve();
  #ioBusy = 0;
  #syncing = false;
  #syncTimer: ReturnType<typeof setTimeout> | undefined;
  /** Syncs of the active segment so far, which tell whether preallocation pays off. */
  #segmentSyncs = 0;
  /** Whether writing zeros ahead of the records is on the I/O chain. */
  #growing = false;
  #failed: IpcError | undefined;
  /** The last sequence a completed sync made durable. */
  #durable: number;
  /** When the high-water mark was last written, and whether a write of it is on the chain. */
  #markedAt = 0;
  #marking = false;
  /** How long each sync took. */
  readonly syncs: Histogram = new Histogram();

  constructor(
    segments: SegmentSet,
    options: WriterOptions,
    chain: { nextSeq: number; crc: number },
  ) {
    this.#segments = segments;
    this.#options = options;
    this.#nextSeq = chain.nextSeq;
    this.#crc = chain.crc;
    this.#writtenSeq = this.#ackedSeq = this.#durable = chain.nextSeq - 1;
  }

  /** Opens the active segment for appending at `tailOffset`, or makes the first one. */
  async start(tailOffset: number): Promise<void> {
    const active = await this.#segments.openActive(tailOffset, this.#nextSeq, this.#crc);
    this.#file = active.file;
    this.#filePath = active.path;
    this.#fileEnd = active.offset;
    this.#runs = [newRun(true, this.#nextSeq, this.#crc, active.offset, RUN_BYTES)];
  }

  /** The sequence the next append gets. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** The last acknowledged sequence. */
  get ackedSeq(): number {
    return this.#ackedSeq;
  }

  /** What failed the log, after which nothing more is acknowledged. */
  get failed(): IpcError | undefined {
    return this.#failed;
  }

  /** Encodes a record; resolves with its sequence at its durability point. */
  append(data: Uint8Array): Promise<number> {
    const seq = this.#encode(data);
    return this.#wait(seq, seq);
  }

  /** Encodes records as one write; resolves with their sequences once the last is durable. */
  appendBatch(list: readonly Uint8Array[]): Promise<number[]> {
    let size = 0;
    for (const data of list) size += recordSize(data.length);
    reserve(this.#runs[this.#runs.length - 1]!, size);
    const seqs = list.map((data) => this.#encode(data));
    if (seqs.length === 0) return Promise.resolve([]);
    return this.#wait(seqs[seqs.length - 1]!, seqs);
  }

  /** Writes every encoded record to the operating system now. */
  async flush(): Promise<void> {
    await this.#enqueue(() => this.#drainRuns());
    if (this.#failed !== undefined) throw this.#failed;
  }

  /** Writes and syncs every encoded record, whatever the mode, and acknowledges them. */
  async sync(): Promise<void> {
    await this.#enqueue(async () => {
      await this.#drainRuns();
      await this.#syncWritten(true);
    });
    if (this.#failed !== undefined) throw this.#failed;
  }

  /** Runs `step` on the I/O chain, after every write and sync before it. */
  async onChain<T>(step: () => Promise<T>): Promise<T> {
    let result: { value: T } | undefined;
    await this.#enqueue(async () => {
      result = { value: await step() };
    });
    if (this.#failed !== undefined || result === undefined) throw this.#failed;
    return result.value;
  }

  /**
   * Writes and syncs what is pending, cuts the zeros after the records, then closes the active
   * file; rejects if the log failed.
   */
  async close(): Promise<void> {
    if (this.#failed === undefined) {
      await this.#enqueue(async () => {
        await this.#drainRuns();
        await this.#segments.seal(this.#file!, this.#fileEnd);
        await this.#syncWritten(true);
      });
    }
    clearTimeout(this.#syncTimer);
    await this.#io;
    const mark = this.#options.highWater;
    if (this.#failed === undefined && this.#durable > mark.written) {
      await mark.write(this.#durable).catch(() => {}); // a mark behind only reports less
    }
    await mark.close();
    await this.#file?.close().catch(() => {});
  }

  /** Encodes one record into the current run, starting a new segment's run when it is full. */
  #encode(data: Uint8Array): number {
    const size = recordSize(data.length);
    let run = this.#runs[this.#runs.length - 1]!;
    const end = run.pos + run.len;
    if (end + size > this.#options.segmentSize && end > SEGMENT_HEADER) {
      run = newRun(false, this.#nextSeq, this.#crc, SEGMENT_HEADER, Math.max(RUN_BYTES, size));
      this.#runs.push(run);
    } else reserve(run, size);
    const seq = this.#nextSeq++;
    this.#crc = encodeRecord(run.bytes, run.words, run.len, seq, data, this.#crc);
    run.len += size;
    run.lastSeq = seq;
    return seq;
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
      this.#growIfDue();
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
    this.#fileEnd = run.pos;
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
    this.#growIfDue();
  }

  /**
   * Puts the next zeros ahead of the records on the I/O chain when they are due, after the sync
   * just asked for: no record is written while they are.
   */
  #growIfDue(): void {
    if (this.#growing || !this.#segments.growDue(this.#fileEnd, this.#segmentSyncs)) return;
    this.#growing = true;
    this.#enqueue(async () => {
      this.#growing = false;
      await this.#segments.grow(this.#file!, this.#fileEnd);
    });
  }

  /** Acknowledges what the mode allows after a write. */
  #afterWrite(): void {
    const mode = this.#options.syncMode;
    if (mode === "none") this.#ack(this.#writtenSeq);
    else if (mode === "always") this.#syncNow();
    else if (this.#syncTimer === undefined && this.#writtenSeq > this.#ackedSeq) {
      this.#syncTimer = setTimeout(() => {
        this.#syncTimer = undefined;
        this.#syncNow();
      }, this.#options.syncInterval);
    }
  }

  /** Syncs what is written and acknowledges it: on this thread, or on the I/O chain. */
  #syncNow(): void {
    if (this.#failed !== undefined || this.#writtenSeq <= this.#ackedSeq) return;
    if (this.#options.blockingSync && this.#ioBusy === 0) {
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
    this.syncs.observe(ms);
    const { onSlowSync, slowSyncThreshold } = this.#options;
    if (ms > slowSyncThreshold && onSlowSync !== undefined) {
      try {
        onSlowSync({ ms, path: this.#filePath });
      } catch {
        // A failing hook must not fail the log.
      }
    }
    this.#segmentSyncs++;
    this.#durable = target;
    this.#ack(target);
    if (!this.#marking && performance.now() - this.#markedAt >= MARK_EVERY_MS) this.#mark();
  }

  /** Writes the high-water mark on the I/O chain, off the path of the appends that wait. */
  #mark(): void {
    this.#marking = true;
    this.#enqueue(async () => {
      this.#marking = false;
      this.#markedAt = performance.now();
      const mark = this.#options.highWater;
      // A mark that could not be written (a full disk) is one behind: it only reports less.
      if (this.#durable > mark.written) await mark.write(this.#durable).catch(() => {});
    });
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
    this.#options.acknowledged();
  }

  /** After a failed write or sync nothing more is acknowledged: a failed fsync may lose data. */
  #fail(err: unknown): void {
    if (this.#failed !== undefined) return;
    const cause = err instanceof IpcError ? err : undefined;
    this.#failed = new IpcError(
      cause?.code ?? "EIO",
      `Cannot append to the log in "${this.#segments.dir}" as a write or sync failed: ${
        err instanceof Error ? err.message : String(err)
      }; reopen the log to recover`,
      { op: "append", path: this.#filePath, cause: err },
    );
    const w = this.#waiters;
    for (let i = this.#waitHead; i < w.length; i++) w[i]!.reject(this.#failed);
    w.length = 0;
    this.#waitHead = 0;
    this.#options.acknowledged();
  }

  /** Closes the active segment and opens the next one; then applies retention. */
  async #rotate(run: Run): Promise<void> {
    const active = await this.#segments.rotate(this.#file!, this.#fileEnd, run.firstSeq, run.seed);
    this.#file = active.file;
    this.#filePath = active.path;
    this.#fileEnd = active.offset;
    this.#segmentSyncs = 0;
    run.installed = true;
    await this.#segments.applyRetention();
  }
}
