import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Hub, type Message, type Subscription, toPrometheus } from "../../src/hub/mod.ts";
import { rejectsWith } from "../_helpers.ts";
import { pubsubBehaviour } from "./_behaviour.ts";

const utf8 = new TextDecoder();
const textOf = (m: Message | undefined): string => utf8.decode(m?.data);

/** Takes what a subscription has buffered, without waiting. */
async function drainBuffered(sub: Subscription): Promise<string[]> {
  const out: string[] = [];
  for (let n = sub.stats().pending; n > 0; n = sub.stats().pending) {
    out.push(textOf((await sub.next()).value));
  }
  return out;
}

/** Lets every queued microtask and the next macrotask run. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

describe("Hub", () => {
  test("publish() reaches every matching subscription with topic, data, headers and seq", async () => {
    await using hub = new Hub();
    const exact = hub.subscribe("a.b");
    const star = hub.subscribe("a.*");
    const rest = hub.subscribe("a.>");
    const other = hub.subscribe("b.>");
    await hub.publish("a.b", "one", { headers: { kind: "x" }, key: "k1" });
    await hub.publish("a.b.c", new Uint8Array([1, 2]));
    const m1 = (await exact.next()).value!;
    assert.equal(m1.topic, "a.b");
    assert.equal(textOf(m1), "one");
    assert.deepEqual(m1.headers, { kind: "x" });
    assert.equal(m1.key, "k1");
    assert.equal(m1.seq, 1);
    assert.equal((await star.next()).value, m1);
    assert.equal((await rest.next()).value, m1);
    const m2 = (await rest.next()).value!;
    assert.equal(m2.seq, 2);
    assert.deepEqual(m2.data, new Uint8Array([1, 2]));
    assert.deepEqual(m2.headers, {});
    for (const sub of [exact, star, other]) assert.equal(sub.stats().pending, 0);
  });

  test("publish() and subscribe() refuse invalid topics and patterns", async () => {
    await using hub = new Hub();
    await rejectsWith(hub.publish("a.*", "x"), "ETOPICINVALID", /wildcard/);
    await rejectsWith(hub.publish("a..b", "x"), "ETOPICINVALID", /token 2 is empty/);
    assert.throws(() => hub.subscribe("a.>.b"), /">" may only be the last token/);
    assert.throws(() => hub.subscribe("a", { buffer: 0 }), RangeError);
    assert.throws(() => hub.subscribe("a", { overflow: "fast" as "block" }), RangeError);
    await assert.rejects(hub.publish("a", 42 as unknown as string), TypeError);
  });

  test("a subscription delivers in publish order through for await and through readable", async () => {
    await using hub = new Hub();
    const a = hub.subscribe("n");
    const b = hub.subscribe("n");
    for (let i = 0; i < 100; i++) await hub.publish("n", String(i));
    const viaIterator: number[] = [];
    for await (const m of a) {
      viaIterator.push(Number(textOf(m)));
      if (viaIterator.length === 100) break;
    }
    const reader = b.readable.getReader();
    const viaStream: number[] = [];
    for (let i = 0; i < 100; i++) viaStream.push(Number(textOf((await reader.read()).value)));
    const expected = Array.from({ length: 100 }, (_, i) => i);
    assert.deepEqual(viaIterator, expected);
    assert.deepEqual(viaStream, expected);
    // Leaving the loop unsubscribed `a`; cancelling the stream unsubscribes `b`.
    await a.closed;
    await reader.cancel();
    await b.closed;
    assert.deepEqual(hub.stats().subscriptions, []);
  });

  test('"drop-newest" keeps the first messages and counts the rest as dropped', async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t", { buffer: 3, overflow: "drop-newest" });
    for (let i = 0; i < 10; i++) await hub.publish("t", String(i));
    assert.equal(sub.stats().dropped, 7);
    assert.deepEqual(await drainBuffered(sub), ["0", "1", "2"]);
  });

  test('"drop-oldest" keeps the latest messages and counts the rest as dropped', async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t", { buffer: 3, overflow: "drop-oldest" });
    for (let i = 0; i < 10; i++) await hub.publish("t", String(i));
    assert.equal(sub.stats().dropped, 7);
    assert.deepEqual(await drainBuffered(sub), ["7", "8", "9"]);
  });

  test("a buffer that empties, fills, and moves its backlog to the front keeps every message in order", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t", { buffer: 4000 });
    const oldest = hub.subscribe("t", { buffer: 1500, overflow: "drop-oldest" });
    const got: number[] = [];
    const read = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) got.push(Number(textOf((await sub.next()).value)));
    };
    let next = 0;
    const publish = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await hub.publish("t", String(next++));
    };
    // Emptied after every message, then a backlog read far enough to be moved to the front
    // (3,000 in, 2,000 out), then more on top of what is left, then all of it.
    for (let i = 0; i < 50; i++) await publish(1).then(() => read(1));
    await publish(3000);
    await read(2000);
    assert.equal(sub.stats().pending, 1000);
    await publish(2500);
    assert.equal(sub.stats().pending, 3500);
    await read(3500);
    await publish(10);
    await read(10);
    assert.deepEqual(got, Array.from({ length: next }, (_, i) => i));
    assert.equal(sub.stats().pending, 0);
    // The drop-oldest one kept the newest 1,500 of the same 5,560, in order.
    assert.equal(oldest.stats().dropped, next - 1500);
    const kept = (await drainBuffered(oldest)).map(Number);
    assert.deepEqual(kept, Array.from({ length: 1500 }, (_, i) => next - 1500 + i));
  });

  test("maxBytes bounds the buffered payload bytes, and one large message still fits alone", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t", { maxBytes: 10, overflow: "drop-newest" });
    await hub.publish("t", "12345");
    await hub.publish("t", "67890");
    await hub.publish("t", "x"); // 11 bytes: dropped
    assert.deepEqual([sub.stats().pending, sub.stats().pendingBytes, sub.stats().dropped], [
      2,
      10,
      1,
    ]);
    await drainBuffered(sub);
    await hub.publish("t", "a".repeat(50));
    assert.deepEqual([sub.stats().pending, sub.stats().dropped], [1, 1]);
  });

  test('"error" ends a slow subscription with ESLOWCONSUMER and leaves the others alone', async () => {
    await using hub = new Hub();
    const slow = hub.subscribe("t", { buffer: 2, overflow: "error" });
    const fine = hub.subscribe("t", { buffer: 100 });
    for (let i = 0; i < 5; i++) await hub.publish("t", String(i));
    await slow.closed;
    await rejectsWith(slow.next(), "ESLOWCONSUMER", /subscription 1 \("t"\)/);
    assert.equal(slow.stats().dropped, 3);
    assert.equal(fine.stats().pending, 5);
    assert.deepEqual(hub.stats().subscriptions.map((s) => s.id), [fine.id]);
  });

  test('"block" makes the publisher wait until the subscriber reads', async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t", { buffer: 2, overflow: "block" });
    await hub.publish("t", "0");
    await hub.publish("t", "1");
    let done = false;
    const third = hub.publish("t", "2").then(() => (done = true));
    await settle();
    assert.equal(done, false, "the publisher waits while the buffer is full");
    assert.equal(sub.stats().pending, 3);
    assert.equal(textOf((await sub.next()).value), "0");
    await third;
    assert.deepEqual(await drainBuffered(sub), ["1", "2"]);
    assert.equal(sub.stats().dropped, 0);
  });

  test('"block" keeps each publisher\'s order with concurrent publishers', async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t", { buffer: 4, overflow: "block" });
    const publishers = ["a", "b", "c"].map(async (name) => {
      for (let i = 0; i < 200; i++) {
        // Half the time without waiting, so many of one publisher's messages queue up at once.
        const p = hub.publish("t", `${name}${i}`);
        if (i % 2 === 0) await p;
      }
    });
    const got: string[] = [];
    const seqs: number[] = [];
    while (got.length < 600) {
      const m = (await sub.next()).value!;
      got.push(textOf(m));
      seqs.push(m.seq);
    }
    await Promise.all(publishers);
    for (const name of ["a", "b", "c"]) {
      const mine = got.filter((s) => s.startsWith(name)).map((s) => Number(s.slice(1)));
      assert.deepEqual(mine, Array.from({ length: 200 }, (_, i) => i), name);
    }
    // Messages entered the subscription in the order publish() was called: seq only grows.
    assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!));
  });

  test("unsubscribe() during iteration ends the loop and releases blocked publishers", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t", { buffer: 1 });
    await hub.publish("t", "0");
    const blocked = hub.publish("t", "1");
    const seen: string[] = [];
    for await (const m of sub) {
      seen.push(textOf(m));
      sub.unsubscribe();
    }
    await blocked;
    assert.deepEqual(seen, ["0"]);
    await hub.publish("t", "after");
    assert.deepEqual(hub.stats().subscriptions, []);
    const aborted = new AbortController();
    const viaSignal = hub.subscribe("t", { signal: aborted.signal });
    aborted.abort();
    assert.equal((await viaSignal.next()).done, true);
  });

  test("a queue group spreads messages round robin, within 10% of even over 10,000", async () => {
    await using hub = new Hub();
    const members = Array.from(
      { length: 3 },
      () => hub.subscribe("jobs.*", { queue: "w", buffer: 10_000 }),
    );
    const watcher = hub.subscribe("jobs.>", { buffer: 10_000 });
    for (let i = 0; i < 10_000; i++) await hub.publish("jobs.x", "j");
    const counts = members.map((m) => m.stats().pending);
    assert.equal(counts.reduce((a, b) => a + b), 10_000);
    for (const c of counts) assert.ok(Math.abs(c - 10_000 / 3) <= 10_000 / 3 * 0.1, `${counts}`);
    assert.equal(watcher.stats().pending, 10_000, "a plain subscription still gets every message");
  });

  test("a key always goes to the same member, spread within 10% of even", async () => {
    await using hub = new Hub();
    const members = Array.from(
      { length: 4 },
      () => hub.subscribe("k", { queue: "w", buffer: 20_000 }),
    );
    const owner = new Map<string, number>();
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 10_000; i++) await hub.publish("k", "x", { key: `user-${i}` });
      for (const [index, m] of members.entries()) {
        for (const msg of await drainAll(m)) {
          const before = owner.get(msg.key!);
          if (before !== undefined) assert.equal(index, before, msg.key);
          owner.set(msg.key!, index);
        }
      }
    }
    const counts = [0, 0, 0, 0];
    for (const index of owner.values()) counts[index]!++;
    for (const c of counts) assert.ok(Math.abs(c - 2500) <= 250, `${counts}`);
  });

  test("when a member leaves, only its keys move", async () => {
    await using hub = new Hub();
    const members = Array.from(
      { length: 5 },
      () => hub.subscribe("k", { queue: "w", buffer: 10_000 }),
    );
    const ownersOf = async (subs: Subscription[]): Promise<Map<string, number>> => {
      for (let i = 0; i < 5000; i++) await hub.publish("k", "x", { key: `key-${i}` });
      const owners = new Map<string, number>();
      for (const m of subs) for (const msg of await drainAll(m)) owners.set(msg.key!, m.id);
      return owners;
    };
    const before = await ownersOf(members);
    const leaving = members[2]!;
    leaving.unsubscribe();
    const after = await ownersOf(members.filter((m) => m !== leaving));
    let moved = 0;
    for (const [key, id] of before) {
      if (id === leaving.id) moved++;
      else assert.equal(after.get(key), id, `${key} moved though its member stayed`);
    }
    assert.ok(moved > 500, `the leaving member owned ${moved} keys`);
  });

  test("request() gets the handler's reply; a throw comes back as EREMOTE", async () => {
    await using hub = new Hub();
    hub.handle("math.square", (m) => String(Number(textOf(m)) ** 2));
    hub.handle("math.fail", () => {
      throw new Error("division by zero");
    });
    assert.equal(textOf(await hub.request("math.square", "12")), "144");
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => hub.request("math.square", String(i))),
    );
    assert.deepEqual(
      replies.map((r) => Number(textOf(r))),
      Array.from({ length: 50 }, (_, i) => i * i),
    );
    await rejectsWith(
      hub.request("math.fail", ""),
      "EREMOTE",
      /failed in its handler: division by zero/,
    );
  });

  test("request() with no subscriber rejects at once with ENORESPONDERS", async () => {
    await using hub = new Hub();
    await rejectsWith(hub.request("nobody.home", "x", { timeout: 60_000 }), "ENORESPONDERS");
    const sub = hub.subscribe("nobody.*", { queue: "q" });
    sub.unsubscribe();
    await rejectsWith(hub.request("nobody.home", "x"), "ENORESPONDERS");
  });

  test("request() times out with ETIMEDOUT and honours its signal", async () => {
    await using hub = new Hub();
    hub.subscribe("slow"); // takes requests, never replies
    await rejectsWith(hub.request("slow", "x", { timeout: 20 }), "ETIMEDOUT", /within 20 ms/);
    const controller = new AbortController();
    const pending = hub.request("slow", "x", { signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(pending, /stop/);
    await assert.rejects(
      hub.request("slow", "x", { signal: AbortSignal.abort(new Error("early")) }),
      /early/,
    );
  });

  test("close() ends subscriptions and pending requests, and refuses more", async () => {
    const hub = new Hub();
    const sub = hub.subscribe("slow");
    const pending = hub.request("slow", "x");
    hub.close();
    await rejectsWith(pending, "ECLOSED");
    // What it held (the request) can still be read, then it ends.
    assert.equal((await sub.next()).value?.topic, "slow");
    assert.equal((await sub.next()).done, true);
    await rejectsWith(hub.publish("slow", "x"), "ECLOSED");
    assert.throws(() => hub.subscribe("x"), /closed/);
  });

  test("close() right after publishing: a reader already waiting still gets everything, then the end", async () => {
    const hub = new Hub();
    const sub = hub.subscribe("late.*");
    const first = sub.next(); // waiting before anything is published
    // In the same tick: the reader's wake is still queued when the hub closes.
    void hub.publish("late.a", "1");
    void hub.publish("late.b", "2");
    void hub.publish("late.c", "3");
    await hub.close();
    const topics = [(await first).value?.topic];
    for await (const m of sub) topics.push(m.topic);
    assert.deepEqual(topics, ["late.a", "late.b", "late.c"]);
  });

  test("stats() counts per topic and per subscription; toPrometheus() formats them", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("s.*", { buffer: 1, overflow: "drop-newest" });
    await hub.publish("s.a", "abc");
    await hub.publish("s.a", "de");
    await hub.publish("s.b", "f");
    await sub.next();
    const stats = hub.stats();
    assert.deepEqual(stats.topics, [
      { topic: "s.a", published: 2, bytes: 5, routed: 2, gaps: 0, outOfOrder: 0 },
      { topic: "s.b", published: 1, bytes: 1, routed: 1, gaps: 0, outOfOrder: 0 },
    ]);
    assert.deepEqual(stats.subscriptions, [{
      id: sub.id,
      pattern: "s.*",
      queue: undefined,
      overflow: "drop-newest",
      delivered: 1,
      bytes: 3,
      dropped: 2,
      pending: 0,
      pendingBytes: 0,
      ordered: false,
      gaps: 0,
      outOfOrder: 0,
      limit: undefined,
    }]);
    assert.equal(stats.requests, 0);
    const text = toPrometheus(stats);
    assert.match(text, /^# TYPE dockipc_hub_published_total counter$/m);
    assert.match(text, /^dockipc_hub_requests 0$/m);
    assert.match(text, /^dockipc_hub_published_total\{topic="s.a"\} 2$/m);
    assert.match(
      text,
      /^dockipc_hub_dropped_total\{subscription="1",pattern="s.\*",queue=""\} 2$/m,
    );
    assert.match(
      toPrometheus({
        ...stats,
        topics: [{ topic: 'a"b\\c', published: 1, bytes: 0, routed: 0, gaps: 0, outOfOrder: 0 }],
      }),
      /topic="a\\"b\\\\c"/,
    );
  });
});

/** Takes every buffered message of a subscription. */
async function drainAll(sub: Subscription): Promise<Message[]> {
  const out: Message[] = [];
  while (sub.stats().pending > 0) out.push((await sub.next()).value!);
  return out;
}

describe("Hub: the shared PubSub behaviour", () => {
  pubsubBehaviour("Hub", () => {
    const hub = new Hub();
    return Promise.resolve({
      pubsub: hub,
      settle: () => Promise.resolve(),
      [Symbol.asyncDispose]: () => hub[Symbol.asyncDispose](),
    });
  });
});
