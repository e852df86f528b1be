import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  abortable,
  backoff,
  deadline,
  Deadlines,
  deferred,
  delay,
  type Expiring,
  later,
  MAX_TIMER,
} from "../../src/internal/async.ts";
import { IpcError } from "../../mod.ts";
import { RUNTIMES, seeded, spawnFixture, until } from "../_helpers.ts";

describe("delay()", () => {
  test("delay() resolves after the time passes", async () => {
    const start = Date.now();
    await delay(20);
    assert.ok(Date.now() - start >= 15);
  });

  test("delay() rejects with the signal's reason when aborted", async () => {
    const controller = new AbortController();
    const waiting = delay(60_000, { signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(waiting, /stop/);
  });

  test("delay() rejects at once with an already aborted signal", async () => {
    await assert.rejects(
      delay(10, { signal: AbortSignal.abort("why") }),
      (reason) => reason === "why",
    );
  });
});

describe("backoff()", () => {
  test("backoff() without jitter grows by factor up to maxDelay and stops at maxAttempts", () => {
    const delays = [
      ...backoff({ initialDelay: 10, factor: 3, maxDelay: 200, maxAttempts: 6, jitter: "none" }),
    ];
    assert.deepEqual(delays, [10, 30, 90, 200, 200, 200]);
  });

  test("backoff() with full jitter stays within each bound and is reproducible with a seed", () => {
    const options = { initialDelay: 100, maxDelay: 1000, maxAttempts: 50, random: seeded(7) };
    const delays = [...backoff(options)];
    const bounds = [...backoff({ ...options, jitter: "none" })];
    assert.equal(delays.length, 50);
    delays.forEach((d, i) =>
      assert.ok(d >= 0 && d < bounds[i]!, `delay ${i}: ${d} < ${bounds[i]}`)
    );
    assert.deepEqual([...backoff({ ...options, random: seeded(7) })], delays);
    assert.ok(new Set(delays).size > 10, "jitter spreads the delays");
  });

  test("backoff() refuses bad options with RangeError", () => {
    assert.throws(() => [...backoff({ factor: 0.5 })], RangeError);
    assert.throws(() => [...backoff({ initialDelay: -1 })], RangeError);
  });
});

describe("deadline()", () => {
  test("deadline() passes the value through when in time", async () => {
    assert.equal(await deadline(Promise.resolve(5), 1000), 5);
  });

  test("deadline() rejects with ETIMEDOUT and hands a late value to onLate", async () => {
    const late = deferred<string>();
    const got = deferred<string>();
    await assert.rejects(
      deadline(late.promise, 10, { op: "wait for x", onLate: got.resolve }),
      (err: unknown) =>
        err instanceof IpcError && err.code === "ETIMEDOUT" &&
        /wait for x as 10 ms/.test(err.message),
    );
    late.resolve("value");
    assert.equal(await got.promise, "value");
  });

  test("deadline() rejects with the caller's reason when its signal aborts", async () => {
    const controller = new AbortController();
    const pending = deadline(new Promise(() => {}), 60_000, { signal: controller.signal });
    controller.abort(new Error("caller"));
    await assert.rejects(pending, /caller/);
  });

  test("deadline() passes a rejection through", async () => {
    await assert.rejects(deadline(Promise.reject(new Error("boom")), 1000), /boom/);
  });
});

describe("abortable()", () => {
  test("abortable() with an aborted signal rejects and still hands over the value", async () => {
    const got = deferred<number>();
    await assert.rejects(abortable(Promise.resolve(1), AbortSignal.abort("no"), got.resolve));
    assert.equal(await got.promise, 1);
  });

  test("abortable() without a signal is the promise itself", () => {
    const p = Promise.resolve(3);
    assert.equal(abortable(p, undefined), p);
  });
});

describe("timers past 2^31 - 1 ms", () => {
  test("deadline() past the longest timer, or Infinity, is no deadline; NaN or a negative one is refused", async () => {
    const slow = (): Promise<string> =>
      new Promise((resolve) => setTimeout(() => resolve("ok"), 30));
    // Runtimes fire such timers at once: these must not time out in 1 ms.
    for (const ms of [MAX_TIMER, 2 ** 40, Infinity]) assert.equal(await deadline(slow(), ms), "ok");
    for (const ms of [NaN, -1]) assert.throws(() => deadline(slow(), ms), RangeError);
  });

  test("later() sets no timer past the longest one, and an ordinary one below it", async () => {
    assert.equal(later(() => assert.fail("fired"), Infinity), undefined);
    assert.equal(later(() => assert.fail("fired"), 2 ** 31), undefined);
    let fired = false;
    const timer = later(() => (fired = true), 1);
    assert.notEqual(timer, undefined);
    await delay(20);
    assert.ok(fired);
  });
});

describe("Deadlines", () => {
  /** An operation that records its expiry in `log`. */
  const op = (name: string, ms: number, log: string[]): Expiring => ({
    deadline: Date.now() + ms,
    expire: () => void log.push(name),
  });

  test("expires operations in deadline order, and none that was deleted", async () => {
    const deadlines = new Deadlines();
    const log: string[] = [];
    const ops = [op("c", 90, log), op("a", 30, log), op("gone", 40, log), op("b", 60, log)];
    for (const o of ops) deadlines.add(o);
    deadlines.delete(ops[2]!);
    await delay(200);
    assert.deepEqual(log, ["a", "b", "c"]);
  });

  test("an operation added after a long-lived one, or after going idle, still expires", async () => {
    const deadlines = new Deadlines();
    const log: string[] = [];
    const long = op("long", 60_000, log);
    deadlines.add(long); // the timer is set for a minute from now
    deadlines.add(op("short", 30, log)); // and set again, earlier
    await delay(80);
    deadlines.delete(long);
    // Idle now; the next ones arm the timer again, or hold it.
    const late = op("late", 40, log);
    deadlines.add(late);
    deadlines.add(op("later", 60, log));
    await delay(150);
    assert.deepEqual(log, ["short", "late", "later"]);
    deadlines.clear();
  });

  test("an operation never expires with an Infinity deadline; clear() forgets the rest", async () => {
    const deadlines = new Deadlines();
    const log: string[] = [];
    deadlines.add({ deadline: Infinity, expire: () => void log.push("never") });
    deadlines.add(op("cleared", 20, log));
    deadlines.clear();
    await delay(60);
    assert.deepEqual(log, []);
  });

  test("expire() may add operations, which expire in turn", async () => {
    const deadlines = new Deadlines();
    const log: string[] = [];
    deadlines.add({
      deadline: Date.now() + 20,
      expire: () => {
        log.push("first");
        deadlines.add(op("second", 20, log));
      },
    });
    deadlines.add(op("third", 200, log));
    await delay(300);
    assert.deepEqual(log, ["first", "second", "third"]);
  });

  test("many operations expire in deadline order, equal ones in the order added", async () => {
    const deadlines = new Deadlines();
    const log: number[] = [];
    const random = seeded(7);
    const now = Date.now();
    const ops = Array.from({ length: 20_000 }, (_, i) => ({
      deadline: now + 1 + Math.floor(random() * 40),
      expire: () => void log.push(i),
    }));
    for (const o of ops) deadlines.add(o);
    for (let i = 0; i < ops.length; i += 3) deadlines.delete(ops[i]!);
    assert.equal(deadlines.size, ops.length - Math.ceil(ops.length / 3));
    await until(() => deadlines.size === 0);
    const expected = ops.map((o, i) => ({ at: o.deadline, i })).filter(({ i }) => i % 3 !== 0)
      .sort((a, b) => a.at - b.at || a.i - b.i).map(({ i }) => i);
    assert.deepEqual(log, expected);
  });

  for (const runtime of RUNTIMES) {
    test(`on ${runtime}, its timer keeps the process alive only while an operation waits`, {
      timeout: 120_000,
    }, async () => {
      // Idle: were the 10-minute timer holding the process, this would time the test out.
      await using idle = spawnFixture(runtime, "deadlines.ts", ["idle"]);
      assert.equal(await idle.line(), "idle");
      assert.equal((await idle.status).code, 0);
      // Pending: were it not holding the process, the process would end first and say nothing.
      await using pending = spawnFixture(runtime, "deadlines.ts", ["pending"]);
      assert.equal(await pending.line(), "expired");
      assert.equal((await pending.status).code, 0);
    });
  }
});
