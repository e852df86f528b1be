import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { command } from "../../scripts/_runtimes.ts";
import { readAll, ROOT, rt, RUNTIMES } from "../_helpers.ts";

describe(`Runtime.spawn on ${rt.name}`, () => {
  for (const child of RUNTIMES) {
    test(`spawn() runs a ${child} child with piped stdin and stdout and reports its exit code`, {
      timeout: 60_000,
    }, async () => {
      const { cmd, args } = command(child, `${ROOT}tests/fixtures/stdio_echo.ts`, ["3"]);
      const proc = rt.spawn(cmd, args, { stdin: "pipe", stdout: "pipe" });
      assert.ok(proc.pid > 0);
      const out = readAll(proc.stdout!);
      const writer = proc.stdin!.getWriter();
      await writer.write(new TextEncoder().encode("from the parent"));
      await writer.close();
      assert.equal(new TextDecoder().decode(await out).trim(), "FROM THE PARENT");
      assert.deepEqual(await proc.status, { code: 3, signal: null, success: false });
    });
  }

  test("kill() ends a child and the status names the signal", { timeout: 30_000 }, async () => {
    const proc = rt.spawn("sleep", ["30"], { stdout: "null" });
    proc.kill("SIGKILL");
    assert.deepEqual(await proc.status, { code: null, signal: "SIGKILL", success: false });
  });

  test("spawn() of a missing program fails with ENOENT", async () => {
    await assert.rejects(
      (async () => await rt.spawn("/nonexistent/dockipc-program", []).status)(),
      { code: "ENOENT" },
    );
  });
});
