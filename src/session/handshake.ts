/**
 * The handshake both sides of a session run: the first read with a deadline, the shared secret
 * as bytes and compared in constant time, and a server's checks of a client's HELLO.
 *
 * @module
 */

import type { Channel } from "../frame/channel.ts";
import { later } from "../internal/async.ts";
import type { PeerCertificate } from "../runtime/types.ts";
import { Control, type ControlMessage, INVALID, type Invalid, VERSION } from "./protocol.ts";

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

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

/** A shared secret as bytes: a string as its UTF-8. */
export function tokenBytes(token: string | Uint8Array | undefined): Uint8Array {
  return typeof token === "string" ? utf8.encode(token) : token ?? EMPTY;
}

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
export interface HandshakeRules<U> {
  /** Names the client kind in refusals ("RPC", "hub"). */
  protocol: string;
  app: string;
  handshakeTimeout: number;
  /**
   * Who the client is, from the token it sent: a user, undefined for one with every right (no
   * credentials needed, or the shared token); throws a `Refusal` (`EAUTH`) for no one.
   */
  authenticate(token: Uint8Array, cert: PeerCertificate | undefined): U | undefined;
  /** Whether the server takes one more client (of `user`) now: a refusal if not. */
  admit(user: U | undefined): Refusal | undefined;
}

/**
 * Reads a client's first messages and checks that the first is a HELLO that `rules` accept;
 * returns who the client is and what came after the HELLO, or throws a `Refusal`: `EPROTOCOL`
 * for no HELLO or another version, `EAUTH` for another application or a wrong token,
 * `ETIMEDOUT` for none in time, or the server's own (`ECONNREFUSED` when full, `ECLOSED` when
 * shutting down).
 */
export async function readHello<T extends { type: number }, U>(
  channel: Channel<T | ControlMessage | Invalid>,
  rules: HandshakeRules<U>,
  cert: PeerCertificate | undefined,
): Promise<{ user: U | undefined; token: Uint8Array; rest: (T | ControlMessage | Invalid)[] }> {
  const first = await firstRead(
    channel,
    rules.handshakeTimeout,
    () => new Refusal("ETIMEDOUT", `No handshake within ${rules.handshakeTimeout} ms`),
  );
  if (first === undefined) {
    throw new Refusal("EPROTOCOL", "The connection ended before the handshake");
  }
  const h = first[0]! as ControlMessage | Invalid;
  if (h.type === INVALID) throw new Refusal("EPROTOCOL", h.error.message);
  if (h.type !== Control.HELLO) {
    throw new Refusal(
      "EPROTOCOL",
      `The first message was not a handshake: is this a dockipc ${rules.protocol} client?`,
    );
  }
  if (h.version !== VERSION) {
    throw new Refusal(
      "EPROTOCOL",
      `The client speaks ${rules.protocol} protocol version ${h.version}; this server speaks ${VERSION}`,
    );
  }
  if (h.app !== rules.app) {
    throw new Refusal("EAUTH", `The client is for app "${h.app}"; this server is "${rules.app}"`);
  }
  const user = rules.authenticate(h.token, cert);
  const refused = rules.admit(user);
  if (refused !== undefined) throw refused;
  return { user, token: h.token, rest: first.slice(1) };
}
