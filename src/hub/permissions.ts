/**
 * What a served hub's user may do, as the server checks it on every publish, subscription,
 * request and stream operation: the user's patterns compiled once, and each topic's answer
 * remembered (a topic is published to again and again), so that a hundred rules cost a lookup.
 *
 * A topic may be published to when an `allow` pattern matches it (or there is no `allow`) and
 * no `deny` pattern does. A pattern may be subscribed to when an `allow` pattern covers every
 * topic it matches and no `deny` pattern matches any: `orders.*` allows `orders.eu` and
 * `orders.*`, never `orders.>` or `>`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import {
  STREAM_OPERATIONS,
  type StreamOperation,
  type TopicPermission,
  type User,
} from "../session/users.ts";
import { checkRateLimit, type RateLimit } from "./limits.ts";
import { validatePattern } from "./topics.ts";

/** Whether every topic `inner` matches is matched by `outer` (both split into tokens). */
function covers(outer: readonly string[], inner: readonly string[]): boolean {
  for (let i = 0; i < outer.length; i++) {
    const o = outer[i]!;
    if (o === ">") return inner.length > i;
    const n = inner[i];
    if (n === undefined || n === ">") return false;
    if (o !== "*" && (n === "*" || n !== o)) return false;
  }
  return inner.length === outer.length;
}

/** Whether some topic matches both patterns. */
function overlaps(a: readonly string[], b: readonly string[]): boolean {
  for (let i = 0;; i++) {
    const x = a[i];
    const y = b[i];
    if (x === ">") return y !== undefined;
    if (y === ">") return x !== undefined;
    if (x === undefined || y === undefined) return x === y;
    if (x !== "*" && y !== "*" && x !== y) return false;
  }
}

/** One of a user's `publish` or `subscribe` permissions, compiled. */
class TopicRules {
  readonly #kind: "publish" | "subscribe";
  readonly #allow: readonly string[][] | undefined;
  readonly #deny: readonly string[][];
  readonly #source: TopicPermission;
  /** Answers given lately: null for allowed, else why not. */
  #memo = new Map<string, string | null>();

  constructor(
    user: string,
    kind: "publish" | "subscribe",
    permission: TopicPermission | undefined,
  ) {
    this.#kind = kind;
    this.#source = permission ?? {};
    const compile = (list: unknown, which: string): string[][] | undefined => {
      if (list === undefined) return undefined;
      if (!Array.isArray(list)) {
        throw new IpcError(
          "EINVAL",
          `Cannot use user "${user}"'s ${kind}.${which} as it is not an array of patterns`,
          {
            op: "users",
          },
        );
      }
      return list.map((pattern) => {
        try {
          validatePattern(pattern);
        } catch (err) {
          const why = (err as Error).message.replace(/^Cannot use pattern .* as /, "");
          throw new IpcError(
            "EINVAL",
            `Cannot use user "${user}"'s ${kind}.${which} as its pattern ${
              JSON.stringify(pattern)
            } is not valid: ${why}`,
            { op: "users", cause: err },
          );
        }
        return (pattern as string).split(".");
      });
    };
    this.#allow = compile(this.#source.allow, "allow");
    this.#deny = compile(this.#source.deny, "deny") ?? [];
  }

  /** Why `topic` (a topic or a pattern) is not allowed, or undefined when it is. */
  check(topic: string): string | undefined {
    const known = this.#memo.get(topic);
    if (known !== undefined) return known ?? undefined;
    const why = this.#judge(topic.split("."));
    if (this.#memo.size >= 4096) this.#memo = new Map();
    this.#memo.set(topic, why ?? null);
    return why;
  }

  #judge(tokens: readonly string[]): string | undefined {
    const kind = this.#kind;
    const deny = this.#deny.findIndex((d) => overlaps(d, tokens));
    if (deny >= 0) return `the rule ${kind}.deny "${this.#source.deny![deny]}" denies it`;
    const allow = this.#allow;
    if (allow === undefined) return undefined;
    const allowed = kind === "publish"
      ? allow.some((a) => overlaps(a, tokens))
      : allow.some((a) => covers(a, tokens));
    if (allowed) return undefined;
    return `no ${kind}.allow rule covers it (${kind}.allow is ${
      JSON.stringify(this.#source.allow)
    })`;
  }
}

/** A user's rights on a served hub, compiled. */
export class Permissions {
  readonly user: string;
  /** The user's rate limit over all its connections, checked. */
  readonly rate: Required<RateLimit> | undefined;
  readonly #publish: TopicRules;
  readonly #subscribe: TopicRules;
  readonly #streams: ReadonlySet<StreamOperation>;

  constructor(user: User) {
    this.user = user.name;
    this.#publish = new TopicRules(user.name, "publish", user.publish);
    this.#subscribe = new TopicRules(user.name, "subscribe", user.subscribe);
    this.#streams = new Set(user.streams ?? STREAM_OPERATIONS);
    this.rate = user.rate === undefined
      ? undefined
      : checkRateLimit("use the users", `user "${user.name}"'s rate`, user.rate);
  }

  #denied(what: string, why: string): IpcError {
    return new IpcError("EPERM", `User "${this.user}" may not ${what}: ${why}`, {
      op: "authorize",
    });
  }

  /** `EPERM` if the user may not publish to (or request on) `topic`, else undefined. */
  publish(topic: string): IpcError | undefined {
    const why = this.#publish.check(topic);
    return why === undefined ? undefined : this.#denied(`publish to "${topic}"`, why);
  }

  /** `EPERM` if the user may not subscribe to `pattern`, else undefined. */
  subscribe(pattern: string): IpcError | undefined {
    const why = this.#subscribe.check(pattern);
    return why === undefined ? undefined : this.#denied(`subscribe to "${pattern}"`, why);
  }

  /** `EPERM` if the user may not use stream operation `op`, else undefined. */
  stream(op: StreamOperation): IpcError | undefined {
    if (this.#streams.has(op)) return undefined;
    return this.#denied(
      `use the stream operation "${op}"`,
      `its streams list is ${JSON.stringify([...this.#streams])}`,
    );
  }
}

const compiled = new WeakMap<User, Permissions>();

/** The permissions of `user`, compiled once per user object. */
export function permissionsOf(user: User): Permissions {
  let permissions = compiled.get(user);
  if (permissions === undefined) {
    permissions = new Permissions(user);
    compiled.set(user, permissions);
  }
  return permissions;
}

/** Checks every user's patterns, as a hub server does before taking a list of users. */
export function checkPermissions(users: readonly User[] | undefined): void {
  for (const user of users ?? []) permissionsOf(user);
}
