/**
 * A/B of a change to the session layer, the protocols on it or the hub: RPC with 1 request in
 * flight, hub request/reply with 1 in flight, remote hub pub/sub 1 → 1, and pub/sub 1 → 1 on a
 * hub in the same process, through this checkout and through another (a `git worktree` of the
 * commit before the change, say), in one run of one runtime.
 *
 * This process serves both checkouts' RPC server and hub; one child connects both checkouts'
 * clients and runs each workload in paired blocks (`pairedRatios`: a b b a), so drift in the
 * machine's speed falls on both alike. A pub/sub "trip" publishes a burst of 256 messages of
 * 64 B and waits until the subscriber has taken them all.
 *
 * With `--metrics`, this checkout's servers and hubs (B) also run `serveMetrics()`, not scraped:
 * the cost of metrics enabled and idle, against a checkout without them.
 *
 * Usage: `<runtime> bench/ab_session.ts DIR [--repeats N] [--ms MS] [--metrics]`, where DIR is
 * the other checkout (A); it prints this checkout's rate ÷ A's for each workload.
 *
 * @module
 */

import { median, pairedRatios, rt, scriptArgs, spawnSelf, stdoutText } from "./_harness.ts";
import type * as HubModule from "../src/hub/mod.ts";
import type * as MetricsModule from "../src/metrics/mod.ts";
import type * as RpcModule from "../src/rpc/mod.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const args = scriptArgs();
const BURST = 256;
const payload = new Uint8Array(64);
const WORKLOADS = [
  "RPC, 1 in flight",
  "hub request/reply, 1 in flight",
  "hub pub/sub 1 → 1",
  "hub pub/sub 1 → 1, in process",
];
const withMetrics = args.includes("--metrics");

/** An option's value, or `fallback`. */
function option(name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args[i + 1] ?? fallback;
}

/** A checkout's RPC and hub modules: `root` ends with "/". */
async function modules(root: string): Promise<{ rpc: typeof RpcModule; hub: typeof HubModule }> {
  return {
    rpc: await import(`${root}src/rpc/mod.ts`) as typeof RpcModule,
    hub: await import(`${root}src/hub/mod.ts`) as typeof HubModule,
  };
}

/** Starts this checkout's metrics server on `sources` when `--metrics` asks for it. */
async function metricsFor(
  sources: Parameters<typeof MetricsModule.serveMetrics>[0],
): Promise<{ close(): Promise<void> } | undefined> {
  if (!withMetrics) return undefined;
  const { serveMetrics } = await import(`${here}src/metrics/mod.ts`) as typeof MetricsModule;
  return await serveMetrics(sources);
}

const here = new URL("../", import.meta.url).pathname;

if (args[0] === "child") {
  // Connects to both checkouts' servers and runs each workload in paired blocks.
  const [, dir, prefixA, prefixB, ms] = args as [string, string, string, string, string];
  const sides = await Promise.all([
    [await modules(`${dir.replace(/\/$/, "")}/`), prefixA] as const,
    [await modules(here), prefixB] as const,
  ].map(async ([m, prefix], side) => {
    const rpc = await m.rpc.dial(`${prefix}.rpc.sock`);
    const local = new m.hub.Hub();
    const localSub = local.subscribe("ab.x", { buffer: 4 * BURST });
    const localMetrics = side === 1 ? await metricsFor({ hub: local }) : undefined;
    const inProcess = async (): Promise<void> => {
      for (let i = 0; i < BURST; i++) {
        const wait = local.publish("ab.x", payload);
        if (wait) await wait;
      }
      for (let i = 0; i < BURST; i++) await localSub.next();
    };
    const requester = await m.hub.connectHub(`${prefix}.hub.sock`);
    const publisher = await m.hub.connectHub(`${prefix}.hub.sock`);
    const subscriber = await m.hub.connectHub(`${prefix}.hub.sock`);
    const sub = subscriber.subscribe("ab.x", { buffer: 4 * BURST });
    await subscriber.flush();
    const pubsub = async (): Promise<void> => {
      for (let i = 0; i < BURST; i++) await publisher.publish("ab.x", payload);
      for (let i = 0; i < BURST; i++) await sub.next();
    };
    return {
      trips: [
        () => rpc.request(payload),
        () => requester.request("ab.echo", payload),
        pubsub,
        inProcess,
      ],
      close: async () => {
        await localMetrics?.close();
        await Promise.all([rpc, requester, publisher, subscriber, local].map((c) => c.close()));
      },
    };
  }));
  const [a, b] = sides as [typeof sides[0], typeof sides[0]];
  const ratios: number[][] = [];
  for (let w = 0; w < WORKLOADS.length; w++) {
    ratios.push(await pairedRatios(a.trips[w]!, b.trips[w]!, Number(ms)));
  }
  await Promise.all([a.close(), b.close()]);
  console.log(JSON.stringify(ratios));
} else {
  const dir = args[0];
  if (dir === undefined || dir.startsWith("--")) {
    throw new Error("Usage: bench/ab_session.ts DIR [--repeats N] [--ms MS]");
  }
  const repeats = Number(option("--repeats", "3"));
  const ms = option("--ms", "3000");
  const [mA, mB] = [await modules(`${dir.replace(/\/$/, "")}/`), await modules(here)];
  const tmp = await rt.fs.makeTempDir("dk-ab-");
  const all: number[][] = WORKLOADS.map(() => []);
  for (let i = 0; i < repeats; i++) {
    const servers = await Promise.all([[mA, `${tmp}/a${i}`], [mB, `${tmp}/b${i}`]].map(
      async ([m, prefix], side) => {
        const { rpc, hub } = m as Awaited<ReturnType<typeof modules>>;
        const local = new hub.Hub();
        local.handle("ab.echo", (msg) => msg.data);
        const rpcServer = await rpc.serve(`${prefix}.rpc.sock`, (request) => request);
        const hubServer = await hub.serveHub(local, `${prefix}.hub.sock`);
        const metrics = side === 1
          ? await metricsFor({ hub: local, hubServer, rpc: [rpcServer] })
          : undefined;
        return [rpcServer, hubServer, local, metrics] as const;
      },
    ));
    const child = spawnSelf(SCRIPT, [
      "child",
      dir,
      `${tmp}/a${i}`,
      `${tmp}/b${i}`,
      ms,
      ...(withMetrics ? ["--metrics"] : []),
    ]);
    const ratios = JSON.parse(await stdoutText(child)) as number[][];
    await child.status;
    ratios.forEach((r, w) => all[w]!.push(...r));
    for (const [rpcServer, hubServer, local, metrics] of servers) {
      await metrics?.close();
      // Either checkout's servers: an older one's close() may return nothing.
      await Promise.resolve(rpcServer.close());
      await Promise.resolve(hubServer.close());
      await Promise.resolve(local.close());
    }
  }
  await rt.fs.remove(tmp, { recursive: true });
  console.log(
    `${rt.name} ${rt.version}, this checkout${
      withMetrics ? " with serveMetrics() idle" : ""
    } ÷ ${dir}, paired blocks (a b b a):`,
  );
  console.log("| workload | median | middle half | blocks |");
  console.log("|---|---|---|---|");
  WORKLOADS.forEach((name, w) => {
    const sorted = [...all[w]!].sort((x, y) => x - y);
    const q = (f: number): string => sorted[Math.floor(f * (sorted.length - 1))]!.toFixed(3);
    console.log(
      `| ${name} | ${median(sorted).toFixed(3)} | ${q(0.25)}–${q(0.75)} | ${sorted.length} |`,
    );
  });
}
