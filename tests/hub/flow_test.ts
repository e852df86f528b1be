/**
 * The hub's flow features in one process: delayed delivery (plain topics and stored streams,
 * across a restart), priority, rate limits (each policy, adaptive, per subscription), and
 * ordered subscriptions that report their gaps.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { IpcError } from "../../mod.ts";
import {
  Hub,
  type Message,
  NOT_BEFORE_HEADER,
  PRIORITY_HEADER,
  type Subscription,
  toPrometheus,
} from "../../src/hub/mod.ts";
import { TokenBucket } from "../../src/internal/token_bucket.ts";
import { rejectsWith, seeded, tempDir, until } from "../_helpers.ts";

const text = new TextDecoder();
const body = (m: Message | undefined): string => text.decode(m?.data);

/** Reads `n` messages of `sub`, each with the time it came. */
async function take(sub: Subscription, n: number): Promise<{ m: Message; at: number }[]> {
  const out: { m: Message; at: number }[] = [];
  for (let i = 0; i < n; i++) {
    const { value } = await sub.next();
    out.push({ m: value!, at: Date.now() });
  }
  return out;
}

/** Asserts `err` is an `IpcError` `EINVAL` whose message names `what`. */
function invalid(what: RegExp): (err: unknown) => boolean {
  return (err: unknown): boolean => {
    assert.ok(err instanceof IpcError, String(err));
    assert.equal(err.code, "EINVAL");
    assert.match(err.message, what);
    return true;
  };
}

describe("delayed delivery", () => {
  test("random delays: each message comes when due, not before, in due order", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("later.*");
    const random = seeded(42);
    const n = 200;
    for (let i = 0; i < n; i++) {
      await hub.publish("later.x", String(i), { delay: 1 + Math.floor(random() * 120) });
    }
    assert.equal(hub.stats().scheduled.waiting > 0, true);
    const got = await take(sub, n);
    const dues = got.map(({ m }) => Number(m.headers[NOT_BEFORE_HEADER]));
    for (const [i, { at }] of got.entries()) assert.ok(at >= dues[i]!, `message ${i} came early`);
    // In due order; equal times in publish order.
    for (let i = 1; i < n; i++) {
      const order = dues[i - 1]! < dues[i]! ||
        (dues[i - 1] === dues[i] && Number(body(got[i - 1]!.m)) < Number(body(got[i]!.m)));
      assert.ok(order, `messages ${i - 1} and ${i} out of due order`);
    }
    assert.deepEqual(new Set(got.map(({ m }) => body(m))).size, n);
    assert.deepEqual(hub.stats().scheduled, { waiting: 0, delivered: n, cancelled: 0, refused: 0 });
    // Sequences are given as messages are delivered: in delivery order.
    for (let i = 1; i < n; i++) assert.ok(got[i]!.m.seq > got[i - 1]!.m.seq);
  });

  test("notBefore: a Date or a time; one in the past delivers now", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("t");
    const at = Date.now() + 60;
    await hub.publish("t", "timed", { notBefore: new Date(at) });
    await hub.publish("t", "past", { notBefore: Date.now() - 10_000 });
    const [first, second] = await take(sub, 2);
    assert.equal(body(first!.m), "past");
    assert.equal(body(second!.m), "timed");
    assert.ok(second!.at >= at);
  });

  test("cancel(id) stops a waiting message; an id waiting already is refused", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("r");
    await hub.publish("r", "cancelled", { delay: 30, id: "a" });
    await rejectsWith(hub.publish("r", "again", { delay: 30, id: "a" }), "EEXIST", /cancel it/);
    await hub.publish("r", "kept", { delay: 40, id: "b" });
    assert.equal(hub.cancel("a"), true);
    assert.equal(hub.cancel("a"), false);
    assert.equal(hub.cancel("nothing"), false);
    assert.equal(body((await sub.next()).value), "kept");
    assert.equal(hub.stats().scheduled.cancelled, 1);
    // Delivered: its id may wait again.
    await hub.publish("r", "later", { delay: 1, id: "b" });
    assert.equal(body((await sub.next()).value), "later");
  });

  test("close() says how many delayed messages it could not deliver; abort() does not", async () => {
    const hub = new Hub();
    await hub.publish("x", "1", { delay: 60_000 });
    await hub.publish("x", "2", { delay: 60_000 });
    await rejectsWith(hub.close(), "ECLOSED", /2 delayed messages not yet due/);
    const quiet = new Hub();
    await quiet.publish("x", "1", { delay: 60_000 });
    quiet.abort();
  });

  test("bad delays, times and priorities are refused with EINVAL naming the option", async () => {
    await using hub = new Hub();
    for (
      const [options, what] of [
        [{ delay: -1 }, /delay is -1/],
        [{ delay: NaN }, /delay is NaN/],
        [{ delay: Infinity }, /delay is Infinity/],
        [{ delay: 2 ** 31 }, /delay is 2147483648/],
        [{ delay: 10, notBefore: Date.now() }, /delay .* notBefore/],
        [{ notBefore: new Date("nope") }, /notBefore/],
        [{ notBefore: "soon" as unknown as number }, /notBefore is "soon"/],
        [{ priority: 10 }, /priority is 10/],
        [{ priority: -1 }, /priority is -1/],
        [{ priority: 1.5 }, /priority is 1.5/],
      ] as const
    ) {
      await assert.rejects(hub.publish("t", "x", options), invalid(what));
    }
    // A header set by hand must be a time too.
    await assert.rejects(
      hub.publish("t", "x", { headers: { [NOT_BEFORE_HEADER]: "tomorrow" } }),
      invalid(/dockipc-not-before is "tomorrow"/),
    );
    assert.throws(() => new Hub({ maxScheduled: -1 }), invalid(/maxScheduled is -1/));
  });

  test("a flood of delayed messages stops at maxScheduled with ELIMIT; the hub goes on", async () => {
    await using hub = new Hub({ maxScheduled: 1000 });
    const sub = hub.subscribe("now");
    let refused = 0;
    for (let i = 0; i < 5000; i++) {
      await hub.publish("flood", "x", { delay: 60_000 }).catch((err) => {
        assert.equal((err as IpcError).code, "ELIMIT");
        assert.match((err as IpcError).message, /1000 waiting already \(maxScheduled\)/);
        refused++;
      });
    }
    assert.equal(refused, 4000);
    assert.equal(hub.stats().scheduled.waiting, 1000);
    assert.equal(hub.stats().scheduled.refused, 4000);
    await hub.publish("now", "still here");
    assert.equal(body((await sub.next()).value), "still here");
    hub.abort();
  });
});

describe("delayed delivery on a stored stream", () => {
  test("a restart delivers what fell due meanwhile at once, in due order, nothing twice", async () => {
    await using dir = await tempDir();
    const store = `${dir.path}/store`;
    const random = seeded(9);
    const delays = Array.from({ length: 40 }, () => 150 + Math.floor(random() * 600));
    {
      await using hub = new Hub({ store });
      await hub.addStream({ name: "jobs", subjects: ["jobs.>"] });
      for (const [i, delay] of delays.entries()) {
        const ack = await hub.publish("jobs.run", String(i), { delay });
        assert.equal(ack?.stream, "jobs"); // stored at once
      }
      // A durable consumer that takes nothing yet: every message is waiting for its time.
      await using early = await hub.consume("jobs", { durable: "w", ackWait: 60_000 });
      await until(async () => (await hub.consumerInfo("jobs", "w")).scheduled === 40);
      const first = await early.next();
      // The soonest one: a delayed message is never handed out before its time.
      const due = Number(first.value!.headers[NOT_BEFORE_HEADER]);
      assert.ok(Date.now() >= due);
      await first.value!.ack();
    }
    const closedAt = Date.now();
    // Down while most come due; then open again.
    await new Promise((resolve) => setTimeout(resolve, 400));
    await using hub = new Hub({ store });
    await using worker = await hub.consume("jobs", { durable: "w", ackWait: 60_000 });
    const seen: { i: number; due: number; at: number }[] = [];
    for await (const m of worker) {
      seen.push({ i: Number(body(m)), due: Number(m.headers[NOT_BEFORE_HEADER]), at: Date.now() });
      // 2 for one handed to the first reader (due before the restart), and not acknowledged.
      const due = Number(m.headers[NOT_BEFORE_HEADER]);
      assert.ok(m.attempt === 1 || due <= closedAt, `attempt ${m.attempt} of ${body(m)}`);
      await m.ack();
      if (seen.length === 39) break;
    }
    const order = delays.map((d, i) => ({ d, i })).sort((a, b) => a.d - b.d || a.i - b.i);
    // No loss, no duplicate: the 39 left, each once.
    assert.deepEqual(
      seen.map((s) => s.i).sort((a, b) => a - b),
      order.slice(1).map((o) => o.i).sort((a, b) => a - b),
    );
    for (const s of seen) assert.ok(s.at >= s.due, `message ${s.i} came early`);
    for (let k = 1; k < seen.length; k++) {
      assert.ok(seen[k - 1]!.due <= seen[k]!.due, "in due order");
    }
    assert.equal((await hub.consumerInfo("jobs", "w")).scheduled, 0);
  });

  test("an ordered consumer waits at a delayed message: stream order, and not before its time", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "s", subjects: ["s.>"] });
    await hub.publish("s.a", "late", { delay: 80 });
    await hub.publish("s.a", "now");
    await using reader = await hub.consume("s", { ordered: true });
    const start = Date.now();
    const a = await reader.next();
    const b = await reader.next();
    assert.deepEqual([body(a.value), body(b.value)], ["late", "now"]);
    assert.ok(Date.now() >= Number(a.value!.headers[NOT_BEFORE_HEADER]));
    assert.ok(Date.now() - start >= 0);
  });

  test("plain subscribers of a stream's topic get a delayed message when it is due", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "s", subjects: ["s.>"] });
    const sub = hub.subscribe("s.>");
    const ack = await hub.publish("s.a", "x", { delay: 50 });
    assert.equal(ack?.seq, 1);
    const [got] = await take(sub, 1);
    assert.ok(got!.at >= Number(got!.m.headers[NOT_BEFORE_HEADER]));
  });
});

describe("priority", () => {
  test("a consumer's reader hands out what it holds by priority; an ordered one in stream order", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "s", subjects: ["s.>"] });
    for (const [i, priority] of [0, 2, 0, 7, 2].entries()) {
      await hub.publish("s.a", `${i}`, { priority });
    }
    await using reader = await hub.consume("s", { durable: "d" });
    await until(async () => (await hub.consumerInfo("s", "d")).pending === 5);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { value } = await reader.next();
      got.push(body(value));
      await value!.ack();
    }
    assert.deepEqual(got, ["3", "1", "4", "0", "2"]);
    await using ordered = await hub.consume("s", { ordered: true });
    const inOrder: string[] = [];
    for (let i = 0; i < 5; i++) inOrder.push(body((await ordered.next()).value));
    assert.deepEqual(inOrder, ["0", "1", "2", "3", "4"]);
  });

  test("with a backlog higher priorities leave first, equal ones in publish order", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("p");
    const sent = [0, 3, 0, 9, 3, 1, 9, 0];
    for (const [i, priority] of sent.entries()) {
      await hub.publish("p", `${i}`, priority === 0 ? {} : { priority });
    }
    const got = (await take(sub, sent.length)).map(({ m }) => body(m));
    assert.deepEqual(got, ["3", "6", "1", "4", "5", "0", "2", "7"]);
    assert.equal((await take(sub, 0)).length, 0);
  });

  test("without a backlog they keep publish order; priority 0 adds no header", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("p");
    for (const [i, priority] of [0, 9, 2].entries()) {
      await hub.publish("p", `${i}`, { priority });
      const { value } = await sub.next();
      assert.equal(body(value), `${i}`);
      assert.equal(value!.headers[PRIORITY_HEADER], priority === 0 ? undefined : `${priority}`);
    }
  });

  test("an ordered subscription keeps publish order whatever the priority", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("p", { ordered: true });
    await hub.publish("p", "a");
    await hub.publish("p", "b", { priority: 9 });
    assert.deepEqual((await take(sub, 2)).map(({ m }) => body(m)), ["a", "b"]);
  });
});

describe("rate limits", () => {
  test("a token bucket fills at its rate up to its burst; reservations queue in time", () => {
    let now = 0;
    const bucket = new TokenBucket(10, 2, () => now);
    assert.equal(bucket.tryTake(), true);
    assert.equal(bucket.tryTake(), true);
    assert.equal(bucket.tryTake(), false);
    now += 100; // one token
    assert.equal(bucket.tryTake(), true);
    now += 10_000; // full again, no more than the burst
    assert.equal(bucket.reserve(), 0);
    assert.equal(bucket.reserve(), 0);
    assert.equal(bucket.reserve(), 100);
    assert.equal(bucket.reserve(), 200);
    now += 350; // 3.5 tokens come, 2 of them owed: 0.5 left after this one
    assert.equal(bucket.reserve(), 0);
    assert.equal(bucket.reserve(), 50);
    bucket.set(100, 1);
    now += 1000;
    assert.equal(bucket.tryTake(), true);
    assert.equal(bucket.tryTake(), false);
    now -= 10_000; // the wall clock set back: no tokens until it passes where it was
    assert.equal(bucket.tryTake(), false);
    now += 10_005;
    assert.equal(bucket.tryTake(), false);
    now += 5;
    assert.equal(bucket.tryTake(), true);
  });

  test('"reject" refuses with ERATELIMIT naming the limit; setLimits() changes it at run time', async () => {
    await using hub = new Hub({
      limits: { topics: { "logs.>": { rate: 0.001, burst: 3, policy: "reject" } } },
    });
    const sub = hub.subscribe(">");
    for (let i = 0; i < 3; i++) await hub.publish("logs.app", `${i}`);
    await rejectsWith(hub.publish("logs.app", "x"), "ERATELIMIT", /"topic logs\.>".*burst 3/);
    await hub.publish("other", "free"); // another topic, no limit
    assert.deepEqual(
      hub.stats().limits.map((l) => [l.name, l.allowed, l.waited, l.rejected]),
      [["topic logs.>", 3, 0, 1]],
    );
    const prometheus = toPrometheus(hub.stats());
    assert.match(prometheus, /^dockipc_hub_limit_rejected_total\{limit="topic logs.>"\} 1$/m);
    assert.match(prometheus, /^dockipc_hub_limit_allowed_total\{limit="topic logs.>"\} 3$/m);
    // A global limit too, and the topic's raised: same name, same counters.
    hub.setLimits({
      global: { rate: 1000, burst: 1000 },
      topics: { "logs.>": { rate: 1000, burst: 1000, policy: "reject" } },
    });
    // What it had saved up stays (none): the new rate fills it from now on.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await hub.publish("logs.app", "ok");
    assert.deepEqual(
      hub.stats().limits.map((l) => [l.name, l.allowed, l.rejected]),
      [["global", 1, 0], ["topic logs.>", 4, 1]],
    );
    hub.setLimits({});
    assert.deepEqual(hub.stats().limits, []);
    assert.equal((await take(sub, 5)).length, 5);
  });

  test('"wait" holds publishers back, drops nothing and keeps order', async () => {
    await using hub = new Hub({ limits: { global: { rate: 100, burst: 1 } } });
    const sub = hub.subscribe("w");
    const start = Date.now();
    await Promise.all(Array.from({ length: 10 }, (_, i) => hub.publish("w", `${i}`)));
    // Nine waited a tenth of a second or more between them: 90 ms at the least, whatever the load.
    assert.ok(Date.now() - start >= 80);
    assert.deepEqual((await take(sub, 10)).map(({ m }) => body(m)), [..."0123456789"]);
    const [limit] = hub.stats().limits;
    assert.deepEqual([limit!.allowed, limit!.waited, limit!.rejected], [1, 9, 0]);
  });

  test("a held publish fails with ECLOSED when the hub closes first", async () => {
    const hub = new Hub({ limits: { global: { rate: 0.01, burst: 1 } } });
    await hub.publish("t", "1");
    const held = hub.publish("t", "2");
    await hub.close();
    await rejectsWith(held, "ECLOSED");
  });

  test("an adaptive limit slows down while a block subscriber lags and recovers after", async () => {
    await using hub = new Hub({
      limits: { topics: { "feed": { rate: 1_000_000, burst: 1_000_000, adaptive: true } } },
    });
    const slow = hub.subscribe("feed", { buffer: 2, overflow: "block" });
    const sent = Array.from({ length: 8 }, (_, i) => hub.publish("feed", `${i}`));
    const lowered = hub.stats().limits[0]!.currentRate;
    assert.ok(lowered < 1_000_000 / 16, `lowered to ${lowered}`);
    // The subscriber catches up; publishes go through at once again, and the rate comes back.
    assert.equal((await take(slow, 8)).length, 8);
    await Promise.all(sent);
    for (let i = 0; i < 10; i++) {
      await hub.publish("feed", "more");
      await slow.next();
    }
    assert.equal(hub.stats().limits[0]!.currentRate, 1_000_000);
  });

  test("a subscription's rate: reject drops (a gap when ordered), wait paces its reader", async () => {
    await using hub = new Hub();
    const dropping = hub.subscribe("s", {
      ordered: true,
      rate: { rate: 0.001, burst: 2, policy: "reject" },
    });
    const paced = hub.subscribe("s", { rate: { rate: 200, burst: 1 } });
    for (let i = 0; i < 5; i++) await hub.publish("s", `${i}`);
    await hub.publish("s", "5");
    dropping.setRate(undefined); // from now on, everything
    await hub.publish("s", "6");
    const kept = await take(dropping, 3);
    assert.deepEqual(kept.map(({ m }) => body(m)), ["0", "1", "6"]);
    assert.deepEqual(kept[2]!.m.gap, { reason: "overflow", count: 4, from: kept[1]!.m.seq + 1 });
    const start = Date.now();
    assert.equal((await take(paced, 7)).length, 7);
    assert.ok(Date.now() - start >= 20); // six waited 5 ms or more each
    const stats = hub.stats().subscriptions;
    assert.equal(stats[0]!.limit, undefined);
    // Each message counted once; how many found a token at once depends on how fast this
    // machine read them (a read 5 ms after the last finds one), so only the sum is certain.
    const { allowed, waited } = stats[1]!.limit!;
    assert.equal(allowed + waited, 7);
  });

  test("bad limits are refused with EINVAL naming the limit and the value", () => {
    const hub = new Hub();
    for (
      const [limits, what] of [
        [{ global: { rate: 0 } }, /global\.rate is 0/],
        [{ global: { rate: -5 } }, /global\.rate is -5/],
        [{ global: { rate: NaN } }, /global\.rate is NaN/],
        [{ topics: { "a.*": { rate: 10, burst: 0.5 } } }, /topics\["a\.\*"\]\.burst is 0\.5/],
        [{ topics: { "a": { rate: 10, policy: "drop" } } }, /topics\["a"\]\.policy is "drop"/],
        [{ global: null }, /global is null/],
      ] as const
    ) {
      // deno-lint-ignore no-explicit-any
      assert.throws(() => hub.setLimits(limits as any), invalid(what));
    }
    assert.throws(
      () => hub.subscribe("x", { rate: { rate: Infinity } }),
      invalid(/rate\.rate is Infinity/),
    );
    assert.throws(() => hub.setLimits({ topics: { "a..b": { rate: 1 } } }), /ETOPICINVALID|empty/);
    assert.deepEqual(hub.stats().limits, []);
    hub.abort();
  });
});

describe("ordered subscriptions", () => {
  test("drop-oldest: the first message after the drops carries the gap, exactly", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("o.*", { buffer: 3, overflow: "drop-oldest", ordered: true });
    for (let i = 1; i <= 10; i++) await hub.publish(i % 2 ? "o.a" : "o.b", `${i}`);
    const got = (await take(sub, 3)).map(({ m }) => m);
    assert.deepEqual(got.map(body), ["8", "9", "10"]);
    assert.deepEqual(got[0]!.gap, { reason: "overflow", count: 7, from: 1 });
    assert.equal(got[1]!.gap, undefined);
    const stats = hub.stats();
    assert.deepEqual([stats.subscriptions[0]!.gaps, stats.subscriptions[0]!.dropped], [1, 7]);
    // Counted on the topic of the message that reported it.
    assert.deepEqual(stats.topics.map((t) => [t.topic, t.gaps, t.outOfOrder]), [
      ["o.a", 0, 0],
      ["o.b", 1, 0],
    ]);
    assert.match(toPrometheus(stats), /^dockipc_hub_gaps_total\{topic="o.b"\} 1$/m);
  });

  test("drop-newest: the next message taken in carries the gap", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("o", { buffer: 2, overflow: "drop-newest", ordered: true });
    for (let i = 1; i <= 6; i++) await hub.publish("o", `${i}`);
    assert.deepEqual((await take(sub, 2)).map(({ m }) => [body(m), m.gap]), [
      ["1", undefined],
      ["2", undefined],
    ]);
    await hub.publish("o", "7");
    const { value } = await sub.next();
    assert.equal(body(value), "7");
    assert.deepEqual(value!.gap, { reason: "overflow", count: 4, from: 3 });
  });

  test("every message carries its topic's sequence and its publisher's", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe(">", { ordered: true });
    await hub.publish("a", "1");
    await hub.publish("b", "2");
    await hub.publish("a", "3");
    const got = (await take(sub, 3)).map(({ m }) => [m.topic, m.topicSeq, m.publisher, m.pubSeq]);
    assert.deepEqual(got, [["a", 1, 0, 1], ["b", 1, 0, 2], ["a", 2, 0, 3]]);
    assert.equal(sub.stats().outOfOrder, 0);
    assert.equal(sub.stats().gaps, 0);
  });

  test("ordered must be a boolean", () => {
    const hub = new Hub();
    assert.throws(
      () => hub.subscribe("x", { ordered: "yes" as unknown as boolean }),
      invalid(/ordered is "yes"/),
    );
    hub.abort();
  });

  test("a reader that waits is woken in order after a gap too", async () => {
    await using hub = new Hub();
    const sub = hub.subscribe("o", { buffer: 1, overflow: "drop-newest", ordered: true });
    const first = sub.next();
    await hub.publish("o", "1");
    await hub.publish("o", "2");
    await hub.publish("o", "3"); // dropped: the buffer holds 2
    assert.equal(body((await first).value), "1");
    await until(() => sub.stats().pending === 1);
    assert.equal(body((await sub.next()).value), "2");
    await hub.publish("o", "4");
    assert.deepEqual((await sub.next()).value!.gap, { reason: "overflow", count: 1, from: 3 });
  });
});
