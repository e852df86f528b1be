/**
 * The layering check of the gate: dependency-cruiser with the rules of `.dependency-cruiser.json`
 * (no import circle, no import upwards, no `_private` file from another folder, no `node:`
 * module outside `src/runtime/`, no package at all), then a scan of `src/` for the runtimes'
 * globals (`Deno.`, `Bun.`, `process.`) outside `src/runtime/`, which no import shows.
 * Comment lines (JSDoc examples among them) are not code and are passed over.
 *
 * Usage: `node scripts/check_layers.ts` (Node 24, as `npm test` runs it). Exits non-zero on any
 * violation.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { ROOT } from "./_runtimes.ts";

const cruise = spawnSync(
  process.execPath,
  [
    `${ROOT}node_modules/dependency-cruiser/bin/dependency-cruise.mjs`,
    "--config",
    ".dependency-cruiser.json",
    "--output-type",
    "err-long",
    "src",
    "mod.ts",
  ],
  { cwd: ROOT, stdio: "inherit" },
);

const GLOBALS = /\b(Deno|Bun)\.|\bglobalThis\.process\b|(^|[^.\w])process\./;
const COMMENT = /^\s*(\*|\/\/|\/\*)/;

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(`${ROOT}${dir}`, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

const leaks: string[] = [];
for (const path of sources("src")) {
  if (path.startsWith("src/runtime/")) continue;
  readFileSync(`${ROOT}${path}`, "utf8").split("\n").forEach((line, i) => {
    if (!COMMENT.test(line) && GLOBALS.test(line)) leaks.push(`${path}:${i + 1}: ${line.trim()}`);
  });
}
if (leaks.length > 0) {
  console.log("runtime globals used outside src/runtime/ (move them behind the runtime layer):");
  for (const leak of leaks) console.log(`  ${leak}`);
} else {
  console.log("✔ no runtime globals outside src/runtime/");
}
process.exit(cruise.status === 0 && leaks.length === 0 ? 0 : 1);
