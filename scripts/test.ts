/**
 * The gate: format, lint, type check, doc lint, the layering check, the test suite on Deno, Bun
 * and Node 24 (every example of the README, `docs/` and the JSDoc among it), the npm package
 * installed and used from Node 22, Node 24, Bun and Deno, and a publish dry run. `npm test` runs
 * it under the pinned Node 24, named by its path (`node22` claims the `node` bin name too);
 * `.ci/run` calls `npm test`. Exits non-zero if any step fails, and ends with
 * one line that counts the tests of all three runtimes. Installs nothing: the few tests that run
 * a command of `TEST_COMMANDS` (socat, nc, promtool, chromium, openssl, nats-server) are skipped,
 * and say so, where it is missing (`.ci/run` installs them).
 *
 * Usage: `npm test [-- --only deno|bun|node|package|checks]`
 *
 * @module
 */

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { binary, DENO_PERMISSIONS, ROOT } from "./_runtimes.ts";
import { missingCommands, TEST_COMMANDS } from "./_system.ts";

interface Step {
  name: string;
  group: "checks" | "deno" | "bun" | "node" | "package";
  cmd: string;
  args: string[];
  /** Reads the passed and failed test counts from the step's output. */
  count?: (out: string) => { passed: number; failed: number } | undefined;
  /** The names of the failed tests in the step's output, for the summary. */
  failures?: (out: string) => string[];
}

/** The lines of `out` after the last line equal to `heading` that `pattern` matches. */
function linesAfter(out: string, heading: RegExp, pattern: RegExp): string[] {
  const lines = out.split("\n");
  let from = -1;
  lines.forEach((line, i) => {
    if (heading.test(line)) from = i;
  });
  return from < 0 ? [] : lines.slice(from + 1).filter((line) => pattern.test(line));
}

const deno = binary("deno");
const exportsMap = JSON.parse(readFileSync(`${ROOT}deno.json`, "utf8")).exports as Record<
  string,
  string
>;
const entryPoints = Object.values(exportsMap);
/** The markdown whose TypeScript blocks Deno's doc tests type-check and run, as JSDoc examples. */
const MARKDOWN = ["README.md", "docs/GUIDE.md"];

const steps: Step[] = [
  { name: "deno fmt --check", group: "checks", cmd: deno, args: ["fmt", "--check"] },
  { name: "deno lint", group: "checks", cmd: deno, args: ["lint"] },
  { name: "deno check", group: "checks", cmd: deno, args: ["check", "."] },
  { name: "deno doc --lint", group: "checks", cmd: deno, args: ["doc", "--lint", ...entryPoints] },
  {
    name: "layers (dependency-cruiser, runtime globals)",
    group: "checks",
    cmd: binary("node"),
    args: ["scripts/check_layers.ts"],
  },
  {
    name: "tests on Deno (with doc tests)",
    group: "deno",
    cmd: deno,
    args: ["test", ...DENO_PERMISSIONS, "--doc", "tests/", ...entryPoints, "src/", ...MARKDOWN],
    count: (out) => {
      const m =
        /(ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/
          .exec(out);
      if (!m) return undefined;
      // A describe() block is a test with steps: count the steps, as the other runners do.
      return { passed: Number(m[3] ?? m[2]), failed: Number(m[5] ?? m[4]) };
    },
    failures: (out) => linesAfter(out, /^\s*FAILURES\s*$/, / => \S+:\d+:\d+$/),
  },
  {
    name: "tests on Bun",
    group: "bun",
    cmd: binary("bun"),
    args: ["test", "--timeout", "120000", "tests/"],
    count: (out) => {
      const pass = /^\s*(\d+) pass$/m.exec(out);
      const fail = /^\s*(\d+) fail$/m.exec(out);
      return pass && fail ? { passed: Number(pass[1]), failed: Number(fail[1]) } : undefined;
    },
    // Bun lists each failure twice: where it ran, and again at the end.
    failures: (out) => [...new Set(out.split("\n").filter((line) => line.startsWith("(fail) ")))],
  },
  {
    name: "tests on Node 24",
    group: "node",
    cmd: binary("node"),
    // Two test files at once: most of a file's time is its children and its waits, so two
    // share the machine's two CPUs well and the step takes about a third less.
    args: ["--test", "--test-concurrency=2", "--test-timeout=120000", "tests/**/*_test.ts"],
    count: (out) => {
      const pass = /^ℹ pass (\d+)$/m.exec(out);
      const fail = /^ℹ fail (\d+)$/m.exec(out);
      return pass && fail ? { passed: Number(pass[1]), failed: Number(fail[1]) } : undefined;
    },
    failures: (out) => linesAfter(out, /^✖ failing tests:$/, /^\s*✖ /),
  },
  {
    name: "npm package: built, packed, installed; used from Node 22, Node 24, Bun and Deno",
    group: "package",
    cmd: binary("node"),
    args: ["scripts/check_package.ts"],
  },
  {
    name: "deno publish --dry-run",
    group: "checks",
    cmd: deno,
    args: ["publish", "--dry-run", "--allow-dirty"],
  },
];

function run(step: Step): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(step.cmd, step.args, {
      cwd: ROOT,
      env: {
        ...process.env,
        NO_COLOR: "1",
        FORCE_COLOR: "0",
        // Node children (hundreds across the suite) keep their compiled, type-stripped modules
        // here, so that each starts in about a third of the time. Keyed by content: never stale.
        NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? `${tmpdir()}/dockipc-node-cache`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const decoder = new TextDecoder();
    const tee = (target: { write(chunk: Uint8Array): unknown }) => (chunk: Uint8Array): void => {
      out += decoder.decode(chunk, { stream: true });
      target.write(chunk);
    };
    child.stdout.on("data", tee(process.stdout));
    child.stderr.on("data", tee(process.stderr));
    child.on("error", (err) => resolve({ code: 127, out: String(err) }));
    child.on("close", (code) => resolve({ code: code ?? 1, out }));
  });
}

/** Colour escape sequences, built from a string so the pattern holds no control character. */
const ANSI_ESCAPE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

const only = process.argv.includes("--only")
  ? process.argv[process.argv.indexOf("--only") + 1]
  : undefined;
const missing = missingCommands(TEST_COMMANDS);
if (missing.length > 0) {
  const packages = missing.map((c) => c.debian).join(" ");
  console.log(
    `${missing.map((c) => c.command).join(" and ")} missing: the tests that run them are ` +
      `skipped (apt-get install ${packages}, or run .ci/run, to run them too)`,
  );
}
const results: { name: string; ok: boolean; seconds: number; failures: string[] }[] = [];
let passed = 0;
let failed = 0;
for (const step of steps) {
  if (only && step.group !== only) continue;
  console.log(`\n=== ${step.name}`);
  const start = performance.now();
  const { code, out } = await run(step);
  let ok = code === 0;
  if (step.count) {
    // deno colours its summary even with NO_COLOR when it is not a terminal: strip escapes.
    const counted = step.count(out.replace(ANSI_ESCAPE, ""));
    if (!counted) {
      console.log(`${step.name}: could not read the test counts`);
      ok = false;
    } else {
      passed += counted.passed;
      failed += counted.failed;
      if (counted.passed === 0) {
        console.log(`${step.name}: ran no test`);
        ok = false;
      }
    }
  }
  const failures = ok ? [] : step.failures?.(out.replace(ANSI_ESCAPE, "")) ?? [];
  results.push({ name: step.name, ok, seconds: (performance.now() - start) / 1000, failures });
}

console.log("\n=== summary");
for (const r of results) {
  console.log(`${r.ok ? "ok  " : "FAIL"} ${r.name} (${r.seconds.toFixed(1)} s)`);
  // The failed tests' names, last, where a log cut to its tail still shows them.
  for (const name of r.failures.slice(0, 10)) console.log(`       failed: ${name.trim()}`);
  if (r.failures.length > 10) console.log(`       … and ${r.failures.length - 10} more`);
}
const bad = results.filter((r) => !r.ok).length;
console.log(`steps: ${results.length - bad} passed, ${bad} failed`);
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(bad === 0 && failed === 0 ? 0 : 1);
