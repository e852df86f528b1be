/**
 * One stored stream: its messages in a write-ahead log, an index of each message's size and
 * time (so limits apply without reading messages back), the floor below which messages are
 * gone, and the message ids of the duplicate window.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { partitionPoint } from "../internal/search.ts";
import type { SyncMode } from "../wal/options.ts";
import { Wal } from "../wal/wal.ts";
import { decodeStored, decodeStoredHead, encodeStored } from "./protocol.ts";
import type { Message } from "./subscription.ts";

const MiB = 1024 * 1024;

/**
 * How a stream keeps its messages. Under every kind the limits apply (the oldest go first past
 * one); besides, under `"workqueue"` a message goes once a consumer has finished it (its
 * consumers' filters may not overlap), and under `"interest"` once every consumer has (and at
 * once while there is none).
 */
export type StreamRetention = "limits" | "workqueue" | "interest";

/** A stream's settings: what `addStream()` takes and `streamInfo()` gives back, defaults filled in. */
export interface StreamConfig {
  /** Letters, digits, `-` and `_`, at most 64: also its directory's name. */
  readonly name: string;
  /** The topic patterns whose messages it stores; no two streams' patterns may overlap. */
  readonly subjects: readonly string[];
  /** How it keeps its messages. @default {"limits"} */
  readonly retention?: StreamRetention;
  /** Messages kept at most; the oldest go first. @default {Infinity} */
  readonly maxMessages?: number;
  /** Bytes of stored messages kept at most; the oldest go first. @default {Infinity} */
  readonly maxBytes?: number;
  /** Milliseconds a message is kept. @default {Infinity} */
  readonly maxAge?: number;
  /** The largest payload taken; a larger publish fails with `EFRAMETOOLARGE`. @default {1 MiB} */
  readonly maxMessageSize?: number;
  /** When a publish to it resolves: synced (`"always"`), within 10 ms (`"batch"`), or written. @default {"always"} */
  readonly durability?: SyncMode;
  /** Milliseconds within which a message id published again is not stored again. @default {120000} */
  readonly duplicateWindow?: number;
}

/** What a publish to a stream's topic reached. */
export interface PublishAck {
  /** The stream that stored it. */
  readonly stream: string;
  /** Its sequence in the stream; for a duplicate, the first one's. */
  readonly seq: number;
  /** Its id was seen within the duplicate window: it was not stored again. */
  readonly duplicate: boolean;
  /** How durable it is now: the stream's `durability`. */
  readonly durability: SyncMode;
}

/** A stream's state, from `streamInfo()` and `streams()`. */
export interface StreamInfo {
  /** Its settings, every default filled in. */
  readonly config: Required<StreamConfig>;
  /** Messages it holds. */
  readonly messages: number;
  /** Bytes of the messages it holds, as stored. */
  readonly bytes: number;
  /** The first sequence it holds; `lastSeq + 1` when it holds none. */
  readonly firstSeq: number;
  /** The last sequence it stored; 0 before the first. */
  readonly lastSeq: number;
  /** When its first message was stored, in ms; `undefined` when it holds none. */
  readonly firstTime: number | undefined;
  /** When its last message was stored, in ms; `undefined` when it holds none. */
  readonly lastTime: number | undefined;
}

/** A stream's counters, in `hub.stats().streams` and the Prometheus text. */
export interface StreamStats {
  /** The stream's name. */
  readonly stream: string;
  /** Messages it holds. */
  readonly messages: number;
  /** Bytes of the messages it holds, as stored. */
  readonly bytes: number;
  /** The first sequence it holds. */
  readonly firstSeq: number;
  /** The last sequence it stored. */
  readonly lastSeq: number;
  /** Messages stored since the hub opened it. */
  readonly stored: number;
  /** Publishes not stored again since the hub opened it: their id was in the window. */
  readonly duplicates: number;
}

/** Which of a stream's messages `readStream()` gives: all it holds by default. */
export interface ReadStreamOptions {
  /** The first sequence. */
  from?: number;
  /** The last sequence. @default {the last stored as the read begins} */
  to?: number;
  /** From the first message stored at this time or later (a `Date`, or `Date.now()` ms). */
  since?: Date | number;
}

/** A message read back from a stream: the message, its stream sequence, its time and id. */
export interface StoredMessage extends Message {
  /** The stream it is stored in. */
  readonly stream: string;
  /** When it was stored, in `Date.now()` milliseconds. */
  readonly timestamp: number;
  /** The id it was published with; `""` for none. */
  readonly id: string;
}

/**
 * The size and time of each message from `base` on, 12 bytes a message in typed arrays grown
 * as needed: what limits need, without reading messages back.
 */
class Index {
  /** The sequence of slot 0. */
  base = 1;
  count = 0;
  #sizes = new Uint32Array(1024);
  #times = new Float64Array(1024);

  /** The last sequence indexed; `base - 1` when none is. */
  get last(): number {
    return this.base + this.count - 1;
  }

  push(size: number, time: number): void {
    if (this.count === this.#sizes.length) {
      const sizes = new Uint32Array(this.count * 2);
      sizes.set(this.#sizes);
      this.#sizes = sizes;
      const times = new Float64Array(this.count * 2);
      times.set(this.#times);
      this.#times = times;
    }
    this.#sizes[this.count] = size;
    this.#times[this.count++] = time;
  }

  /** The first sequence stored at `time` or later (times rise with sequences); `last + 1` for none. */
  firstAtOrAfter(time: number): number {
    const times = this.#times;
    return this.base + partitionPoint(this.count, (i) => times[i]! < time);
  }

  size(seq: number): number {
    return this.#sizes[seq - this.base]!;
  }

  time(seq: number): number {
    return this.#times[seq - this.base]!;
  }

  /** Forgets everything before `seq`, moving what is left to the front now and then. */
  dropBefore(seq: number): void {
    const n = seq - this.base;
    if (n <= 0) return;
    if (n < this.count) {
      this.#sizes.copyWithin(0, n, this.count);
      this.#times.copyWithin(0, n, this.count);
    }
    this.count = Math.max(0, this.count - n);
    this.base = seq;
  }
}

/**
 * A numeric option that must be above 0 (`Infinity` allowed), or `fallback` when not given;
 * `RangeError` "Cannot `op` as `what` must be above 0" otherwise.
 */
export function positiveOption(
  op: string,
  what: string,
  v: number | undefined,
  fallback: number,
): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !(v > 0)) {
    throw new RangeError(`Cannot ${op} as ${what} must be above 0: got ${v}`);
  }
  return v;
}

/** Every field of a config, checked; throws `RangeError`/`TypeError` naming what is wrong. */
export function fullConfig(config: StreamConfig): Required<StreamConfig> {
  const { name, subjects } = config;
  if (typeof name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new TypeError(
      `Cannot use stream name ${JSON.stringify(name)}: use 1 to 64 letters, digits, - or _`,
    );
  }
  if (!Array.isArray(subjects) || subjects.length === 0) {
    throw new TypeError(`Cannot add stream "${name}" as subjects must be a non-empty array`);
  }
  const positive = (what: string, v: number | undefined, fallback: number): number =>
    positiveOption(`add stream "${name}"`, what, v, fallback);
  const retention = config.retention ?? "limits";
  if (!["limits", "workqueue", "interest"].includes(retention)) {
    throw new RangeError(
      `Cannot add stream "${name}" as retention must be "limits", "workqueue" or "interest": got ${retention}`,
    );
  }
  const durability = config.durability ?? "always";
  if (!["always", "batch", "none"].includes(durability)) {
    throw new RangeError(
      `Cannot add stream "${name}" as durability must be "always", "batch" or "none": got ${durability}`,
    );
  }
  return {
    name,
    subjects: [...subjects],
    retention,
    maxMessages: positive("maxMessages", config.maxMessages, Infinity),
    maxBytes: positive("maxBytes", config.maxBytes, Infinity),
    maxAge: positive("maxAge", config.maxAge, Infinity),
    maxMessageSize: positive("maxMessageSize", config.maxMessageSize, 1024 * 1024),
    durability,
    duplicateWindow: positive("duplicateWindow", config.duplicateWindow, 120_000),
  };
}

/** What a stream needs of a consumer reading it: see `consumer.ts`. */
export interface StreamReader {
  /** The stream stored a message: deliver it if there is room. */
  wake(): void;
  /** The sequence below which this reader has finished every message. */
  finishedBelow(): number;
}

/** Messages kept in memory for readers to take without reading the log: the latest stored. */
const RECENT = 1024;

/** A stream's log and what is known of it; see the module doc. */
export class Stream {
  config: Required<StreamConfig>;
  /** The stream's directory: its log is in `log/`, its durable consumers in `consumers/`. */
  readonly home: string;
  readonly #dir: string;
  /** Its consumers. Under `"workqueue"` and `"interest"` their progress moves the floor. */
  readonly readers = new Set<StreamReader>();
  /** Set once the durable consumers are loaded: until then retention waits for them. */
  tracking = false;
  /** The latest messages stored while it has readers, by sequence: see {@linkcode RECENT}. */
  readonly #recent = new Map<number, StoredMessage>();
  #wal!: Wal;
  #index = new Index();
  /** Messages below this sequence are gone (limits, purge). */
  #floor = 1;
  #bytes = 0;
  /** Ids within the duplicate window, oldest first: the sequence each was stored as. */
  #ids = new Map<string, { seq: Promise<number>; time: number }>();
  #stored = 0;
  #duplicates = 0;
  /** The log failed a write or sync (a full disk): it is opened again before the next store. */
  #failed = false;
  #reloading: Promise<void> | undefined;

  /** Opens its logs (and its consumers') cutting a corrupt tail: `Wal.open`'s `repair`. */
  readonly repair: boolean;

  private constructor(config: Required<StreamConfig>, home: string, repair: boolean) {
    this.config = config;
    this.home = home;
    this.repair = repair;
    this.#dir = `${home}/log`;
  }

  /** Opens (or makes) the stream's log in `home/log` and rebuilds its index and id window. */
  static async open(
    config: Required<StreamConfig>,
    home: string,
    repair = false,
  ): Promise<Stream> {
    const stream = new Stream(config, home, repair);
    await stream.#load();
    return stream;
  }

  /** Opens the log (its recovery cutting a torn tail) and rebuilds everything from it. */
  async #load(): Promise<void> {
    const wal = await Wal.open(this.#dir, {
      sync: this.config.durability,
      ...(this.repair ? { repair: "truncate" } : {}),
      // Room for the largest message and what is stored beside it (topic, headers, id).
      maxRecordSize: Math.min(2 ** 31 - 1, Math.max(16 * MiB, this.config.maxMessageSize + MiB)),
    });
    try {
      // A purge stores its floor as a snapshot; limits are applied again below.
      const floor = Math.max(wal.firstSeq, (wal.snapshot?.seq ?? 0) + 1);
      const index = new Index();
      index.base = floor;
      const ids = new Map<string, { seq: Promise<number>; time: number }>();
      let bytes = 0;
      const since = Date.now() - this.config.duplicateWindow;
      for await (const rec of wal.read({ from: floor })) {
        const stored = decodeStoredHead(rec.data, rec.seq);
        index.push(rec.data.length, stored.timestamp);
        bytes += rec.data.length;
        if (stored.id !== "" && stored.timestamp >= since) {
          ids.set(stored.id, { seq: Promise.resolve(rec.seq), time: stored.timestamp });
        }
      }
      this.#wal = wal;
      this.#index = index;
      this.#floor = floor;
      this.#bytes = bytes;
      this.#ids = ids;
      await this.applyLimits();
    } catch (err) {
      await wal.close().catch(() => {});
      throw err;
    }
  }

  /**
   * After the log failed, opens it again: what it kept is the stream, whatever the failed
   * publishes were told. Fails as opening does while the disk is still full; the next store
   * tries again.
   */
  #reload(): Promise<void> {
    return this.#reloading ??= (async () => {
      try {
        await this.#wal.close().catch(() => {});
        await this.#load();
        this.#failed = false;
      } finally {
        this.#reloading = undefined;
      }
    })();
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * Stores `message` (published with `id`, `""` for none) and resolves once it is as durable as
   * the stream says; a duplicate id within the window resolves with the first one's sequence.
   */
  async store(message: Message, id: string): Promise<PublishAck> {
    const { name, maxMessageSize, durability } = this.config;
    if (message.data.length > maxMessageSize) {
      throw new IpcError(
        "EFRAMETOOLARGE",
        `Cannot store a message of ${message.data.length} bytes in stream "${name}": its maxMessageSize is ${maxMessageSize}`,
        { op: "publish" },
      );
    }
    if (this.#failed) await this.#reload();
    const now = Date.now();
    this.#forgetIds(now);
    const seen = id === "" ? undefined : this.#ids.get(id);
    if (seen !== undefined) {
      this.#duplicates++;
      return { stream: name, seq: await seen.seq, duplicate: true, durability };
    }
    const record = encodeStored(message, now, id);
    const seq = this.#wal.append(record);
    if (id !== "") {
      // Taken at once, so that the same id published again meanwhile finds it.
      const entry = { seq, time: now };
      this.#ids.set(id, entry);
      seq.catch(() => {
        if (this.#ids.get(id) === entry) this.#ids.delete(id);
      });
    }
    let stored: number;
    try {
      stored = await seq;
    } catch (err) {
      // A failed write or sync fails the log, which refuses every append until it is opened
      // again; a record over its size limit does not.
      if (!(err instanceof IpcError && err.code === "EFRAMETOOLARGE")) this.#failed = true;
      throw err;
    }
    this.#index.push(record.length, now);
    this.#bytes += record.length;
    this.#stored++;
    if (this.readers.size > 0) {
      this.#recent.set(stored, { ...message, seq: stored, stream: name, timestamp: now, id });
      if (this.#recent.size > RECENT) this.#recent.delete(this.#recent.keys().next().value!);
      for (const reader of this.readers) reader.wake();
    }
    await this.applyLimits();
    return { stream: name, seq: stored, duplicate: false, durability };
  }

  /** Forgets the ids older than the duplicate window, oldest first. */
  #forgetIds(now: number): void {
    const since = now - this.config.duplicateWindow;
    for (const [id, entry] of this.#ids) {
      if (entry.time >= since) break;
      this.#ids.delete(id);
    }
  }

  /** Moves the floor past the oldest messages while a limit is exceeded; whether it moved. */
  #advanceFloor(): boolean {
    const { maxMessages, maxBytes, maxAge } = this.config;
    const last = this.#index.last;
    const oldestAllowed = Date.now() - maxAge;
    const before = this.#floor;
    const finished = this.#finishedBelow();
    while (
      this.#floor <= last &&
      (last - this.#floor + 1 > maxMessages || this.#bytes > maxBytes ||
        this.#index.time(this.#floor) < oldestAllowed || this.#floor < finished)
    ) {
      this.#bytes -= this.#index.size(this.#floor);
      this.#floor++;
    }
    if (this.#floor === before) return false;
    this.#index.dropBefore(this.#floor);
    return true;
  }

  /** Under `"workqueue"` and `"interest"`, the sequence below which every reader is finished. */
  #finishedBelow(): number {
    const { retention } = this.config;
    if (retention === "limits" || !this.tracking) return 0;
    if (this.readers.size === 0) return retention === "interest" ? Infinity : 0;
    let below = Infinity;
    for (const reader of this.readers) below = Math.min(below, reader.finishedBelow());
    return below;
  }

  /**
   * Applies the limits, and removes the log's whole segments below the floor now and then (the
   * floor itself is found again from the limits on open).
   */
  async applyLimits(): Promise<void> {
    if (!this.#advanceFloor()) return;
    if (this.#floor - this.#wal.firstSeq >= 1024 || this.#floor > this.#index.last) {
      await this.#wal.truncateBefore(this.#floor);
    }
  }

  /** Removes every message; sequences go on from where they were. */
  async purge(): Promise<void> {
    const last = this.#index.last;
    if (last < this.#floor) return;
    await this.#wal.checkpoint(last, new Uint8Array(0));
    this.#floor = last + 1;
    this.#bytes = 0;
    this.#index.dropBefore(this.#floor);
  }

  /** The stream's state. */
  info(): StreamInfo {
    this.#advanceFloor(); // messages past maxAge go even when nothing is published
    const last = this.#index.last;
    const empty = this.#floor > last;
    return {
      config: this.config,
      messages: empty ? 0 : last - this.#floor + 1,
      bytes: this.#bytes,
      firstSeq: this.#floor,
      lastSeq: last,
      firstTime: empty ? undefined : this.#index.time(this.#floor),
      lastTime: empty ? undefined : this.#index.time(last),
    };
  }

  /** The sequence of the first message it holds; `lastSeq + 1` when it holds none. */
  get firstSeq(): number {
    return this.#floor;
  }

  /** The sequence of the last message it stored; 0 before the first. */
  get lastSeq(): number {
    return this.#index.last;
  }

  /** The first sequence stored at `time` or later; `lastSeq + 1` for none. */
  seqAt(time: number): number {
    return Math.max(this.#floor, this.#index.firstAtOrAfter(time));
  }

  /**
   * Up to `max` of the messages it holds from `from` on, and (but for the first) `maxBytes` of
   * them as stored, from memory when they are recent, else from the log; none past the last.
   */
  async fetch(from: number, max: number, maxBytes = Infinity): Promise<StoredMessage[]> {
    from = Math.max(from, this.#floor);
    let to = Math.min(from + max - 1, this.#index.last);
    if (maxBytes < Infinity && to >= from) {
      let bytes = this.#index.size(from);
      for (let seq = from + 1; seq <= to; seq++) {
        bytes += this.#index.size(seq);
        if (bytes > maxBytes) {
          to = seq - 1;
          break;
        }
      }
    }
    const out: StoredMessage[] = [];
    let seq = from;
    for (; seq <= to; seq++) {
      const recent = this.#recent.get(seq);
      if (recent === undefined) break;
      out.push(recent);
    }
    if (seq > to) return out;
    for await (const m of this.messages({ from: seq, to })) out.push(m);
    return out;
  }

  /** Its counters. */
  stats(): StreamStats {
    const { messages, bytes, firstSeq, lastSeq } = this.info();
    return {
      stream: this.name,
      messages,
      bytes,
      firstSeq,
      lastSeq,
      stored: this.#stored,
      duplicates: this.#duplicates,
    };
  }

  /** The stored messages from `from` (the first held, by default) to `to` (the last). */
  async *messages(options: ReadStreamOptions = {}): AsyncGenerator<StoredMessage, void, void> {
    this.#advanceFloor();
    const since = options.since === undefined
      ? this.#floor
      : this.#index.firstAtOrAfter(Number(options.since));
    const from = Math.max(options.from ?? this.#floor, this.#floor, since);
    const to = Math.min(options.to ?? this.#index.last, this.#index.last);
    if (from > to) return;
    for await (const rec of this.#wal.read({ from, to })) {
      if (rec.seq < this.#floor) continue; // removed by a limit while reading
      const { message, timestamp, id } = decodeStored(rec.data, rec.seq);
      yield { ...message, stream: this.name, timestamp, id };
    }
  }

  /** Closes its log, once what was stored is synced. */
  close(): Promise<void> {
    this.#recent.clear();
    return this.#wal.close();
  }
}
