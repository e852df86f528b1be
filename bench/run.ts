/**
 * Runs every benchmark under Deno, Bun and Node 24, one runtime after another (the machine has
 * two cores: runtimes side by side would measure each other). `npm run bench [-- --repeats N]`.
 * Where `taskset` exists, the measuring process runs on CPU 0 and its peers (our servers and the
 * peers' servers alike) on CPU 1, which makes the figures of two processes far less noisy on a
 * shared machine.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import process from "node:process";
import { command, ROOT, RUNTIMES } from "../scripts/_runtimes.ts";
import { BENCH_COMMANDS, ensureCommands } from "../scripts/_system.ts";

const extra = process.argv.slice(2);
const benches = [
  "bench/transport.ts",
  "bench/frame.ts",
  "bench/hub.ts",
  "bench/rpc.ts",
  "bench/hub_remote.ts",
  "bench/wal.ts",
];
// The RPC benchmark compares against NATS: nats-server comes from Debian.
ensureCommands(BENCH_COMMANDS);
let failed = 0;
const pin = cpus().length >= 2 && spawnSync("taskset", ["-c", "0", "true"]).status === 0;
console.log(`machine: ${cpus().length} cpus, ${cpus()[0]?.model}`);
for (const bench of benches) {
  for (const runtime of RUNTIMES) {
    const { cmd, args } = command(runtime, `${ROOT}${bench}`, extra);
    const pinned = pin ? ["taskset", ["-c", "0", cmd, ...args]] as const : [cmd, args] as const;
    const result = spawnSync(pinned[0], pinned[1], {
      cwd: ROOT,
      stdio: "inherit",
      env: pin ? { ...process.env, DOCKIPC_BENCH_CHILD_CPU: "1" } : process.env,
    });
    if (result.status !== 0) failed++;
  }
}
process.exit(failed ? 1 : 0);
