/**
 * Every example in the README, `docs/` and the JSDoc runs as written, from the sources, on the
 * runtime running this test (so on Deno, Bun and Node across the gate), and its process ends by
 * itself with status 0: an example that hangs, throws or leaves something open fails here.
 */

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { examples, redirectImports } from "../scripts/_examples.ts";
import { command } from "../scripts/_runtimes.ts";
import { runtimeName } from "../src/runtime/platform.ts";
import { readAll, ROOT, rt, tempDir } from "./_helpers.ts";

/** How long an example may take before it counts as hanging. */
const LIMIT_MS = 60_000;

const exportsMap = JSON.parse(readFileSync(`${ROOT}deno.json`, "utf8")).exports as Record<
  string,
  string
>;

function sourceOf(subpath: string): string {
  const file = exportsMap[subpath];
  if (file === undefined) {
    throw new Error(`an example imports ${subpath}, which deno.json does not export`);
  }
  return new URL(file, `file://${ROOT}`).href;
}

describe("examples", () => {
  const all = examples(ROOT);

  test("there are examples to run, each importing the package", () => {
    assert.ok(all.length >= 40, `only ${all.length} examples found`);
  });

  for (const example of all) {
    test(example.where, async () => {
      await using dir = await tempDir();
      const file = `${dir.path}/example.ts`;
      writeFileSync(file, redirectImports(example.code, sourceOf));
      const run = command(runtimeName(), file);
      const child = rt.spawn(run.cmd, run.args, { cwd: dir.path, stdout: "pipe", stderr: "pipe" });
      const output = Promise.all([readAll(child.stdout!), readAll(child.stderr!)]);
      const timer = setTimeout(() => child.kill("SIGKILL"), LIMIT_MS);
      const status = await child.status.finally(() => clearTimeout(timer));
      const [out, err] = (await output).map((b) => new TextDecoder().decode(b));
      assert.equal(
        status.code,
        0,
        `${example.where} ${
          status.signal === "SIGKILL"
            ? `did not end within ${LIMIT_MS} ms`
            : `exited ${status.code}`
        } on ${runtimeName()}\n--- stdout\n${out}--- stderr\n${err}`,
      );
    });
  }
});
