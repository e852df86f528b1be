/**
 * Topics and patterns: validation, matching, and the trie that finds every pattern a topic
 * matches in O(tokens + matches).
 *
 * A topic is dot-separated tokens (`orders.eu.created`). A pattern may use `*` for exactly one
 * token and `>` for one or more trailing tokens (`orders.*.created`, `orders.>`), as in NATS.
 *
 * @module
 */

import { IpcError } from "../errors.ts";

/** The longest topic or pattern, in UTF-16 code units. */
export const MAX_TOPIC_LENGTH = 256;

const WHITESPACE = /\s/;

function invalid(kind: string, value: string, why: string): IpcError {
  return new IpcError("ETOPICINVALID", `Cannot use ${kind} ${JSON.stringify(value)} as ${why}`, {
    op: kind === "topic" ? "publish" : "subscribe",
  });
}

/** Splits and checks a topic or pattern; returns its tokens. */
function tokensOf(value: string, kind: "topic" | "pattern"): string[] {
  if (typeof value !== "string") {
    throw new TypeError(
      `Cannot use ${kind} as it is not a string: current type is ${typeof value}`,
    );
  }
  if (value.length === 0) throw invalid(kind, value, "it is empty");
  if (value.length > MAX_TOPIC_LENGTH) {
    throw invalid(
      kind,
      value.slice(0, 40) + "…",
      `it is longer than ${MAX_TOPIC_LENGTH} characters`,
    );
  }
  if (WHITESPACE.test(value)) throw invalid(kind, value, "it contains whitespace");
  const tokens = value.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.length === 0) throw invalid(kind, value, `token ${i + 1} is empty`);
    if (token === "*" || token === ">") {
      if (kind === "topic") {
        throw invalid(kind, value, `a published topic cannot hold the wildcard "${token}"`);
      }
      if (token === ">" && i !== tokens.length - 1) {
        throw invalid(kind, value, `">" may only be the last token`);
      }
    } else if (token.includes("*") || token.includes(">")) {
      throw invalid(kind, value, `token ${i + 1} mixes a wildcard with other characters`);
    }
  }
  return tokens;
}

/**
 * Checks a topic to publish to: dot-separated tokens, none empty, no whitespace, no wildcards,
 * at most 256 characters.
 *
 * @param topic The topic.
 * @throws {IpcError} `ETOPICINVALID`, saying what is wrong.
 *
 * @example Check a topic before using it
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateTopic } from "@dockipc/dockipc/hub";
 *
 * validateTopic("orders.eu.created");
 * assert.throws(() => validateTopic("orders..created"), /token 2 is empty/);
 * ```
 */
export function validateTopic(topic: string): void {
  tokensOf(topic, "topic");
}

/**
 * Checks a pattern to subscribe to: like a topic, plus `*` as a whole token and `>` as the last.
 *
 * @param pattern The pattern.
 * @throws {IpcError} `ETOPICINVALID`, saying what is wrong.
 *
 * @example Check a pattern
 * ```ts
 * import assert from "node:assert/strict";
 * import { validatePattern } from "@dockipc/dockipc/hub";
 *
 * validatePattern("orders.*.>");
 * assert.throws(() => validatePattern("orders.>.eu"), /">" may only be the last token/);
 * ```
 */
export function validatePattern(pattern: string): void {
  tokensOf(pattern, "pattern");
}

/**
 * Whether `topic` matches `pattern`: `*` matches exactly one token, `>` one or more trailing
 * tokens. This is the plain definition; the hub's trie agrees with it.
 *
 * @param pattern A pattern.
 * @param topic A topic.
 * @returns Whether a subscription to `pattern` receives messages published to `topic`.
 * @throws {IpcError} `ETOPICINVALID` if either is invalid.
 *
 * @example Wildcards
 * ```ts
 * import assert from "node:assert/strict";
 * import { topicMatches } from "@dockipc/dockipc/hub";
 *
 * assert.equal(topicMatches("orders.*", "orders.created"), true);
 * assert.equal(topicMatches("orders.*", "orders.eu.created"), false);
 * assert.equal(topicMatches("orders.>", "orders.eu.created"), true);
 * assert.equal(topicMatches("orders.>", "orders"), false);
 * ```
 */
export function topicMatches(pattern: string, topic: string): boolean {
  const p = tokensOf(pattern, "pattern");
  const t = tokensOf(topic, "topic");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return t.length > i;
    if (i >= t.length || (p[i] !== "*" && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

/**
 * What was worked out for each topic lately (the stream that stores it, whether a filter takes
 * it): topics repeat, so each is matched once. Forgets everything past 4,096 topics.
 */
export class TopicMemo<V> {
  readonly #known = new Map<string, V>();

  /** What `work` gives for `topic`, worked out once. */
  get(topic: string, work: (topic: string) => V): V {
    const known = this.#known;
    if (known.has(topic)) return known.get(topic)!;
    const value = work(topic);
    if (known.size >= 4096) known.clear();
    known.set(topic, value);
    return value;
  }

  /** Forgets everything: what it was worked out from changed. */
  clear(): void {
    this.#known.clear();
  }
}

class Node<T> {
  readonly children = new Map<string, Node<T>>();
  /** Values whose pattern ends at this node. */
  readonly values = new Set<T>();

  isEmpty(): boolean {
    return this.values.size === 0 && this.children.size === 0;
  }
}

/** Patterns and their values, matched against topics. The hub caches what `match` returns. */
export class TopicTrie<T> {
  readonly #root = new Node<T>();

  /** Adds `value` under `pattern` (validated). */
  insert(pattern: string, value: T): void {
    let node = this.#root;
    for (const token of tokensOf(pattern, "pattern")) {
      let child = node.children.get(token);
      if (child === undefined) node.children.set(token, child = new Node<T>());
      node = child;
    }
    node.values.add(value);
  }

  /** Removes `value` from under `pattern`, pruning empty branches. */
  remove(pattern: string, value: T): void {
    const path: Node<T>[] = [this.#root];
    const tokens = tokensOf(pattern, "pattern");
    for (const token of tokens) {
      const child = path[path.length - 1]!.children.get(token);
      if (child === undefined) return;
      path.push(child);
    }
    path[path.length - 1]!.values.delete(value);
    for (let i = tokens.length; i > 0 && path[i]!.isEmpty(); i--) {
      path[i - 1]!.children.delete(tokens[i - 1]!);
    }
  }

  /** The values of every pattern `topic` matches (validated): O(tokens + matches). */
  match(topic: string): T[] {
    const out: T[] = [];
    collect(this.#root, tokensOf(topic, "topic"), 0, out);
    return out;
  }
}

function collect<T>(node: Node<T>, tokens: readonly string[], i: number, out: T[]): void {
  if (i === tokens.length) {
    for (const value of node.values) out.push(value);
    return;
  }
  const exact = node.children.get(tokens[i]!);
  if (exact !== undefined) collect(exact, tokens, i + 1, out);
  const star = node.children.get("*");
  if (star !== undefined) collect(star, tokens, i + 1, out);
  const rest = node.children.get(">");
  if (rest !== undefined) { for (const value of rest.values) out.push(value); }
}
