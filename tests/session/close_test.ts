/**
 * Nothing accepted is lost on close: publishers that never flush and exit right after
 * `close()` or `await using`, a reconnection in the middle, and a server that closes with
 * requests in flight; and `abort()`, which says it discards, does.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connectHub, Hub, serveHub } from "../../src/hub/mod.ts";
import { dial, serve } from "../../src/rpc/mod.ts";
import { rt, RUNTIMES, spawnFixture, tempDir, until } from "../_helpers.ts";

const text = new TextDecoder();
/** Long enough to stress the last batches, small enough for the suite on two cores. */
const COUNT = 20_000;

describe("close() loses nothing accepted", () => {
  test(
    "publishers of every runtime exit right after close() or `await using`: subscribers of every runtime get all",
    { timeout: 180_000 },
    async () => {
      await using dir = await tempDir();
      const path = `${dir.path}/hub.sock`;
      await using hub = new Hub();
      await using _server = await serveHub(hub, path);
      const topics = RUNTIMES.map((name) => `close.${name}`);
      const subscribers = RUNTIMES.map((name) =>
        spawnFixture(name, "hub_collect.ts", [path, String(COUNT), topics.join(",")])
      );
      try {
        for (const s of subscribers) assert.equal(await s.line(60_000), "subscribed");
        // Each runtime closes one way here and the other way when the suite runs on another.
        const host = RUNTIMES.indexOf(rt.name);
        const publishers = RUNTIMES.map((name, i) =>
          spawnFixture(name, "hub_pub_close.ts", [
            path,
            String(COUNT),
            `close.${name}`,
            (i + host) % 2 === 0 ? "close" : "dispose",
          ])
        );
        try {
          for (const p of publishers) {
            assert.equal(await p.line(120_000), "done");
            assert.equal((await p.status).code, 0);
          }
          for (const [i, s] of subscribers.entries()) {
            assert.equal(await s.line(120_000), "ok", `the ${RUNTIMES[i]} subscriber`);
          }
        } finally {
          for (const p of publishers) await p[Symbol.asyncDispose]();
        }
      } finally {
        for (const s of subscribers) await s[Symbol.asyncDispose]();
      }
    },
  );

  test(
    "a publisher whose server shuts down and comes back in the middle loses nothing, in order",
    { timeout: 120_000 },
    async () => {
      await using dir = await tempDir();
      const path = `${dir.path}/hub.sock`;
      await using hub = new Hub();
      // A small "block" buffer holds the publisher back, so the shutdown comes mid-stream.
      const sub = hub.subscribe("close.>", { buffer: 1000 });
      let server = await serveHub(hub, path);
      const other = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 1) % RUNTIMES.length]!;
      await using publisher = spawnFixture(other, "hub_pub_close.ts", [
        path,
        String(COUNT),
        "close.x",
        "close",
        "4096",
      ]);
      let finished = false;
      const done = publisher.line(60_000).finally(() => (finished = true));
      let next = 0;
      const take = async (upTo: number): Promise<void> => {
        while (next < upTo) {
          const { value, done } = await sub.next();
          assert.equal(done, false);
          assert.equal(new DataView(value!.data.buffer, value!.data.byteOffset).getUint32(0), next);
          next++;
        }
      };
      await take(COUNT / 4);
      const taking = take(COUNT);
      // GOAWAY: the publisher sends nothing more there, and the server reads what it sent.
      await server.shutdown();
      assert.equal(finished, false, "the publisher was still publishing when its server went");
      server = await serveHub(hub, path);
      try {
        assert.equal(await done, "done");
        await taking;
        assert.equal(next, COUNT);
      } finally {
        await server.close();
      }
    },
  );

  test(
    "an RPC server that closes with requests in flight sends every reply before its process ends",
    { timeout: 60_000 },
    async () => {
      await using dir = await tempDir();
      const path = `${dir.path}/rpc.sock`;
      await using server = spawnFixture(rt.name, "rpc_server.ts", [path]);
      assert.equal(await server.line(), "ready");
      await using client = await dial(path, { reconnect: false });
      const slow = Array.from({ length: 50 }, (_, i) => client.request(`slow:${50 + i}`));
      // Read in order: by its answer, every slow request is running on the server.
      assert.equal(text.decode(await client.request("close")), "closing");
      const replies = await Promise.all(slow);
      assert.equal(replies.filter((r) => text.decode(r).startsWith("slow done")).length, 50);
      assert.equal(await server.line(), "closed");
      assert.equal((await server.status).code, 0);
    },
  );

  test("RPC drain() lets the requests already made finish, refuses new ones, then closes", async () => {
    await using dir = await tempDir();
    await using server = await serve(`${dir.path}/rpc.sock`, async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return request;
    });
    const client = await dial(server.addr);
    const inflight = Array.from({ length: 100 }, (_, i) => client.request(String(i)));
    const draining = client.drain();
    await assert.rejects(client.request("late"), { code: "ECLOSED" });
    const replies = await Promise.all(inflight);
    assert.deepEqual(replies.map((r) => Number(text.decode(r))), [...Array(100).keys()]);
    await draining;
    assert.equal(client.connected, false);
  });

  test("hub drain(): the server sends what it holds as the reader makes room, then ends the subscription", async () => {
    await using dir = await tempDir();
    await using hub = new Hub();
    await using _server = await serveHub(hub, `${dir.path}/hub.sock`);
    const client = await connectHub(`${dir.path}/hub.sock`);
    const sub = client.subscribe("drain.>", { buffer: 100 });
    await client.flush();
    // The client reads nothing yet: the server holds 100 for want of credit, and the rest of
    // the publishers wait on its full "block" buffer.
    const published = Array.from({ length: 500 }, (_, i) => hub.publish("drain.x", String(i)));
    await until(
      () => sub.stats().pending === 100 && (hub.stats().subscriptions[0]?.pending ?? 0) >= 100,
      5000,
      "the client to have 100 and the server to hold more",
    );
    const draining = client.drain();
    const got: string[] = [];
    for await (const m of sub) got.push(text.decode(m.data));
    await draining;
    await Promise.all(published);
    assert.deepEqual(got, Array.from({ length: 500 }, (_, i) => String(i)));
    assert.equal(hub.stats().subscriptions.length, 0, "the server's subscription is gone");
  });

  test("abort() discards what was not written and says so; close() after abort() resolves", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/hub.sock`;
    await using hub = new Hub();
    await using _server = await serveHub(hub, path);
    const sub = hub.subscribe("gone.>");
    const client = await connectHub(path);
    const data = new Uint8Array(1024);
    // 2 MiB: more than a socket's buffers hold, so the last ones are still here at abort().
    const publishes = Array.from({ length: 2000 }, () => client.publish("gone.x", data));
    client.abort();
    await client.close();
    await assert.rejects(client.publish("gone.x", data), { code: "ECLOSED" });
    for (const outcome of await Promise.allSettled(publishes)) {
      if (outcome.status === "rejected") assert.equal(outcome.reason.code, "ECLOSED");
    }
    await hub.close();
    let got = 0;
    for await (const _ of sub) got++;
    assert.ok(got < 2000, `abort() discarded some: ${got} of 2000 arrived`);
  });
});
