/**
 * A/B of a change to the session layer or the protocols on it: RPC with 1 request in flight,
 * hub request/reply with 1 in flight, and remote hub pub/sub 1 → 1, through this checkout and
 * through another (a `git worktree` of the commit before the change, say), in one run of one
 * runtime.
 *
 * This process serves both checkouts' RPC server and hub; one child connects both checkouts'
 * clients and runs each workload in paired blocks (`pairedRatios`: a b b a), so drift in the
 * machine's speed falls on both alike. A pub/sub "trip" publishes a burst of 256 messages of
 * 64 B and waits until the subscriber has taken them all.
 *
 * Usage: `<runtime> bench/ab_session.ts DIR [--repeats N] [--ms MS]`, where DIR is the other
 * checkout (A); it prints this checkout's rate ÷ A's for each workload.
 *
 * @module
 */

import { median, pairedRatios, rt, scriptArgs, spawnSelf, stdoutText } from "./_harness.ts";
import type * as HubModule from "../src/hub/mod.ts";
import type * as RpcModule from "../src/rpc/mod.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const args = scriptArgs();
const BURST = 256;
const payload = new Uint8Array(64);
const WORKLOADS = ["RPC, 1 in flight", "hub request/reply, 1 in flight", "hub pub/sub 1 → 1"];

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

const here = new URL("../", import.meta.url).pathname;

if (args[0] === "child") {
  // Connects to both checkouts' servers and runs each workload in paired blocks.
  const [, dir, prefixA, prefixB, ms] = args as [string, string, string, string, string];
  const sides = await Promise.all([
    [await modules(`${dir.replace(/\/$/, "")}/`), prefixA] as const,
    [await modules(here), prefixB] as const,
  ].map(async ([m, prefix]) => {
    const rpc = await m.rpc.dial(`${prefix}.rpc.sock`);
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
      ],
      close: () => Promise.all([rpc, requester, publisher, subscriber].map((c) => c.close())),
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
      async ([m, prefix]) => {
        const { rpc, hub } = m as Awaited<ReturnType<typeof modules>>;
        const local = new hub.Hub();
        local.handle("ab.echo", (msg) => msg.data);
        return [
          await rpc.serve(`${prefix}.rpc.sock`, (request) => request),
          await hub.serveHub(local, `${prefix}.hub.sock`),
          local,
        ] as const;
      },
    ));
    const child = spawnSelf(SCRIPT, ["child", dir, `${tmp}/a${i}`, `${tmp}/b${i}`, ms]);
    const ratios = JSON.parse(await stdoutText(child)) as number[][];
    await child.status;
    ratios.forEach((r, w) => all[w]!.push(...r));
    for (const [rpcServer, hubServer, local] of servers) {
      // Either checkout's servers: an older one's close() may return nothing.
      await Promise.resolve(rpcServer.close());
      await Promise.resolve(hubServer.close());
      await Promise.resolve(local.close());
    }
  }
  await rt.fs.remove(tmp, { recursive: true });
  console.log(`${rt.name} ${rt.version}, this checkout ÷ ${dir}, paired blocks (a b b a):`);
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
