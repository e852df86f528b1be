/**
 * The behaviour every {@linkcode PubSub} shares, as one suite: run against the in-process `Hub`
 * (`hub_test.ts`) and against a `RemoteHub` through a served hub (`remote_test.ts`).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ERROR_HEADER,
  type Message,
  type PubSub,
  RemoteError,
  type Subscription,
} from "../../src/hub/mod.ts";
import { json } from "../../mod.ts";
import { rejectsWith } from "../_helpers.ts";

const text = new TextDecoder();
const textOf = (m: Message | undefined): string => text.decode(m?.data);

/** A pubsub for one test, and what ends it. */
export interface Made {
  pubsub: PubSub;
  /** Makes sure subscriptions made so far are in place (a round trip for a remote hub). */
  settle(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A `next()` left waiting by `takeQuiet`, kept for the next read so no message is lost. */
const waiting = new WeakMap<Subscription, Promise<IteratorResult<Message>>>();

/** Reads `n` messages. */
async function take(sub: Subscription, n: number): Promise<Message[]> {
  const out: Message[] = [];
  while (out.length < n) {
    const next = waiting.get(sub) ?? sub.next();
    waiting.delete(sub);
    const r = await next;
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

/** Reads what arrives until `ms` pass without a message. */
async function takeQuiet(sub: Subscription, ms = 150): Promise<Message[]> {
  const out: Message[] = [];
  while (true) {
    const next = waiting.get(sub) ?? sub.next();
    waiting.delete(sub);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      next,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
    ]);
    clearTimeout(timer);
    if (r === undefined) {
      waiting.set(sub, next);
      return out;
    }
    if (r.done) return out;
    out.push(r.value);
  }
}

/** Registers the shared behaviour tests, each on a fresh pubsub from `make`. */
export function pubsubBehaviour(name: string, make: () => Promise<Made>): void {
  test(`${name}: publish reaches every matching subscription with topic, data, headers, key`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const exact = pubsub.subscribe("a.b");
    const star = pubsub.subscribe("a.*");
    const rest = pubsub.subscribe("a.>");
    const other = pubsub.subscribe("b.>");
    await made.settle();
    await pubsub.publish("a.b", "one", { headers: { kind: "x", "ünï": "ç" }, key: "k1" });
    await pubsub.publish("a.b.c", new Uint8Array([1, 2]));
    const [m1] = await take(exact, 1);
    assert.equal(m1!.topic, "a.b");
    assert.equal(textOf(m1), "one");
    assert.deepEqual(m1!.headers, { kind: "x", "ünï": "ç" });
    assert.equal(m1!.key, "k1");
    assert.equal(textOf((await take(star, 1))[0]), "one");
    const both = await take(rest, 2);
    assert.deepEqual(both.map((m) => m.topic), ["a.b", "a.b.c"]);
    assert.deepEqual(both[1]!.data, new Uint8Array([1, 2]));
    assert.ok(both[1]!.seq > both[0]!.seq, "seq grows with each publish");
    assert.equal((await takeQuiet(other, 50)).length, 0);
  });

  test(`${name}: wildcards match as NATS users expect`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const cases: [string, string[], string[]][] = [
      [">", ["a", "a.b", "x.y.z"], []],
      ["*", ["a", "dash-ed"], ["a.b"]],
      ["*.end", ["x.end"], ["end", "x.y.end"]],
      ["start.*", ["start.x"], ["start", "start.x.y"]],
      ["a.*.c", ["a.b.c", "a.é.c"], ["a.c", "a.b.b.c"]],
      ["a.>", ["a.b", "a.b.c"], ["a"]],
      ["under_score.*", ["under_score.1"], ["under.score"]],
    ];
    for (const [pattern, yes, no] of cases) {
      const sub = pubsub.subscribe(pattern);
      await made.settle();
      for (const topic of [...no, ...yes]) await pubsub.publish(topic, topic);
      const got = (await take(sub, yes.length)).map((m) => m.topic);
      assert.deepEqual(got, yes, pattern);
      assert.equal((await takeQuiet(sub, 30)).length, 0, `${pattern} matched more`);
      sub.unsubscribe();
    }
  });

  test(`${name}: messages arrive in publish order`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const subs = [pubsub.subscribe("order.*"), pubsub.subscribe("order.>")];
    await made.settle();
    const n = 2000;
    const readers = subs.map((s) => take(s, n));
    for (let i = 0; i < n; i++) await pubsub.publish("order.x", String(i));
    for (const got of await Promise.all(readers)) {
      assert.deepEqual(got.map(textOf), Array.from({ length: n }, (_, i) => String(i)));
    }
  });

  test(`${name}: queue groups share messages round robin, and a key sticks to one member`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const members = [1, 2, 3].map(() => pubsub.subscribe("jobs.>", { queue: "workers" }));
    await made.settle();
    for (let i = 0; i < 6; i++) await pubsub.publish("jobs.run", `job ${i}`);
    const counts = await Promise.all(members.map(async (m) => (await takeQuiet(m, 100)).length));
    assert.deepEqual(counts, [2, 2, 2]);
    for (let i = 0; i < 9; i++) await pubsub.publish("jobs.run", `k ${i}`, { key: "customer-7" });
    const keyed = await Promise.all(members.map(async (m) => (await takeQuiet(m, 100)).length));
    assert.deepEqual(keyed.filter((n) => n > 0), [9], "one member got every message of the key");
  });

  test(`${name}: "block" holds publishers back and loses nothing`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const sub = pubsub.subscribe("b.x", { buffer: 2, overflow: "block" });
    await made.settle();
    const publishing = Promise.all(
      Array.from({ length: 30 }, (_, i) => pubsub.publish("b.x", String(i))),
    );
    const got = await take(sub, 30);
    await publishing;
    assert.deepEqual(got.map(textOf), Array.from({ length: 30 }, (_, i) => String(i)));
  });

  test(`${name}: "drop-newest" keeps the oldest, "drop-oldest" the newest`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const newest = pubsub.subscribe("d.x", { buffer: 2, overflow: "drop-newest" });
    const oldest = pubsub.subscribe("d.x", { buffer: 2, overflow: "drop-oldest" });
    await made.settle();
    for (let i = 0; i < 20; i++) await pubsub.publish("d.x", String(i));
    await made.settle();
    const kept = (await takeQuiet(newest)).map((m) => Number(textOf(m)));
    assert.ok(kept.length >= 2 && kept.length < 20, `kept ${kept}`);
    assert.deepEqual(kept, kept.map((_, i) => i), "a prefix of what was published");
    const late = (await takeQuiet(oldest)).map((m) => Number(textOf(m)));
    assert.ok(late.length >= 2 && late.length < 20, `kept ${late}`);
    assert.equal(late.at(-1), 19, "the newest is kept");
  });

  test(`${name}: "error" ends a slow subscription with ESLOWCONSUMER`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const slow = pubsub.subscribe("e.x", { buffer: 2, overflow: "error" });
    const fine = pubsub.subscribe("e.x", { buffer: 100 });
    await made.settle();
    for (let i = 0; i < 10; i++) await pubsub.publish("e.x", String(i));
    const err = await (async () => {
      try {
        while (!(await slow.next()).done);
      } catch (e) {
        return e;
      }
    })();
    assert.equal((err as { code?: string }).code, "ESLOWCONSUMER");
    assert.equal((await take(fine, 10)).length, 10, "other subscriptions do not notice");
  });

  test(`${name}: request and handle, handler errors, no responders, timeouts`, async () => {
    await using made = await make();
    const { pubsub } = made;
    pubsub.handle("math.double", (m) => String(Number(textOf(m)) * 2));
    pubsub.handle("math.fail", () => {
      throw new Error("division by zero");
    });
    pubsub.handle("math.slow", () => new Promise(() => {}));
    pubsub.handle("math.async", async (m) => String(Number(textOf(await Promise.resolve(m))) + 1));
    pubsub.handle("math.rejects", () => Promise.reject(new Error("async failure")));
    // A thenable that is not a Promise is awaited as `await` would.
    pubsub.handle("math.thenable", (m) =>
      ({
        then: (resolve: (v: string) => void) => resolve(`then ${textOf(m)}`),
      }) as unknown as Promise<string>);
    await made.settle();
    assert.equal(textOf(await pubsub.request("math.double", "21")), "42");
    assert.equal(textOf(await pubsub.request("math.async", "41")), "42");
    assert.equal(textOf(await pubsub.request("math.thenable", "x")), "then x");
    await rejectsWith(pubsub.request("math.rejects", "1"), "EREMOTE", /async failure/);
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => pubsub.request("math.double", String(i))),
    );
    assert.deepEqual(replies.map(textOf), Array.from({ length: 50 }, (_, i) => String(i * 2)));
    const failed = await rejectsWith(
      pubsub.request("math.fail", "1"),
      "EREMOTE",
      /division by zero/,
    );
    // One type for a remote handler's failure, in one process or across processes, and in RPC.
    assert.ok(failed instanceof RemoteError, String(failed));
    assert.equal(failed.remoteCode, "Error");
    await rejectsWith(pubsub.request("nobody.home", "1"), "ENORESPONDERS");
    await rejectsWith(pubsub.request("math.slow", "1", { timeout: 50 }), "ETIMEDOUT");
    const ac = new AbortController();
    const pending = pubsub.request("math.slow", "1", { signal: ac.signal });
    ac.abort(new Error("no longer needed"));
    await assert.rejects(pending, /no longer needed/);
    assert.equal(ERROR_HEADER, "dockipc-error");
  });

  test(`${name}: handlers answer with bytes, text, JSON values or nothing; anything else is ECODEC`, async () => {
    await using made = await make();
    const { pubsub } = made;
    pubsub.handle("answer.number", () => 42);
    pubsub.handle("answer.object", (m) => Promise.resolve({ echo: textOf(m), list: [1, null] }));
    pubsub.handle("answer.nothing", () => {});
    pubsub.handle("answer.bytes", () => new Uint8Array([1, 2]));
    pubsub.handle("answer.map", () => new Map() as unknown as string);
    await made.settle();
    assert.deepEqual(json.decode((await pubsub.request("answer.number", "")).data), 42);
    assert.deepEqual(json.decode((await pubsub.request("answer.object", "hi")).data), {
      echo: "hi",
      list: [1, null],
    });
    assert.equal((await pubsub.request("answer.nothing", "")).data.length, 0);
    assert.deepEqual((await pubsub.request("answer.bytes", "")).data, new Uint8Array([1, 2]));
    // The requester learns at once what went wrong, rather than waiting for its timeout.
    const failed = await rejectsWith(
      pubsub.request("answer.map", "", { timeout: 60_000 }),
      "EREMOTE",
      /The handler answered with something that cannot be sent \(Cannot encode a Map/,
    );
    assert.ok(failed instanceof RemoteError);
    assert.equal(failed.remoteCode, "ECODEC");
  });

  test(`${name}: a request with timeout Infinity waits as long as it takes; NaN or a negative one is refused`, async () => {
    await using made = await make();
    const { pubsub } = made;
    pubsub.handle("later", async (m) => {
      await new Promise((resolve) => setTimeout(resolve, 30));
      return m.data;
    });
    await made.settle();
    // Runtimes fire a timer past 2^31 - 1 ms at once: these must not time out in 1 ms.
    for (const timeout of [Infinity, 2 ** 31, 2 ** 40]) {
      assert.equal(textOf(await pubsub.request("later", "ok", { timeout })), "ok", String(timeout));
    }
    for (const timeout of [NaN, -1, 0]) {
      await assert.rejects(pubsub.request("later", "x", { timeout }), RangeError);
    }
  });

  test(`${name}: unsubscribe ends iteration; close refuses further calls`, async () => {
    await using made = await make();
    const { pubsub } = made;
    const sub = pubsub.subscribe("u.x");
    await made.settle();
    await pubsub.publish("u.x", "1");
    assert.equal(textOf((await take(sub, 1))[0]), "1");
    sub.unsubscribe();
    assert.equal((await sub.next()).done, true);
    await sub.closed;
    await assert.rejects(
      (async () => {
        await pubsub.close();
        await pubsub.publish("u.x", "2");
      })(),
      (e: { code?: string }) => e.code === "ECLOSED",
    );
    assert.throws(() => pubsub.subscribe("u.x"), (e: { code?: string }) => e.code === "ECLOSED");
  });

  test(`${name}: bad topics and patterns are refused with ETOPICINVALID`, async () => {
    await using made = await make();
    const { pubsub } = made;
    await rejectsWith(pubsub.publish("a.*", "x"), "ETOPICINVALID");
    await rejectsWith(pubsub.publish("a..b", "x"), "ETOPICINVALID");
    assert.throws(
      () => pubsub.subscribe("a.>.b"),
      (e: { code?: string }) => e.code === "ETOPICINVALID",
    );
    assert.throws(
      () => pubsub.subscribe("a b"),
      (e: { code?: string }) => e.code === "ETOPICINVALID",
    );
  });
}
