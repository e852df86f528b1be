/**
 * Hub benchmark, in one process, 64 B messages: a publisher awaits each `publish()` while the
 * subscribers read with `for await`, concurrently; after a warm-up quarter off the clock, the
 * clock runs until every subscriber has read every message. Fan-out 1, 4 and 100, each alone
 * and with 10,000 subscriptions that match nothing. Each implementation first runs once off the
 * clock, so all are compared in steady state. Baselines in the same run: `node:events` `EventEmitter` (synchronous: the upper
 * bound), `emittery` (an async event emitter, awaiting each `emit()`), the Web Streams
 * ceiling of the framing benchmark (one enqueue and one read per message), and the floor cost
 * of `for await` itself: readers iterating the payload from a bare async iterator, no hub.
 *
 * Usage: `<runtime> bench/hub.ts [--repeats N] [--only NAME]`. Every loop is bounded by a count.
 *
 * @module
 */

import { EventEmitter } from "node:events";
import { Hub } from "../src/hub/mod.ts";
import {
  median,
  printTable,
  repeatsArg,
  type Row,
  scriptArgs,
  webStreamsCeiling,
} from "./_harness.ts";

const args = scriptArgs();
const repeats = repeatsArg(5);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1]! : "";
const payload = new Uint8Array(64);

/** Messages per run, so that each run delivers about 1,600,000 messages in all. */
const messagesFor = (fanOut: number): number => Math.max(16_000, Math.floor(1_600_000 / fanOut));

/** dockipc's hub: returns deliveries per second. */
async function hubRun(fanOut: number, unrelated: number): Promise<number> {
  const hub = new Hub();
  for (let i = 0; i < unrelated; i++) hub.subscribe(i % 2 ? `other.${i}.*` : `other.${i}.>`);
  const n = messagesFor(fanOut);
  const subs = Array.from({ length: fanOut }, () => hub.subscribe("bench.topic"));
  // A warm-up quarter, off the clock: it also moves the subscriptions just made out of the
  // young generation, which a long-lived hub's subscriptions are.
  const warm = n >> 2;
  let start = 0;
  const readers = subs.map(async (sub) => {
    let got = 0;
    for await (const _ of sub) if (++got === warm + n) break;
  });
  for (let i = 0; i < warm + n; i++) {
    if (i === warm) start = performance.now();
    await hub.publish("bench.topic", payload);
  }
  await Promise.all(readers);
  const rate = (n * fanOut) / ((performance.now() - start) / 1000);
  hub.close();
  return rate;
}

/**
 * The floor of any subscription that is an `AsyncIterable` read with `for await`: `fanOut`
 * readers, each iterating `n` messages from an iterator that only hands out the payload, with
 * no hub behind it. No subscription read this way can deliver faster.
 */
async function forAwaitFloor(fanOut: number): Promise<number> {
  const n = messagesFor(fanOut);
  const source = (): AsyncIterable<Uint8Array> => {
    let left = n;
    const iterator: AsyncIterator<Uint8Array> = {
      next: () =>
        Promise.resolve(
          left-- > 0 ? { done: false, value: payload } : { done: true, value: undefined },
        ),
    };
    return { [Symbol.asyncIterator]: () => iterator };
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: fanOut }, async () => {
    let got = 0;
    for await (const _ of source()) got++;
    if (got !== n) throw new Error("lost messages");
  }));
  return (n * fanOut) / ((performance.now() - start) / 1000);
}

function eventEmitterRun(fanOut: number): number {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  const n = messagesFor(fanOut);
  let got = 0;
  for (let i = 0; i < fanOut; i++) emitter.on("bench.topic", () => got++);
  const start = performance.now();
  for (let i = 0; i < n; i++) emitter.emit("bench.topic", payload);
  if (got !== n * fanOut) throw new Error("lost events");
  return got / ((performance.now() - start) / 1000);
}

/** The part of emittery the benchmark uses; loaded from `bench/node_modules` when it runs. */
interface EmitteryLike {
  on(event: string, listener: () => void): void;
  emit(event: string, data: Uint8Array): Promise<void>;
}

async function emitteryRun(fanOut: number): Promise<number> {
  const { default: Emittery } = await import("emittery") as unknown as {
    default: new () => EmitteryLike;
  };
  const emitter = new Emittery();
  const n = messagesFor(fanOut);
  let got = 0;
  for (let i = 0; i < fanOut; i++) emitter.on("bench.topic", () => void got++);
  const start = performance.now();
  for (let i = 0; i < n; i++) await emitter.emit("bench.topic", payload);
  if (got !== n * fanOut) throw new Error("lost events");
  return got / ((performance.now() - start) / 1000);
}

const rows: Row[] = [];
for (const fanOut of [1, 4, 100]) {
  const workload = `64 B, fan-out ${fanOut}`;
  if (!workload.includes(only)) continue;
  const impls: Record<string, () => number | Promise<number>> = {
    "emittery": () => emitteryRun(fanOut),
    "EventEmitter": () => eventEmitterRun(fanOut),
    "ceiling": () => webStreamsCeiling(messagesFor(fanOut) * fanOut),
    "for-await floor": () => forAwaitFloor(fanOut),
    "hub": () => hubRun(fanOut, 0),
    "hub + 10k unrelated": () => hubRun(fanOut, 10_000),
  };
  // A round of every implementation off the clock first, so that each is measured in steady
  // state rather than while its code is still being compiled: a run lasts well under a second.
  for (const run of Object.values(impls)) await run();
  const rates: Record<string, number[]> = {};
  for (let r = 0; r < repeats; r++) {
    for (const [impl, run] of Object.entries(impls)) (rates[impl] ??= []).push(await run());
  }
  for (const [impl, r] of Object.entries(rates)) {
    rows.push({ workload, impl, unit: "msgs/s", rates: r });
  }
}
printTable(rows, "emittery");

const m = (workload: string, impl: string): number => {
  const row = rows.find((r) => r.workload === workload && r.impl === impl);
  return row ? median(row.rates) : NaN;
};
console.log("\n| target | this run | goal | |\n|---|---|---|---|");
for (const fanOut of [1, 4, 100]) {
  const w = `64 B, fan-out ${fanOut}`;
  const checks: [string, number, number, "min" | "max"][] = [
    [`fan-out ${fanOut}: hub / emittery`, m(w, "hub") / m(w, "emittery"), 3, "min"],
    [
      `fan-out ${fanOut}: for-await floor / emittery (the most any for-await reader can reach)`,
      m(w, "for-await floor") / m(w, "emittery"),
      3,
      "min",
    ],
    [
      `fan-out ${fanOut}: hub / hub with 10k unrelated`,
      m(w, "hub") / m(w, "hub + 10k unrelated"),
      1.5,
      "max",
    ],
  ];
  if (fanOut === 1) {
    checks.unshift([
      "fan-out 1: hub / Web Streams ceiling",
      m(w, "hub") / m(w, "ceiling"),
      0.6,
      "min",
    ]);
  }
  for (const [name, value, goal, kind] of checks) {
    if (Number.isNaN(value)) continue;
    const met = kind === "min" ? value >= goal : value <= goal;
    console.log(
      `| ${name} | ${value.toFixed(2)} | ${kind === "min" ? "≥" : "≤"} ${goal} | ${
        met ? "met" : "NOT MET"
      } |`,
    );
  }
}
