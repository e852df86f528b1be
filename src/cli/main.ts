/**
 * The `dockipc` program: finds the command a command line names, runs it with its output and a
 * signal that SIGINT and SIGTERM abort, and turns what it throws into one line and an exit code.
 *
 * @module
 */

import { getRuntime } from "../runtime/detect.ts";
import { BENCH_COMMANDS } from "./bench_commands.ts";
import { type Command, commandHelp, parseInvocation, UsageError } from "./command.ts";
import { HUB_COMMANDS } from "./hub_commands.ts";
import { Output } from "./output.ts";
import { RPC_COMMANDS } from "./rpc_commands.ts";
import { STREAM_COMMANDS } from "./stream_commands.ts";
import { WAL_COMMANDS } from "./wal_commands.ts";

/** Every command, in the order the overview lists them. */
const COMMANDS: readonly Command[] = [
  ...HUB_COMMANDS,
  ...STREAM_COMMANDS,
  ...WAL_COMMANDS,
  ...RPC_COMMANDS,
  ...BENCH_COMMANDS,
];

const BY_NAME = new Map(COMMANDS.map((c) => [c.name, c]));

/** The exit codes: documented in `--help` and `docs/CLI.md`. */
export const EXIT = { ok: 0, error: 1, usage: 2 } as const;

function overview(group?: string): string {
  const listed = COMMANDS.filter((c) => group === undefined || c.name.startsWith(`${group} `));
  const width = Math.max(...listed.map((c) => c.name.length)) + 2;
  return [
    group === undefined
      ? "dockipc: publish, subscribe, inspect streams and logs, call daemons, measure."
      : `dockipc ${group}: its commands.`,
    "",
    `Usage: dockipc ${group ?? "COMMAND"} ${group === undefined ? "" : "COMMAND "}[ARGS] [options]`,
    "",
    "Commands:",
    ...listed.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
    "Every command takes --help (with examples) and --json (output for scripts).",
    "Hub commands talk to --server ADDRESS, else $DOCKIPC_HUB, else /tmp/dockipc-hub.sock.",
    "Exit codes: 0 done, 1 failed (one line on stderr: the error code, what went wrong, what to",
    "do), 2 a command line that does not fit its command.",
  ].join("\n");
}

/** The command `argv` names, and the arguments after its name. */
function find(argv: readonly string[]): { command: Command; rest: readonly string[] } | undefined {
  const two = BY_NAME.get(`${argv[0]} ${argv[1]}`);
  if (two !== undefined) return { command: two, rest: argv.slice(2) };
  const one = BY_NAME.get(argv[0] ?? "");
  return one === undefined ? undefined : { command: one, rest: argv.slice(1) };
}

/** Whether `name` is a group of commands (`wal`, `stream`). */
function isGroup(name: string | undefined): boolean {
  return name !== undefined && COMMANDS.some((c) => c.name.startsWith(`${name} `));
}

/**
 * Runs the `dockipc` program on `argv` (the arguments after the program's name), printing to
 * this process's standard output and error; resolves with the exit code: 0 done, 1 failed, 2 a
 * command line that does not fit. SIGINT and SIGTERM stop a command that runs until stopped
 * (`sub`, `hub serve`, `stats --watch`), which then ends cleanly with 0.
 *
 * @param argv The arguments, such as `["pub", "jobs.new", "hello"]`.
 * @returns The exit code.
 *
 * @example Ask for a command's help
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "@dockipc/dockipc/cli";
 *
 * assert.equal(await main(["wal", "verify", "--help"]), 0);
 * assert.equal(await main(["no-such-command"]), 2);
 * ```
 */
export async function main(argv: readonly string[]): Promise<number> {
  const rt = await getRuntime();
  const json = argv.includes("--json");
  const out = new Output(rt.process, json);
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    // The first asks the command to end cleanly; a second, for one that hangs, ends the process.
    if (++signals > 1) rt.process.exit(130);
    stop.abort(new Error("stopped by a signal"));
  };
  const removers = (["SIGINT", "SIGTERM"] as const).map((s) => rt.process.onSignal(s, onSignal));
  let command: Command | undefined;
  try {
    const found = find(argv);
    if (found === undefined) {
      const [first, second] = argv;
      if (first === undefined || first === "--help" || first === "-h" || first === "help") {
        await out.line(overview());
        return EXIT.ok;
      }
      if (isGroup(first) && (second === undefined || second === "--help" || second === "-h")) {
        await out.line(overview(first));
        return second === undefined ? EXIT.usage : EXIT.ok;
      }
      throw new UsageError(
        isGroup(first)
          ? `dockipc ${first} has no command "${second}"`
          : `dockipc has no command "${first}"`,
      );
    }
    command = found.command;
    const invocation = parseInvocation(command, found.rest);
    if (invocation.values.help === true) {
      await out.line(commandHelp(command));
      return EXIT.ok;
    }
    return await command.run({ ...invocation, rt, out, signal: stop.signal });
  } catch (err) {
    if (err instanceof UsageError) {
      await out.note(`dockipc: ${err.message}`);
      const help = err.command ?? command;
      await out.note(
        help === undefined
          ? 'Run "dockipc --help" for the commands.'
          : `Usage: dockipc ${help.name} ${help.usage} [options]; see "dockipc ${help.name} --help".`,
      );
      return EXIT.usage;
    }
    if (err instanceof TypeError || err instanceof RangeError) {
      // A value the command line gave that the library refuses (a bad header, a stream name).
      await out.error(err);
      return EXIT.usage;
    }
    await out.error(err);
    return EXIT.error;
  } finally {
    for (const remove of removers) remove();
    await out.flush();
  }
}
