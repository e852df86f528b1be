/**
 * The hub's flow features, in one process: what delayed delivery costs (scheduling and
 * delivering a million messages, and the memory each waiting message takes), a flood of delayed
 * publishes from one client over a socket against its bound (and another client's round trips
 * meanwhile), and, as paired ratios against plain publish/subscribe in the same run, what a
 * rate limit that never trips, priority without a backlog and an ordered subscription cost.
 *
 * A paired "trip" publishes a burst of 256 messages of 64 B and reads them all (as the in-process
 * workload of `ab_session.ts` does); ratios above 1 mean faster than plain.
 *
 * Usage: `<runtime> bench/flow.ts [--repeats N] [--ms MS] [--count N]`. Loops are bounded by counts.
 *
 * @module
 */

import { connectHub, Hub, serveHub, type Subscription } from "../src/hub/mod.ts";
import { human, median, pairedRatios, printPaired, rt, scriptArgs } from "./_harness.ts";

const args = scriptArgs();
const option = (name: string, fallback: number): number => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : Number(args[i + 1]);
};
const repeats = option("--repeats", 3);
const ms = option("--ms", 2000);
const count = option("--count", 1_000_000);
const BURST = 256;
const payload = new Uint8Array(64);

/** The heap in use after a collection, where the runtime lets a script ask for one. */
function heapUsed(): number {
  const g = globalThis as { gc?: () => void; Bun?: { gc(sync: boolean): void } };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
  return (globalThis as unknown as { process: { memoryUsage(): { heapUsed: number } } }).process
    .memoryUsage().heapUsed;
}

/** Scheduling `count` delayed messages, then delivering them when they all come due at once. */
async function schedule(): Promise<void> {
  const hub = new Hub({ maxScheduled: count });
  const before = heapUsed();
  const due = Date.now() + 60_000;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) void hub.publish("due", payload, { notBefore: due });
  const scheduling = performance.now() - t0;
  const perMessage = (heapUsed() - before) / count;
  // Delivery alone: a new hub, every message due at one time, read as they come.
  hub.abort();
  const hub2 = new Hub({ maxScheduled: count });
  const sub2 = hub2.subscribe("due", { buffer: count });
  const at = Date.now() + 200 + count / 1000; // after scheduling them all
  for (let i = 0; i < count; i++) void hub2.publish("due", payload, { notBefore: at });
  await sub2.next(); // the first, when due
  const t1 = performance.now();
  for (let i = 1; i < count; i++) await sub2.next();
  const delivering = performance.now() - t1;
  hub2.abort();
  console.log(`\n| delayed messages (${human(count)}) | rate | note |`);
  console.log("|---|---|---|");
  console.log(`| scheduled | ${human(count / scheduling * 1000)}/s | publish(…, { notBefore }) |`);
  console.log(`| delivered when due | ${human(count / delivering * 1000)}/s | all due at once |`);
  const collected = "gc" in globalThis || "Bun" in globalThis
    ? "after a collection"
    : "no collection";
  console.log(
    `| memory per waiting message | ${
      perMessage.toFixed(0)
    } B | heap (${collected}), 64 B payload |`,
  );
}

/** One client publishes `n` delayed messages over a socket; another times round trips meanwhile. */
async function flood(n: number): Promise<void> {
  const dir = await rt.fs.makeTempDir("dockipc-flow-");
  const hub = new Hub();
  hub.handle("ping", () => "pong");
  const server = await serveHub(hub, `${dir}/hub.sock`);
  const flooder = await connectHub(server.addr);
  const other = await connectHub(server.addr);
  let refused = 0;
  let done = false;
  const rtts: number[] = [];
  const pinger = (async () => {
    while (!done) {
      const t = performance.now();
      await other.request("ping", "");
      rtts.push(performance.now() - t);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  const t0 = performance.now();
  const window = 4096;
  for (let i = 0; i < n; i += window) {
    const batch = Array.from(
      { length: Math.min(window, n - i) },
      () => flooder.publish("flood", payload, { delay: 3_600_000 }).catch(() => void refused++),
    );
    await Promise.all(batch);
  }
  const elapsed = performance.now() - t0;
  done = true;
  await pinger;
  rtts.sort((a, b) => a - b);
  console.log(`\n| flood of ${human(n)} delayed publishes from one client | value |`);
  console.log("|---|---|");
  console.log(`| answered (scheduled or refused) | ${human(n / elapsed * 1000)}/s |`);
  console.log(`| scheduled (the connection's bound) | ${human(hub.stats().scheduled.waiting)} |`);
  console.log(`| refused with ELIMIT | ${human(refused)} |`);
  console.log(
    `| another client's round trips meanwhile | p50 ${median(rtts).toFixed(2)} ms, max ${
      rtts.at(-1)!.toFixed(1)
    } ms, ${rtts.length} trips |`,
  );
  await flooder.close();
  await other.close();
  await server.close();
  hub.abort();
  await rt.fs.remove(dir, { recursive: true });
}

type Options = Parameters<Hub["publish"]>[2];

/** A trip on `hub`: a burst published (with `options`), then read from `sub`: a backlog. */
function tripOf(hub: Hub, sub: Subscription, options?: Options): () => Promise<void> {
  return async () => {
    for (let i = 0; i < BURST; i++) {
      const wait = hub.publish("flow.x", payload, options);
      if (wait) await wait;
    }
    for (let i = 0; i < BURST; i++) await sub.next();
  };
}

/** A trip on `hub` with no backlog: each message read before the next is published. */
function lockstepOf(hub: Hub, sub: Subscription, options?: Options): () => Promise<void> {
  return async () => {
    for (let i = 0; i < BURST; i++) {
      const wait = hub.publish("flow.x", payload, options);
      if (wait) await wait;
      await sub.next();
    }
  };
}

/** A hub and a subscription of it to `flow.x`. */
function hubWith(
  options: ConstructorParameters<typeof Hub>[0] = {},
  subscribe: Parameters<Hub["subscribe"]>[1] = {},
): [Hub, Subscription] {
  const hub = new Hub(options);
  return [hub, hub.subscribe("flow.x", { buffer: 4 * BURST, ...subscribe })];
}

/** Paired ratios of each variant's rate to plain publish/subscribe's, trip for trip. */
async function paired(): Promise<void> {
  const [plain, plainSub] = hubWith();
  const [limited, limitedSub] = hubWith({ limits: { global: { rate: 1e12, burst: 1e12 } } });
  const [ordered, orderedSub] = hubWith({}, { ordered: true });
  const [other, otherSub] = hubWith();
  const header = { headers: { "x-p": "5" } };
  const variants: [string, () => Promise<void>, () => Promise<void>][] = [
    ["a global rate limit that never trips", tripOf(plain, plainSub), tripOf(limited, limitedSub)],
    ["an ordered subscription", tripOf(plain, plainSub), tripOf(ordered, orderedSub)],
    // Priority against a header of the same size: what priority costs beside carrying a header.
    [
      "priority 5, no backlog (each read before the next), ÷ header x-p: 5",
      lockstepOf(plain, plainSub, header),
      lockstepOf(other, otherSub, { priority: 5 }),
    ],
    [
      "priority 5, a backlog of 256 alike, ÷ header x-p: 5",
      tripOf(plain, plainSub, header),
      tripOf(other, otherSub, { priority: 5 }),
    ],
  ];
  const results = [];
  for (const [name, baseline, trip] of variants) {
    const ratios: number[] = [];
    for (let r = 0; r < repeats; r++) ratios.push(...await pairedRatios(baseline, trip, ms));
    results.push({ impl: name, ratios });
  }
  printPaired(`${rt.name}: rate ÷ plain pub/sub 1 → 1, in process`, results);
  for (const hub of [plain, limited, ordered, other]) hub.abort();
}

console.log(`${rt.name} ${rt.version}: bench/flow.ts`);
await schedule();
await flood(count);
await paired();
