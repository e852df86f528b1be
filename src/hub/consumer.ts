/**
 * A stream's consumer, as the hub keeps it: where it is in the stream, the messages it
 * delivered and waits to hear about, their deadlines and attempts, the readers it shares its
 * messages among, and (for a durable one) its log. Readers in this process and across a socket
 * plug in as {@linkcode ConsumerMember}s.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { Deadlines, type Expiring } from "../internal/async.ts";
import { IndexedHeap } from "../internal/heap.ts";
import { partitionPoint } from "../internal/search.ts";
import { HashRing } from "./_ring.ts";
import { notBeforeOf } from "./schedule.ts";
import { NO_HEADERS } from "./subscription.ts";
import { ConsumerLog, type ConsumerPosition, type ConsumerState } from "./consumer_log.ts";
import type { Settlement } from "./protocol.ts";
import { positiveOption, type StoredMessage, type Stream, type StreamReader } from "./stream.ts";
import { topicMatches, TopicMemo, validatePattern, validateTopic } from "./topics.ts";

/**
 * Where a new consumer starts: every message the stream holds (`"all"`), only those stored from
 * now on (`"new"`), the last one stored (`"last"`), a sequence (`{ seq }`), or the first message
 * stored at a time or later (`{ time }`, a `Date` or `Date.now()` ms).
 */
export type DeliverPolicy =
  | "all"
  | "new"
  | "last"
  | { readonly seq: number }
  | { readonly time: Date | number };

/** Options of `consume()`. */
export interface ConsumeOptions {
  /**
   * Makes (or joins) a durable consumer of this name: its position is stored, and every reader
   * of the same name shares its messages (a work queue). Without it the consumer is ephemeral:
   * it ends with its reader. Letters, digits, `-` and `_`, at most 64.
   */
  durable?: string;
  /** Only messages whose topic matches this pattern. @default {">"} */
  filter?: string;
  /** Where a new consumer starts; a durable one goes on where it was. @default {"all"} */
  deliver?: DeliverPolicy;
  /** Milliseconds a delivered message waits for its ack before it is delivered again. @default {30000} */
  ackWait?: number;
  /**
   * The ack wait of each attempt, in ms, instead of `ackWait`: the first for the first
   * delivery, and so on; the last serves every later attempt.
   */
  backoff?: readonly number[];
  /** Deliveries of one message at most; then it goes to `deadLetter`. @default {Infinity} */
  maxDeliver?: number;
  /** Messages delivered and not yet acknowledged, at most; delivery pauses there. @default {1000} */
  maxAckPending?: number;
  /**
   * Where a message goes after `maxDeliver` attempts or `term()`: a topic, published to with
   * headers that name the stream, consumer, sequence, attempts and reason. Without it such a
   * message is dropped (and counted).
   */
  deadLetter?: string;
  /**
   * Messages this reader holds unfinished at most (delivered and not acknowledged): the rest
   * wait in the stream, or go to the consumer's other readers. @default {256}
   */
  buffer?: number;
  /**
   * An ordered consumer: ephemeral, one reader, every message once and in order, acknowledged
   * as it is read (`ack()` is not needed, and returns that acknowledgement). Across a socket it
   * starts again after the last message it saw when its connection is lost.
   */
  ordered?: boolean;
  /** Stops reading (as `close()` does) when aborted. */
  signal?: AbortSignal;
}

/** A consumer's settings, every default filled in: what `consumerInfo()` gives back. */
export interface ConsumerConfig {
  /** Its name: the durable name, or one the hub made up for an ephemeral consumer. */
  readonly name: string;
  /** Whether its position is stored. */
  readonly durable: boolean;
  /** The topics it takes. */
  readonly filter: string;
  /** The first sequence it was to deliver when it was made. */
  readonly start: number;
  /** Milliseconds a delivery waits for its ack; `Infinity` for an ordered consumer. */
  readonly ackWait: number;
  /** The ack wait of each attempt, when given: see `ConsumeOptions.backoff`. */
  readonly backoff: readonly number[];
  /** Deliveries of one message at most. */
  readonly maxDeliver: number;
  /** Messages delivered and not finished, at most. */
  readonly maxAckPending: number;
  /** The dead letter topic; `""` for none. */
  readonly deadLetter: string;
  /** Whether it is an ordered consumer. */
  readonly ordered: boolean;
}

/** A consumer's state, from `consumerInfo()` and `consumers()`. */
export interface ConsumerInfo {
  /** The stream it reads. */
  readonly stream: string;
  /** Its settings. */
  readonly config: ConsumerConfig;
  /** Readers attached now. */
  readonly readers: number;
  /** Messages delivered and not finished yet (acknowledged or terminated), delayed naks included. */
  readonly pending: number;
  /** Delayed messages (`delay`, `notBefore`) read from the stream and waiting for their time. */
  readonly scheduled: number;
  /** Of those, messages waiting to be delivered again now. */
  readonly redeliveries: number;
  /** Every message below this sequence is finished. */
  readonly ackFloor: number;
  /** Messages of the stream it has not looked at yet: the last sequence minus where it is. */
  readonly lag: number;
  /** Deliveries since the hub opened it, first ones and repeats. */
  readonly delivered: number;
  /** Of those, repeats: after `ackWait`, a nak, or a reader that went. */
  readonly redelivered: number;
  /** Messages acknowledged since the hub opened it. */
  readonly acked: number;
  /** Messages sent to the dead letter topic (or dropped without one) since the hub opened it. */
  readonly deadLettered: number;
}

/** What a stream message read through a consumer carries, beside the message itself. */
export interface ConsumedMessage extends StoredMessage {
  /**
   * Which delivery of this message this is: 1 for the first; 2 or more whenever it may have
   * been delivered before, to any reader, even before a crash of the hub.
   */
  readonly attempt: number;
  /**
   * Acknowledges it: it is not delivered to this consumer again. Resolves once that is stored
   * (synced on an `"always"` stream); rejects with `ENOTPENDING` when the message is no longer
   * waiting for this reader (acknowledged already, or delivered again elsewhere after its ack
   * wait or its reader's connection ended).
   */
  ack(): Promise<void>;
  /** Gives it back, to be delivered again at once or after `delay` ms. */
  nak(options?: NakOptions): Promise<void>;
  /** Gives up on it: it goes to the dead letter topic, if any, with `reason`, and is finished. */
  term(reason?: string): Promise<void>;
  /** Says it is still being worked on: its ack wait starts again. */
  working(): Promise<void>;
}

/** Options of `nak()`. */
export interface NakOptions {
  /** Milliseconds before it is delivered again. @default {0} */
  delay?: number;
}

/** A reader of a consumer, in this process or across a socket. */
export interface ConsumerMember {
  /** Unique among the consumer's readers: it places the reader on the key ring. */
  readonly id: number;
  /** Messages it may hold unfinished. */
  readonly window: number;
  /** Messages it holds unfinished now; the consumer counts them. */
  held: number;
  /** Hands it a message, attempt `attempt`. */
  give(message: StoredMessage, attempt: number): void;
  /** The consumer is gone (deleted, or its hub closed): nothing more comes. */
  end(error: IpcError): void;
}

/** What a consumer hands back to the hub: a message for the dead letter topic. */
export type DeadLetterSink = (
  message: StoredMessage,
  consumer: ConsumerConfig,
  attempts: number,
  reason: string,
) => Promise<unknown>;

/** A message delivered and not finished. */
class Pending implements Expiring {
  readonly seq: number;
  attempt: number;
  deadline = Infinity;
  /** The reader that holds it; `undefined` while it waits to be delivered again. */
  member: ConsumerMember | undefined;
  /** Its ack (or term) is being stored: it is finished once that resolves. */
  settling = false;
  /** A delayed message waiting for its time, not delivered yet: its deadline is that time. */
  parked = false;
  /** A delayed message whose time came: from now on delivered like every other. */
  due = false;
  readonly #expired: (p: Pending) => void;

  constructor(seq: number, attempt: number, expired: (p: Pending) => void) {
    this.seq = seq;
    this.attempt = attempt;
    this.#expired = expired;
  }

  expire(): void {
    this.#expired(this);
  }
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
let ephemerals = 0;

/** `options` checked and filled in for a new consumer of `stream`. */
export function consumerConfig(stream: Stream, options: ConsumeOptions): ConsumerConfig {
  const { durable, ordered = false } = options;
  const op = `consume stream "${stream.name}"`;
  if (durable !== undefined && (typeof durable !== "string" || !NAME.test(durable))) {
    throw new TypeError(
      `Cannot ${op} as durable ${JSON.stringify(durable)} is not 1 to 64 letters, digits, - or _`,
    );
  }
  if (ordered && durable !== undefined) {
    throw new TypeError(`Cannot ${op} as an ordered consumer cannot be durable`);
  }
  const filter = options.filter ?? ">";
  validatePattern(filter);
  const positive = (what: string, v: number | undefined, fallback: number): number =>
    positiveOption(op, what, v, fallback);
  const whole = (what: string, v: number | undefined, fallback: number): number => {
    const n = positive(what, v, fallback);
    if (n !== Infinity && !Number.isSafeInteger(n)) {
      throw new RangeError(`Cannot ${op} as ${what} must be a whole number: got ${v}`);
    }
    return n;
  };
  const backoff = options.backoff ?? [];
  if (!Array.isArray(backoff) || backoff.some((ms) => typeof ms !== "number" || !(ms > 0))) {
    throw new RangeError(
      `Cannot ${op} as backoff must be an array of ms above 0: got ${JSON.stringify(backoff)}`,
    );
  }
  const deadLetter = options.deadLetter ?? "";
  if (deadLetter !== "") validateTopic(deadLetter);
  return {
    name: durable ?? `_ephemeral-${++ephemerals}`,
    durable: durable !== undefined,
    filter,
    start: startOf(stream, options.deliver ?? "all", op),
    ackWait: ordered ? Infinity : positive("ackWait", options.ackWait, 30_000),
    backoff: ordered ? [] : [...backoff],
    maxDeliver: whole("maxDeliver", options.maxDeliver, Infinity),
    maxAckPending: whole("maxAckPending", options.maxAckPending, 1000),
    deadLetter,
    ordered,
  };
}

/** The first sequence a new consumer delivers under `deliver`. */
function startOf(stream: Stream, deliver: DeliverPolicy, op: string): number {
  if (deliver === "all") return stream.firstSeq;
  if (deliver === "new") return stream.lastSeq + 1;
  if (deliver === "last") return Math.max(stream.firstSeq, stream.lastSeq);
  if (typeof deliver === "object" && deliver !== null) {
    if ("seq" in deliver) {
      if (Number.isSafeInteger(deliver.seq) && deliver.seq >= 1) return deliver.seq;
    } else if ("time" in deliver) {
      const time = Number(deliver.time);
      if (Number.isFinite(time)) return stream.seqAt(time);
    }
  }
  throw new RangeError(
    `Cannot ${op} as deliver must be "all", "new", "last", { seq } (a whole number from 1) or ` +
      `{ time }: got ${JSON.stringify(deliver)}`,
  );
}

/** Whether a durable consumer's stored settings and `options` agree. */
export function sameConsumer(config: ConsumerConfig, options: ConsumeOptions): string | undefined {
  const given = options.filter ?? ">";
  if (given !== config.filter) return `filter "${given}" (it has "${config.filter}")`;
  const dl = options.deadLetter ?? "";
  if (dl !== config.deadLetter) return `deadLetter "${dl}" (it has "${config.deadLetter}")`;
  return undefined;
}

/**
 * Messages read from the stream at a time, ahead of delivery, and their bytes at most (one
 * message is read whatever its size). Each read of the log costs a few system calls: larger reads
 * make catching up on a backlog cheaper.
 */
const READ_AHEAD = 4096;
const READ_AHEAD_BYTES = 1024 * 1024;

/**
 * Sequences a durable consumer marks in its log as delivered, ahead of delivering them; the
 * next mark is written once half are used, so deliveries seldom wait for it. After a crash, a
 * message below the mark comes as a repeat (attempt 2 or more) even if it had not gone out: it
 * may have. The mark never covers a message stored after the crash.
 */
const DELIVERY_LEASE = 1024;

/** A consumer of a stream; see the module doc. */
export class StreamConsumer implements StreamReader {
  readonly stream: Stream;
  config: ConsumerConfig;
  readonly #log: ConsumerLog | undefined;
  readonly #deadLetter: DeadLetterSink;
  /** The next sequence to look at. */
  #next: number;
  /**
   * Messages delivered and not finished, by sequence, in the order first delivered: its
   * first entry is the lowest sequence (entries are added as `#next` rises and never again).
   */
  readonly #pending = new Map<number, Pending>();
  /** Sequences of `#pending` to deliver again now, lowest first. */
  readonly #ready: number[] = [];
  /** Finished past `#next` (recorded before a restart): skipped when they come. */
  readonly #doneAhead: Set<number>;
  /** Attempts recorded past `#next` before a restart. */
  readonly #attemptsAhead: Map<number, number>;
  /** Messages from `#next` on below this may have been delivered before a restart. */
  readonly #deliveredBefore: number;
  /** New messages below this may be delivered: the log says so (`Infinity` without a log). */
  #leased: number;
  /** The mark being written, and its promise. */
  #leasing: Promise<void> | undefined;
  #leaseTarget = 0;
  readonly #members: ConsumerMember[] = [];
  /** Whether its filter takes a topic. */
  readonly #takes = new TopicMemo<boolean>();
  #ring: HashRing<ConsumerMember> | undefined;
  #turn = 0;
  // A redelivery to come keeps the process alive, as a reader waiting for it would expect.
  readonly #deadlines = new Deadlines();
  /** Of `#pending`, delayed messages waiting for their time: they do not count as delivered. */
  #parked = 0;
  /**
   * Delayed messages whose time came, not delivered yet, by their time: they go once the
   * messages read with them have been looked at, so that those due earlier go first.
   */
  readonly #dueReady = new IndexedHeap<Pending>();
  /** An ordered consumer's wake for the delayed message it waits at. */
  #dueWake: Expiring | undefined;
  /** Messages read from `#next` on, not delivered yet; `#aheadAt` is the first. */
  #ahead: StoredMessage[] = [];
  #aheadAt = 0;
  #pumping = false;
  #again = false;
  #closed = false;
  #delivered = 0;
  #redelivered = 0;
  #acked = 0;
  #deadLettered = 0;

  private constructor(
    stream: Stream,
    config: ConsumerConfig,
    log: ConsumerLog | undefined,
    position: ConsumerPosition | undefined,
    deadLetter: DeadLetterSink,
  ) {
    this.stream = stream;
    this.config = config;
    this.#log = log;
    this.#deadLetter = deadLetter;
    this.#next = position?.next ?? config.start;
    this.#doneAhead = position?.doneAhead ?? new Set();
    this.#attemptsAhead = position?.attemptsAhead ?? new Map();
    this.#leased = log === undefined ? Infinity : position?.delivered ?? 0;
    // A message stored after the crash (at or past the stream's end now) cannot have gone out.
    this.#deliveredBefore = Math.min(position?.delivered ?? 0, stream.lastSeq + 1);
    // What was pending before the restart is delivered again first, lowest sequence first.
    const pending = [...(position?.pending ?? [])].sort((a, b) => a[0] - b[0]);
    for (const [seq, attempt] of pending) {
      this.#pending.set(seq, new Pending(seq, attempt, this.#expired));
      this.#ready.push(seq);
    }
  }

  /**
   * Opens a consumer of `stream`: a durable one's log in `dir` (its position read back), an
   * ephemeral one (no `dir`) in memory.
   */
  static async open(
    stream: Stream,
    config: ConsumerConfig,
    dir: string | undefined,
    deadLetter: DeadLetterSink,
  ): Promise<StreamConsumer> {
    if (dir === undefined) {
      return new StreamConsumer(stream, config, undefined, undefined, deadLetter);
    }
    const { log, position } = await ConsumerLog.open(
      dir,
      stream.config.durability,
      stream.repair,
    );
    return new StreamConsumer(stream, config, log, position, deadLetter);
  }

  get name(): string {
    return this.config.name;
  }

  /** Readers attached now. */
  get readers(): number {
    return this.#members.length;
  }

  /** A reader joins: it shares the consumer's messages with the others. */
  attach(member: ConsumerMember): void {
    if (this.#closed) {
      throw new IpcError("ECLOSED", `Cannot read consumer "${this.name}" as it is closed`);
    }
    this.#members.push(member);
    this.#ring = undefined;
    this.wake();
  }

  /** A reader leaves: the messages it held go to the others at once. */
  detach(member: ConsumerMember): void {
    const i = this.#members.indexOf(member);
    if (i < 0) return;
    this.#members.splice(i, 1);
    this.#ring = undefined;
    for (const p of this.#pending.values()) {
      if (p.member === member && !p.settling) this.#release(p, 0);
    }
    member.held = 0;
    this.wake();
  }

  /** Delivers what there is room for. */
  wake(): void {
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void (async () => {
      try {
        do {
          this.#again = false;
          await this.#fill();
        } while (this.#again && !this.#closed);
      } catch (err) {
        // The stream failed to read: a corrupt record (ECORRUPT), or a failing disk. Its readers
        // hear of it, rather than waiting for messages that cannot come; what they held goes
        // back, and a new reader tries again.
        if (!this.#closed) {
          const error = err instanceof IpcError
            ? err
            : new IpcError("EIO", `Cannot read stream "${this.stream.name}": ${err}`, {
              cause: err,
            });
          for (const member of [...this.#members]) {
            this.detach(member);
            member.end(error);
          }
        }
      } finally {
        this.#pumping = false;
      }
    })();
  }

  /** The sequence below which every message is finished: what retention may remove. */
  finishedBelow(): number {
    for (const seq of this.#pending.keys()) return seq;
    return this.#next;
  }

  /** Delivers redeliveries, then new messages, while readers have room. */
  async #fill(): Promise<void> {
    const { filter, maxDeliver, maxAckPending } = this.config;
    while (!this.#closed && this.#members.length > 0) {
      if (this.#ready.length > 0) {
        const seq = this.#ready[0]!;
        const [message] = await this.stream.fetch(seq, 1);
        if (this.#ready[0] !== seq) continue; // changed while reading
        const p = this.#pending.get(seq)!;
        if (message?.seq !== seq) {
          // Removed from the stream meanwhile (limits, purge): nothing left to deliver.
          this.#ready.shift();
          this.#pending.delete(seq);
          continue;
        }
        // Read back after a restart, a delayed message waits for its time again, or (delivered
        // before the restart, or due meanwhile) goes with the others whose time came, by time.
        const due = p.due ? undefined : notBeforeOf(message);
        if (due !== undefined) {
          this.#ready.shift();
          this.#park(p, due);
          continue;
        }
        if (p.attempt >= maxDeliver) {
          this.#ready.shift();
          void this.#finish(p, message, "maxDeliver").catch(() => {});
          continue;
        }
        const member = this.#pick(message.key);
        if (member === undefined) return;
        this.#ready.shift();
        this.#redelivered++;
        this.#give(p, member, message);
        continue;
      }
      if (this.#aheadAt === this.#ahead.length && this.#dueReady.size > 0) {
        const p = this.#dueReady.peek()!.value;
        const [message] = await this.stream.fetch(p.seq, 1);
        if (this.#dueReady.peek()?.value !== p) continue; // changed while reading
        if (message?.seq !== p.seq) {
          this.#dueReady.pop();
          this.#pending.delete(p.seq);
          continue;
        }
        const member = this.#pick(message.key);
        if (member === undefined) return;
        this.#dueReady.pop();
        this.#give(p, member, message);
        continue;
      }
      if (this.#pending.size - this.#parked - this.#dueReady.size >= maxAckPending) return;
      if (this.#aheadAt === this.#ahead.length) {
        if (this.#next < this.stream.firstSeq) this.#next = this.stream.firstSeq;
        if (this.#next > this.stream.lastSeq) return;
        const from = this.#next;
        const batch = await this.stream.fetch(from, READ_AHEAD, READ_AHEAD_BYTES);
        if (this.#closed) return;
        if (batch.length === 0) {
          this.#next = Math.max(this.#next, this.stream.firstSeq);
          if (this.#next > this.stream.lastSeq) return;
          continue;
        }
        this.#ahead = batch;
        this.#aheadAt = 0;
        continue;
      }
      const message = this.#ahead[this.#aheadAt]!;
      if (message.seq < this.#next || message.seq < this.stream.firstSeq) {
        this.#aheadAt++; // removed meanwhile, or passed already
        continue;
      }
      const taken = filter === ">" ||
        this.#takes.get(message.topic, (t) => topicMatches(filter, t));
      if (!taken || this.#doneAhead.delete(message.seq)) {
        this.#aheadAt++;
        this.#next = message.seq + 1;
        continue;
      }
      const due = message.headers === NO_HEADERS ? undefined : notBeforeOf(message);
      if (due !== undefined && this.#waitsForItsTime(due)) {
        if (this.config.ordered) return; // in order: what follows waits with it
        this.#aheadAt++;
        this.#next = message.seq + 1;
        const p = new Pending(
          message.seq,
          this.#attemptsAhead.get(message.seq) ?? 0,
          this.#expired,
        );
        this.#attemptsAhead.delete(message.seq);
        this.#pending.set(message.seq, p);
        this.#park(p, due);
        continue;
      }
      const member = this.#pick(message.key);
      if (member === undefined) return;
      const leasing = this.#lease(message.seq);
      if (leasing !== undefined) {
        await leasing;
        continue;
      }
      this.#aheadAt++;
      this.#next = message.seq + 1;
      const attempt = this.#attemptsAhead.get(message.seq) ??
        (message.seq < this.#deliveredBefore ? 1 : 0);
      this.#attemptsAhead.delete(message.seq);
      const p = new Pending(message.seq, attempt, this.#expired);
      this.#pending.set(message.seq, p);
      if (attempt >= maxDeliver) void this.#finish(p, message, "maxDeliver").catch(() => {});
      else this.#give(p, member, message);
    }
  }

  /**
   * Whether a new message due at `due` is not to be delivered as it comes: an ordered consumer
   * waits for its time (and arms a wake for it); the others park it.
   */
  #waitsForItsTime(due: number): boolean {
    if (!this.config.ordered) return true;
    if (due <= Date.now()) return false;
    if (this.#dueWake === undefined) {
      const wake: Expiring = {
        deadline: due,
        expire: () => {
          this.#dueWake = undefined;
          this.wake();
        },
      };
      this.#dueWake = wake;
      this.#deadlines.add(wake);
    }
    return true;
  }

  /**
   * Parks `p`, a delayed message not delivered yet, until `due`: on the consumer's timer, which
   * lets the due ones go in the order of their times (a time passed already, as after a restart,
   * goes at once, in that order).
   */
  #park(p: Pending, due: number): void {
    p.parked = true;
    this.#parked++;
    p.deadline = due;
    if (due <= Date.now()) this.#cameDue(p);
    else this.#deadlines.add(p);
  }

  /** A parked message's time came: it joins the others whose time came, by time. */
  #cameDue(p: Pending): void {
    p.parked = false;
    p.due = true;
    this.#parked--;
    this.#dueReady.add(p, p.deadline);
  }

  /**
   * Keeps the log's delivered mark ahead of `seq`, a new message about to be delivered: a
   * promise to wait for when the mark does not cover it yet.
   */
  #lease(seq: number): Promise<void> | undefined {
    const log = this.#log;
    if (log === undefined) return undefined;
    if (this.#leasing === undefined && seq + DELIVERY_LEASE / 2 >= this.#leaseTarget) {
      const below = this.#leaseTarget = seq + DELIVERY_LEASE;
      const leasing = this.#leasing = log.delivered(below, this.#state).then(
        () => void (this.#leased = Math.max(this.#leased, below)),
        (err) => {
          this.#leaseTarget = this.#leased; // the next message tries again
          throw err;
        },
      ).finally(() => (this.#leasing = undefined));
      leasing.catch(() => {}); // a failure reaches whoever waits for it, or the next lease
    }
    return seq < this.#leased ? undefined : this.#leasing;
  }

  /** The reader for a message: its key's owner, else the next with room; none when full. */
  #pick(key: string | undefined): ConsumerMember | undefined {
    const members = this.#members;
    if (key !== undefined) {
      // A key's messages go to one reader, in order: when it is full they wait for it.
      this.#ring ??= new HashRing(members, (m) => String(m.id));
      const owner = this.#ring.owner(key);
      return owner !== undefined && owner.held < owner.window ? owner : undefined;
    }
    for (let i = 0; i < members.length; i++) {
      if (this.#turn >= members.length) this.#turn = 0;
      const member = members[this.#turn++]!;
      if (member.held < member.window) return member;
    }
    return undefined;
  }

  #give(p: Pending, member: ConsumerMember, message: StoredMessage): void {
    p.attempt++;
    p.member = member;
    member.held++;
    this.#arm(p, this.#wait(p.attempt));
    this.#delivered++;
    // A delayed message's first delivery is recorded too: no lease covered it.
    if (p.attempt > 1 || p.due) this.#log?.attempt(p.seq, p.attempt, this.#state);
    member.give(message, p.attempt);
  }

  /** The ack wait of attempt `attempt`. */
  #wait(attempt: number): number {
    const { backoff, ackWait } = this.config;
    return backoff.length === 0 ? ackWait : backoff[Math.min(attempt, backoff.length) - 1]!;
  }

  #arm(p: Pending, ms: number): void {
    this.#deadlines.delete(p);
    p.deadline = Date.now() + ms;
    this.#deadlines.add(p);
  }

  /** Takes `p` from its reader, to be delivered again after `delay` ms (0: now). */
  #release(p: Pending, delay: number): void {
    this.#deadlines.delete(p);
    if (p.member !== undefined) p.member.held--;
    p.member = undefined;
    if (delay > 0) this.#arm(p, delay);
    else if (p.parked) this.#cameDue(p);
    else {
      // `#ready` is kept in order.
      const ready = this.#ready;
      ready.splice(partitionPoint(ready.length, (i) => ready[i]! < p.seq), 0, p.seq);
    }
  }

  /** An ack wait ran out, a delayed nak is due, or a delayed message's time came. */
  readonly #expired = (p: Pending): void => {
    if (p.settling || this.#pending.get(p.seq) !== p) return;
    this.#release(p, 0);
    this.wake();
  };

  /**
   * A reader settles message `seq`. Rejects with `ENOTPENDING` when the message is not waiting
   * for this reader.
   */
  async settle(
    member: ConsumerMember,
    seq: number,
    how: Settlement,
    arg?: number | string,
  ): Promise<void> {
    const p = this.#pending.get(seq);
    if (p === undefined || p.settling || p.member !== member) {
      throw new IpcError(
        "ENOTPENDING",
        `Cannot ${how} message ${seq} of stream "${this.stream.name}" as consumer "${this.name}" ` +
          "is not waiting for it from this reader: it was acknowledged already, or delivered " +
          "again after its ack wait or its reader's connection ended",
        { op: how },
      );
    }
    switch (how) {
      case "working":
        this.#arm(p, this.#wait(p.attempt));
        return;
      case "nak": {
        const delay = Number(arg ?? 0);
        if (!(delay >= 0)) {
          throw new RangeError(`Cannot nak as delay must be 0 or more ms: got ${arg}`);
        }
        this.#release(p, delay);
        this.wake();
        return;
      }
      case "ack":
        return await this.#finish(p, undefined, undefined);
      case "term": {
        const [message] = await this.stream.fetch(seq, 1);
        if (this.#pending.get(seq) !== p || p.settling || p.member !== member) {
          return await this.settle(member, seq, how, arg); // changed while reading: says why
        }
        const reason = `term${arg ? `: ${arg}` : ""}`;
        return await this.#finish(p, message?.seq === seq ? message : undefined, reason);
      }
    }
  }

  /**
   * Finishes `p`: acked (no `reason`), or given up on (to the dead letter topic first, when
   * there is one). Its reader gets its room back at once; it leaves the pending set once the
   * log has stored that it is finished. If that fails it waits to be delivered again.
   */
  async #finish(
    p: Pending,
    message: StoredMessage | undefined,
    reason: string | undefined,
  ): Promise<void> {
    p.settling = true;
    this.#deadlines.delete(p);
    if (p.member !== undefined) p.member.held--;
    p.member = undefined;
    this.wake();
    try {
      if (reason !== undefined && message !== undefined && this.config.deadLetter !== "") {
        await this.#deadLetter(message, this.config, p.attempt, reason);
      }
      await this.#log?.done(p.seq, this.#state);
    } catch (err) {
      p.settling = false;
      if (!this.#closed) this.#release(p, reason === undefined ? 0 : this.#wait(p.attempt));
      this.wake();
      throw err;
    }
    this.#pending.delete(p.seq);
    if (reason === undefined) this.#acked++;
    else this.#deadLettered++;
    if (this.stream.config.retention !== "limits") await this.stream.applyLimits();
    this.wake();
  }

  /** Its position for a snapshot: messages being finished count as finished (see the log). */
  readonly #state = (): ConsumerState => {
    const pending: [number, number][] = [];
    for (const p of this.#pending.values()) if (!p.settling) pending.push([p.seq, p.attempt]);
    return { next: this.#next, pending, done: this.#doneAhead };
  };

  /** Its state. */
  info(): ConsumerInfo {
    return {
      stream: this.stream.name,
      config: this.config,
      readers: this.#members.length,
      pending: this.#pending.size - this.#parked,
      scheduled: this.#parked,
      redeliveries: this.#ready.length + this.#dueReady.size,
      ackFloor: this.finishedBelow() - 1,
      lag: Math.max(0, this.stream.lastSeq - this.#next + 1),
      delivered: this.#delivered,
      redelivered: this.#redelivered,
      acked: this.#acked,
      deadLettered: this.#deadLettered,
    };
  }

  /** Stops: its readers end with `error`; a durable one's log saves its position and closes. */
  async close(error: IpcError): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deadlines.clear();
    this.#dueReady.clear();
    this.stream.readers.delete(this);
    for (const member of this.#members.splice(0)) member.end(error);
    await this.#log?.close(this.#state);
  }
}
