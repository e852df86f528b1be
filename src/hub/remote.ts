/**
 * A client of a served hub with the in-process hub's API: subscriptions with credit-based flow
 * control, requests, reconnection with resubscription, and liveness checks.
 *
 * @module
 */

import { type Address, formatAddress, parseAddress } from "../address.ts";
import { closedError, IpcError, type IpcErrorCode } from "../errors.ts";
import { Channel } from "../frame/channel.ts";
import { maxFrameSizeOf } from "../frame/codec.ts";
import { backoff, delay, later } from "../internal/async.ts";
import type { ReconnectOptions } from "../rpc/client.ts";
import { firstRead, tokenBytes } from "../internal/serving.ts";
import { refTimer } from "../runtime/detect.ts";
import { connect } from "../transport.ts";
import {
  awaitReply,
  type HandleOptions,
  type Handler,
  handleWith,
  type PublishOptions,
  type PubSub,
  type RequestOptions,
  RESOLVED,
  unsequenced,
} from "./hub.ts";
import { HubEncoding, type HubMessage, hubParser, INVALID, Op, VERSION } from "./protocol.ts";
import { END, type Message, type SubscribeOptions, Subscription } from "./subscription.ts";
import { validatePattern, validateTopic } from "./topics.ts";

/** Options of {@linkcode connectHub}. */
export interface ConnectHubOptions {
  /** The application the hub serves; must match the server's. @default {"dockipc"} */
  app?: string;
  /** The server's shared secret, if it has one. */
  token?: string | Uint8Array;
  /** Milliseconds for connecting and the handshake, each time. @default {5000} */
  timeout?: number;
  /**
   * How to reconnect after the connection is lost; `false` to stay disconnected. Once the
   * client stays disconnected (so, or when `maxAttempts` run out), its subscriptions end and
   * every call fails, with `ECONNRESET`. @default {{ initialDelay: 50, maxDelay: 2000 }}
   */
  reconnect?: ReconnectOptions | false;
  /** Milliseconds a publish waits for a connection during an outage before it fails. @default {5000} */
  publishTimeout?: number;
  /** Milliseconds between liveness checks (PING). @default {10000} */
  pingInterval?: number;
  /** Milliseconds to wait for the PONG before the connection is taken for dead. @default {5000} */
  pingTimeout?: number;
  /** The largest frame either way. @default {16777216} */
  maxFrameSize?: number;
}

/** A subscription of this client, kept across reconnections. */
interface Sub {
  readonly sid: number;
  readonly sub: Subscription;
  readonly pattern: string;
  readonly options: SubscribeOptions;
  readonly buffer: number;
  /** Messages taken by the reader whose credit is not yet returned. */
  ungranted: number;
}

interface Pending {
  resolve: (m: Message) => void;
  reject: (err: unknown) => void;
}

interface Queued {
  message: HubMessage;
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const utf8 = new TextEncoder();

function ipcError(code: string, message: string, op: string): IpcError {
  return new IpcError(code as IpcErrorCode, message, { op });
}

/**
 * A hub served by {@linkcode serveHub} in another process, used through the same calls as an
 * in-process {@linkcode Hub}. Subscriptions survive reconnection: they are made again on the new
 * connection. Messages published while the connection is down wait for it, up to
 * `publishTimeout`, then fail; requests in flight when it drops fail with `ECONNRESET`.
 *
 * @example Publish from one client, receive in another
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectHub, Hub, serveHub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * await using server = await serveHub(hub, "tcp://127.0.0.1:0");
 * await using a = await connectHub(server.addr);
 * await using b = await connectHub(server.addr);
 * const sub = b.subscribe("jobs.>");
 * await b.flush();
 * await a.publish("jobs.resize", "photo.jpg", { headers: { size: "small" } });
 * const { value } = await sub.next();
 * assert.equal(value?.topic, "jobs.resize");
 * assert.deepEqual(value?.headers, { size: "small" });
 * ```
 */
export class RemoteHub implements PubSub {
  /** The server's address. */
  readonly addr: Address;
  readonly #options: ConnectHubOptions;
  readonly #frameLimit: number;
  readonly #subs = new Map<number, Sub>();
  readonly #pending = new Map<number, Pending>();
  readonly #queued: Queued[] = [];
  #pongs: (() => void)[] = [];
  #flushes: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  #channel: Channel<HubMessage> | undefined;
  #nextId = 0;
  #lastTopic = "";
  #closed = false;
  /** Why the connection is gone for good (reconnect off, or given up), once it is. */
  #down: string | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #reconnecting: Promise<void> | undefined;

  private constructor(addr: Address, options: ConnectHubOptions, frameLimit: number) {
    this.addr = addr;
    this.#options = options;
    this.#frameLimit = frameLimit;
  }

  /** @internal Connects and shakes hands; see {@linkcode connectHub}. */
  static async connect(address: string | Address, options: ConnectHubOptions): Promise<RemoteHub> {
    const frameLimit = maxFrameSizeOf(
      "connectHub()",
      options.maxFrameSize === undefined ? {} : { maxFrameSize: options.maxFrameSize },
    );
    // The address as given, parsed once: reconnections dial it again (on Deno, a unix
    // connection's remoteAddr has no path).
    const addr = parseAddress(address);
    const conn = await connect(addr, { timeout: options.timeout ?? 5000 });
    const remote = new RemoteHub(addr, options, frameLimit);
    await remote.#attach(conn);
    const interval = options.pingInterval ?? 10_000;
    remote.#pingTimer = setInterval(() => remote.#ping(), interval);
    // A liveness timer must not keep a process alive on its own.
    refTimer(remote.#pingTimer, false);
    return remote;
  }

  /** Whether a connection to the server is up now. */
  get connected(): boolean {
    return this.#channel !== undefined;
  }

  /** Sends HELLO on a new connection, waits for WELCOME, then starts reading it. */
  async #attach(conn: Awaited<ReturnType<typeof connect>>): Promise<void> {
    const channel = new Channel(
      conn,
      hubParser(this.#frameLimit),
      new HubEncoding(this.#frameLimit),
    );
    const token = this.#options.token;
    await channel.send({
      op: Op.HELLO,
      version: VERSION,
      app: this.#options.app ?? "dockipc",
      token: tokenBytes(token),
    });
    const timeout = this.#options.timeout ?? 5000;
    const first = await firstRead(
      channel,
      timeout,
      () =>
        new IpcError(
          "ETIMEDOUT",
          `Cannot connect to the hub at "${
            formatAddress(this.addr)
          }" as it did not answer the handshake`,
          { op: "connect" },
        ),
    ).catch((err) => {
      conn.close();
      throw err;
    });
    const welcome = first?.[0];
    if (welcome?.op !== Op.WELCOME) {
      conn.close();
      if (welcome?.op === Op.ERR) throw ipcError(welcome.code, welcome.message, "connect");
      throw new IpcError(
        "EPROTOCOL",
        `Cannot connect to the hub at "${
          formatAddress(this.addr)
        }" as it did not answer the handshake: is it a dockipc hub?`,
        { op: "connect" },
      );
    }
    this.#channel = channel;
    // Everything this client holds, again on this connection: subscriptions, then publishes.
    for (const s of this.#subs.values()) this.#sendSub(s);
    for (const q of this.#queued.splice(0)) {
      clearTimeout(q.timer);
      const sending = channel.send(q.message);
      if (sending === undefined) q.resolve();
      else sending.then(q.resolve, q.reject);
    }
    void this.#read(channel, first!.slice(1));
  }

  async #read(channel: Channel<HubMessage>, first: HubMessage[]): Promise<void> {
    try {
      let batch: HubMessage[] | undefined = first;
      while (batch !== undefined) {
        for (const m of batch) this.#dispatch(m);
        batch = await channel.read();
      }
    } catch {
      // A broken connection ends like a closed one.
    } finally {
      channel.close();
      this.#lost(channel);
    }
  }

  #dispatch(m: HubMessage): void {
    switch (m.op) {
      case Op.MSG: {
        const s = this.#subs.get(m.sid);
        if (s === undefined) return; // unsubscribed while it travelled
        void s.sub.offer(m.env);
        return;
      }
      case Op.RES: {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        p?.resolve(m.env);
        return;
      }
      case Op.ERR: {
        const err = ipcError(m.code, m.message, "hub");
        if (m.id === 0) {
          this.#channel?.close();
          return;
        }
        const p = this.#pending.get(m.id);
        if (p !== undefined) {
          this.#pending.delete(m.id);
          p.reject(err);
          return;
        }
        const s = this.#subs.get(m.id);
        if (s !== undefined) {
          this.#subs.delete(m.id);
          s.sub[END](err);
        }
        return;
      }
      case Op.PONG:
        this.#pongs.shift()?.();
        return;
      case Op.FLUSHED:
        this.#flushes.shift()?.resolve();
        return;
      case Op.GOAWAY:
        this.#channel?.close();
        return;
      case INVALID:
        this.#channel?.close();
        return;
      default:
        this.#channel?.close(); // a server may not send that
    }
  }

  /** The connection is gone: fail what waited on it, and reconnect unless closed. */
  #lost(channel: Channel<HubMessage>): void {
    if (this.#channel !== channel) return;
    this.#channel = undefined;
    const reset = (): IpcError =>
      new IpcError(
        "ECONNRESET",
        `The connection to the hub at "${formatAddress(this.addr)}" was lost`,
        { op: "request" },
      );
    for (const p of this.#pending.values()) p.reject(reset());
    this.#pending.clear();
    for (const wake of this.#pongs.splice(0)) wake();
    for (const f of this.#flushes.splice(0)) f.reject(reset());
    if (this.#closed) return;
    if (this.#options.reconnect === false) this.#goDown("was lost, and reconnect is off");
    else this.#reconnecting ??= this.#reconnect().finally(() => (this.#reconnecting = undefined));
  }

  /**
   * The connection is gone for good: what waits for one fails, subscriptions end with
   * `ECONNRESET` (their readers would otherwise wait forever), and later calls fail at once.
   */
  #goDown(why: string): void {
    this.#down = `the connection to the hub at "${formatAddress(this.addr)}" ${why}`;
    for (const q of this.#queued.splice(0)) {
      clearTimeout(q.timer);
      q.reject(this.#downError("publish"));
    }
    for (const s of [...this.#subs.values()]) s.sub[END](this.#downError("subscribe"));
    this.#subs.clear();
  }

  #downError(op: string): IpcError {
    return new IpcError("ECONNRESET", `Cannot ${op} as ${this.#down}`, { op });
  }

  async #reconnect(): Promise<void> {
    const schedule = backoff({ initialDelay: 50, maxDelay: 2000, ...this.#options.reconnect });
    for (const wait of schedule) {
      await delay(wait);
      if (this.#closed) return;
      try {
        const conn = await connect(this.addr, { timeout: this.#options.timeout ?? 5000 });
        await this.#attach(conn);
        return;
      } catch {
        // Try again after the next delay.
      }
    }
    // Out of attempts: the client stays down.
    if (!this.#closed) this.#goDown("was lost, and reconnecting gave up");
  }

  #ping(): void {
    const channel = this.#channel;
    if (channel === undefined) return;
    const timer = later(() => channel.close(), this.#options.pingTimeout ?? 5000);
    this.#pongs.push(() => clearTimeout(timer));
    void channel.send({ op: Op.PING })?.catch(() => {});
  }

  #check(op: string): void {
    if (this.#closed) throw closedError(op, "hub client");
    if (this.#down !== undefined) throw this.#downError(op);
  }

  /** Sends, or waits for a connection up to `publishTimeout` when there is none. */
  #send(message: HubMessage, op: string): Promise<void> {
    const channel = this.#channel;
    if (channel !== undefined) return channel.send(message) ?? RESOLVED;
    if (this.#down !== undefined) return Promise.reject(this.#downError(op));
    const limit = this.#options.publishTimeout ?? 5000;
    return new Promise((resolve, reject) => {
      const q: Queued = {
        message,
        resolve,
        reject,
        timer: later(() => {
          const i = this.#queued.indexOf(q);
          if (i >= 0) this.#queued.splice(i, 1);
          reject(
            new IpcError(
              "ETIMEDOUT",
              `Cannot ${op} as the hub stayed unreachable for ${limit} ms`,
              { op },
            ),
          );
        }, limit),
      };
      this.#queued.push(q);
    });
  }

  /**
   * Publishes a message through the server. Resolves once it is handed to the connection (the
   * socket's backpressure, and through it a `"block"` subscriber's, holds it back); during an
   * outage it waits for the reconnection up to `publishTimeout`, then rejects with `ETIMEDOUT`.
   */
  publish(topic: string, data: Uint8Array | string, options: PublishOptions = {}): Promise<void> {
    try {
      this.#check("publish");
      // Most publishers repeat one topic: it is checked once.
      if (topic !== this.#lastTopic) {
        validateTopic(topic);
        this.#lastTopic = topic;
      }
      const bytes = typeof data === "string" ? utf8.encode(data) : data;
      if (!(bytes instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot publish as data is not a Uint8Array or a string: current type is ${typeof data}`,
        );
      }
      const env = unsequenced(topic, bytes, options.headers, options.key, options.reply);
      return this.#send({ op: Op.PUB, env }, "publish");
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Subscribes through the server. The server holds at most `buffer` messages for it and sends
   * no more than this client has room for (credit); the overflow policy applies there.
   */
  subscribe(pattern: string, options: SubscribeOptions = {}): Subscription {
    this.#check("subscribe");
    validatePattern(pattern);
    const sid = ++this.#nextId;
    const buffer = options.buffer ?? 1024;
    const sub = new Subscription(
      sid,
      pattern,
      options,
      () => {
        if (this.#subs.delete(sid)) {
          void this.#channel?.send({ op: Op.UNSUB, sid })?.catch(() => {});
        }
      },
      () => this.#delivered(s),
    );
    const s: Sub = { sid, sub, pattern, options, buffer, ungranted: 0 };
    this.#subs.set(sid, s);
    this.#sendSub(s);
    if (options.signal !== undefined) {
      options.signal.addEventListener("abort", () => sub.unsubscribe(), { once: true });
    }
    return sub;
  }

  #sendSub(s: Sub): void {
    const channel = this.#channel;
    if (channel === undefined) return; // made on the next connection
    s.ungranted = 0;
    void channel.send({
      op: Op.SUB,
      sid: s.sid,
      buffer: s.buffer,
      credit: Math.max(0, s.buffer - s.sub.stats().pending),
      maxBytes: s.options.maxBytes ?? 0,
      overflow: s.options.overflow ?? "block",
      pattern: s.pattern,
      queue: s.options.queue,
    })?.catch(() => {});
  }

  /** The reader took a message: return credit a quarter of the buffer at a time. */
  #delivered(s: Sub): void {
    if (++s.ungranted < Math.ceil(s.buffer / 4)) return;
    const n = s.ungranted;
    s.ungranted = 0;
    void this.#channel?.send({ op: Op.CREDIT, sid: s.sid, n })?.catch(() => {});
  }

  /**
   * Sends a request through the server, which makes it of its hub: resolves with the first
   * reply; rejects with `ENORESPONDERS` when nothing handles the topic, `EREMOTE` when the
   * handler threw, `ETIMEDOUT`, and `ECONNRESET` when the connection drops meanwhile.
   */
  request(
    topic: string,
    data: Uint8Array | string,
    options: RequestOptions = {},
  ): Promise<Message> {
    try {
      this.#check("request");
      validateTopic(topic);
      const { timeout = 10_000, signal } = options;
      signal?.throwIfAborted();
      const bytes = typeof data === "string" ? utf8.encode(data) : data;
      const id = ++this.#nextId;
      // The server times the request out itself; the extra second bounds one that never answers.
      return awaitReply(topic, timeout, timeout + 1000, signal, (settle) => {
        this.#pending.set(id, { resolve: (m) => settle(undefined, m), reject: (e) => settle(e) });
        this.#send({
          op: Op.REQ,
          id,
          timeout: Math.min(timeout, 0xffff_ffff), // past a u32, the server's wait is unbounded too
          env: unsequenced(topic, bytes, options.headers, options.key, undefined),
        }, "request").catch((err) => settle(err));
        return () => this.#pending.delete(id);
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Answers requests on `pattern`; see {@linkcode Hub.handle}. */
  handle(pattern: string, handler: Handler, options: HandleOptions = {}): Subscription {
    return handleWith(this, pattern, handler, options);
  }

  /**
   * Resolves once the server has processed everything this client sent before (FLUSH, then
   * FLUSHED): subscriptions made before are in place, publishes made before were delivered.
   * Rejects with `ECONNRESET` if the connection drops first.
   */
  flush(): Promise<void> {
    const channel = this.#channel;
    if (channel === undefined) {
      return Promise.reject(new IpcError("ECONNRESET", "Cannot flush as the hub is not connected"));
    }
    return new Promise((resolve, reject) => {
      this.#flushes.push({ resolve, reject });
      void channel.send({ op: Op.FLUSH })?.catch(() => {});
    });
  }

  /** Ends every subscription and closes the connection; pending calls fail with `ECLOSED`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#pingTimer);
    for (const s of [...this.#subs.values()]) s.sub.unsubscribe();
    for (const p of this.#pending.values()) p.reject(closedError("request", "hub client"));
    this.#pending.clear();
    for (const q of this.#queued.splice(0)) {
      clearTimeout(q.timer);
      q.reject(closedError("publish", "hub client"));
    }
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel !== undefined) void channel.end().catch(() => {}).finally(() => channel.close());
  }

  /** The same as {@linkcode RemoteHub.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return RESOLVED;
  }
}

/**
 * Connects to a hub served by {@linkcode serveHub}, from any runtime.
 *
 * @param address The server's unix socket path or TCP address.
 * @param options The handshake's app id and token, reconnection, liveness and limits.
 * @returns The client, once the handshake succeeded.
 * @throws {IpcError} `ECONNREFUSED`/`ENOENT` when nothing listens, `EAUTH` for a wrong app id
 * or token, `EPROTOCOL` for a version mismatch or a peer that is not a hub.
 *
 * @example Connect and publish
 * ```ts
 * import { connectHub, Hub, serveHub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * await using server = await serveHub(hub, "tcp://127.0.0.1:0", { app: "demo" });
 * await using client = await connectHub(server.addr, { app: "demo" });
 * await client.publish("events.started", "now");
 * ```
 */
export function connectHub(
  address: string | Address,
  options: ConnectHubOptions = {},
): Promise<RemoteHub> {
  return RemoteHub.connect(address, options);
}
