/** Stored streams of a hub with a store: issue 25's first part (no consumers yet). */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { json, text } from "../../mod.ts";
import { connectHub, Hub, type Message, serveHub, toPrometheus } from "../../src/hub/mod.ts";
import { patternsOverlap } from "../../src/hub/streams.ts";
import { Wal } from "../../src/wal/mod.ts";
import { runtimeName } from "../../src/runtime/platform.ts";
import { onSmallDisk, rejectsWith, seeded, spawnFixture, tempDir } from "../_helpers.ts";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function stored(hub: Hub, name: string): Promise<string[]> {
  const out: string[] = [];
  for await (const m of hub.readStream(name)) out.push(`${m.seq}:${text.decode(m.data)}`);
  return out;
}

describe("streams", () => {
  test("patterns overlap when some topic matches both", () => {
    const cases: [string, string, boolean][] = [
      ["a.b", "a.b", true],
      ["a.b", "a.c", false],
      ["a.*", "a.b", true],
      ["a.*", "a.b.c", false],
      ["a.>", "a.b.c", true],
      ["a.>", "a", false],
      ["*.b", "a.*", true],
      [">", "x.y.z", true],
      ["a.*.c", "a.b.>", true],
      ["a.*.c", "a.b.d", false],
    ];
    for (const [a, b, overlap] of cases) {
      assert.equal(patternsOverlap(a, b), overlap, `${a} / ${b}`);
      assert.equal(patternsOverlap(b, a), overlap, `${b} / ${a}`);
    }
  });

  test("a publish to a stream's topic is stored first and resolves with its ack; other topics as before", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    const info = await hub.addStream({ name: "orders", subjects: ["orders.>"] });
    assert.equal(info.config.durability, "always");
    assert.equal(info.messages, 0);
    const live = hub.subscribe("orders.*");
    const ack = await hub.publish("orders.eu", "one", { headers: { source: "test" } });
    assert.deepEqual(ack, { stream: "orders", seq: 1, duplicate: false, durability: "always" });
    assert.equal(await hub.publish("other.topic", "plain"), undefined);
    assert.equal(text.decode((await live.next()).value!.data), "one");
    const [m] = await Array.fromAsync(hub.readStream("orders"));
    assert.equal(m?.seq, 1);
    assert.equal(m?.topic, "orders.eu");
    assert.deepEqual(m?.headers, { source: "test" });
    assert.equal(m?.id, "");
    assert.ok(Math.abs(m!.timestamp - Date.now()) < 60_000);
    const after = await hub.streamInfo("orders");
    assert.equal(after.messages, 1);
    assert.equal(after.lastSeq, 1);
    assert.equal(after.firstTime, m?.timestamp);
  });

  test("live subscribers get stored and plain messages in publish order, though storing takes a sync", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "s", subjects: ["s.*"] });
    const all = hub.subscribe(">", { buffer: 100 });
    const topics = ["s.a", "plain.1", "s.b", "s.c", "plain.2", "plain.3", "s.d"];
    const results = await Promise.all(topics.map((t) => hub.publish(t, t)));
    assert.deepEqual(results.map((r) => r?.seq), [1, undefined, 2, 3, undefined, undefined, 4]);
    const seen: string[] = [];
    while (seen.length < topics.length) seen.push((await all.next()).value!.topic);
    assert.deepEqual(seen, topics);
  });

  test("an id seen within the window is stored and delivered once, also when published at once, and across a restart", async () => {
    await using dir = await tempDir();
    {
      await using hub = new Hub({ store: dir.path });
      await hub.addStream({ name: "jobs", subjects: ["jobs.*"], durability: "batch" });
      const live = hub.subscribe("jobs.*");
      const acks = await Promise.all(
        [1, 2, 3].map(() => hub.publish("jobs.resize", "photo", { id: "job-1" })),
      );
      assert.deepEqual(acks.map((a) => a && [a.seq, a.duplicate]), [[1, false], [1, true], [
        1,
        true,
      ]]);
      assert.equal(live.stats().pending, 1, "a duplicate is not delivered again");
      await hub.publish("jobs.resize", "other", { id: "job-2" });
    }
    await using hub = new Hub({ store: dir.path });
    const again = await hub.publish("jobs.resize", "photo", { id: "job-1" });
    assert.deepEqual(again, { stream: "jobs", seq: 1, duplicate: true, durability: "batch" });
    assert.deepEqual(await stored(hub, "jobs"), ["1:photo", "2:other"]);
    const next = await hub.publish("jobs.resize", "new", { id: "job-3" });
    assert.equal(next?.seq, 3);
  });

  test("an id is stored again once the duplicate window has passed", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "s", subjects: ["s"], duplicateWindow: 30 });
    assert.equal((await hub.publish("s", "a", { id: "x" }))?.seq, 1);
    await sleep(60);
    assert.deepEqual(await hub.publish("s", "a", { id: "x" }), {
      stream: "s",
      seq: 2,
      duplicate: false,
      durability: "always",
    });
  });

  test("limits: the oldest messages go past maxMessages, maxBytes or maxAge, also after a restart", async () => {
    await using dir = await tempDir();
    {
      await using hub = new Hub({ store: dir.path });
      await hub.addStream({ name: "count", subjects: ["count"], maxMessages: 3 });
      await hub.addStream({ name: "bytes", subjects: ["bytes"], maxBytes: 300 });
      await hub.addStream({ name: "age", subjects: ["age"], maxAge: 40 });
      for (let i = 1; i <= 5; i++) await hub.publish("count", `m${i}`);
      assert.deepEqual(await stored(hub, "count"), ["3:m3", "4:m4", "5:m5"]);
      for (let i = 1; i <= 5; i++) await hub.publish("bytes", "x".repeat(100));
      const bytes = await hub.streamInfo("bytes");
      assert.ok(bytes.bytes <= 300 && bytes.messages >= 1, JSON.stringify(bytes));
      assert.equal(bytes.lastSeq, 5);
      await hub.publish("age", "old");
      await sleep(60);
      assert.equal((await hub.streamInfo("age")).messages, 0, "past maxAge even with no publish");
      await hub.publish("age", "new");
      assert.deepEqual(await stored(hub, "age"), ["2:new"]);
    }
    await using hub = new Hub({ store: dir.path });
    assert.deepEqual(await stored(hub, "count"), ["3:m3", "4:m4", "5:m5"]);
    const info = await hub.streamInfo("count");
    assert.deepEqual([info.firstSeq, info.lastSeq, info.messages], [3, 5, 3]);
    // Lowering a limit applies at once.
    await hub.updateStream({ name: "count", subjects: ["count"], maxMessages: 1 });
    assert.deepEqual(await stored(hub, "count"), ["5:m5"]);
  });

  test("purge empties a stream for good; sequences go on; delete removes it and its files", async () => {
    await using dir = await tempDir();
    {
      await using hub = new Hub({ store: dir.path });
      await hub.addStream({ name: "p", subjects: ["p.>"] });
      for (let i = 1; i <= 4; i++) await hub.publish("p.x", `m${i}`);
      const info = await hub.purge("p");
      assert.deepEqual([info.messages, info.firstSeq, info.lastSeq], [0, 5, 4]);
    }
    await using hub = new Hub({ store: dir.path });
    assert.deepEqual(await stored(hub, "p"), []);
    assert.equal((await hub.publish("p.x", "after"))?.seq, 5);
    assert.deepEqual((await hub.streams()).map((s) => s.config.name), ["p"]);
    await hub.deleteStream("p");
    assert.equal(existsSync(`${dir.path}/p`), false);
    assert.deepEqual(await hub.streams(), []);
    assert.equal(await hub.publish("p.x", "plain again"), undefined);
  });

  test("stats() and the Prometheus text count each stream's messages, stores and duplicates", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "orders", subjects: ["orders.*"], maxMessages: 2 });
    for (const id of ["a", "b", "c", "c"]) await hub.publish("orders.new", id, { id });
    const [stats] = hub.stats().streams;
    assert.deepEqual(
      { ...stats, bytes: undefined },
      {
        stream: "orders",
        messages: 2,
        bytes: undefined,
        firstSeq: 2,
        lastSeq: 3,
        stored: 3,
        duplicates: 1,
      },
    );
    assert.ok(stats!.bytes > 0);
    const text = toPrometheus(hub.stats());
    assert.match(text, /^dockipc_hub_stream_messages\{stream="orders"\} 2$/m);
    assert.match(text, /^dockipc_hub_stream_stored_total\{stream="orders"\} 3$/m);
    assert.match(text, /^dockipc_hub_stream_duplicates_total\{stream="orders"\} 1$/m);
    assert.match(text, /^dockipc_hub_stream_last_seq\{stream="orders"\} 3$/m);
  });

  test("bad input: names, subjects, overlaps, limits, unknown streams, a hub without a store", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "a", subjects: ["a.>", "shared.*"] });
    await assert.rejects(hub.addStream({ name: "bad name!", subjects: ["x"] }), TypeError);
    await assert.rejects(hub.addStream({ name: "x", subjects: [] }), TypeError);
    await rejectsWith(hub.addStream({ name: "x", subjects: ["a..b"] }), "ETOPICINVALID");
    await rejectsWith(
      hub.addStream({ name: "b", subjects: ["shared.>"] }),
      "EEXIST",
      /subject "shared.>" overlaps "shared.\*" of stream "a"/,
    );
    await rejectsWith(hub.addStream({ name: "a", subjects: ["z"] }), "EEXIST", /"a" exists/);
    await assert.rejects(hub.addStream({ name: "m", subjects: ["m"], maxMessages: 0 }), RangeError);
    await assert.rejects(
      hub.addStream({ name: "w", subjects: ["w"], retention: "forever" as "limits" }),
      /retention must be "limits", "workqueue" or "interest": got forever/,
    );
    await hub.addStream({ name: "q", subjects: ["q"], retention: "workqueue" });
    await assert.rejects(
      hub.updateStream({ name: "q", subjects: ["q"], retention: "interest" }),
      /its retention cannot change: it is workqueue/,
    );
    for (
      const call of [
        hub.streamInfo("nope"),
        hub.purge("nope"),
        hub.deleteStream("nope"),
        Array.fromAsync(hub.readStream("nope")),
        hub.updateStream({ name: "nope", subjects: ["n"] }),
      ]
    ) await rejectsWith(call, "ENOENT", /no stream "nope"/);
    await hub.addStream({ name: "small", subjects: ["small"], maxMessageSize: 4 });
    await rejectsWith(hub.publish("small", "12345"), "EFRAMETOOLARGE", /maxMessageSize is 4/);
    await assert.rejects(hub.publish("a.b", "x", { id: "" }), TypeError);
    await using plain = new Hub();
    await rejectsWith(plain.addStream({ name: "x", subjects: ["x"] }), "ENOENT", /has no store/);
    assert.throws(() => new Hub({ store: "" }), TypeError);
  });

  test("a record that is not a stored message fails the store's opening with ECORRUPT", async () => {
    await using dir = await tempDir();
    {
      await using hub = new Hub({ store: dir.path });
      await hub.addStream({ name: "s", subjects: ["s"] });
      await hub.publish("s", "fine");
    }
    {
      await using wal = await Wal.open(`${dir.path}/s/log`);
      await wal.append("not a stored message");
    }
    await using hub = new Hub({ store: dir.path });
    await rejectsWith(hub.streams(), "ECORRUPT", /stored message 2/);
  });

  test('a corrupt record fails the opening with ECORRUPT naming its file; repair: "truncate" cuts it there', async () => {
    await using dir = await tempDir();
    {
      await using hub = new Hub({ store: dir.path });
      await hub.addStream({ name: "s", subjects: ["s"] });
      for (let i = 1; i <= 10; i++) await hub.publish("s", `payload-${String(i).padStart(4, "0")}`);
    }
    const segment = `${dir.path}/s/log/${
      readdirSync(`${dir.path}/s/log`).find((n) => n.endsWith(".wal"))
    }`;
    const bytes = readFileSync(segment);
    bytes[bytes.indexOf("payload-0007")]! ^= 1;
    writeFileSync(segment, bytes);
    {
      await using hub = new Hub({ store: dir.path });
      const err = await rejectsWith(hub.streams(), "ECORRUPT", /record seq 7 fails its checksum/);
      assert.ok(err.message.includes(segment), err.message);
    }
    assert.throws(() => new Hub({ store: dir.path, repair: "cut" as "truncate" }), RangeError);
    await using hub = new Hub({ store: dir.path, repair: "truncate" });
    const info = await hub.streamInfo("s");
    assert.deepEqual([info.messages, info.lastSeq], [6, 6]);
    assert.equal((await hub.publish("s", "after"))?.seq, 7);
  });

  test("over the socket: a remote publish to a stream's topic is stored, its id deduplicated", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "events", subjects: ["events.>"] });
    await using server = await serveHub(hub, `${dir.path}/hub.sock`);
    await using remote = await connectHub(server.addr);
    const sub = remote.subscribe("events.>");
    await remote.flush();
    await remote.publish("events.a", json.encode({ n: 1 }), { id: "e-1" });
    await remote.publish("events.a", json.encode({ n: 1 }), { id: "e-1" });
    await remote.publish("events.b", json.encode({ n: 2 }));
    await remote.flush(); // the server has stored what came before
    const messages = await Array.fromAsync(hub.readStream("events"));
    assert.deepEqual(messages.map((m) => [m.seq, m.id, json.decode(m.data)]), [
      [1, "e-1", { n: 1 }],
      [2, "", { n: 2 }],
    ]);
    const got: Message[] = [];
    for await (const m of sub) {
      got.push(m);
      if (got.length === 2) break;
    }
    assert.deepEqual(got.map((m) => m.topic), ["events.a", "events.b"]);
  });

  test('crash test: 30 SIGKILLs of a publisher to an "always" stream; every resolved publish is stored once', async () => {
    await using dir = await tempDir();
    const random = seeded(11);
    const runtime = runtimeName();
    /** The sequence each acknowledged id was stored as. */
    const acked = new Map<number, number>();
    let highest = 0;
    let duplicates = 0;
    for (let round = 0; round < 30; round++) {
      // From a little before the highest acknowledged id: those come back as duplicates.
      const start = Math.max(1, highest - 5);
      const child = spawnFixture(runtime, "stream_publisher.ts", [dir.path, String(start)]);
      assert.equal(await child.line(), "ready");
      await child.line();
      await sleep(random() * 40);
      child.process.kill("SIGKILL");
      for (let line; (line = await child.line().catch(() => undefined)) !== undefined;) {
        const [n, seq, duplicate] = line.split(" ").map((x) => x === "true" ? 1 : Number(x));
        const before = acked.get(n!);
        if (before !== undefined) {
          assert.equal(seq, before, `p-${n} was stored as ${before}, now says ${seq}`);
          assert.equal(duplicate, 1, `p-${n} published again is a duplicate`);
          duplicates++;
        }
        acked.set(n!, seq!);
        highest = Math.max(highest, n!);
      }
      await child[Symbol.asyncDispose]();
    }
    await using hub = new Hub({ store: dir.path });
    const stored = new Map<string, number>();
    let expected = 1;
    for await (const m of hub.readStream("crash")) {
      assert.equal(m.seq, expected++, "sequences are contiguous");
      assert.equal(stored.has(m.id), false, `${m.id} is stored twice`);
      stored.set(m.id, m.seq);
    }
    for (const [n, seq] of acked) assert.equal(stored.get(`p-${n}`), seq, `p-${n} is lost`);
    assert.ok(acked.size > 30 && duplicates > 0, `${acked.size} acked, ${duplicates} duplicates`);
  });

  test("a full disk: the publish rejects with ENOSPC, nothing acknowledged is lost, the stream works again with room", async () => {
    await using mount = await tempDir();
    await using child = onSmallDisk("stream_full.ts", mount.path);
    const r = JSON.parse(await child.line(60_000));
    assert.equal(r.firstError, "ENOSPC");
    assert.ok(r.acknowledged > 10, `${r.acknowledged} messages fit`);
    assert.ok(["ENOSPC", "ok"].includes(r.whileFull), r.whileFull);
    // With room again the stream takes messages: after every one stored before.
    assert.equal(r.after.duplicate, false);
    assert.ok(r.after.seq > r.acknowledged, JSON.stringify(r));
    assert.equal(r.read, r.after.seq);
    assert.equal(r.intact, true);
  });

  test("replay from a sequence, up to a sequence, or from a time", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "r", subjects: ["r"] });
    for (const m of ["a", "b"]) await hub.publish("r", m);
    await sleep(20);
    const midway = new Date();
    for (const m of ["c", "d"]) await hub.publish("r", m);
    assert.deepEqual(await stored(hub, "r"), ["1:a", "2:b", "3:c", "4:d"]);
    const read = async (options: { from?: number; to?: number; since?: Date | number }) =>
      (await Array.fromAsync(hub.readStream("r", options))).map((m) => text.decode(m.data));
    assert.deepEqual(await read({ from: 2, to: 3 }), ["b", "c"]);
    assert.deepEqual(await read({ since: midway }), ["c", "d"]);
    assert.deepEqual(await read({ since: midway.getTime(), from: 4 }), ["d"]);
    assert.deepEqual(await read({ since: Date.now() + 60_000 }), []);
  });

  test("a stream of 1,000,000 messages opens and replays with memory bounded by its index", async () => {
    await using dir = await tempDir();
    await using child = spawnFixture(runtimeName(), "stream_million.ts", [dir.path]);
    const r = JSON.parse(await child.line(120_000));
    assert.equal(r.messages, 1_000_000);
    assert.equal(r.read, 1_000_000);
    // The index is 12 MB; the 40 MB of messages are read a buffer at a time, never all at once.
    console.log(`# 1,000,000 messages, MiB retained / RSS: ${JSON.stringify(r)}`);
    assert.ok(r.opened.retained - r.before.retained < 40, JSON.stringify(r));
    assert.ok(r.replayed.retained - r.before.retained < 40, JSON.stringify(r));
  });

  test("streams keep their settings in stream.json and their messages in log/", async () => {
    await using dir = await tempDir();
    {
      await using hub = new Hub({ store: dir.path });
      await hub.addStream({ name: "s", subjects: ["s"], maxAge: 60_000 });
    }
    assert.deepEqual(readdirSync(`${dir.path}/s`).sort(), ["log", "stream.json"]);
    // A directory without stream.json is not a stream.
    writeFileSync(`${dir.path}/notes.txt`, "hello");
    await using hub = new Hub({ store: dir.path });
    const [info] = await hub.streams();
    assert.equal(info?.config.maxAge, 60_000);
    assert.equal(info?.config.maxMessages, Infinity);
  });
});
