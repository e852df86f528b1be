/**
 * What the RPC server and the hub server share: checking a client's handshake, and the
 * listener's life (accepting sessions, shutdown with a drain, closing).
 *
 * @module
 */

import type { Address } from "../address.ts";
import type { Channel } from "../frame/channel.ts";
import type { Conn } from "../runtime/types.ts";
import { listen, type Listener, type ListenOptions } from "../transport.ts";
import { later } from "./async.ts";

const utf8 = new TextEncoder();

/** A refused client: the reason is sent to it (code and message), then the connection closes. */
export class Refusal extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** Compares two byte strings in time that depends only on their lengths, not their contents. */
export function sameSecret(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i % Math.max(a.length, 1)] ?? 0) ^ b[i]!;
  return diff === 0;
}

/**
 * Binds a server's socket and encodes its token, the start `serve()` and `serveHub()` share.
 *
 * @param address Where to listen.
 * @param options The socket file's mode, and the shared secret as given.
 */
export async function listenForClients(
  address: string | Address,
  options: Pick<ListenOptions, "mode"> & { token?: string | Uint8Array | undefined },
): Promise<{ listener: Listener; token: Uint8Array | undefined }> {
  const listenOptions: ListenOptions = {};
  if (options.mode !== undefined) listenOptions.mode = options.mode;
  const token = options.token === undefined ? undefined : tokenBytes(options.token);
  return { listener: await listen(address, listenOptions), token };
}

/** A shared secret as bytes: a string as its UTF-8. */
export function tokenBytes(token: string | Uint8Array | undefined): Uint8Array {
  return typeof token === "string" ? utf8.encode(token) : token ?? EMPTY;
}

const EMPTY = new Uint8Array(0);

/**
 * The messages of the first read on a new connection (undefined if it ended), or the error
 * `timedOut()` makes once `ms` pass first: both sides of a handshake wait this way.
 */
export async function firstRead<T>(
  channel: Channel<T>,
  ms: number,
  timedOut: () => Error,
): Promise<T[] | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return await Promise.race([
    channel.read(),
    new Promise<never>((_, reject) => {
      timer = later(() => reject(timedOut()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** What a server expects of a HELLO. */
export interface HandshakeRules {
  /** Names the client kind in the refusal for a peer that sent no HELLO ("RPC", "hub"). */
  protocol: string;
  version: number;
  app: string;
  token: Uint8Array | undefined;
  /** The code for a client of another application. */
  appCode: string;
  handshakeTimeout: number;
  /** Past this many sessions a client is refused with `ECONNREFUSED`. */
  maxConnections: number;
  /** The server's sessions, and whether it is shutting down (then `ECLOSED`). */
  state: { sessions: Set<Session>; draining: boolean };
}

/** A HELLO, as the two protocols decode it. */
export interface Hello {
  version: number;
  app: string;
  token: Uint8Array;
}

/**
 * Reads a client's first messages and checks the first is a HELLO that `rules` accept, and that
 * the server takes another client; returns
 * the HELLO and what came after it, or throws a `Refusal`.
 *
 * @param channel The new connection.
 * @param rules What the server expects.
 * @param hello The message as a HELLO, or a string saying why it is not one.
 */
export async function readHello<T>(
  channel: Channel<T>,
  rules: HandshakeRules,
  hello: (m: T) => Hello | string,
): Promise<T[]> {
  const first = await firstRead(
    channel,
    rules.handshakeTimeout,
    () => new Refusal("ETIMEDOUT", `No handshake within ${rules.handshakeTimeout} ms`),
  );
  if (first === undefined) {
    throw new Refusal("EPROTOCOL", "The connection ended before the handshake");
  }
  const h = hello(first[0]!);
  if (typeof h === "string") throw new Refusal("EPROTOCOL", h);
  if (h.version !== rules.version) {
    throw new Refusal(
      "EPROTOCOL",
      `The client speaks ${rules.protocol} protocol version ${h.version}; this server speaks ${rules.version}`,
    );
  }
  if (h.app !== rules.app) {
    throw new Refusal(
      rules.appCode,
      `The client is for app "${h.app}"; this server is "${rules.app}"`,
    );
  }
  if (rules.token !== undefined && !sameSecret(h.token, rules.token)) {
    throw new Refusal("EAUTH", "The client's token is wrong");
  }
  if (rules.state.sessions.size > rules.maxConnections) {
    throw new Refusal(
      "ECONNREFUSED",
      `The server has reached maxConnections (${rules.maxConnections})`,
    );
  }
  if (rules.state.draining) throw new Refusal("ECLOSED", "The server is shutting down");
  return first.slice(1);
}

/** One client connection of a server. */
export interface Session {
  readonly conn: Conn;
  /** Serves the connection until it ends; never rejects. */
  run(): Promise<void>;
  /** Closes the connection now. */
  abort(): void;
  /** Tells the client the server is going, finishes what runs, then closes. */
  drain(signal: AbortSignal | undefined): Promise<void>;
}

/** A running server's life: the calls `serve()` and `serveHub()` return. */
export interface ServerLife extends AsyncDisposable {
  readonly addr: Address;
  readonly connections: number;
  shutdown(options?: { signal?: AbortSignal }): Promise<void>;
  close(): void;
}

const SHUTDOWN_BOUND_MS = 10_000;

/**
 * Accepts connections as sessions, and gives the server its `shutdown()` (stop accepting,
 * drain every session, closing at once when the signal aborts), `close()` and dispose.
 *
 * @param listener The listening socket.
 * @param start Makes the session of a new connection.
 * @param state Read by sessions: how many there are, and whether shutdown began.
 * @param signal Closes everything when it aborts.
 */
export function serveSessions(
  listener: Listener,
  start: (conn: Conn) => Session,
  state: { sessions: Set<Session>; draining: boolean },
  signal: AbortSignal | undefined,
): ServerLife {
  const { sessions } = state;
  const accepting = (async () => {
    for await (const conn of listener) {
      const session = start(conn);
      sessions.add(session);
      void session.run().finally(() => sessions.delete(session));
    }
  })();

  const close = (): void => {
    void listener.close();
    for (const session of sessions) session.abort();
  };
  signal?.addEventListener("abort", close, { once: true });

  const life: ServerLife = {
    addr: listener.addr,
    get connections(): number {
      return sessions.size;
    },
    async shutdown(options: { signal?: AbortSignal } = {}): Promise<void> {
      state.draining = true;
      await listener.close();
      const { signal } = options;
      if (signal?.aborted) return close();
      signal?.addEventListener("abort", close, { once: true });
      try {
        await Promise.all([...sessions].map((s) => s.drain(signal)));
        await accepting;
      } finally {
        signal?.removeEventListener("abort", close);
      }
    },
    close,
    async [Symbol.asyncDispose](): Promise<void> {
      await life.shutdown({ signal: AbortSignal.timeout(SHUTDOWN_BOUND_MS) });
    },
  };
  return life;
}
