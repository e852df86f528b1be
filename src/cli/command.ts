/**
 * What a command of the `dockipc` program is: its name, options, help and body, and the context
 * it runs in. Parsing is `node:util`'s `parseArgs`; a bad command line is a {@linkcode UsageError}
 * (exit code 2).
 *
 * @module
 */

import { parseArgs } from "../runtime/parse_args.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Output } from "./output.ts";

/** One option of a command, as `parseArgs` takes it, with its help. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
  readonly multiple?: boolean;
  /** Shown in `--help`: what it does, and its default. */
  readonly help: string;
  /** The value's name in `--help` (`N`, `DIR`). */
  readonly arg?: string;
}

/** The parsed command line of one command. */
export interface Invocation {
  /** The positional arguments after the command's name. */
  readonly args: readonly string[];
  /** Each option given, by name. */
  readonly values: Readonly<Record<string, string | boolean | string[] | boolean[] | undefined>>;
}

/** What a command's body gets. */
export interface Context extends Invocation {
  readonly rt: Runtime;
  readonly out: Output;
  /** Aborts on SIGINT or SIGTERM: a command that runs until stopped ends cleanly then. */
  readonly signal: AbortSignal;
}

/** A command of the program: `pub`, or one of a group such as `wal verify`. */
export interface Command {
  /** `"pub"`, `"wal verify"`. */
  readonly name: string;
  /** One line, for the list of commands. */
  readonly summary: string;
  /** The arguments after the name, as `--help` shows them: `TOPIC [DATA]`. */
  readonly usage: string;
  /** How many positional arguments it takes, at least and at most. */
  readonly arity: readonly [number, number];
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Command lines shown under `--help`, each with what it does. */
  readonly examples: readonly (readonly [string, string])[];
  /** Runs it; resolves with the exit code. */
  run(context: Context): Promise<number>;
}

/** Options every command takes. */
export const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  json: { type: "boolean", help: "Print JSON for scripts instead of text for people" },
  help: { type: "boolean", short: "h", help: "Show this help" },
};

/** Options of every command that connects to a server. */
export const CONNECT_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  "token-file": {
    type: "string",
    arg: "FILE",
    help: "Read the server's token from FILE (not readable by group or others)",
  },
  app: { type: "string", arg: "NAME", help: 'The handshake\'s application id (default "dockipc")' },
  "tls-ca": {
    type: "string",
    arg: "FILE",
    help: "tls://: trust the authority in FILE (PEM) for the other side's certificate",
  },
  "tls-cert": {
    type: "string",
    arg: "FILE",
    help: "tls://: present the certificate in FILE (PEM)",
  },
  "tls-key": { type: "string", arg: "FILE", help: "tls://: the private key of --tls-cert (PEM)" },
  "tls-server-name": {
    type: "string",
    arg: "NAME",
    help: "tls://: the name the server's certificate must hold (default: the host)",
  },
};

/** A command line that does not fit its command: exit code 2, with the command's usage. */
export class UsageError extends Error {
  readonly command: Command | undefined;
  constructor(message: string, command?: Command) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

/** Parses `argv` (after the command's name) for `command`. */
export function parseInvocation(command: Command, argv: readonly string[]): Invocation {
  const options = { ...GLOBAL_OPTIONS, ...command.options };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          {
            type: o.type,
            ...(o.short === undefined ? {} : { short: o.short }),
            ...(o.multiple === undefined ? {} : { multiple: o.multiple }),
          },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err), command);
  }
  const { positionals, values } = parsed;
  const [min, max] = command.arity;
  if (values.help !== true && (positionals.length < min || positionals.length > max)) {
    throw new UsageError(
      positionals.length < min
        ? `dockipc ${command.name} needs ${command.usage}`
        : `dockipc ${command.name} takes ${command.usage}: got ${positionals.length} arguments`,
      command,
    );
  }
  return { args: positionals, values: values as Invocation["values"] };
}

/** `--help` for one command. */
export function commandHelp(command: Command): string {
  const options = { ...command.options, ...GLOBAL_OPTIONS };
  const flags = Object.entries(options).map(([name, o]) => {
    const short = o.short === undefined ? "    " : `-${o.short}, `;
    const arg = o.type === "string" ? ` ${o.arg ?? "VALUE"}` : "";
    return [`  ${short}--${name}${arg}`, o.help] as const;
  });
  const width = Math.max(...flags.map(([f]) => f.length)) + 2;
  let text = `${command.summary}\n\nUsage: dockipc ${command.name}${
    command.usage === "" ? "" : ` ${command.usage}`
  } [options]\n\nOptions:\n`;
  for (const [flag, help] of flags) text += `${flag.padEnd(width)}${help}\n`;
  if (command.examples.length > 0) {
    text += "\nExamples:\n";
    for (const [line, what] of command.examples) text += `  # ${what}\n  dockipc ${line}\n`;
  }
  return text;
}

/** A string option's value, or `fallback`. */
export function stringOption(context: Invocation, name: string): string | undefined {
  const v = context.values[name];
  return typeof v === "string" ? v : undefined;
}

/** A whole-number option's value (at least `min`), or `fallback`; a bad one is a usage error. */
export function intOption(
  context: Invocation,
  name: string,
  fallback: number,
  min = 1,
): number {
  const v = stringOption(context, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`--${name} must be a whole number of at least ${min}: got "${v}"`);
  }
  return n;
}
