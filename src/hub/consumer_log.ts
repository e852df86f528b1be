/**
 * A durable consumer's position on disk: a write-ahead log of the messages it finished (acked,
 * or terminated) and of redeliveries, compacted now and then into a snapshot of where it was.
 * What it keeps is bounded by the consumer's pending messages, not by how many it has acked.
 *
 * Records are 13 bytes: a kind (1 done, 2 attempt), the stream sequence (u64), and the attempt
 * (u32). A snapshot is JSON: `{ next, pending: [[seq, attempt], …], done: [seq, …] }`: every
 * sequence below `next` that is not pending is finished, and so is each of `done` (past `next`).
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { SyncMode } from "../wal/options.ts";
import { Wal } from "../wal/wal.ts";

const DONE = 1;
const ATTEMPT = 2;
const RECORD_SIZE = 13;
/** Records between snapshots. */
const COMPACT_EVERY = 1024;

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
}

function encode(kind: number, seq: number, attempt: number): Uint8Array {
  const bytes = new Uint8Array(RECORD_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, kind);
  view.setBigUint64(1, BigInt(seq));
  view.setUint32(9, Math.min(attempt, 0xffff_ffff));
  return bytes;
}

/** A durable consumer's log; see the module doc. */
export class ConsumerLog {
  readonly #wal: Wal;
  readonly #path: string;
  /** Records appended since the last snapshot. */
  #since = 0;
  /** The log sequence of the last record whose append resolved: what a snapshot may cover. */
  #resolved = 0;
  #compacting: Promise<void> | undefined;

  private constructor(wal: Wal, path: string) {
    this.#wal = wal;
    this.#path = path;
  }

  /** Opens (or makes) the log in `dir` and reads where its consumer stood. */
  static async open(
    dir: string,
    sync: SyncMode,
  ): Promise<{ log: ConsumerLog; position: ConsumerPosition }> {
    const wal = await Wal.open(dir, { sync, segmentSize: 1024 * 1024 });
    try {
      const position: ConsumerPosition = {
        next: undefined,
        pending: new Map(),
        doneAhead: new Set(),
        attemptsAhead: new Map(),
      };
      const snapshot = wal.snapshot;
      if (snapshot !== undefined) {
        const state = parseSnapshot(snapshot.state, dir);
        position.next = state.next;
        for (const [seq, attempt] of state.pending) position.pending.set(seq, attempt);
        for (const seq of state.done) position.doneAhead.add(seq);
      }
      const log = new ConsumerLog(wal, dir);
      for await (
        const rec of wal.read({ from: Math.max(wal.firstSeq, (snapshot?.seq ?? 0) + 1) })
      ) {
        if (rec.data.length !== RECORD_SIZE) throw log.#corrupt(rec.seq, "its size is wrong");
        const view = new DataView(rec.data.buffer, rec.data.byteOffset, RECORD_SIZE);
        const seq = Number(view.getBigUint64(1));
        const attempt = view.getUint32(9);
        const behind = position.next !== undefined && seq < position.next;
        switch (view.getUint8(0)) {
          case DONE:
            if (behind) position.pending.delete(seq);
            else position.doneAhead.add(seq);
            break;
          case ATTEMPT:
            if (behind) {
              if (position.pending.has(seq)) position.pending.set(seq, attempt);
            } else position.attemptsAhead.set(seq, attempt);
            break;
          default:
            throw log.#corrupt(rec.seq, `its kind ${view.getUint8(0)} is unknown`);
        }
        log.#resolved = rec.seq;
        log.#since++;
      }
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
  async done(seq: number, state: () => Uint8Array): Promise<void> {
    await this.#append(DONE, seq, 0, state);
  }

  /** Records that message `seq` is being delivered for the `attempt`th time; not waited for. */
  attempt(seq: number, attempt: number, state: () => Uint8Array): void {
    this.#append(ATTEMPT, seq, attempt, state).catch(() => {}); // the next done() reports it
  }

  async #append(
    kind: number,
    seq: number,
    attempt: number,
    state: () => Uint8Array,
  ): Promise<void> {
    const logSeq = await this.#wal.append(encode(kind, seq, attempt));
    if (logSeq > this.#resolved) this.#resolved = logSeq;
    if (++this.#since >= COMPACT_EVERY && this.#compacting === undefined) {
      // The state is taken now: every append up to #resolved is in it, none after is needed.
      const covered = this.#resolved;
      const snapshot = state();
      this.#since = 0;
      this.#compacting = this.#wal.checkpoint(covered, snapshot).then(() => {}, () => {})
        .finally(() => (this.#compacting = undefined));
    }
  }

  /** Saves `state` as the snapshot when anything was recorded since the last one, then closes. */
  async close(state: () => Uint8Array): Promise<void> {
    await this.#compacting;
    try {
      if (this.#since > 0 && this.#resolved > 0) {
        await this.#wal.checkpoint(this.#resolved, state());
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
): { next: number; pending: [number, number][]; done: number[] } {
  try {
    const state = JSON.parse(new TextDecoder().decode(bytes));
    if (
      Number.isSafeInteger(state?.next) && Array.isArray(state.pending) &&
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

/** A consumer's position as a snapshot: what {@linkcode ConsumerLog.open} reads back. */
export function encodePosition(
  next: number,
  pending: Iterable<[number, number]>,
  done: Iterable<number>,
): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ next, pending: [...pending], done: [...done] }));
}
