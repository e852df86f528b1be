// The byte copy every encoder uses: on Bun it copies large runs in pieces, elsewhere it is set().
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { copyBytes } from "../../src/runtime/bytes.ts";

test("copyBytes() copies any run to any offset and touches nothing around it", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 12_000 }),
      fc.integer({ min: 0, max: 63 }),
      fc.integer({ min: 0, max: 63 }),
      fc.integer({ min: 0, max: 63 }),
      (n, srcOffset, dstOffset, at) => {
        const src = new Uint8Array(srcOffset + n).map((_, i) => i * 7 + 3)
          .subarray(srcOffset);
        const backing = new Uint8Array(dstOffset + at + n + 64).fill(0xee);
        const dst = backing.subarray(dstOffset, dstOffset + at + n);
        copyBytes(dst, at, src);
        assert.deepEqual(dst.subarray(at, at + n), src);
        assert.ok(backing.subarray(0, dstOffset + at).every((b) => b === 0xee), "before");
        assert.ok(backing.subarray(dstOffset + at + n).every((b) => b === 0xee), "after");
      },
    ),
    { numRuns: 300 },
  );
});
