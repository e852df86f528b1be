/**
 * One client lifecycle for every protocol on the session layer: connecting with a timeout, the
 * handshake, reconnection with jittered exponential backoff, liveness pings, the outage queue,
 * `flush()`, and a `close()` that loses nothing accepted. RPC and the hub client each own one
 * and add their vocabulary through {@linkcode SessionHandler}.
 *
 * @module
 */

import { type Address, formatAddress, parseAddress } from "../address.ts";
import { closedError, IpcError, type IpcErrorCode, systemError } from "../errors.ts";
import { Channel } from "../frame/channel.ts";
import { maxFrameSizeOf } from "../frame/codec.ts";
import { backoff, delay, later, waitAtMost } from "../internal/async.ts";
import { Feed } from "../internal/feed.ts";
import { refTimer } from "../runtime/platform.ts";
import { connect, type ConnectOptions } from "../transport.ts";
import type { ConnectTlsOptions } from "../tls.ts";
import { firstRead, tokenBytes } from "./handshake.ts";
import {
  type Codec,
  Control,
  type ControlMessage,
  INVALID,
  type Invalid,
  type SessionMessage,
  VERSION,
} from "./protocol.ts";

/** How a lost connection is re-established: exponential backoff with full jitter. */
export interface ReconnectOptions {
  /** Attempts before giving up. @default {Infinity} */
  maxAttempts?: number;
  /** The first delay's upper bound, in ms. @default {100} */
  initialDelay?: number;
  /** No delay exceeds this, in ms. @default {2000} */
  maxDelay?: number;
  /** Each bound is the previous one times this. @default {2} */
  factor?: number;
}

/** The options every client of a dockipc server takes: `dial()` and `connectHub()`. */
export interface SessionOptions {
  /** The application the server must be. @default {"dockipc"} */
  app?: string;
  /** The server's shared secret. */
  token?: string | Uint8Array;
  /**
   * Milliseconds for connecting and the handshake, each time; also how long `close()` waits
   * for the server to take what was sent last. @default {5000}
   */
  timeout?: number;
  /** Abandons the first connection attempt. */
  signal?: AbortSignal;
  /** The largest frame either way. @default {16777216} */
  maxFrameSize?: number;
  /**
   * Re-connects after the connection is lost: `true` for the defaults, `false` to stay
   * disconnected (then every call fails with `ECONNRESET`). @default {true}
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Milliseconds a call made while the connection is down waits for it before it fails with
   * `ETIMEDOUT`. @default {5000}
   */
  queueTimeout?: number;
  /** While not connected, calls fail at once with `ECONNRESET` instead of waiting. @default {false} */
  failFast?: boolean;
  /** Milliseconds between liveness checks (PING). @default {10000} */
  pingInterval?: number;
  /** Milliseconds to wait for the PONG before the connection is taken for dead. @default {5000} */
  pingTimeout?: number;
  /** A TCP connection has keepalive probes on, at the system's interval. @default {true} */
  keepAlive?: boolean;
  /**
   * What a `tls://` connection trusts (`ca`) and presents (`cert`, `key`); see
   * {@linkcode ConnectTlsOptions}.
   */
  tls?: ConnectTlsOptions;
  /** The timeout of a request that states none, in ms; `Infinity` for none. @default {10000} */
  requestTimeout?: number;
}

/**
 * A change in a client's connection, as `status()` tells it:
 *
 * - `disconnected`: the connection was lost, with why; a new one is being made unless
 *   `reconnect` is off (then an `error` follows).
 * - `reconnecting`: attempt `attempt` (from 1) begins after `delay` ms; `error` says why the
 *   attempt before it failed.
 * - `reconnected`: a new connection is up; subscriptions were made again on it.
 * - `error`: the client gave up (reconnection is off, or `maxAttempts` ran out): every call now
 *   fails with this error. The events end here, as they do when the client is closed.
 */
export type ConnectionEvent =
  | { readonly type: "disconnected"; readonly error: IpcError }
  | {
    readonly type: "reconnecting";
    readonly attempt: number;
    readonly delay: number;
    readonly error?: IpcError;
  }
  | { readonly type: "reconnected" }
  | { readonly type: "error"; readonly error: IpcError };

/** The timeout of a request that states none, everywhere: see `requestTimeout`. */
export const DEFAULT_REQUEST_TIMEOUT = 10_000;

/** Milliseconds for connecting and the handshake, and for closing: see `timeout`. */
export const DEFAULT_TIMEOUT = 5000;

/** What a protocol's client does with its session. */
export interface SessionHandler<V> {
  /** A connection is up: send again whatever the server must know (subscriptions, retries). */
  connected(): void;
  /** A message of the vocabulary came. Throwing drops the connection. */
  receive(message: V): void;
  /** The connection was lost with `error`; `retrying` says whether a new one is being made. */
  disconnected(error: IpcError, retrying: boolean): void;
}

/** The codes a server may refuse a client with; any other reads as `EPROTOCOL`. */
const REFUSAL_CODES: readonly IpcErrorCode[] = [
  "EAUTH",
  "EPROTOCOL",
  "ECONNREFUSED",
  "ECLOSED",
  "ETIMEDOUT",
  "ESLOWCONSUMER",
  "ELIMIT",
  "EPERM",
  "ECERTUNTRUSTED",
  "ECERTEXPIRED",
  "ECERTREQUIRED",
];

/** Refusals of who the client is: reconnecting with the same credentials cannot help. */
const CREDENTIAL_CODES: readonly IpcErrorCode[] = [
  "EAUTH",
  "ECERTUNTRUSTED",
  "ECERTEXPIRED",
  "ECERTREQUIRED",
  "ECERTNAME",
];

/** A refusal's code as an `IpcErrorCode`: one a server may send, else `EPROTOCOL`. */
function refusalCode(code: string): IpcErrorCode {
  return (REFUSAL_CODES as readonly string[]).includes(code) ? code as IpcErrorCode : "EPROTOCOL";
}

/** A caller waiting for an answer of the server's. */
interface Waiting {
  resolve(): void;
  reject(err: unknown): void;
}

/** One connection, from its WELCOME until it ends. */
interface Link<V> {
  readonly channel: Channel<SessionMessage<V> | Invalid>;
  /** Requests the server runs at once for this connection; Infinity when it states none. */
  readonly maxInflight: number;
  /** Who waits for a PONG, in the order the PINGs went. */
  readonly pongs: Waiting[];
  /** Who waits for a FLUSHED, in the order the FLUSHes went. */
  readonly flushes: Waiting[];
  /** The server said GOAWAY: nothing more is sent here. */
  goaway: boolean;
  /** Our sending side's end, once begun: what was sent is written, then the side is ended. */
  ending?: Promise<void>;
  /** Messages that came with the WELCOME, to hand on before reading more. */
  readonly early: (SessionMessage<V> | Invalid)[];
  /** The read loop, once the link is current: resolves once the connection has ended. */
  reading?: Promise<void>;
}

/** A message waiting for a connection. */
interface Queued<V> {
  message: V;
  resolve(): void;
  reject(err: unknown): void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * A client's connection to a session server, kept up across outages. Not exported to users:
 * `dial()` and `connectHub()` build their clients on it.
 */
export class SessionClient<V extends { type: number }> {
  /** The server's address, as given, parsed once: reconnections dial it again. */
  readonly addr: Address;
  /** The address, for messages. */
  readonly label: string;
  readonly #options: SessionOptions;
  readonly #codec: Codec<V>;
  readonly #handler: SessionHandler<V>;
  readonly #frameLimit: number;
  readonly #timeout: number;
  #link: Link<V> | undefined;
  readonly #events = new Feed<ConnectionEvent>();
  #reconnects = 0;
  #queued: Queued<V>[] = [];
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Why calls fail at once, once the connection is gone for good. */
  #down: IpcError | undefined;
  #reconnecting: Promise<void> | undefined;
  #pinger: ReturnType<typeof setInterval> | undefined;

  constructor(
    address: string | Address,
    options: SessionOptions,
    codec: Codec<V>,
    handler: SessionHandler<V>,
  ) {
    this.addr = parseAddress(address);
    this.label = formatAddress(this.addr);
    this.#options = options;
    this.#codec = codec;
    this.#handler = handler;
    this.#timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this.#frameLimit = maxFrameSizeOf(
      `connecting to a ${codec.protocol} server`,
      options.maxFrameSize === undefined ? {} : { maxFrameSize: options.maxFrameSize },
    );
  }

  /** Makes the first connection; a failure is thrown, not retried. */
  async open(): Promise<void> {
    this.#attach(await this.#connect(this.#options.signal));
    const interval = this.#options.pingInterval ?? 10_000;
    this.#pinger = setInterval(() => this.#ping(), interval);
    // A liveness timer must not keep a process alive on its own.
    refTimer(this.#pinger, false);
  }

  /** Whether a connection is up that takes messages now. */
  get connected(): boolean {
    return this.#link !== undefined && !this.#link.goaway;
  }

  /** Requests the server runs at once for this client; Infinity when it states no bound. */
  get maxInflight(): number {
    return this.#link?.maxInflight ?? Infinity;
  }

  /** Whether the client was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Connections made again after one was lost. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** The connection's changes from now on, until the client closes or gives up. */
  status(): AsyncIterableIterator<ConnectionEvent> {
    return this.#events.follow();
  }

  /**
   * The error a call made now fails with: `ECLOSED` once closed, `ECONNRESET` once the
   * connection is gone for good, or while it is down with `failFast`; undefined when the call
   * may go ahead, or wait for the connection.
   */
  unavailable(op: string): IpcError | undefined {
    if (this.#closed) return closedError(op, `${this.#codec.protocol} client`);
    if (this.#down !== undefined) {
      // Refused for its credentials, it says so; lost otherwise.
      const code = CREDENTIAL_CODES.includes(this.#down.code) ? this.#down.code : "ECONNRESET";
      return new IpcError(code, `Cannot ${op} as ${this.#down.message}`, {
        op,
        address: this.label,
        cause: this.#down,
      });
    }
    if (this.#options.failFast && !this.connected) {
      return new IpcError(
        "ECONNRESET",
        `Cannot ${op} as the client is not connected to "${this.label}"`,
        { op, address: this.label },
      );
    }
    return undefined;
  }

  /**
   * Sends on the connection up now: undefined once taken, a promise while the socket pushes
   * back, false when no connection takes messages (nothing was sent). Throws or rejects as the
   * channel does (`EFRAMETOOLARGE` for a message over the limit).
   */
  trySend(message: SessionMessage<V>): Promise<void> | undefined | false {
    const link = this.#link;
    if (link === undefined || link.goaway) return false;
    return link.channel.send(message);
  }

  /**
   * Sends `message`, or, while the connection is down, keeps it until one is up, at most
   * `queueTimeout` ms. Rejects with `ECLOSED`, `ECONNRESET` when the connection is gone for
   * good, `ETIMEDOUT`.
   */
  send(message: V, op: string): Promise<void> | undefined {
    const refused = this.unavailable(op);
    if (refused !== undefined) return Promise.reject(refused);
    try {
      const sent = this.trySend(message);
      if (sent !== false) return sent;
    } catch (err) {
      if (err instanceof IpcError && err.code === "EFRAMETOOLARGE") return Promise.reject(err);
      // The channel failed and its read loop has not noticed yet: the message waits for the
      // next connection.
    }
    const limit = this.#options.queueTimeout ?? 5000;
    return new Promise((resolve, reject) => {
      const q: Queued<V> = {
        message,
        resolve,
        reject,
        timer: later(() => {
          const i = this.#queued.indexOf(q);
          if (i >= 0) this.#queued.splice(i, 1);
          reject(
            new IpcError(
              "ETIMEDOUT",
              `Cannot ${op} as "${this.label}" stayed unreachable for ${limit} ms`,
              { op, address: this.label },
            ),
          );
        }, limit),
      };
      this.#queued.push(q);
    });
  }

  /**
   * Resolves once the server has dealt with everything sent before (FLUSH, then FLUSHED).
   * Rejects with `ECONNRESET` when not connected or when the connection drops first.
   */
  flush(): Promise<void> {
    const refused = this.unavailable("flush");
    if (refused !== undefined) return Promise.reject(refused);
    const link = this.#link;
    if (link === undefined || link.goaway) {
      return Promise.reject(
        new IpcError(
          "ECONNRESET",
          `Cannot flush as the client is not connected to "${this.label}"`,
          {
            op: "flush",
            address: this.label,
          },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      link.flushes.push({ resolve, reject });
      this.#sendQuietly(link, { type: Control.FLUSH });
    });
  }

  /**
   * Closes the client, losing nothing it accepted: messages waiting for a connection fail with
   * `ECLOSED`; everything already sent is handed to the kernel, the sending side ended, and the
   * connection closed once the server has read it all (at most `timeout` ms). Rejects with
   * `ECONNRESET` when what was sent last may not have reached the server.
   */
  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#stop(closedError("send", `${this.#codec.protocol} client`));
    const link = this.#link;
    if (link === undefined) return;
    let failure: unknown;
    try {
      await (link.ending ??= link.channel.end());
    } catch (err) {
      failure = err;
    }
    // The server closes once it has read everything; closing first could reset the
    // connection and discard what it has not read yet.
    await waitAtMost(link.reading ?? Promise.resolve(), this.#timeout);
    link.channel.close();
    if (failure !== undefined) {
      throw new IpcError(
        "ECONNRESET",
        `Cannot close the connection to "${this.label}" cleanly: what was sent last may not have reached it`,
        { op: "close", address: this.label, cause: failure },
      );
    }
  }

  /** Closes the connection at once, discarding whatever has not been written yet. */
  abort(): void {
    this.#stop(closedError("send", `${this.#codec.protocol} client`));
    this.#link?.channel.close();
    this.#closing ??= Promise.resolve();
  }

  /** No more calls: stops pinging and fails what waits for a connection. */
  #stop(err: IpcError): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#pinger);
    this.#failQueued(err);
    this.#events.end();
  }

  #failQueued(err: unknown): void {
    for (const q of this.#queued.splice(0)) {
      clearTimeout(q.timer);
      q.reject(err);
    }
  }

  async #connect(signal?: AbortSignal): Promise<Link<V>> {
    const timeout = this.#timeout;
    const options: ConnectOptions = { timeout, keepAlive: this.#options.keepAlive ?? true };
    if (signal !== undefined) options.signal = signal;
    if (this.#options.tls !== undefined) options.tls = this.#options.tls;
    const conn = await connect(this.addr, options);
    const encoding = this.#codec.encoding(this.#frameLimit);
    const channel = new Channel(conn, this.#codec.parser(this.#frameLimit), encoding);
    const fail = (why: string, code: IpcErrorCode = "EPROTOCOL"): IpcError =>
      new IpcError(code, `Cannot connect to "${this.label}" as ${why}`, {
        op: "connect",
        address: this.label,
      });
    try {
      await channel.send({
        type: Control.HELLO,
        version: VERSION,
        app: this.#options.app ?? "dockipc",
        token: tokenBytes(this.#options.token),
      });
      // A TLS server meets a plaintext HELLO with an alert (read as a huge frame) or a close.
      const tlsHint = this.addr.transport === "tcp"
        ? " (if it is a TLS server, connect with tls://)"
        : "";
      const first = await firstRead(
        channel,
        timeout,
        () => fail(`the handshake took over ${timeout} ms`, "ETIMEDOUT"),
      ).catch((err: unknown) => {
        if (!(err instanceof IpcError) || err.code !== "EFRAMETOOLARGE") throw err;
        throw fail(`it answered the handshake with what is not a dockipc frame${tlsHint}`);
      });
      if (first === undefined) {
        throw fail(`it closed during the handshake${tlsHint}`, "ECONNRESET");
      }
      // Anything of the vocabulary's (type 16 and up) is neither of these, so a wrong answer.
      const answer = first[0]! as ControlMessage;
      if (answer.type === Control.REFUSE) {
        throw fail(`the server refused: ${answer.message}`, refusalCode(answer.code));
      }
      if (answer.type !== Control.WELCOME || answer.version !== VERSION) {
        throw fail(
          `it answered the handshake wrongly: is it a dockipc ${this.#codec.protocol} server?`,
        );
      }
      // A message the server would refuse (and close the connection for) is refused here, with
      // the reason, before it is sent.
      if (answer.maxFrameSize > 0) encoding.narrow?.(answer.maxFrameSize);
      const link: Link<V> = {
        channel,
        maxInflight: answer.maxInflight === 0 ? Infinity : answer.maxInflight,
        pongs: [],
        flushes: [],
        goaway: false,
        early: first.slice(1),
      };
      return link;
    } catch (err) {
      channel.close();
      throw err;
    }
  }

  /** Makes `link` current: the protocol sends again what it must, then what waited goes. */
  #attach(link: Link<V>): void {
    if (this.#closed) {
      link.channel.close();
      return;
    }
    const again = this.#reconnecting !== undefined;
    this.#link = link;
    this.#down = undefined;
    link.reading = this.#read(link);
    if (again) {
      this.#reconnects++;
      this.#events.emit({ type: "reconnected" });
    }
    this.#handler.connected();
    for (const q of this.#queued.splice(0)) {
      clearTimeout(q.timer);
      try {
        const sending = link.channel.send(q.message);
        if (sending === undefined) q.resolve();
        else sending.then(q.resolve, q.reject);
      } catch (err) {
        q.reject(err);
      }
    }
  }

  async #read(link: Link<V>): Promise<void> {
    // One step first: `#attach` lets the protocol send what it must before messages come in.
    await Promise.resolve();
    let lost = new IpcError(
      "ECONNRESET",
      `the connection to "${this.label}" was closed by the server`,
      {
        op: "read",
        address: this.label,
      },
    );
    try {
      for (
        let batch: (SessionMessage<V> | Invalid)[] | undefined = link.early;
        batch !== undefined;
        batch = await link.channel.read()
      ) {
        for (const m of batch) this.#receive(link, m);
      }
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const code = err instanceof IpcError && err.code === "ESLOWCONSUMER"
        ? err.code
        : "ECONNRESET";
      lost = new IpcError(code, `the connection to "${this.label}" was lost: ${why}`, {
        op: "read",
        address: this.label,
        cause: err,
      });
    }
    link.channel.close();
    this.#lost(link, lost);
  }

  #receive(link: Link<V>, m: SessionMessage<V> | Invalid): void {
    switch (m.type) {
      case INVALID:
        throw (m as Invalid).error;
      case Control.PONG:
        link.pongs.shift()?.resolve();
        return;
      case Control.FLUSHED:
        link.flushes.shift()?.resolve();
        return;
      case Control.GOAWAY:
        // Send nothing more here; end our side once what was sent has left, so the server
        // reads it all before it closes. The next connection is made once this one ends.
        link.goaway = true;
        (link.ending ??= link.channel.end()).catch(() => {});
        return;
      case Control.REFUSE: {
        const r = m as Extract<ControlMessage, { type: typeof Control.REFUSE }>;
        throw new IpcError(refusalCode(r.code), `the server closed it: ${r.message}`);
      }
      case Control.HELLO:
      case Control.WELCOME:
      case Control.PING:
      case Control.FLUSH:
        throw new IpcError("EPROTOCOL", `a server may not send message type ${m.type}`);
      default:
        this.#handler.receive(m as V);
    }
  }

  /** The connection is gone: reconnect unless closed or told not to. */
  #lost(link: Link<V>, err: IpcError): void {
    for (const p of [...link.pongs.splice(0), ...link.flushes.splice(0)]) p.reject(err);
    if (this.#link !== link) return;
    this.#link = undefined;
    if (this.#closed) return; // the protocol failed what it had when it closed
    this.#events.emit({ type: "disconnected", error: err });
    const reconnect = this.#options.reconnect ?? true;
    if (CREDENTIAL_CODES.includes(err.code)) {
      // Refused for who it is (its user removed, its certificate no longer accepted): the
      // same credentials would only be refused again.
      this.#goDown(err);
      return;
    }
    if (reconnect === false) {
      this.#goDown(
        new IpcError("ECONNRESET", `${err.message}, and reconnect is off`, { cause: err }),
      );
      return;
    }
    this.#handler.disconnected(err, true);
    this.#reconnecting ??= this.#reconnect(reconnect === true ? {} : reconnect).finally(() =>
      this.#reconnecting = undefined
    );
  }

  async #reconnect(options: ReconnectOptions): Promise<void> {
    let last: unknown;
    let attempt = 0;
    for (const wait of backoff({ initialDelay: 100, maxDelay: 2000, ...options })) {
      const error = last === undefined
        ? {}
        : { error: systemError(last, "connect to", this.label) };
      this.#events.emit({ type: "reconnecting", attempt: ++attempt, delay: wait, ...error });
      await delay(wait);
      if (this.#closed) return;
      try {
        this.#attach(await this.#connect());
        return;
      } catch (err) {
        last = err;
        if (err instanceof IpcError && CREDENTIAL_CODES.includes(err.code)) break;
      }
    }
    if (this.#closed) return;
    const why = last instanceof Error ? `: ${last.message}` : "";
    const refused = last instanceof IpcError && CREDENTIAL_CODES.includes(last.code);
    this.#goDown(
      new IpcError(
        refused ? (last as IpcError).code : "ECONNRESET",
        `the connection to "${this.label}" was lost, and reconnecting gave up${why}`,
        { cause: last },
      ),
    );
  }

  /** The connection is gone for good: what waits fails, and later calls fail at once. */
  #goDown(err: IpcError): void {
    this.#down = err;
    this.#failQueued(this.unavailable("send"));
    const error = this.unavailable("send")!;
    this.#handler.disconnected(error, false);
    this.#events.emit({ type: "error", error });
    this.#events.end();
  }

  #ping(): void {
    const link = this.#link;
    if (link === undefined || link.goaway) return;
    const timer = later(() => link.channel.close(), this.#options.pingTimeout ?? 5000);
    const done = (): void => clearTimeout(timer);
    link.pongs.push({ resolve: done, reject: done });
    this.#sendQuietly(link, { type: Control.PING });
  }

  /** Sends a control message; a failure is the read loop's to notice. */
  #sendQuietly(link: Link<V>, message: SessionMessage<V>): void {
    try {
      void link.channel.send(message)?.catch(() => {});
    } catch {
      // The channel failed: its read loop ends the link.
    }
  }
}
