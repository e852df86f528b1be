import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { IpcError, json, type JsonValue, text } from "../mod.ts";

const refused = (code: string, pattern: RegExp) => (err: unknown): boolean =>
  err instanceof IpcError && err.code === code && pattern.test(err.message);

describe("text and json", () => {
  test("text: a string as UTF-8, and back", () => {
    for (const s of ["", "hello", "grüß dich", "日本語", "🎉 emoji", "a\u0000b"]) {
      const bytes = text.encode(s);
      assert.deepEqual(bytes, new TextEncoder().encode(s));
      assert.equal(text.decode(bytes), s);
    }
  });

  test("text: refuses a value that is not a string, and bytes that are not UTF-8, with ECODEC", () => {
    assert.throws(() => text.encode(42 as unknown as string), refused("ECODEC", /a number \(42\)/));
    assert.throws(
      () => text.decode(new Uint8Array([0x61, 0xff, 0x62])),
      refused("ECODEC", /3 bytes as text: they are not UTF-8/),
    );
    assert.throws(
      () => text.decode("abc" as unknown as Uint8Array),
      refused("ECODEC", /a payload is a Uint8Array/),
    );
  });

  test("json: JSON values round-trip", () => {
    const values: JsonValue[] = [
      null,
      true,
      0,
      -1.5,
      "text",
      [],
      {},
      [1, "two", { three: [3] }],
      { nested: { deep: [null, false] }, "ключ": "значение" },
    ];
    for (const v of values) assert.deepEqual(json.decode(json.encode(v)), v);
    // What JSON itself leaves out: undefined properties. A Date goes through its toJSON().
    assert.deepEqual(json.decode(json.encode({ a: 1, b: undefined })), { a: 1 });
    const when = new Date(0);
    assert.equal(json.decode(json.encode(when as unknown as JsonValue)), when.toISOString());
  });

  test("json: refuses what JSON would silently change or lose, naming it", () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const cases: [unknown, RegExp][] = [
      [undefined, /undefined as JSON, which has no such value/],
      [NaN, /a number \(NaN\) as JSON/],
      [{ x: Infinity }, /a number \(Infinity\) at key "x"/],
      [10n, /a bigint/],
      [() => 1, /a function/],
      [{ f: () => 1 }, /a function at key "f"/],
      [[Symbol("s")], /a symbol at key "0"/],
      [new Map([[1, 2]]), /a Map as JSON without losing its contents/],
      [{ s: new Set([1]) }, /a Set at key "s"/],
      [{ bytes: new Uint8Array(2) }, /a Uint8Array at key "bytes"/],
      [cycle, /Cannot encode an object as JSON: .*(circular|cyclic)/i],
    ];
    for (const [value, pattern] of cases) {
      assert.throws(
        () => json.encode(value as JsonValue),
        refused("ECODEC", pattern),
        `${pattern}`,
      );
    }
  });

  test("json: refuses bytes that are not JSON, or not UTF-8, with ECODEC", () => {
    for (const bad of ["", "{", "{'a': 1}", "[1,]", "undefined", "NaN"]) {
      assert.throws(
        () => json.decode(new TextEncoder().encode(bad)),
        refused("ECODEC", /bytes as JSON/),
        bad,
      );
    }
    assert.throws(
      () => json.decode(new Uint8Array([0x22, 0xc3, 0x22])),
      refused("ECODEC", /UTF-8/),
    );
  });
});
