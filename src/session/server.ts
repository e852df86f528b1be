/**
 * One server lifecycle for every protocol on the session layer: listening, the handshake with
 * its limits and timeout, liveness answers, the idle timeout, GOAWAY, a `shutdown()` that drains
 * in-flight work, and a `close()` that loses no reply already written. RPC and the hub each give
 * it a {@linkcode Dispatcher} per connection.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { closedError, IpcError } from "../errors.ts";
import { Channel } from "../frame/channel.ts";
import { maxFrameSizeOf } from "../frame/codec.ts";
import { deferred, later } from "../internal/async.ts";
import type { Conn } from "../runtime/types.ts";
import { type Listener, type ListenOptions, listenRefusing } from "../transport.ts";
import { type HandshakeRules, readHello, Refusal, tokenBytes } from "./handshake.ts";
import { Credentials, loadUsers, type ServedUser, type User } from "./users.ts";
import { type Beating, Heartbeats } from "./heartbeat.ts";
import {
  type Codec,
  Control,
  type ControlMessage,
  INVALID,
  type Invalid,
  type SessionMessage,
  VERSION,
} from "./protocol.ts";

/** The options every dockipc server takes: `serve()` and `serveHub()`. */
export interface ServerOptions
  extends Pick<ListenOptions, "mode" | "signal" | "keepAlive" | "tls"> {
  /** Clients must name the same application. @default {"dockipc"} */
  app?: string;
  /**
   * A shared secret clients must present, at most 8 KiB; compared in constant time. A client
   * that presents it may do everything, beside any `users`.
   */
  token?: string | Uint8Array;
  /**
   * Who may connect, each with a token, a client certificate or both, and what each may do: a
   * client must be one of them (or present `token`). `setUsers()` replaces the list.
   */
  users?: readonly User[];
  /**
   * Clients at once, counting those past their handshake; more are refused at the handshake.
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * Connections still in their handshake at once: one more closes the oldest of them, so
   * connections that never say HELLO cannot keep clients out. @default {256}
   */
  maxHandshakes?: number;
  /** Milliseconds a new connection has to complete its handshake. @default {5000} */
  handshakeTimeout?: number;
  /**
   * Milliseconds a connection may stay with nothing in flight and no whole message from its
   * client (a dockipc client pings every 10 s) before it is closed; 0: never. @default {120000}
   */
  idleTimeout?: number;
  /** The largest frame either way; a client sending a larger one is disconnected. @default {16777216} */
  maxFrameSize?: number;
}

/** A running server. */
export interface Server extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Address;
  /** Connections open now. */
  readonly connections: number;
  /**
   * Stops accepting and tells every client to go (GOAWAY); reads what each still sends until it
   * ends its side, finishes what runs, sends the last replies, then closes. When `signal`
   * aborts first, everything closes at once.
   */
  shutdown(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Shuts down within 10 seconds, then closes what is left: resolves once every reply already
   * written has been handed to the kernel. `[Symbol.asyncDispose]` does the same.
   */
  close(): Promise<void>;
  /** Closes every connection now, discarding what has not been written; handlers' signals abort. */
  abort(): void;
  /**
   * Replaces the users (token files are read again) without a restart. Every open connection
   * is checked again: one whose user is gone or whose credentials no longer match is refused
   * with `EAUTH` and closed; the others get their user's new permissions at once (a hub cuts
   * the subscriptions they no longer allow).
   *
   * @throws {IpcError} `EINVAL` for a list that cannot be used; the old one then stays.
   */
  setUsers(users: readonly User[]): Promise<void>;
}

/** What a protocol's server does with one connection once the handshake is done. */
export interface Dispatcher<V> {
  /**
   * Serves one message: a promise when the connection must be read no further until it
   * settles. Throwing drops the client with a REFUSE saying why.
   */
  serve(message: V): Promise<void> | undefined;
  /** Resolves once everything served so far has been dealt with; undefined when it has. */
  settled(): Promise<void> | undefined;
  /** Whether work is in flight: the idle timer waits until there is none. */
  busy(): boolean;
  /** The client sent its last message: finish what runs and send its replies. */
  finish(): Promise<void>;
  /** The connection's user changed (`setUsers()`): apply its permissions to what is open. */
  reauthorize?(): void;
  /** The connection is over: release what it holds, aborting what still runs. */
  release(reason: IpcError): void;
}

/** The served end of one connection, as a protocol's dispatcher uses it. */
export interface ServedConn<V> {
  readonly conn: Conn;
  /** The user the client is, or undefined for one with every right. */
  readonly user: User | undefined;
  /** Whether the server is shutting down. */
  readonly draining: boolean;
  /**
   * Sends a message: undefined once taken, a promise while the socket pushes back. Never
   * rejects: a failed connection is its read loop's to end.
   */
  send(message: SessionMessage<V>): Promise<void> | undefined;
  /** Sends a message, rejecting only for one over `maxFrameSize` (`EFRAMETOOLARGE`). */
  reply(message: V): Promise<void>;
  /** Tells the client why it is dropped (REFUSE), then ends the connection. */
  refuse(err: unknown): Promise<void>;
  /** Arms the idle timer again, as work ended. */
  idle(): void;
}

/** A protocol, as the server lifecycle needs it. */
export interface ServedProtocol<V extends { type: number }> {
  readonly codec: Codec<V>;
  /** Names the serving function in errors: "serve()", "serveHub()". */
  readonly owner: string;
  /** Requests a connection may have running at once, told to clients; 0 for no bound. */
  readonly maxInflight: number;
  /** Makes the dispatcher of a new connection. */
  dispatcher(served: ServedConn<V>): Dispatcher<V>;
}

/**
 * The largest first frame a client may send: a HELLO is a few dozen bytes and its token. A
 * connection that has not said who it is can make the server hold no more.
 */
const HANDSHAKE_FRAME_LIMIT = 16 * 1024;

/** FLUSHes a connection may have waiting for earlier work before it is read no further. */
const MAX_WAITING_FLUSHES = 64;

/** How long `close()` and `[Symbol.asyncDispose]` let a shutdown take before closing at once. */
const SHUTDOWN_BOUND_MS = 10_000;

/** The REFUSE message that reports `err`, with its code where it has one. */
function refusalOf(err: unknown): ControlMessage {
  const code = err instanceof IpcError || err instanceof Refusal ? err.code : "EPROTOCOL";
  return {
    type: Control.REFUSE,
    code,
    message: err instanceof Error ? err.message : String(err),
  };
}

/**
 * Listens at `address` and serves `protocol` on every connection.
 *
 * @param address Where to listen.
 * @param options The handshake's app id and token, and the server's limits.
 * @param protocol The protocol's codec and dispatcher.
 */
export async function serveSessions<V extends { type: number }>(
  address: string | Address,
  options: ServerOptions,
  protocol: ServedProtocol<V>,
): Promise<Server> {
  const {
    app = "dockipc",
    maxConnections = 1024,
    maxHandshakes = 256,
    handshakeTimeout = 5000,
    idleTimeout = 120_000,
    maxFrameSize,
  } = options;
  const limits = { maxConnections, maxHandshakes, handshakeTimeout, idleTimeout };
  for (const [name, v] of Object.entries(limits)) {
    const min = name === "idleTimeout" ? 0 : 1;
    if (!Number.isInteger(v) || v < min) {
      throw new RangeError(
        `Cannot start ${protocol.owner} as ${name} must be a whole number >= ${min}: got ${v}`,
      );
    }
  }
  const token = options.token === undefined ? undefined : tokenBytes(options.token);
  if (token !== undefined && token.length > HANDSHAKE_FRAME_LIMIT / 2) {
    throw new RangeError(
      `Cannot start ${protocol.owner} as the token must be at most ${
        HANDSHAKE_FRAME_LIMIT / 2
      } bytes: got ${token.length}`,
    );
  }
  const frameLimit = maxFrameSizeOf(
    protocol.owner,
    maxFrameSize === undefined ? {} : { maxFrameSize },
  );
  const listenOptions: ListenOptions = {};
  if (options.mode !== undefined) listenOptions.mode = options.mode;
  if (options.keepAlive !== undefined) listenOptions.keepAlive = options.keepAlive;
  if (options.tls !== undefined) listenOptions.tls = { handshakeTimeout, ...options.tls };
  const credentials = new Credentials(token);
  if (options.users !== undefined) credentials.set(await loadUsers(options.users));
  const sessions = new Set<Session<V>>();
  const state: ServerState = { draining: false, admitted: 0 };
  const rules: HandshakeRules<ServedUser> = {
    protocol: protocol.codec.protocol,
    app,
    handshakeTimeout,
    authenticate: (token, cert) => credentials.authenticate(token, cert),
    admit: (user) => {
      if (state.admitted >= maxConnections) {
        return new Refusal(
          "ECONNREFUSED",
          `The server has reached maxConnections (${maxConnections})`,
        );
      }
      if (state.draining) return new Refusal("ECLOSED", "The server is shutting down");
      const refused = credentials.admit(user);
      if (refused === undefined) state.admitted++;
      return refused;
    },
  };
  const context: SessionContext<V> = {
    protocol,
    rules,
    frameLimit,
    idleTimeout,
    state,
    heartbeats: new Heartbeats(),
    handshaking: new Set(),
    maxHandshakes,
    sessions,
    credentials,
  };
  // A TLS client whose certificate is refused is answered as a session: its HELLO is read, and
  // the REFUSE says why.
  const listener = await listenRefusing(
    address,
    listenOptions,
    (conn, err) => startSession(conn, context, err),
  );
  return new Served(listener, sessions, state, context, options.signal);
}

/** Serves a new connection as a session; `refused` (a client certificate's fault) ends it so. */
function startSession<V extends { type: number }>(
  conn: Conn,
  context: SessionContext<V>,
  refused?: IpcError,
): void {
  const { handshaking, maxHandshakes, sessions } = context;
  const session = new Session(conn, context, refused);
  if (handshaking.size >= maxHandshakes) {
    // The oldest of those yet to say HELLO makes room: a flood of silent connections then
    // costs each real client at most a retry, never the server.
    const oldest = handshaking.values().next().value!;
    handshaking.delete(oldest);
    oldest.abort();
  }
  handshaking.add(session);
  sessions.add(session);
  void session.run().finally(() => sessions.delete(session));
}

interface SessionContext<V extends { type: number }> {
  readonly protocol: ServedProtocol<V>;
  readonly rules: HandshakeRules<ServedUser>;
  readonly frameLimit: number;
  readonly idleTimeout: number;
  readonly state: ServerState;
  readonly heartbeats: Heartbeats;
  /** Sessions still in their handshake, oldest first. */
  readonly handshaking: Set<Session<V>>;
  readonly maxHandshakes: number;
  /** Every session open now. */
  readonly sessions: Set<Session<V>>;
  readonly credentials: Credentials;
}

interface ServerState {
  draining: boolean;
  /** Sessions past their handshake: what `maxConnections` bounds. */
  admitted: number;
}

/** A running server: accepts connections as sessions, and shuts them down. */
class Served<V extends { type: number }> implements Server {
  readonly addr: Address;
  readonly #listener: Listener;
  readonly #sessions: Set<Session<V>>;
  readonly #state: { draining: boolean };
  readonly #credentials: Credentials;
  readonly #accepting: Promise<void>;
  #closing: Promise<void> | undefined;

  constructor(
    listener: Listener,
    sessions: Set<Session<V>>,
    state: { draining: boolean },
    context: SessionContext<V>,
    signal: AbortSignal | undefined,
  ) {
    this.addr = listener.addr;
    this.#listener = listener;
    this.#sessions = sessions;
    this.#state = state;
    this.#credentials = context.credentials;
    this.#accepting = (async () => {
      for await (const conn of listener) startSession(conn, context);
    })();
    signal?.addEventListener("abort", () => this.abort(), { once: true });
  }

  get connections(): number {
    return this.#sessions.size;
  }

  async setUsers(users: readonly User[]): Promise<void> {
    this.#credentials.set(await loadUsers(users));
    for (const session of this.#sessions) session.reauthenticate();
  }

  async shutdown(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#state.draining = true;
    await this.#listener.close();
    const { signal } = options;
    const abort = (): void => this.abort();
    if (signal?.aborted) return abort();
    signal?.addEventListener("abort", abort, { once: true });
    try {
      await Promise.all([...this.#sessions].map((s) => s.drain()));
      await this.#accepting;
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  }

  close(): Promise<void> {
    return this.#closing ??= this.#closeWithin(SHUTDOWN_BOUND_MS);
  }

  /** Shuts down, closing at once after `ms`: on a timer that keeps the process alive till then. */
  async #closeWithin(ms: number): Promise<void> {
    const bound = new AbortController();
    const timer = later(() => bound.abort(), ms);
    try {
      await this.shutdown({ signal: bound.signal });
    } finally {
      clearTimeout(timer);
    }
  }

  abort(): void {
    this.#state.draining = true;
    void this.#listener.close();
    for (const session of this.#sessions) session.abort();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** One client connection of a server, from its handshake until it ends. */
class Session<V extends { type: number }> implements ServedConn<V>, Beating {
  readonly conn: Conn;
  readonly channel: Channel<SessionMessage<V> | Invalid>;
  readonly #context: SessionContext<V>;
  #dispatcher: Dispatcher<V> | undefined;
  #idle: ReturnType<typeof setTimeout> | undefined;
  /** When the connection last did something (`Date.now()`), for the idle timer. */
  #active = 0;
  /** The last FLUSHED still waiting for earlier work: the next one goes after it. */
  #flushed: Promise<void> | undefined;
  /** How many FLUSHED wait for earlier work. */
  #flushes = 0;
  #running: Promise<void> | undefined;
  readonly #aborted = deferred<void>();
  /** The heartbeat on its way, if any: the next waits for it. */
  #beating: Promise<void> | undefined;
  /** Past its handshake: it counts toward `maxConnections`. */
  #admitted = false;
  /** Why the transport refused it (its client certificate), told once its HELLO is read. */
  readonly #refused: IpcError | undefined;
  /** Who the client is, and the token it proved it with (checked again on `setUsers()`). */
  #user: ServedUser | undefined;
  #token: Uint8Array | undefined;

  constructor(conn: Conn, context: SessionContext<V>, refused?: IpcError) {
    this.conn = conn;
    this.#context = context;
    this.#refused = refused;
    const limit = context.frameLimit;
    this.channel = new Channel(
      conn,
      context.protocol.codec.parser(limit, HANDSHAKE_FRAME_LIMIT),
      context.protocol.codec.encoding(limit),
      { lastWords: refusalOf },
    );
    // A socket that closed (a write failed: the client is gone) ends what runs for it at once.
    void conn.closed.then(() =>
      this.abort(
        new IpcError("ECONNRESET", "Cannot serve it as the client is gone", { op: "serve" }),
      )
    );
  }

  get draining(): boolean {
    return this.#context.state.draining;
  }

  run(): Promise<void> {
    return this.#running ??= this.#run();
  }

  async #run(): Promise<void> {
    try {
      const refused = this.#refused;
      // A refused certificate is the answer, whatever else the HELLO says.
      const rules = refused === undefined ? this.#context.rules : {
        ...this.#context.rules,
        authenticate: (): never => {
          throw new Refusal(refused.code, refused.message);
        },
      };
      const hello = await readHello(this.channel, rules, this.conn.tls?.peerCertificate);
      let batch: (SessionMessage<V> | Invalid)[] | undefined = hello.rest;
      this.#user = hello.user;
      this.#token = hello.token;
      this.#admitted = true;
      this.#context.handshaking.delete(this);
      await this.send({
        type: Control.WELCOME,
        version: VERSION,
        maxInflight: this.#context.protocol.maxInflight,
        maxFrameSize: this.#context.frameLimit,
      });
      this.#dispatcher = this.#context.protocol.dispatcher(this);
      this.idle();
      while (batch !== undefined) {
        for (const m of batch) {
          const waiting = this.#serve(m);
          // Reading waits (backpressure), unless the connection is aborted meanwhile.
          if (waiting !== undefined) await this.#wait(waiting);
        }
        batch = await this.channel.read();
        this.idle();
      }
      // The client ended its side: finish what runs, then end ours. After `abort()` (which
      // also ends the reads) there is nothing left to finish. A client that is gone, not
      // just done sending, is found out by the first heartbeat: one goes at once.
      if (this.#dispatcher.busy()) this.beat();
      await this.#wait(this.#dispatcher.finish());
      await this.channel.end().catch(() => {});
    } catch (err) {
      await this.refuse(err);
    } finally {
      this.abort();
      this.#context.handshaking.delete(this);
      if (this.#admitted) {
        this.#context.state.admitted--;
        this.#context.credentials.leave(this.#user);
      }
    }
  }

  get user(): User | undefined {
    return this.#user?.user;
  }

  /** The users changed: who is this client now? One that is no one is refused. */
  reauthenticate(): void {
    if (!this.#admitted || this.#token === undefined) return;
    const { credentials } = this.#context;
    let user: ServedUser | undefined;
    try {
      user = credentials.authenticate(this.#token, this.conn.tls?.peerCertificate);
    } catch {
      void this.refuse(
        new Refusal(
          "EAUTH",
          "The server's users changed, and the client's credentials are no longer accepted",
        ),
      );
      return;
    }
    credentials.move(this.#user, user);
    this.#user = user;
    this.#dispatcher?.reauthorize?.();
  }

  /** Waits for `work` with the heartbeat on, unless the connection is aborted first. */
  async #wait(work: Promise<void>): Promise<void> {
    const heartbeats = this.#context.heartbeats;
    heartbeats.waiting(this);
    try {
      await Promise.race([work, this.#aborted.promise]);
    } finally {
      heartbeats.done(this);
    }
  }

  beat(): void {
    if (this.#beating !== undefined) return; // at most one waits for a client that reads slowly
    const beat = this.send({ type: Control.PONG });
    if (beat === undefined) return;
    this.#beating = beat;
    void beat.finally(() => (this.#beating = undefined));
  }

  #serve(m: SessionMessage<V> | Invalid): Promise<void> | undefined {
    switch (m.type) {
      case INVALID:
        throw (m as Invalid).error;
      case Control.PING:
        // Liveness: at once, even while earlier work waits (a "block" subscriber, say). A
        // client that does not read its PONGs is read no further: what waits for it is bounded.
        return this.send({ type: Control.PONG });
      case Control.FLUSH: {
        // After the work before it: FLUSHED means "dealt with", and they keep their order.
        const before = this.#flushed ?? this.#dispatcher!.settled();
        if (before === undefined) return this.send({ type: Control.FLUSHED });
        this.#flushes++;
        const flushed: Promise<void> = before.then(() => {
          this.#flushes--;
          if (this.#flushed === flushed) this.#flushed = undefined;
          return this.send({ type: Control.FLUSHED });
        });
        this.#flushed = flushed;
        // A few may wait (their answers need work that may need this client's CREDIT); past
        // that, the client is read no further until they are answered.
        return this.#flushes > MAX_WAITING_FLUSHES ? flushed : undefined;
      }
      case Control.HELLO:
      case Control.WELCOME:
      case Control.REFUSE:
      case Control.GOAWAY:
      case Control.PONG:
      case Control.FLUSHED:
        throw new Refusal(
          "EPROTOCOL",
          `A client may not send message type ${m.type} after the handshake`,
        );
      default:
        return this.#dispatcher!.serve(m as V);
    }
  }

  send(message: SessionMessage<V>): Promise<void> | undefined {
    try {
      return this.channel.send(message)?.catch(() => {});
    } catch {
      // The channel failed: the read loop ends the session.
      return undefined;
    }
  }

  async reply(message: V): Promise<void> {
    try {
      await this.channel.send(message);
    } catch (err) {
      if (err instanceof IpcError && err.code === "EFRAMETOOLARGE") throw err;
    }
  }

  async refuse(err: unknown): Promise<void> {
    await this.send(refusalOf(err));
    await this.channel.end().catch(() => {});
    this.abort();
  }

  /**
   * Something happened (a message read, work ended): the idle time counts from now. Only a time
   * is noted: the one timer looks at it when it fires, as re-arming a timer for every message
   * cost round trips 5 % on Deno.
   */
  idle(): void {
    const ms = this.#context.idleTimeout;
    if (ms <= 0) return;
    this.#active = Date.now();
    this.#idle ??= later(() => this.#idleCheck(), ms);
  }

  /** The idle timer fired: closes a connection quiet for `idleTimeout` with nothing in flight. */
  #idleCheck(): void {
    const ms = this.#context.idleTimeout;
    const quiet = Date.now() - this.#active;
    const busy = this.#dispatcher?.busy() ?? false;
    if (quiet >= ms && !busy) {
      this.#idle = undefined;
      this.conn.close();
      return;
    }
    // Work in flight is looked at again a whole period on; a quiet spell, when it will be over.
    this.#idle = later(() => this.#idleCheck(), busy ? ms : ms - quiet);
  }

  /** Closes the connection now, and ends what runs for it. */
  abort(reason: IpcError = closedError("serve", "server")): void {
    this.#aborted.resolve();
    clearTimeout(this.#idle);
    this.#dispatcher?.release(reason);
    this.conn.close();
  }

  /**
   * Shutdown: GOAWAY, then the read loop goes on until the client ends its side (a dockipc
   * client does once it has sent what it had), finishes what runs and closes.
   */
  async drain(): Promise<void> {
    if (this.#dispatcher === undefined) {
      // Still in its handshake: it will be refused as the server is shutting down.
      await this.run();
      return;
    }
    await this.send({ type: Control.GOAWAY });
    await this.run();
  }
}
