/**
 * Installs with apt-get (as root, the way CI and the development machines run) the Debian
 * packages of the commands the tests or the benchmarks run, where they are missing:
 * `node scripts/install_packages.ts test` is what `.ci/run` runs before `npm test`, and
 * `npm run bench` calls {@linkcode ensureCommands} for its peers. `npm test` never installs.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import process from "node:process";
import {
  BENCH_COMMANDS,
  missingCommands,
  onPath,
  type SystemCommand,
  TEST_COMMANDS,
} from "./_system.ts";

function run(cmd: string, args: string[]): void {
  const result = spawnSync(cmd, args, {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed with status ${result.status}`);
  }
}

/** Installs the packages of the commands not on PATH; throws if that is not possible. */
export function ensureCommands(commands: readonly SystemCommand[]): void {
  const missing = missingCommands(commands);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((c) => c.debian))];
  if (process.getuid?.() !== 0 || !onPath("apt-get")) {
    throw new Error(
      `${missing.map((c) => c.command).join(", ")} missing: install the Debian ` +
        `package(s) ${packages.join(" ")} (apt-get install ${packages.join(" ")})`,
    );
  }
  console.log(`Installing ${packages.join(" ")} with apt-get`);
  run("apt-get", ["update", "-q"]);
  run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...packages]);
  const still = missingCommands(commands);
  if (still.length > 0) {
    throw new Error(`Still missing after apt-get: ${still.map((c) => c.command).join(", ")}`);
  }
}

if (import.meta.main) {
  const which = process.argv[2];
  if (which !== "test" && which !== "bench") {
    throw new Error("Usage: node scripts/install_packages.ts test|bench");
  }
  ensureCommands(which === "test" ? TEST_COMMANDS : BENCH_COMMANDS);
}
