/**
 * Transport benchmark: two processes over a unix socket, through dockipc's `Conn` and through
 * the runtime's own socket API (the baseline), alternating, in the same run.
 *
 * - one-way 64 B and 4 KiB: the child writes (awaiting each write), this process reads and
 *   times from the end of the warm-up to the end;
 * - `conn` reads with a default reader, which hands out chunks that are the reader's to keep.
 *   Deno's raw reads reuse one buffer, which a reader that hands out its chunks cannot; on Deno
 *   the one-way workloads also run raw reads into fresh memory (`RAW_FRESH`), as context. Bun's
 *   and Node's raw reads already arrive in memory of their own;
 * - ping-pong 64 B: the child sends 64 bytes and waits for them back, one in flight; this
 *   process echoes. Paired, it also runs the raw API inside the thinnest stream pair
 *   (`RAW_STREAMS`): the floor of what Web Streams themselves cost a `Conn`.
 *
 * Every measurement follows `WARM_MS` (3 s) of the same workload off the clock, baseline
 * included: the figures are steady state, as in a long-lived connection.
 *
 * Usage: `<runtime> bench/transport.ts [--repeats N] [--only NAME] [--json]`; `npm run bench` runs it under
 * all three runtimes. Every loop is bounded by a count and by time.
 *
 * @module
 */

import {
  implFor,
  pairedServe,
  pairedTrips,
  pingPong,
  RAW_FRESH,
  RAW_STREAMS,
  serveOnce,
} from "./_peers.ts";
import {
  pairedRuns,
  printPaired,
  printTable,
  repeatsArg,
  rotated,
  type Row,
  rt,
  scriptArgs,
  spawnSelf,
} from "./_harness.ts";
import type { RuntimeName } from "../scripts/_runtimes.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const LIMIT_MS = 1000;
/** The name of the paired workload; `--only` with a part of it runs just that. */
const PAIRED = "paired ping-pong 64 B";

interface Workload {
  name: string;
  kind: "one-way" | "ping-pong";
  size: number;
  count: number;
  unit: string;
}

const WORKLOADS: Workload[] = [
  { name: "one-way 64 B writes", kind: "one-way", size: 64, count: 2_000_000, unit: "MB/s" },
  { name: "one-way 4 KiB writes", kind: "one-way", size: 4096, count: 400_000, unit: "MB/s" },
  { name: "ping-pong 64 B", kind: "ping-pong", size: 64, count: 200_000, unit: "rt/s" },
];

const args = scriptArgs();
const runtime = rt.name as RuntimeName;

if (args[0] === "paired") {
  // The child of the paired ping-pong: one connection to each server, blocks of trips in turn.
  const [, impl, rawPath, connPath] = args as [string, string, string, string];
  await pairedTrips(
    await implFor("raw", runtime),
    await implFor(impl, runtime),
    rawPath,
    connPath,
    LIMIT_MS * 3,
  );
} else if (args[0] === "peer") {
  // The child: connect, then write or ping, and report.
  const [, kind, impl, path, size, count] = args;
  const peer = await (await implFor(impl!, runtime)).connect(path!);
  const chunk = new Uint8Array(Number(size)).fill(1);
  if (kind === "one-way") {
    const writes = await peer.flood(chunk, Number(count), LIMIT_MS);
    console.log(JSON.stringify({ writes }));
  } else {
    console.log(JSON.stringify(await pingPong(peer, chunk, Number(count), LIMIT_MS)));
  }
  // Let the stream end reach the other side before exiting.
  await new Promise((r) => setTimeout(r, 50));
  peer.close();
} else {
  const repeats = repeatsArg(5);
  const dir = await rt.fs.makeTempDir("dk-bench-");
  const rows: Row[] = [];
  const only = args.includes("--only") ? args[args.indexOf("--only") + 1]! : "";
  for (const w of WORKLOADS.filter((w) => w.name.includes(only))) {
    rows.push(
      ...await rotated(
        w,
        runtime === "deno" && w.kind === "one-way" ? ["raw", RAW_FRESH, "conn"] : ["raw", "conn"],
        repeats,
        (impl, i) => once(w, impl, `${dir}/b${i}${impl}.sock`),
      ),
    );
  }
  const paired = PAIRED.includes(only)
    ? await pairedRuns(
      ["conn", RAW_STREAMS],
      repeats,
      (impl, i) => pairedOnce(impl, `${dir}/p${i}`),
    )
    : [];
  await rt.fs.remove(dir, { recursive: true });
  if (args.includes("--json")) {
    console.log(JSON.stringify({ runtime, version: rt.version, rows, paired }));
  } else {
    printTable(rows, "raw");
    printPaired(`${PAIRED}: Conn ÷ raw`, paired);
  }
}

/**
 * One paired ping-pong: this process echoes on two sockets, raw and `impl`; the child makes
 * round trips on both in turn and returns the ratios of their rates.
 */
async function pairedOnce(impl: string, prefix: string): Promise<number[]> {
  const [rawPath, connPath] = [`${prefix}raw.sock`, `${prefix}conn.sock`];
  return await pairedServe(
    await implFor("raw", runtime),
    await implFor(impl, runtime),
    rawPath,
    connPath,
    () => spawnSelf(SCRIPT, ["paired", impl, rawPath, connPath]),
  );
}

/** One measurement: listen here, start the writing or pinging child, return its rate. */
async function once(w: Workload, impl: string, path: string): Promise<number> {
  const measured = await serveOnce(
    impl,
    runtime,
    path,
    w.kind,
    () => spawnSelf(SCRIPT, ["peer", w.kind, impl, path, String(w.size), String(w.count)]),
  );
  const rate = "bytes" in measured
    ? measured.bytes / 1e6 / (measured.ms / 1000)
    : measured.trips / (measured.ms / 1000);
  return rate;
}
