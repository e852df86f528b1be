/**
 * Users of a server: who a client is (a token, a verified client certificate, or both), what it
 * may do (the protocols read the permissions) and how much of the server it may hold. The
 * session layer checks the credentials at the handshake; a token file is read here, and refused
 * when anyone but its owner may read it.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { getRuntime } from "../runtime/detect.ts";
import type { PeerCertificate } from "../runtime/types.ts";
import { Refusal, sameSecret, tokenBytes } from "./handshake.ts";

/**
 * Patterns of topics (with `*` and `>` as topics use them): allowed are those an `allow`
 * pattern covers (everything when `allow` is absent) and no `deny` pattern touches.
 */
export interface TopicPermission {
  /** Patterns allowed; absent: every topic. */
  allow?: readonly string[];
  /** Patterns denied, whatever `allow` says. */
  deny?: readonly string[];
}

/** The client certificate that identifies a user: every field given must match. */
export interface CertIdentity {
  /** The subject's common name (`CN`). */
  commonName?: string;
  /** One of its subject alternative names, as `"email:alice@example.com"` or `"DNS:host"`. */
  subjectAltName?: string;
  /** Its SHA-256 fingerprint (hex, any case, colons optional). */
  fingerprint?: string;
}

/** The stream operations a hub user may be allowed: reading and changing streams, consuming. */
export type StreamOperation =
  | "streams"
  | "streamInfo"
  | "addStream"
  | "updateStream"
  | "deleteStream"
  | "purge"
  | "consumers"
  | "consumerInfo"
  | "deleteConsumer"
  | "consume";

/** Every stream operation, in the order `StreamOperation` lists them. */
export const STREAM_OPERATIONS: readonly StreamOperation[] = [
  "streams",
  "streamInfo",
  "addStream",
  "updateStream",
  "deleteStream",
  "purge",
  "consumers",
  "consumerInfo",
  "deleteConsumer",
  "consume",
];

/**
 * A user of a server: how its clients prove who they are, and what they may do. A client is
 * this user when every credential the user names matches: its `token`, its verified client
 * certificate (`cert`, over `tls://`), or both.
 *
 * @example A user allowed one family of topics
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectHub, Hub, serveHub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * await using server = await serveHub(hub, "tcp://127.0.0.1:0", {
 *   users: [{ name: "orders-app", token: "s3cret", publish: { allow: ["orders.*"] } }],
 * });
 * await using client = await connectHub(server.addr, { token: "s3cret" });
 * await client.publish("orders.created", "{}");
 * await client.publish("billing.x", "{}"); // refused by the server: the next flush says so
 * await assert.rejects(client.flush(), { code: "EPERM" });
 * ```
 */
export interface User {
  /** Names the user in refusals, stats and the handlers' context. */
  name: string;
  /** The secret its clients send as their `token`: at most 8 KiB, compared in constant time. */
  token?: string | Uint8Array;
  /**
   * A file that holds the token (one trailing newline is dropped), read at start and on each
   * `setUsers()`. Refused with `EACCES` if its group or others may read or write it (`chmod 600`
   * it).
   */
  tokenFile?: string;
  /** The client certificate that identifies the user (needs a `tls://` server with a `ca`). */
  cert?: CertIdentity;
  /** Topics it may publish to and make requests on (hub). @default {every topic} */
  publish?: TopicPermission;
  /** Patterns it may subscribe to (hub). @default {every pattern} */
  subscribe?: TopicPermission;
  /** The stream operations it may use (hub). @default {all of them} */
  streams?: readonly StreamOperation[];
  /** Whether it may make requests of an RPC server. @default {true} */
  rpc?: boolean;
  /** Its connections at once; one more is refused with `ELIMIT`. @default {no bound} */
  maxConnections?: number;
  /** Its subscriptions at once, over all its connections (hub). @default {no bound} */
  maxSubscriptions?: number;
  /**
   * Messages per second it may publish, over all its connections (hub), with its burst and
   * policy as a hub's rate limits take them; instead of the server's `limits.connection`.
   */
  rate?: { rate: number; burst?: number; policy?: "wait" | "reject" };
}

/** A user as the server checks it: its token as bytes, its file read. */
export interface ServedUser {
  readonly user: User;
  readonly token: Uint8Array | undefined;
}

const MAX_TOKEN = 8 * 1024;

function invalid(why: string): IpcError {
  return new IpcError("EINVAL", `Cannot use the users as ${why}`, { op: "users" });
}

/**
 * Reads a secret (a token) from `path`, refusing a file that its group or others may read or
 * write, as ssh refuses such a key: a secret others can read is no secret. One trailing line
 * feed (or CR LF) is dropped.
 *
 * @throws {IpcError} `EACCES` for a file others may use, naming its mode and the fix.
 */
export async function readSecretFile(path: string): Promise<Uint8Array> {
  const { fs } = await getRuntime();
  const info = await fs.stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw new IpcError(
      "EACCES",
      `Cannot use the token file "${path}" as its mode ${
        (info.mode & 0o777).toString(8).padStart(4, "0")
      } lets its group or others read or write it: run chmod 600 "${path}"`,
      { op: "read", path },
    );
  }
  const bytes = await fs.readFile(path);
  const end = bytes.at(-1) !== 0x0a ? bytes.length : bytes.length - (bytes.at(-2) === 0x0d ? 2 : 1);
  return bytes.subarray(0, end);
}

function checkCount(user: string, name: string, value: unknown): void {
  if (value !== undefined && (!Number.isInteger(value) || (value as number) < 0)) {
    throw invalid(
      `user "${user}"'s ${name} must be a whole number >= 0: current value is ${String(value)}`,
    );
  }
}

/** Checks a list of users and reads their token files. */
export async function loadUsers(users: readonly User[]): Promise<ServedUser[]> {
  if (!Array.isArray(users)) throw invalid("they are not an array");
  const served: ServedUser[] = [];
  const names = new Set<string>();
  for (const user of users) {
    if (typeof user !== "object" || user === null) throw invalid("one of them is not an object");
    const { name } = user;
    if (typeof name !== "string" || name === "") throw invalid("a user has no name");
    if (names.has(name)) throw invalid(`two users are named "${name}"`);
    names.add(name);
    if (user.token !== undefined && user.tokenFile !== undefined) {
      throw invalid(`user "${name}" has both token and tokenFile: keep one`);
    }
    const token = user.tokenFile !== undefined
      ? await readSecretFile(user.tokenFile)
      : user.token === undefined
      ? undefined
      : tokenBytes(user.token);
    if (token !== undefined && (token.length === 0 || token.length > MAX_TOKEN)) {
      throw invalid(`user "${name}"'s token must be 1 to ${MAX_TOKEN} bytes: got ${token.length}`);
    }
    if (token === undefined && user.cert === undefined) {
      throw invalid(`user "${name}" has no credential: give it a token, a tokenFile or a cert`);
    }
    if (user.cert !== undefined) {
      const { commonName, subjectAltName, fingerprint } = user.cert;
      if (commonName === undefined && subjectAltName === undefined && fingerprint === undefined) {
        throw invalid(
          `user "${name}"'s cert names nothing: give its commonName, subjectAltName or fingerprint`,
        );
      }
    }
    checkCount(name, "maxConnections", user.maxConnections);
    checkCount(name, "maxSubscriptions", user.maxSubscriptions);
    if (user.rpc !== undefined && typeof user.rpc !== "boolean") {
      throw invalid(
        `user "${name}"'s rpc must be true or false: current value is ${String(user.rpc)}`,
      );
    }
    for (const op of user.streams ?? []) {
      if (!STREAM_OPERATIONS.includes(op)) {
        throw invalid(
          `user "${name}"'s streams list "${op}", which is not one of ${
            STREAM_OPERATIONS.join(", ")
          }`,
        );
      }
    }
    served.push({ user, token });
  }
  for (let i = 0; i < served.length; i++) {
    for (let j = i + 1; j < served.length; j++) {
      const [a, b] = [served[i]!, served[j]!];
      if (a.token && b.token && !a.user.cert && !b.user.cert && sameSecret(a.token, b.token)) {
        throw invalid(`users "${a.user.name}" and "${b.user.name}" have the same token`);
      }
    }
  }
  return served;
}

const hex = (s: string): string => s.replace(/:/g, "").toUpperCase();

/** Whether a verified certificate is the one `identity` names. */
function certMatches(identity: CertIdentity, cert: PeerCertificate | undefined): boolean {
  if (cert === undefined) return false;
  const { commonName, subjectAltName, fingerprint } = identity;
  return (commonName === undefined || cert.commonName === commonName) &&
    (subjectAltName === undefined || cert.subjectAltNames.includes(subjectAltName)) &&
    (fingerprint === undefined || hex(cert.fingerprint) === hex(fingerprint));
}

/**
 * The user a client is, from the token it sent and its verified certificate: the first whose
 * every credential matches, or undefined. Every token is compared, so the time taken does not
 * tell which one came close.
 */
export function identify(
  users: readonly ServedUser[],
  token: Uint8Array,
  cert: PeerCertificate | undefined,
): ServedUser | undefined {
  let found: ServedUser | undefined;
  for (const served of users) {
    const tokenOk = served.token === undefined || sameSecret(token, served.token);
    const certOk = served.user.cert === undefined || certMatches(served.user.cert, cert);
    if (tokenOk && certOk && found === undefined) found = served;
  }
  return found;
}

/**
 * A server's credentials: its shared token, its users, and how many connections each user has.
 * `authenticate` answers who a client is; a refusal is a `Refusal` the handshake sends.
 */
export class Credentials {
  #token: Uint8Array | undefined;
  #users: readonly ServedUser[] = [];
  /** Admitted connections, by user name. */
  readonly #connections = new Map<string, number>();

  constructor(token: Uint8Array | undefined) {
    this.#token = token;
  }

  /** Whether a client must prove who it is. */
  get required(): boolean {
    return this.#token !== undefined || this.#users.length > 0;
  }

  /** Takes a new list of users (checked and read by `loadUsers`). */
  set(users: readonly ServedUser[]): void {
    this.#users = users;
  }

  /**
   * The user a client is: undefined for one with every right (the server needs no
   * credentials, or the client sent the shared token). Throws a `Refusal` (`EAUTH`) otherwise.
   */
  authenticate(token: Uint8Array, cert: PeerCertificate | undefined): ServedUser | undefined {
    if (!this.required) return undefined;
    const shared = this.#token !== undefined && sameSecret(token, this.#token);
    const user = identify(this.#users, token, cert);
    if (shared) return undefined;
    if (user !== undefined) return user;
    if (this.#users.length === 0) {
      throw new Refusal(
        "EAUTH",
        token.length === 0
          ? "The client sent no token; this server needs one"
          : "The client's token is wrong",
      );
    }
    throw new Refusal(
      "EAUTH",
      token.length === 0 && cert === undefined
        ? "The client sent no token or certificate; this server needs one"
        : "No user of this server has the client's token and certificate",
    );
  }

  /** Counts a connection of `user`'s in, or refuses it past the user's `maxConnections`. */
  admit(user: ServedUser | undefined): Refusal | undefined {
    if (user === undefined) return undefined;
    const { name, maxConnections } = user.user;
    const open = this.#connections.get(name) ?? 0;
    if (maxConnections !== undefined && open >= maxConnections) {
      return new Refusal(
        "ELIMIT",
        `User "${name}" has reached its maxConnections (${maxConnections})`,
      );
    }
    this.#connections.set(name, open + 1);
    return undefined;
  }

  /** A connection's user changed with a reload: counted under the new one, whatever its bound. */
  move(from: ServedUser | undefined, to: ServedUser | undefined): void {
    this.leave(from);
    if (to !== undefined) {
      this.#connections.set(to.user.name, (this.#connections.get(to.user.name) ?? 0) + 1);
    }
  }

  /** Counts a connection of `user`'s out. */
  leave(user: ServedUser | undefined): void {
    if (user === undefined) return;
    const { name } = user.user;
    const open = (this.#connections.get(name) ?? 1) - 1;
    if (open > 0) this.#connections.set(name, open);
    else this.#connections.delete(name);
  }
}
