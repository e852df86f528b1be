/**
 * A durable consumer's position on disk: a write-ahead log of the messages it finished (acked,
 * or terminated) and of redeliveries, compacted now and then (every MiB or so of records) into
 * a snapshot of where it was.
 * What it keeps is bounded by the consumer's pending messages, not by how many it has acked.
 *
 * A record is a kind, then for kind 1 (done) the stream sequences finished together (u64 each:
 * the acks of one moment share a record), for kind 2 (attempt) a stream sequence (u64) and
 * which delivery of it began (u32), for kind 3 (delivered) a stream sequence (u64) below which
 * messages may have been delivered: it is written ahead of the deliveries it allows, so that
 * after a crash no message is taken for new (attempt 1) that may have been delivered before.
 * A snapshot is JSON: `{ next, pending: [[seq, attempt], …], done: [seq, …], delivered }`: every
 * sequence below `next` that is not pending is finished, and so is each of `done` (past `next`).
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { nextTurn } from "../runtime/platform.ts";
import type { SyncMode } from "../wal/options.ts";
import { Wal } from "../wal/wal.ts";

const DONE = 1;
const ATTEMPT = 2;
const DELIVERED = 3;
const ATTEMPT_SIZE = 13;
const DELIVERED_SIZE = 9;
/**
 * Bytes of records between snapshots, at least; and at least this many times the last
 * snapshot's size. A snapshot syncs the log and writes a file (a few ms on a disk), so it comes
 * seldom enough to cost little per ack, and often enough that opening replays little.
 */
const COMPACT_BYTES = 1024 * 1024;
const COMPACT_RATIO = 4;

/** Where a consumer stood when its log was opened. */
export interface ConsumerPosition {
  /** The next sequence it had not looked at; `undefined` for a log that never had a snapshot. */
  next: number | undefined;
  /** Messages delivered and not finished, with the attempts they had. */
  pending: Map<number, number>;
  /** Messages finished at or past `next` (after the snapshot): skipped when they come. */
  doneAhead: Set<number>;
  /** Attempts recorded since the snapshot, for messages past `next`. */
  attemptsAhead: Map<number, number>;
  /** Messages below this sequence may have been delivered (past `next`: once each). */
  delivered: number;
}

function setSeq(view: DataView, at: number, seq: number): void {
  view.setUint32(at, Math.floor(seq / 2 ** 32));
  view.setUint32(at + 4, seq >>> 0);
}

function getSeq(view: DataView, at: number): number {
  return view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4);
}

function encodeDone(seqs: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(1 + 8 * seqs.length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, DONE);
  for (let i = 0; i < seqs.length; i++) setSeq(view, 1 + 8 * i, seqs[i]!);
  return bytes;
}

function encodeDelivered(below: number): Uint8Array {
  const bytes = new Uint8Array(DELIVERED_SIZE);
  bytes[0] = DELIVERED;
  setSeq(new DataView(bytes.buffer), 1, below);
  return bytes;
}

function encodeAttempt(seq: number, attempt: number): Uint8Array {
  const bytes = new Uint8Array(ATTEMPT_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, ATTEMPT);
  setSeq(view, 1, seq);
  view.setUint32(9, Math.min(attempt, 0xffff_ffff));
  return bytes;
}

/** What a consumer says of itself for a snapshot; the log adds its delivered mark. */
export interface ConsumerState {
  /** The next sequence it has not looked at. */
  readonly next: number;
  /** Messages delivered and not finished, with their attempts. */
  readonly pending: Iterable<readonly [number, number]>;
  /** Messages finished at or past `next`. */
  readonly done: Iterable<number>;
}

/** A durable consumer's log; see the module doc. */
export class ConsumerLog {
  readonly #wal: Wal;
  readonly #path: string;
  readonly #sync: SyncMode;
  /** Bytes of records appended since the last snapshot, and that snapshot's size. */
  #since = 0;
  #snapshotSize = 0;
  /** The highest delivered mark stored: messages below it may have been delivered. */
  #delivered = 0;
  /** The log sequence of the last record whose append resolved: what a snapshot may cover. */
  #resolved = 0;
  #compacting: Promise<void> | undefined;
  /** Sequences finished this moment, recorded together once it ends, and their promise. */
  #done: number[] = [];
  #doneStored: Promise<void> | undefined;

  private constructor(wal: Wal, path: string, sync: SyncMode) {
    this.#wal = wal;
    this.#path = path;
    this.#sync = sync;
  }

  /** Opens (or makes) the log in `dir` and reads where its consumer stood. */
  static async open(
    dir: string,
    sync: SyncMode,
    repair: boolean,
  ): Promise<{ log: ConsumerLog; position: ConsumerPosition }> {
    const wal = await Wal.open(dir, {
      sync,
      segmentSize: 1024 * 1024,
      ...(repair ? { repair: "truncate" } : {}),
    });
    try {
      const position: ConsumerPosition = {
        next: undefined,
        pending: new Map(),
        doneAhead: new Set(),
        attemptsAhead: new Map(),
        delivered: 0,
      };
      const snapshot = wal.snapshot;
      if (snapshot !== undefined) {
        const state = parseSnapshot(snapshot.state, dir);
        position.next = state.next;
        position.delivered = state.delivered;
        for (const [seq, attempt] of state.pending) position.pending.set(seq, attempt);
        for (const seq of state.done) position.doneAhead.add(seq);
      }
      const log = new ConsumerLog(wal, dir, sync);
      log.#snapshotSize = snapshot?.state.length ?? 0;
      for await (
        const rec of wal.read({ from: Math.max(wal.firstSeq, (snapshot?.seq ?? 0) + 1) })
      ) {
        const { data } = rec;
        const view = new DataView(data.buffer, data.byteOffset, data.length);
        const behind = (seq: number) => position.next !== undefined && seq < position.next;
        const kind = data[0];
        if (kind === DONE && data.length > 1 && (data.length - 1) % 8 === 0) {
          for (let at = 1; at < data.length; at += 8) {
            const seq = getSeq(view, at);
            if (behind(seq)) position.pending.delete(seq);
            else position.doneAhead.add(seq);
          }
          log.#since += data.length;
        } else if (kind === ATTEMPT && data.length === ATTEMPT_SIZE) {
          const seq = getSeq(view, 1);
          const attempt = view.getUint32(9);
          if (!behind(seq)) position.attemptsAhead.set(seq, attempt);
          else if (position.pending.has(seq)) position.pending.set(seq, attempt);
          log.#since += data.length;
        } else if (kind === DELIVERED && data.length === DELIVERED_SIZE) {
          position.delivered = Math.max(position.delivered, getSeq(view, 1));
          log.#since += data.length;
        } else {
          throw log.#corrupt(
            rec.seq,
            `it is not a record of kind 1, 2 or 3 (kind ${kind}, ${data.length} bytes)`,
          );
        }
        log.#resolved = rec.seq;
      }
      log.#delivered = position.delivered;
      return { log, position };
    } catch (err) {
      await wal.close().catch(() => {});
      throw err;
    }
  }

  #corrupt(seq: number, why: string): IpcError {
    return new IpcError(
      "ECORRUPT",
      `Cannot read record ${seq} of consumer log "${this.#path}": ${why}`,
      {
        op: "open",
        path: this.#path,
      },
    );
  }

  /**
   * Records that message `seq` is finished; resolves once that is as durable as the stream's
   * `durability`. `state` gives the consumer's position for the snapshot taken now and then.
   */
  done(seq: number, state: () => ConsumerState): Promise<void> {
    this.#done.push(seq);
    // The acks of this turn of the event loop (the frames read from a socket, a loop over
    // messages) go in one record: one write, and with "always" one sync, for all of them.
    return this.#doneStored ??= new Promise<void>((resolve) => nextTurn(resolve)).then(() => {
      const seqs = this.#done;
      this.#done = [];
      this.#doneStored = undefined;
      return this.#append(encodeDone(seqs), state);
    });
  }

  /**
   * Records that messages below `below` may be delivered; resolves once that is stored as far
   * as a crash of this process goes (synced on an `"always"` stream), after which they may be.
   */
  async delivered(below: number, state: () => ConsumerState): Promise<void> {
    const stored = this.#append(encodeDelivered(below), state, () => {
      // Before a snapshot can be taken: the snapshot that covers this record holds the mark.
      if (below > this.#delivered) this.#delivered = below;
    });
    if (this.#sync === "always") return await stored;
    stored.catch(() => {}); // a failed log fails the flush below, and the next done()
    await this.#wal.flush();
  }

  /** Records that message `seq` is being delivered for the `attempt`th time; not waited for. */
  attempt(seq: number, attempt: number, state: () => ConsumerState): void {
    this.#append(encodeAttempt(seq, attempt), state).catch(() => {}); // the next done() reports it
  }

  async #append(
    record: Uint8Array,
    state: () => ConsumerState,
    stored?: () => void,
  ): Promise<void> {
    const logSeq = await this.#wal.append(record);
    if (logSeq > this.#resolved) this.#resolved = logSeq;
    stored?.();
    this.#since += record.length;
    if (
      this.#since >= Math.max(COMPACT_BYTES, COMPACT_RATIO * this.#snapshotSize) &&
      this.#compacting === undefined
    ) {
      // The state is taken now: every append up to #resolved is in it, none after is needed.
      const covered = this.#resolved;
      const snapshot = this.#snapshot(state());
      this.#since = 0;
      this.#snapshotSize = snapshot.length;
      this.#compacting = this.#wal.checkpoint(covered, snapshot).then(() => {}, () => {})
        .finally(() => (this.#compacting = undefined));
    }
  }

  /** A snapshot's bytes: the consumer's `state` and the delivered mark. */
  #snapshot({ next, pending, done }: ConsumerState): Uint8Array {
    return new TextEncoder().encode(
      JSON.stringify({ next, pending: [...pending], done: [...done], delivered: this.#delivered }),
    );
  }

  /** Saves `state` as the snapshot when anything was recorded since the last one, then closes. */
  async close(state: () => ConsumerState): Promise<void> {
    await this.#doneStored?.catch(() => {});
    await this.#compacting;
    try {
      if (this.#since > 0 && this.#resolved > 0) {
        await this.#wal.checkpoint(this.#resolved, this.#snapshot(state()));
      }
    } catch {
      // The records are there: the next open replays them.
    }
    await this.#wal.close();
  }
}

/** A snapshot's state, checked; `ECORRUPT` naming `dir` for anything else. */
function parseSnapshot(
  bytes: Uint8Array,
  dir: string,
): { next: number; pending: [number, number][]; done: number[]; delivered: number } {
  try {
    const state = JSON.parse(new TextDecoder().decode(bytes));
    if (
      Number.isSafeInteger(state?.next) && Number.isSafeInteger(state.delivered) &&
      Array.isArray(state.pending) &&
      state.pending.every((p: unknown) =>
        Array.isArray(p) && p.length === 2 && p.every((n) => Number.isSafeInteger(n))
      ) && Array.isArray(state.done) && state.done.every((n: unknown) => Number.isSafeInteger(n))
    ) return state;
  } catch {
    // reported below
  }
  throw new IpcError("ECORRUPT", `Cannot read the snapshot of consumer log "${dir}"`, {
    op: "open",
    path: dir,
  });
}
