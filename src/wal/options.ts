/**
 * The log's public option and record types, shared by its facade, writer and reader.
 *
 * @module
 */

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

/** Options for `Wal.open()`. */
export interface WalOptions {
  /** When appends resolve; see {@linkcode SyncMode}. @default {"always"} */
  sync?: SyncMode;
  /** The longest a `"batch"` append waits for its sync, in ms. @default {10} */
  syncInterval?: number;
  /** A segment is closed and the next one begun past this many bytes. @default {64 MiB} */
  segmentSize?: number;
  /**
   * Keep the active segment's file written with zeros ahead of its records, a 1 MiB step at a
   * time, so a sync need not grow the file: more syncs per second with `"always"`
   * (`docs/BENCHMARKS.md`). Where syncs are large (64 KiB or more on average in the segment), or
   * with `"batch"` and `"none"`, the zeros would mostly double the bytes written, so the file
   * grows as it is written. Closing the log or its segment cuts the zeros off.
   * @default {true with sync: "always", else false}
   */
  preallocate?: boolean;
  /** The largest record accepted, in bytes (at most 2 GiB - 1). @default {16 MiB} */
  maxRecordSize?: number;
  /**
   * Run `fdatasync` on the calling thread rather than hopping to a worker thread: close to C's
   * sync rate (`docs/BENCHMARKS.md`), but the event loop waits for the disk during each sync.
   * Turn it off in a process that must keep answering sockets while the disk is slow. `"batch"`
   * syncs off the thread by default, so appends keep being written while a sync runs.
   * @default {true with sync: "always", else false}
   */
  blockingSync?: boolean;
  /**
   * What opening checks record by record. `"last"`: the last segment, the only one a crash can
   * leave torn (each segment is synced whole before the next begins), so an open costs the last
   * segment's records, however long the log; damage in an earlier segment is then found by the
   * reader that reaches it (`ECORRUPT`). `"all"`: every segment, so that damage anywhere fails
   * the open (or, with `repair`, is cut there).
   * @default {"last"}
   */
  verify?: "last" | "all";
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

/** Which records `Wal.read()` returns. */
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
