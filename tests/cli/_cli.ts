/**
 * Runs the `dockipc` program as a child process under a runtime: to completion, with its output
 * and exit code, or in the background, for the commands that run until stopped.
 *
 * @module
 */

import { type Child, ROOT, rt, type RuntimeName, spawnScript } from "../_helpers.ts";
import { command } from "../../scripts/_runtimes.ts";

/** The program's entry point. */
export const CLI = `${ROOT}src/cli/mod.ts`;

/** How a finished run went. */
export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `dockipc ARGS` under `runtime` to its end, `stdin` piped in when given. */
export async function runCli(
  runtime: RuntimeName,
  args: readonly string[],
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<CliRun> {
  const run = command(runtime, CLI, args);
  const child = rt.spawn(run.cmd, run.args, {
    cwd: ROOT,
    stdin: options.stdin === undefined ? "null" : "pipe",
    stdout: "pipe",
    stderr: "pipe",
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const writing = options.stdin === undefined ? undefined : (async () => {
    const writer = child.stdin!.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  })();
  const [stdout, stderr, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.status,
    writing,
  ]);
  return { code: status.code, stdout, stderr };
}

/** Starts `dockipc ARGS` under `runtime` in the background: its output as lines. */
export function startCli(
  runtime: RuntimeName,
  args: readonly string[],
  options: { env?: Record<string, string> } = {},
): Child {
  return spawnScript(runtime, CLI, args, options);
}

/** The JSON lines of an output. */
export function jsonLines(text: string): unknown[] {
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}
