/**
 * What `consume()` returns, in this process and across a socket: a bounded buffer of consumed
 * messages, read as an async iterable or a `ReadableStream`, that ends when its consumer does.
 *
 * @module
 */

import type { IpcError } from "../errors.ts";
import type {
  ConsumedMessage,
  ConsumerInfo,
  ConsumerMember,
  NakOptions,
  StreamConsumer,
} from "./consumer.ts";
import type { Settlement } from "./protocol.ts";
import type { StoredMessage } from "./stream.ts";
import { END, HubSubscription, pulled } from "./subscription.ts";

/**
 * A reader of a stream's consumer: the messages it is given, each to acknowledge. Several
 * readers of one durable consumer share its messages; a message's key keeps it with one reader.
 *
 * @example A work queue that survives a restart
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { Hub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub({ store: mkdtempSync(`${tmpdir()}/store-`) });
 * await hub.addStream({ name: "jobs", subjects: ["jobs.>"] });
 * await hub.publish("jobs.resize", "photo-1.jpg");
 * await hub.publish("jobs.resize", "photo-2.jpg");
 * await using worker = await hub.consume("jobs", { durable: "resizer", ackWait: 60_000 });
 * const done: string[] = [];
 * for await (const job of worker) {
 *   done.push(new TextDecoder().decode(job.data));
 *   await job.ack(); // stored: this job is not delivered again
 *   if (done.length === 2) break;
 * }
 * assert.deepEqual(done, ["photo-1.jpg", "photo-2.jpg"]);
 * ```
 */
export interface Consumer extends AsyncIterable<ConsumedMessage>, AsyncDisposable {
  /** The stream it reads. */
  readonly stream: string;
  /** Its consumer's name: the durable name, or the one the hub gave an ephemeral consumer. */
  readonly name: string;
  /** Resolves once it has ended, for whatever reason. Never rejects. */
  readonly closed: Promise<void>;
  /** The messages as a `ReadableStream`; cancelling it closes the reader. */
  readonly readable: ReadableStream<ConsumedMessage>;
  /**
   * Reads the next message; `{ done: true }` once closed. Rejects with `ENOENT` when its
   * consumer or stream was deleted.
   */
  next(): Promise<IteratorResult<ConsumedMessage>>;
  /** Its consumer's state: pending, ack floor, lag and counters. */
  info(): Promise<ConsumerInfo>;
  /**
   * Stops reading: the messages it holds unfinished are delivered again at once to the
   * consumer's other readers (or to the next one). An ephemeral consumer ends with it.
   */
  close(): Promise<void>;
}

/** How a reader's messages are settled and the reader is closed: in this process or remotely. */
export interface ReaderLink {
  settle(seq: number, how: Settlement, arg?: number | string): Promise<void>;
  info(): Promise<ConsumerInfo>;
  /** The reader was closed by its user. */
  close(): Promise<void>;
}

/** A consumed message: the stored message, its attempt, and its settlements through a link. */
export class Consumed implements ConsumedMessage {
  readonly topic: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly seq: number;
  readonly key: string | undefined;
  readonly reply: string | undefined;
  readonly stream: string;
  readonly timestamp: number;
  readonly id: string;
  readonly attempt: number;
  readonly #link: Pick<ReaderLink, "settle">;
  /** An ordered reader's ack, made as it was read: `ack()` gives it back rather than failing. */
  #autoAck: Promise<void> | undefined;

  /** `stream` names its stream when `message` does not (as it came over a socket). */
  constructor(
    message: StoredMessage,
    attempt: number,
    link: Pick<ReaderLink, "settle">,
    stream = message.stream,
  ) {
    this.topic = message.topic;
    this.data = message.data;
    this.headers = message.headers;
    this.seq = message.seq;
    this.key = message.key;
    this.reply = message.reply;
    this.stream = stream;
    this.timestamp = message.timestamp;
    this.id = message.id;
    this.attempt = attempt;
    this.#link = link;
  }

  ack(): Promise<void> {
    return this.#autoAck ?? this.#link.settle(this.seq, "ack");
  }

  /** Acknowledges it as an ordered reader reads it. */
  autoAck(): void {
    this.#autoAck = this.#link.settle(this.seq, "ack");
    this.#autoAck.catch(() => {}); // a reader gone meanwhile: nothing to acknowledge
  }

  nak(options: NakOptions = {}): Promise<void> {
    return this.#link.settle(this.seq, "nak", options.delay ?? 0);
  }

  term(reason = ""): Promise<void> {
    return this.#link.settle(this.seq, "term", String(reason));
  }

  working(): Promise<void> {
    return this.#link.settle(this.seq, "working");
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** The {@linkcode Consumer} of both hubs: a buffer its link fills. Not exported to users. */
export class ConsumerReader implements Consumer {
  readonly stream: string;
  readonly name: string;
  readonly closed: Promise<void>;
  readonly #buffer: HubSubscription;
  readonly #link: ReaderLink;
  readonly #ordered: boolean;
  #readable: ReadableStream<ConsumedMessage> | undefined;
  #closing: Promise<void> | undefined;

  /** `buffer` bounds what it holds; an `ordered` reader acknowledges each message as it is read. */
  constructor(
    stream: string,
    name: string,
    options: { buffer: number; ordered: boolean; signal?: AbortSignal | undefined },
    link: ReaderLink,
  ) {
    this.stream = stream;
    this.name = name;
    this.#link = link;
    this.#ordered = options.ordered;
    // What it holds leaves by priority, but an ordered reader's in stream order.
    this.#buffer = new HubSubscription(
      0,
      name,
      { buffer: options.buffer, ordered: options.ordered },
      () => {},
    );
    this.closed = this.#buffer.closed;
    options.signal?.addEventListener("abort", () => void this.close(), { once: true });
  }

  /** Takes a message for its reader. */
  push(message: Consumed): void {
    void this.#buffer.offer(message);
  }

  /**
   * Its consumer ended: with `error` (deleted) its reader sees that next; without (its hub
   * closed), the reader sees the end. What it holds is dropped either way: it cannot be
   * acknowledged any more, and is delivered again when the consumer is.
   */
  end(error?: IpcError): void {
    if (error === undefined) this.#buffer.unsubscribe();
    else this.#buffer[END](error);
  }

  async next(): Promise<IteratorResult<ConsumedMessage>> {
    const result = await this.#buffer.next() as IteratorResult<Consumed>;
    if (this.#ordered && !result.done) result.value.autoAck();
    return result;
  }

  [Symbol.asyncIterator](): AsyncIterator<ConsumedMessage> {
    return {
      next: () => this.next(),
      return: async (): Promise<IteratorResult<ConsumedMessage>> => {
        await this.close();
        return DONE;
      },
    };
  }

  get readable(): ReadableStream<ConsumedMessage> {
    return this.#readable ??= pulled(() => this.next(), () => this.close());
  }

  info(): Promise<ConsumerInfo> {
    return this.#link.info();
  }

  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#buffer.unsubscribe();
      await this.#link.close();
    })();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

let members = 0;

/**
 * A reader of `consumer` in this process: `closed` runs once its user closes it (an ephemeral
 * consumer is removed then).
 */
export function readLocally(
  consumer: StreamConsumer,
  options: { buffer: number; ordered: boolean; signal?: AbortSignal | undefined },
  closed: () => Promise<void>,
): Consumer {
  const member: ConsumerMember = {
    id: ++members,
    window: options.buffer,
    held: 0,
    give: (message, attempt) => reader.push(new Consumed(message, attempt, link)),
    end: (error) => reader.end(error),
  };
  const link: ReaderLink = {
    settle: (seq, how, arg) => consumer.settle(member, seq, how, arg),
    info: () => Promise.resolve(consumer.info()),
    close: () => {
      consumer.detach(member);
      return closed();
    },
  };
  const reader = new ConsumerReader(consumer.stream.name, consumer.name, options, link);
  consumer.attach(member);
  return reader;
}
