import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, IpcError, listen, type Listener } from "../mod.ts";
import { echoMismatch, pattern, readAll, rt, RUNTIMES, spawnFixture, tempDir } from "./_helpers.ts";

const T = { timeout: 120_000 };
const SIZE = 1 << 20;

function echo(listener: Listener): Promise<void> {
  return (async () => {
    for await (const conn of listener) {
      conn.readable.pipeTo(conn.writable).catch(() => conn.close());
    }
  })();
}

async function echoOnce(address: string, seed: number): Promise<string | undefined> {
  return echoMismatch(await connect(address, { timeout: 10_000 }), pattern(SIZE, seed), seed);
}

describe(`${rt.name} with child processes of every runtime`, () => {
  for (const transport of ["unix", "tcp"] as const) {
    test(
      `a ${rt.name} ${transport} listener serves Deno, Bun and Node child clients at once`,
      T,
      async () => {
        await using dir = await tempDir();
        await using listener = await listen(
          transport === "unix" ? `${dir.path}/x.sock` : "tcp://127.0.0.1:0",
        );
        void echo(listener);
        const address = transport === "unix"
          ? `unix:${dir.path}/x.sock`
          : `127.0.0.1:${listener.addr.transport === "tcp" ? listener.addr.port : 0}`;
        const children = RUNTIMES.map((name, i) =>
          spawnFixture(name, "echo_client.ts", [address, String(SIZE), String(i)])
        );
        try {
          const reports = await Promise.all(
            children.map((c) => c.line(60_000).then((l) => JSON.parse(l))),
          );
          assert.deepEqual(
            reports.map((r) => [r.runtime, r.bytes, r.ok, r.mismatch]),
            RUNTIMES.map((name) => [name, SIZE, true, undefined]),
          );
          for (const c of children) assert.equal((await c.status).code, 0);
        } finally {
          for (const c of children) await c[Symbol.asyncDispose]();
        }
      },
    );
  }

  for (const server of RUNTIMES) {
    test(`a ${server} child listener serves a ${rt.name} client`, T, async () => {
      await using dir = await tempDir();
      const path = `${dir.path}/${server}.sock`;
      await using child = spawnFixture(server, "echo_server.ts", [path]);
      const ready = JSON.parse(await child.line(60_000));
      assert.deepEqual(ready, { ready: `unix:${path}`, runtime: server });
      assert.deepEqual(await Promise.all([echoOnce(path, 7), echoOnce(path, 8)]), [
        undefined,
        undefined,
      ]);
    });
  }

  test(`a ${rt.name} listener outlives a client killed with SIGKILL mid-stream`, T, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/k.sock`;
    await using listener = await listen(path);
    for (const name of RUNTIMES) {
      await using child = spawnFixture(name, "flood_client.ts", [path]);
      assert.equal(await child.line(60_000), "connected");
      const conn = await listener.accept();
      const reader = conn.readable.getReader();
      assert.ok(!(await reader.read()).done, "bytes arrive");
      child.process.kill("SIGKILL");
      // The stream ends (or resets): it never hangs, and the error, if any, is ours.
      try {
        while (!(await reader.read()).done);
      } catch (err) {
        assert.ok(err instanceof IpcError && err.code === "ECONNRESET", String(err));
      }
      // The peer's direction has ended; ours stays open until we close it (half-close).
      conn.close();
      await conn.closed;
    }
    void echo(listener);
    assert.equal(await echoOnce(path, 9), undefined, "still serving");
  });

  for (const server of RUNTIMES) {
    test(
      `a ${rt.name} client sees a ${server} server killed with SIGKILL, then a new listener replaces its stale socket`,
      T,
      async () => {
        await using dir = await tempDir();
        const path = `${dir.path}/s.sock`;
        const child = spawnFixture(server, "echo_server.ts", [path]);
        await child.line(60_000);
        const conn = await connect(path);
        const writer = conn.writable.getWriter();
        await writer.write(new Uint8Array(100));
        child.process.kill("SIGKILL");
        assert.equal((await child.status).signal, "SIGKILL");
        await child[Symbol.asyncDispose]();
        try {
          await readAll(conn.readable);
        } catch (err) {
          assert.ok(err instanceof IpcError && err.code === "ECONNRESET", String(err));
        }
        conn.close();
        // SIGKILL leaves the socket file behind: nothing answers on it.
        assert.ok((await rt.fs.lstat(path)).isSocket);
        await assert.rejects(connect(path), { code: "ECONNREFUSED" });
        await using listener = await listen(path);
        void echo(listener);
        assert.equal(await echoOnce(path, 10), undefined);
      },
    );
  }
});
