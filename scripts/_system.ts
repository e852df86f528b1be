/**
 * The commands the tests and benchmarks run besides the three runtimes, the Debian packages
 * that provide them, and which are missing. Installs nothing: `install_packages.ts` does, for
 * `.ci/run` and `npm run bench`; `npm test` only reports what is missing. Runs under Node.
 *
 * @module
 */

import { spawnSync } from "node:child_process";

/** A command the tests need, and the Debian package that provides it. */
export interface SystemCommand {
  command: string;
  debian: string;
}

/** What the test suite runs besides the three runtimes. */
export const TEST_COMMANDS: readonly SystemCommand[] = [
  { command: "socat", debian: "socat" },
  { command: "nc", debian: "netcat-openbsd" },
  { command: "promtool", debian: "prometheus" },
  { command: "chromium", debian: "chromium" },
  { command: "openssl", debian: "openssl" },
  { command: "nats-server", debian: "nats-server" },
];

/** What the benchmarks run: the peers they compare against. */
export const BENCH_COMMANDS: readonly SystemCommand[] = [
  { command: "nats-server", debian: "nats-server" },
  { command: "redis-server", debian: "redis-server" },
];

/** Whether `command` is on PATH. */
export function onPath(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** The commands of `commands` that are not on PATH. */
export function missingCommands(commands: readonly SystemCommand[]): SystemCommand[] {
  return commands.filter((c) => !onPath(c.command));
}
