/**
 * The Debian packages the tests and benchmarks use. `ensureCommands()` looks each command up on
 * PATH and installs the packages of the missing ones with apt-get (as root, the way CI and the
 * development machines run): `.ci/run` does so for the tests (`node scripts/_system.ts test`),
 * `npm run bench` for the benchmarks. `npm test` installs nothing. Runs under Node.
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

/** The commands of `commands` that are not on PATH. */
export function missingCommands(commands: readonly SystemCommand[]): SystemCommand[] {
  return commands.filter((c) => !onPath(c.command));
}

/** Installs the packages of the commands not on PATH; throws if that is not possible. */
export function ensureCommands(commands: readonly SystemCommand[]): void {
  const missing = missingCommands(commands);
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

// `node scripts/_system.ts test`: what `.ci/run` runs before the tests.
if (import.meta.main && process.argv[2] === "test") ensureCommands(TEST_COMMANDS);
