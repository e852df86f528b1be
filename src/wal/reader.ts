/**
 * The log's readers: records in order from any sequence, a file buffer at a time, following the
 * writer as its appends are acknowledged (or, read-only, by polling the files).
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { delay, holdProcess } from "../internal/async.ts";
import { partitionPoint } from "../internal/search.ts";
import type { FileHandle, FileSystem } from "../runtime/types.ts";
import type { ReadOptions, WalRecord } from "./options.ts";
import {
  BAD,
  corrupt,
  decodeSegmentHeader,
  NEED,
  readFully,
  SEGMENT_HEADER,
  SegmentScanner,
  VALID,
} from "./record.ts";
import type { Segment } from "./segment.ts";

/** What a reader needs to know of its log. */
export interface LogView {
  readonly dir: string;
  readonly fs: FileSystem;
  readonly readOnly: boolean;
  readonly maxRecordSize: number;
  /** How often a read-only log's followers look for new records, in ms. */
  readonly pollInterval: number;
  closed(): boolean;
  /** The last acknowledged sequence: what readers may see. */
  ackedSeq(): number;
  nextSeq(): number;
  firstSeq(): number;
  /** The segments as they are now. */
  segments(): Promise<Segment[]>;
  /** Resolves on the next acknowledgement or close; rejects when the signal aborts. */
  waitForAppend(signal: AbortSignal | undefined): Promise<void>;
  /** Where readers found records, by segment path: see {@linkcode SeekPoint}. */
  readonly seekPoints: Map<string, SeekPoint[]>;
}

/**
 * A place in a segment a reader passed: the offset of record `seq` and the checksum chain there.
 * A read from `seq` or later starts at the last such point before it instead of the segment's
 * start, so reading a large segment in pieces (a stream's consumer catching up) does not check
 * every record before each piece again.
 */
export interface SeekPoint {
  readonly seq: number;
  readonly offset: number;
  readonly crc: number;
}

/** Records between seek points: the most a read checks before the records it wants. */
const SEEK_EVERY = 256;

/** Who waits for the next acknowledgement: readers that follow the writer. */
export class Followers {
  #waiting = new Set<() => void>();
  /**
   * While a reader waits for an append, the process stays alive, as it does for a read-only
   * follower's polls or a socket read, on every runtime; without it Deno and Node ended with an
   * unsettled top-level await and Bun waited.
   */
  #release: (() => void) | undefined;

  /** Resolves on the next `wake()`, or rejects when the signal aborts. */
  wait(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const wake = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.#waiting.delete(wake);
        if (this.#waiting.size === 0) this.#letGo();
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.add(wake);
      this.#release ??= holdProcess();
    });
  }

  /** Lets every waiting reader look again. */
  wake(): void {
    if (this.#waiting.size === 0) return;
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    this.#letGo();
    for (const wake of waiting) wake();
  }

  #letGo(): void {
    this.#release?.();
    this.#release = undefined;
  }
}

/** The records of `log` as a stream, also async iterable; see `Wal.read()`. */
export function readRecords(log: LogView, options: ReadOptions): ReadableStream<WalRecord> {
  const next = batches(log, options);
  const stream = new ReadableStream<WalRecord>({
    pull: async (controller): Promise<void> => {
      const batch = await next.batch();
      if (batch === undefined) return controller.close();
      for (const rec of batch) controller.enqueue(rec);
    },
    cancel: next.close,
  }, { highWaterMark: 0 });
  // `for await` takes records straight from the batches: a stream chunk per record costs
  // several times more than the record itself. The stream is locked while iterating.
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
 * The records `readRecords()` returns, a batch at a time: each call resolves with what one
 * buffer of the file holds (at least one record), or `undefined` at the end. Closes its file at
 * the end, on error, and on `close()`.
 */
function batches(log: LogView, options: ReadOptions): {
  batch: () => Promise<WalRecord[] | undefined>;
  close: () => Promise<void>;
} {
  const { follow = false, signal } = options;
  const to = options.to ?? (follow || log.readOnly ? Infinity : log.ackedSeq());
  let from = options.from ?? -1;
  let scanner: SegmentScanner | undefined;
  let ended = false;
  // Ends a wait for appends when the reader is closed (a cancelled stream), not only when the
  // caller's signal aborts: a waiting reader keeps its process alive.
  const stop = new AbortController();
  const waits = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
  const close = async (): Promise<void> => {
    ended = true;
    stop.abort();
    const s = scanner;
    scanner = undefined;
    await s?.file.close().catch(() => {});
  };
  const batch = async (): Promise<WalRecord[] | undefined> => {
    const out: WalRecord[] = [];
    try {
      if (ended) return undefined;
      if (from === -1) from = log.firstSeq();
      while (scanner === undefined) {
        scanner = await openAt(log, from);
        if (scanner !== undefined) break;
        // A log with no segment yet (read-only, before its writer made one): nothing to read.
        if (!follow || log.closed()) return undefined;
        await delay(log.pollInterval, { signal: waits });
      }
      let fresh = false;
      while (true) {
        signal?.throwIfAborted();
        const seq = scanner.chain.seq;
        if (seq > to) break;
        if (seq > (log.readOnly ? Infinity : log.ackedSeq())) {
          if (!follow || log.closed()) break;
          if (out.length > 0) return out;
          await log.waitForAppend(waits);
          fresh = false;
          continue;
        }
        const status = scanner.step();
        if (status === VALID) {
          fresh = false;
          if (seq >= from) out.push({ seq, data: scanner.data });
          if (scanner.chain.seq % SEEK_EVERY === 0) notePoint(log, scanner);
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
        const after = await nextSegment(log, scanner);
        if (after !== undefined) {
          await scanner.file.close().catch(() => {});
          scanner = after;
          fresh = false;
          continue;
        }
        // Retention or truncateBefore removed what follows while this reader was behind.
        const first = (await log.segments())[0]?.firstSeq ?? seq;
        if (first > seq) throw removed(log, seq, first);
        if (!log.readOnly) {
          throw corrupt(
            scanner.path,
            scanner.offset,
            status === BAD ? scanner.why : `record seq ${seq} is missing`,
          );
        }
        // A writer may be in the middle of this record: it is not returned, and a follower
        // looks again later.
        if (!follow || log.closed()) break;
        await delay(log.pollInterval, { signal: waits });
        fresh = false;
      }
    } catch (err) {
      const closed = stop.signal.aborted;
      await close();
      if (closed && !signal?.aborted) return undefined; // closed by its reader meanwhile
      throw err;
    }
    await close();
    return out.length > 0 ? out : undefined;
  };
  return { batch, close };
}

/**
 * Notes where the scanner stands (before record `chain.seq`) as a seek point of its segment.
 * Not on a read-only log: another process's writer may cut and rewrite its tail.
 */
function notePoint(log: LogView, scanner: SegmentScanner): void {
  if (log.readOnly) return;
  let points = log.seekPoints.get(scanner.path);
  if (points === undefined) log.seekPoints.set(scanner.path, points = []);
  const { seq, crc } = scanner.chain;
  if (points.length === 0 || points.at(-1)!.seq < seq) {
    points.push({ seq, offset: scanner.offset, crc });
  }
}

/**
 * A scanner in the segment that holds `seq`, at the last seek point at or before it (else at the
 * segment's start); undefined when there is no segment.
 */
async function openAt(log: LogView, seq: number): Promise<SegmentScanner | undefined> {
  const segs = await log.segments();
  if (segs.length === 0) return undefined;
  let i = segs.length - 1;
  while (i > 0 && segs[i]!.firstSeq > seq) i--;
  const seg = segs[i];
  if (seg === undefined || seq < seg.firstSeq) {
    throw removed(log, seq, seg?.firstSeq ?? log.nextSeq());
  }
  // Points of segments removed since are forgotten.
  if (log.seekPoints.size > segs.length) {
    const live = new Set(segs.map((s) => s.path));
    for (const path of log.seekPoints.keys()) if (!live.has(path)) log.seekPoints.delete(path);
  }
  const s = await openSegment(log, seg, undefined, lastPoint(log.seekPoints.get(seg.path), seq));
  if (s === undefined) return openAt(log, seq); // removed meanwhile: look again
  return s;
}

/** The last of `points` (in order) at or before `seq`. */
function lastPoint(points: readonly SeekPoint[] | undefined, seq: number): SeekPoint | undefined {
  if (points === undefined) return undefined;
  const after = partitionPoint(points.length, (i) => points[i]!.seq <= seq);
  return after === 0 ? undefined : points[after - 1];
}

/** The error for a read that reaches records that retention or `truncateBefore` removed. */
function removed(log: LogView, seq: number, first: number): IpcError {
  return new IpcError(
    "ENOENT",
    `Cannot read the log in "${log.dir}" from seq ${seq} as it starts at ${first}: earlier records were removed`,
    { op: "read", path: log.dir },
  );
}

/** Opens a segment and checks its header; `undefined` when the file is gone. */
async function openSegment(
  log: LogView,
  seg: Segment,
  chain?: { crc: number; seq: number },
  at?: SeekPoint,
): Promise<SegmentScanner | undefined> {
  let file: FileHandle;
  try {
    file = await log.fs.open(seg.path, { read: true });
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
      at?.offset ?? SEGMENT_HEADER,
      at === undefined ? { crc: header.seed, seq: header.firstSeq } : { crc: at.crc, seq: at.seq },
      log.maxRecordSize,
    );
  } catch (err) {
    await file.close();
    throw err;
  }
}

/** The scanner for the segment after the one `s` finished, when it exists. */
async function nextSegment(log: LogView, s: SegmentScanner): Promise<SegmentScanner | undefined> {
  const seg = (await log.segments()).find((x) => x.firstSeq === s.chain.seq);
  if (seg === undefined || seg.path === s.path) return undefined;
  return openSegment(log, seg, s.chain);
}
