/**
 * Runs every benchmark under Deno, Bun and Node 24, one runtime after another (the machine has
 * two cores: runtimes side by side would measure each other). `npm run bench [-- --repeats N]`.
 * A full run (no `--only`) rewrites the section "Latest run" of `docs/BENCHMARKS.md` with what
 * each benchmark printed, the machine, the date and the commit.
 * Where `taskset` exists, the measuring process runs on CPU 0 and its peers (our servers and the
 * peers' servers alike) on CPU 1, which makes the figures of two processes far less noisy on a
 * shared machine.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import process from "node:process";
import { command, ROOT, RUNTIMES } from "../scripts/_runtimes.ts";
import { BENCH_COMMANDS } from "../scripts/_system.ts";
import { ensureCommands } from "../scripts/install_packages.ts";

const extra = process.argv.slice(2);
const benches = [
  "bench/transport.ts",
  "bench/frame.ts",
  "bench/hub.ts",
  "bench/rpc.ts",
  "bench/hub_remote.ts",
  "bench/wal.ts",
  "bench/stream.ts",
  "bench/flow.ts",
  "bench/tls.ts",
];
// The RPC benchmark compares against NATS: nats-server comes from Debian.
ensureCommands(BENCH_COMMANDS);
let failed = 0;
const pin = cpus().length >= 2 && spawnSync("taskset", ["-c", "0", "true"]).status === 0;
const machine = `machine: ${cpus().length} cpus, ${cpus()[0]?.model}`;
console.log(machine);
const report: string[] = [];
for (const bench of benches) {
  for (const runtime of RUNTIMES) {
    const { cmd, args } = command(runtime, `${ROOT}${bench}`, extra);
    const pinned = pin ? ["taskset", ["-c", "0", cmd, ...args]] as const : [cmd, args] as const;
    const result = spawnSync(pinned[0], pinned[1], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
      env: pin ? { ...process.env, DOCKIPC_BENCH_CHILD_CPU: "1" } : process.env,
    });
    process.stdout.write(result.stdout ?? "");
    report.push(`### \`${bench}\` on ${runtime}\n\n${(result.stdout ?? "").trim()}\n`);
    if (result.status !== 0) failed++;
  }
}
if (!extra.includes("--only")) writeLatestRun(report);
process.exit(failed ? 1 : 0);

/** Puts this run's output between the markers of `docs/BENCHMARKS.md`. */
function writeLatestRun(sections: readonly string[]): void {
  const path = `${ROOT}docs/BENCHMARKS.md`;
  const doc = readFileSync(path, "utf8");
  const begin = "<!-- bench:begin -->";
  const end = "<!-- bench:end -->";
  const head = doc.indexOf(begin);
  const tail = doc.indexOf(end);
  if (head < 0 || tail < head) {
    console.log(`${path} has no ${begin} … ${end} section: not written`);
    return;
  }
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" })
    .stdout?.trim() || "unknown";
  const when = new Date().toISOString().slice(0, 10);
  const body = [
    `\`npm run bench${
      extra.length ? ` -- ${extra.join(" ")}` : ""
    }\` at ${commit}, ${when}; ${machine}.`,
    "",
    ...sections,
  ].join("\n");
  writeFileSync(path, `${doc.slice(0, head + begin.length)}\n${body}\n${doc.slice(tail)}`);
  console.log(`wrote the latest run into ${path}`);
}
