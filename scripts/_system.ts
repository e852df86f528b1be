/**
 * The Debian packages the tests and benchmarks use, installed on demand: `ensureCommands()`
 * looks each command up on PATH and installs the packages of the missing ones with apt-get
 * (as root, the way CI and the development machines run). Runs under Node.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import process from "node:process";

/** A command the tests need, and the Debian package that provides it. */
export interface SystemCommand {
  command: string;
  debian: string;
}

/** What the test suite runs besides the three runtimes. */
export const TEST_COMMANDS: readonly SystemCommand[] = [
  { command: "socat", debian: "socat" },
  { command: "nc", debian: "netcat-openbsd" },
];

/** What the benchmarks run: the peers they compare against. */
export const BENCH_COMMANDS: readonly SystemCommand[] = [
  { command: "nats-server", debian: "nats-server" },
  { command: "redis-server", debian: "redis-server" },
];

function onPath(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

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
  const missing = commands.filter((c) => !onPath(c.command));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((c) => c.debian))];
  if (process.getuid?.() !== 0 || !onPath("apt-get")) {
    throw new Error(
      `The tests need ${missing.map((c) => c.command).join(", ")}: install the Debian ` +
        `package(s) ${packages.join(" ")} (apt-get install ${packages.join(" ")})`,
    );
  }
  console.log(`Installing ${packages.join(" ")} with apt-get`);
  run("apt-get", ["update", "-q"]);
  run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...packages]);
  const still = commands.filter((c) => !onPath(c.command));
  if (still.length > 0) {
    throw new Error(`Still missing after apt-get: ${still.map((c) => c.command).join(", ")}`);
  }
}
