/**
 * Builds the npm package into `dist/npm/` from the same sources as the JSR package: the
 * TypeScript compiler turns `mod.ts` and `src/` into ESM JavaScript and `.d.ts` files
 * (`tsconfig.npm.json`), and `package.json` is written from `deno.json` (name, version, license,
 * and one `exports` entry per entry point). The README, the changelog, the licence and `docs/`
 * go along. `npm run build:npm`, then `npm pack dist/npm` or `npm publish dist/npm`.
 *
 * Types are checked by `deno check` in the gate, so the compiler here only emits; the package
 * check (`scripts/check_package.ts`) type-checks a consumer against the emitted `.d.ts`.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import process from "node:process";
import { binary, ROOT } from "./_runtimes.ts";

/** Where the package is built. */
export const NPM_DIR = `${ROOT}dist/npm/`;

/** The Node versions the npm package supports, as `engines` states them. */
export const NODE_ENGINES = ">=22";

interface DenoJson {
  name: string;
  version: string;
  license: string;
  exports: Record<string, string>;
}

/** `./src/hub/mod.ts` → `./src/hub/mod` (the emitted file without its extension). */
function emitted(source: string): string {
  return source.replace(/\.ts$/, "");
}

/** Builds the package; returns its directory. Throws if the compiler fails. */
export function buildNpm(): string {
  const deno = JSON.parse(readFileSync(`${ROOT}deno.json`, "utf8")) as DenoJson;
  rmSync(NPM_DIR, { recursive: true, force: true });
  const tsc = spawnSync(
    binary("node"),
    [`${ROOT}node_modules/typescript/bin/tsc`, "-p", `${ROOT}tsconfig.npm.json`],
    { cwd: ROOT, stdio: "inherit" },
  );
  if (tsc.status !== 0) throw new Error(`tsc failed with status ${tsc.status}`);

  const exportsMap = Object.fromEntries(
    Object.entries(deno.exports).map(([subpath, source]) => [subpath, {
      types: `${emitted(source)}.d.ts`,
      default: `${emitted(source)}.js`,
    }]),
  );
  const pkg = {
    name: deno.name,
    version: deno.version,
    description: "Local inter-process communication for Deno, Bun and Node: unix sockets and " +
      "TCP as Web Streams, framing, RPC, a pub/sub hub and a write-ahead log",
    license: deno.license,
    type: "module",
    exports: exportsMap,
    // The dockipc program, for `npx dockipc` and a global install.
    bin: { dockipc: `${emitted(deno.exports["./cli"]!)}.js` },
    engines: { node: NODE_ENGINES },
    sideEffects: false,
    keywords: ["ipc", "unix-socket", "rpc", "pubsub", "write-ahead-log", "deno", "bun"],
  };
  writeFileSync(`${NPM_DIR}package.json`, JSON.stringify(pkg, null, 2) + "\n");
  for (const file of ["README.md", "LICENSE", "CHANGELOG.md"]) {
    cpSync(`${ROOT}${file}`, `${NPM_DIR}${file}`);
  }
  cpSync(`${ROOT}docs`, `${NPM_DIR}docs`, { recursive: true });
  return NPM_DIR;
}

if (import.meta.main) {
  buildNpm();
  console.log(`built ${NPM_DIR}`);
  process.exit(0);
}
