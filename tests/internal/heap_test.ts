import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { IndexedHeap } from "../../src/internal/heap.ts";

describe("IndexedHeap", () => {
  test("pops by key, equal keys in the order added, after any adds, moves and deletes", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant("add" as const), v: fc.nat(40), key: fc.nat(8) }),
            fc.record({ op: fc.constant("delete" as const), v: fc.nat(40) }),
            fc.record({ op: fc.constant("pop" as const) }),
          ),
          { maxLength: 300 },
        ),
        (ops) => {
          const heap = new IndexedHeap<number>();
          // The model: value -> [key, order], the lowest [key, order] first.
          const model = new Map<number, [number, number]>();
          let order = 0;
          const first = (): number | undefined => {
            let best: number | undefined;
            for (const [v, [k, o]] of model) {
              const [bk, bo] = best === undefined ? [Infinity, Infinity] : model.get(best)!;
              if (k < bk || (k === bk && o < bo)) best = v;
            }
            return best;
          };
          for (const o of ops) {
            if (o.op === "add") {
              heap.add(o.v, o.key);
              model.set(o.v, [o.key, order++]);
            } else if (o.op === "delete") {
              assert.equal(heap.delete(o.v), model.delete(o.v));
            } else {
              const expected = first();
              assert.equal(heap.pop(), expected);
              if (expected !== undefined) model.delete(expected);
            }
            assert.equal(heap.size, model.size);
            assert.equal(heap.peek()?.value, first());
          }
          for (const v of model.keys()) assert.ok(heap.has(v));
        },
      ),
    );
  });

  test("clear() empties it; values can be added again", () => {
    const heap = new IndexedHeap<string>();
    heap.add("a", 2);
    heap.add("b", 1);
    heap.clear();
    assert.equal(heap.size, 0);
    assert.equal(heap.pop(), undefined);
    heap.add("a", 5);
    assert.deepEqual(heap.peek(), { value: "a", key: 5, order: 2, at: 0 });
  });
});
