import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { IpcError } from "../../mod.ts";
import { topicMatches, validatePattern, validateTopic } from "../../src/hub/mod.ts";
import { TopicTrie } from "../../src/hub/topics.ts";
import { acceptedOrRefused, fuzzText } from "../_helpers.ts";

/** [pattern, topic, matches] */
const TABLE: [string, string, boolean][] = [
  ["a", "a", true],
  ["a", "b", false],
  ["a", "a.b", false],
  ["a.b", "a", false],
  ["a.b", "a.b", true],
  ["a.b.c", "a.b.c", true],
  ["a.b.c", "a.b.d", false],
  ["*", "a", true],
  ["*", "a.b", false],
  ["*.b", "a.b", true],
  ["*.b", "a.c", false],
  ["a.*", "a.b", true],
  ["a.*", "a", false],
  ["a.*", "a.b.c", false],
  ["*.*", "a.b", true],
  ["*.*", "a", false],
  ["a.*.c", "a.b.c", true],
  ["a.*.c", "a.b.d", false],
  ["*.b.*", "a.b.c", true],
  ["*.b.*", "a.x.c", false],
  [">", "a", true],
  [">", "a.b.c", true],
  ["a.>", "a", false],
  ["a.>", "a.b", true],
  ["a.>", "a.b.c.d", true],
  ["a.>", "b.c", false],
  ["*.>", "a.b", true],
  ["*.>", "a", false],
  ["a.*.>", "a.b.c", true],
  ["a.*.>", "a.b", false],
  ["orders-eu.created_at", "orders-eu.created_at", true],
  ["orders-eu.*", "orders-eu.created_at", true],
  ["orders_eu.*", "orders-eu.x", false],
  ["día.*", "día.señal", true],
  ["заказ.>", "заказ.создан.сегодня", true],
  ["日本.*", "日本.東京", true],
  ["日本.*", "日本.東京.港区", false],
  ["😀.*", "😀.👍", true],
  ["A.b", "a.b", false],
  ["a.b", "a.bb", false],
  ["$SYS.>", "$SYS.stats", true],
  ["a.*.*.d", "a.b.c.d", true],
  ["a.*.*.d", "a.b.c.e", false],
  ["123.*", "123.456", true],
];

function code(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof IpcError, `expected an IpcError, got ${err}`);
    return `${err.code}: ${err.message}`;
  }
}

describe("topics", () => {
  test(`topicMatches() and the trie agree with a table of ${TABLE.length} cases`, () => {
    assert.ok(TABLE.length >= 40);
    for (const [pattern, topic, expected] of TABLE) {
      assert.equal(topicMatches(pattern, topic), expected, `${pattern} vs ${topic}`);
      const trie = new TopicTrie<string>();
      trie.insert(pattern, pattern);
      assert.deepEqual(
        trie.match(topic),
        expected ? [pattern] : [],
        `trie: ${pattern} vs ${topic}`,
      );
    }
  });

  test("the trie finds exactly the patterns topicMatches() accepts, for random sets", () => {
    const token = fc.constantFrom("a", "b", "c", "dd");
    const patternToken = fc.constantFrom("a", "b", "c", "dd", "*");
    const pattern = fc.tuple(fc.array(patternToken, { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([tokens, tail]) => (tail ? [...tokens.slice(0, 3), ">"] : tokens).join("."));
    const topic = fc.array(token, { minLength: 1, maxLength: 5 }).map((t) => t.join("."));
    fc.assert(
      fc.property(
        fc.uniqueArray(pattern, { maxLength: 30 }),
        fc.array(topic, { maxLength: 20 }),
        (patterns, topics) => {
          const trie = new TopicTrie<string>();
          for (const p of patterns) trie.insert(p, p);
          // Remove a third of them again, to exercise pruning.
          const removed = patterns.filter((_, i) => i % 3 === 0);
          for (const p of removed) trie.remove(p, p);
          const kept = patterns.filter((p) => !removed.includes(p));
          for (const t of topics) {
            const expected = kept.filter((p) => topicMatches(p, t)).sort();
            assert.deepEqual([...trie.match(t)].sort(), expected, t);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test("random strings: validateTopic() and validatePattern() accept them or throw ETOPICINVALID", () => {
    const text = fuzzText(
      ["a", "é", ".", "*", ">", " ", "-", "_", "\t", "..", "x".repeat(200)],
      30,
    );
    fc.assert(
      fc.property(text, (s) => {
        const topic = acceptedOrRefused("ETOPICINVALID", s, () => validateTopic(s));
        acceptedOrRefused("ETOPICINVALID", s, () => validatePattern(s));
        if (topic === undefined) return;
        // A valid topic is also a valid pattern, and matches itself.
        validatePattern(s);
        assert.ok(topicMatches(s, s), s);
      }),
      { numRuns: 5000 },
    );
  });

  test("validateTopic() refuses bad topics with ETOPICINVALID saying why", () => {
    const cases: [string, RegExp][] = [
      ["", /it is empty/],
      ["a..b", /token 2 is empty/],
      [".a", /token 1 is empty/],
      ["a.", /token 2 is empty/],
      ["a b", /whitespace/],
      ["a.\tb", /whitespace/],
      ["a.*", /cannot hold the wildcard "\*"/],
      [">", /cannot hold the wildcard ">"/],
      ["a.b*", /mixes a wildcard/],
      ["x".repeat(257), /longer than 256 characters/],
    ];
    for (const [topic, why] of cases) {
      const got = code(() => validateTopic(topic));
      assert.match(got ?? "accepted", /^ETOPICINVALID: Cannot use topic /, topic);
      assert.match(got!, why, topic);
    }
    validateTopic("x".repeat(256));
    assert.throws(() => validateTopic(42 as unknown as string), TypeError);
  });

  test("validatePattern() refuses > before the end, empty tokens and mixed wildcards", () => {
    const cases: [string, RegExp][] = [
      ["a.>.b", /">" may only be the last token/],
      [">.a", /">" may only be the last token/],
      ["a..*", /token 2 is empty/],
      ["a.*b", /mixes a wildcard/],
      ["a.>>", /mixes a wildcard/],
      [" a", /whitespace/],
      ["", /empty/],
    ];
    for (const [pattern, why] of cases) {
      const got = code(() => validatePattern(pattern));
      assert.match(got ?? "accepted", /^ETOPICINVALID: Cannot use pattern /, pattern);
      assert.match(got!, why, pattern);
    }
    for (const ok of [">", "*", "a.*.>", "*.*.*"]) validatePattern(ok);
  });
});
