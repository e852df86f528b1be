/**
 * Runs every benchmark under Deno, Bun and Node 24, one runtime after another (the machine has
 * two cores: runtimes side by side would measure each other). `npm run bench [-- --repeats N]`.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import process from "node:process";
import { command, ROOT, RUNTIMES } from "../scripts/_runtimes.ts";

const extra = process.argv.slice(2);
const benches = ["bench/transport.ts"];
let failed = 0;
console.log(
  `machine: ${(await import("node:os")).cpus().length} cpus, ${
    (await import("node:os")).cpus()[0]?.model
  }`,
);
for (const bench of benches) {
  for (const runtime of RUNTIMES) {
    const { cmd, args } = command(runtime, `${ROOT}${bench}`, extra);
    const result = spawnSync(cmd, args, { cwd: ROOT, stdio: "inherit" });
    if (result.status !== 0) failed++;
  }
}
process.exit(failed ? 1 : 0);
