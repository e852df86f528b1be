/**
 * The hub's flow features across a socket: delayed publishes and their bound per connection,
 * cancelling, per-connection rate limits, priority in the server's buffer, and ordered
 * subscriptions whose gaps (the server's drops, a reconnection) reach the client.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connectHub, Hub, NOT_BEFORE_HEADER, serveHub } from "../../src/hub/mod.ts";
import { rejectsWith, tempDir, until } from "../_helpers.ts";
import { served } from "./_served.ts";

const text = new TextDecoder();

describe("flow across a socket", () => {
  test("a delayed publish is answered once scheduled, delivered when due, and can be cancelled", async () => {
    await using s = await served();
    await using a = await connectHub(s.path);
    await using b = await connectHub(s.path);
    const sub = b.subscribe("later");
    await b.flush();
    const due = Date.now() + 80;
    assert.equal(await a.publish("later", "kept", { notBefore: due }), undefined);
    await a.publish("later", "cancelled", { delay: 60_000, id: "c-1" });
    assert.equal(s.server.connectionStats().find((c) => c.scheduled > 0)?.scheduled, 2);
    assert.equal(await a.cancel("c-1"), true);
    assert.equal(await a.cancel("c-1"), false);
    const { value } = await sub.next();
    assert.equal(text.decode(value!.data), "kept");
    assert.ok(Date.now() >= due);
    assert.equal(value!.headers[NOT_BEFORE_HEADER], String(due));
    await rejectsWith(a.publish("later", "x", { delay: -1 }), "EINVAL", /delay is -1/);
  });

  test("a client's flood of delayed messages stops at its bound; others go on", async () => {
    await using s = await served({ maxScheduled: 500 });
    await using flooder = await connectHub(s.path);
    await using other = await connectHub(s.path);
    const sub = other.subscribe("live");
    await other.flush();
    const results = await Promise.allSettled(
      Array.from({ length: 3000 }, (_, i) => flooder.publish("flood", `${i}`, { delay: 60_000 })),
    );
    const refused = results.filter((r) => r.status === "rejected");
    assert.equal(refused.length, 2500);
    const reason = (refused[0] as PromiseRejectedResult).reason;
    assert.equal(reason.code, "ELIMIT");
    assert.match(
      reason.message,
      /connection \d+ has 500 waiting already \(serveHub\(\)'s maxScheduled\)/,
    );
    assert.equal(s.hub.stats().scheduled.waiting, 500);
    // The hub still serves everyone, the flooder too.
    await other.publish("live", "hello");
    assert.equal(text.decode((await sub.next()).value!.data), "hello");
    await flooder.publish("live", "me too");
    assert.equal(text.decode((await sub.next()).value!.data), "me too");
  });

  test('a connection limit: "reject" tells the client, "wait" holds it back and drops nothing', async () => {
    await using s = await served({
      limits: { connection: { rate: 0.001, burst: 5, policy: "reject" } },
    });
    await using client = await connectHub(s.path);
    const local = s.hub.subscribe("t");
    for (let i = 0; i < 8; i++) await client.publish("t", `${i}`);
    await rejectsWith(client.flush(), "ERATELIMIT", /"connection \d+"/);
    assert.equal(client.stats().refused, 3);
    const [stats] = s.server.connectionStats();
    assert.deepEqual([stats!.limit!.allowed, stats!.limit!.rejected], [5, 3]);
    for (let i = 0; i < 5; i++) assert.equal(text.decode((await local.next()).value!.data), `${i}`);
    // Changed at run time, for the connections open now too.
    s.server.setLimits({ connection: { rate: 200, burst: 1 } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const start = Date.now();
    for (let i = 0; i < 6; i++) await client.publish("t", `w${i}`);
    await client.flush();
    assert.ok(Date.now() - start >= 20); // five waited 5 ms or more each
    for (let i = 0; i < 6; i++) {
      assert.equal(text.decode((await local.next()).value!.data), `w${i}`);
    }
    assert.ok(s.server.connectionStats()[0]!.limit!.waited >= 4);
    s.server.setLimits({});
    assert.equal(s.server.connectionStats()[0]!.limit, undefined);
    assert.throws(() => s.server.setLimits({ connection: { rate: -1 } }), /connection\.rate is -1/);
  });

  test("the server's buffer hands out higher priorities first", async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    const sub = client.subscribe("p", { buffer: 4 });
    await client.flush();
    // Published in one go: the server's buffer holds them all before its pump sends any.
    for (const [i, priority] of [0, 0, 5, 0, 9].entries()) {
      void s.hub.publish("p", `${i}`, { priority });
    }
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(text.decode((await sub.next()).value!.data));
    assert.deepEqual(got, ["4", "2", "0", "1", "3"]);
  });

  test("an ordered subscription gets the server's drops as a gap, and numbering", async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    const sub = client.subscribe("o", { buffer: 4, overflow: "drop-oldest", ordered: true });
    await client.flush();
    for (let i = 1; i <= 20; i++) void s.hub.publish("o", `${i}`); // before the pump sends one
    const got = [];
    for (let i = 0; i < 4; i++) got.push((await sub.next()).value!);
    assert.deepEqual(got.map((m) => text.decode(m.data)), ["17", "18", "19", "20"]);
    assert.deepEqual(got[0]!.gap, { reason: "overflow", count: 16, from: 1 });
    assert.deepEqual(got.map((m) => [m.topicSeq, m.publisher, m.pubSeq]), [
      [17, 0, 17],
      [18, 0, 18],
      [19, 0, 19],
      [20, 0, 20],
    ]);
    // A client's publishes are numbered by its connection.
    await client.publish("o", "mine");
    const mine = (await sub.next()).value!;
    const [conn] = s.server.connectionStats();
    assert.deepEqual([mine.publisher, mine.pubSeq], [conn!.id, 1]);
    assert.equal(sub.stats().outOfOrder, 0);
    assert.equal(sub.stats().gaps, 1);
  });

  test("an ordered subscription reports a reconnection as a gap", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/hub.sock`;
    const hub = new Hub();
    let server = await serveHub(hub, path);
    await using client = await connectHub(path, { reconnect: { initialDelay: 10, maxDelay: 50 } });
    const sub = client.subscribe("r", { ordered: true });
    await client.flush();
    await hub.publish("r", "before");
    const before = (await sub.next()).value!;
    assert.equal(before.gap, undefined);
    await server.close();
    await until(() => !client.connected, 5000, "the client notices");
    await hub.publish("r", "missed");
    server = await serveHub(hub, path);
    await until(() => client.connected, 5000, "the client reconnects");
    await client.flush();
    await hub.publish("r", "after");
    const after = (await sub.next()).value!;
    assert.equal(text.decode(after.data), "after");
    assert.deepEqual(after.gap, { reason: "reconnect", count: undefined, from: before.seq + 1 });
    await server.close();
    hub.abort();
  });
});
