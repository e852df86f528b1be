import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  abortable,
  backoff,
  deadline,
  deferred,
  delay,
  later,
  MAX_TIMER,
} from "../../src/internal/async.ts";
import { IpcError } from "../../mod.ts";
import { seeded } from "../_helpers.ts";

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
