/**
 * Consumers of stored streams in one process: work queues, acks, redelivery, backoff, dead
 * letters, where a consumer starts, its stored position across restarts, retention that follows
 * consumers, and bad input.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { type ConsumedMessage, DEAD_LETTER_HEADERS, Hub, toPrometheus } from "../../src/hub/mod.ts";
import { ConsumerLog } from "../../src/hub/consumer_log.ts";
import { Wal } from "../../src/wal/mod.ts";
import { rejectsWith, tempDir, until } from "../_helpers.ts";
import { take } from "./_consume.ts";

const text = (m: { data: Uint8Array }): string => new TextDecoder().decode(m.data);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A hub with a store in a new temporary directory and a stream "jobs" on "jobs.>". */
async function withJobs(
  options: { retention?: "limits" | "workqueue" | "interest"; messages?: number } = {},
): Promise<{ hub: Hub; dir: string } & AsyncDisposable> {
  const dir = await tempDir();
  const hub = new Hub({ store: dir.path });
  await hub.addStream({
    name: "jobs",
    subjects: ["jobs.>"],
    retention: options.retention ?? "limits",
  });
  for (let i = 1; i <= (options.messages ?? 0); i++) await hub.publish("jobs.x", `job ${i}`);
  return {
    hub,
    dir: dir.path,
    [Symbol.asyncDispose]: async () => {
      await hub.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

describe("consumers", () => {
  test("a durable consumer's readers share its messages: each once, a key's messages with one reader", async () => {
    await using s = await withJobs();
    const readers = await Promise.all(
      [1, 2, 3].map(() => s.hub.consume("jobs", { durable: "pool", buffer: 8 })),
    );
    for (let i = 0; i < 30; i++) {
      await s.hub.publish("jobs.x", `job ${i}`, i % 2 === 0 ? { key: `k${i % 6}` } : {});
    }
    const seen = new Map<number, number>(); // seq → reader
    const owners = new Map<string, number>(); // key → reader
    const keyOrder = new Map<string, number[]>();
    await Promise.all(readers.map(async (reader, r) => {
      while (seen.size < 30) {
        const next = await Promise.race([reader.next(), sleep(200).then(() => undefined)]);
        if (next === undefined) continue;
        const m = next.value as ConsumedMessage;
        assert.equal(seen.has(m.seq), false, `message ${m.seq} came twice`);
        seen.set(m.seq, r);
        if (m.key !== undefined) {
          assert.equal(owners.get(m.key) ?? r, r, `key ${m.key} went to two readers`);
          owners.set(m.key, r);
          keyOrder.set(m.key, [...(keyOrder.get(m.key) ?? []), m.seq]);
        }
        await m.ack();
      }
    }));
    assert.equal(seen.size, 30);
    assert.ok(new Set(seen.values()).size > 1, "more than one reader got messages");
    for (const seqs of keyOrder.values()) assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    const info = await s.hub.consumerInfo("jobs", "pool");
    assert.equal(info.acked, 30);
    assert.equal(info.pending, 0);
    assert.equal(info.ackFloor, 30);
    assert.equal(info.readers, 3);
    for (const reader of readers) await reader.close();
    assert.equal((await s.hub.consumerInfo("jobs", "pool")).readers, 0);
  });

  test("an unacknowledged message comes back after ackWait, then after each backoff step", async () => {
    await using s = await withJobs({ messages: 1 });
    await using reader = await s.hub.consume("jobs", { durable: "w", backoff: [20, 40, 60_000] });
    const attempts = (await take(reader, 3)).map((m) => [m.seq, m.attempt]);
    assert.deepEqual(attempts, [[1, 1], [1, 2], [1, 3]]);
    // The third attempt waits 60 s: nothing more comes meanwhile.
    const next = await Promise.race([reader.next(), sleep(150).then(() => "nothing")]);
    assert.equal(next, "nothing");
    const info = await reader.info();
    assert.equal(info.redelivered, 2);
    assert.equal(info.pending, 1);
  });

  test("working() starts the ack wait again; nak() delivers again at once or after a delay", async () => {
    await using s = await withJobs({ messages: 2 });
    await using reader = await s.hub.consume("jobs", { ackWait: 60_000 });
    const [a, b] = await take(reader, 2);
    await a!.working();
    await a!.nak();
    const [again] = await take(reader, 1);
    assert.deepEqual([again!.seq, again!.attempt], [1, 2]);
    await assert.rejects(b!.nak({ delay: -1 }), /delay must be 0 or more ms: got -1/);
    await b!.nak({ delay: 30 });
    const [later] = await take(reader, 1);
    assert.deepEqual([later!.seq, later!.attempt], [2, 2]);
    await again!.ack();
    await later!.ack();
    await rejectsWith(again!.ack(), "ENOTPENDING", /acknowledged already/);
    await rejectsWith(a!.ack(), "ENOTPENDING"); // its first delivery: settled by the nak
  });

  test("an ack from a reader that no longer holds the message is refused with ENOTPENDING", async () => {
    await using s = await withJobs({ messages: 1 });
    const first = await s.hub.consume("jobs", { durable: "w", ackWait: 60_000 });
    const [m] = await take(first, 1);
    const second = await s.hub.consume("jobs", { durable: "w" });
    await first.close(); // what it held goes to the other reader at once
    const [again] = await take(second, 1);
    assert.deepEqual([again!.seq, again!.attempt], [1, 2]);
    await rejectsWith(m!.ack(), "ENOTPENDING", /not waiting for it from this reader/);
    await again!.ack();
    await second.close();
  });

  test("after maxDeliver attempts, or on term(), a message goes to the dead letter topic, stored there", async () => {
    await using s = await withJobs({ messages: 2 });
    await s.hub.addStream({ name: "dead", subjects: ["dead.>"] });
    await using reader = await s.hub.consume("jobs", {
      durable: "w",
      maxDeliver: 2,
      deadLetter: "dead.jobs",
      ackWait: 60_000,
    });
    const [one, two] = await take(reader, 2);
    await two!.term("bad input");
    await one!.nak();
    const [again] = await take(reader, 1);
    assert.equal(again!.attempt, 2);
    await again!.nak(); // the second attempt failed too: that was the last
    await until(() => s.hub.stats().streams.find((x) => x.stream === "dead")?.messages === 2);
    const dead = await Array.fromAsync(s.hub.readStream("dead"));
    const h = DEAD_LETTER_HEADERS;
    assert.deepEqual(
      dead.map((m) => [
        m.topic,
        text(m),
        m.headers[h.stream],
        m.headers[h.consumer],
        m.headers[h.seq],
        m.headers[h.topic],
        m.headers[h.attempts],
        m.headers[h.reason],
      ]),
      [
        ["dead.jobs", "job 2", "jobs", "w", "2", "jobs.x", "1", "term: bad input"],
        ["dead.jobs", "job 1", "jobs", "w", "1", "jobs.x", "2", "maxDeliver"],
      ],
    );
    const info = await reader.info();
    assert.equal(info.deadLettered, 2);
    assert.equal(info.pending, 0);
    assert.equal(info.ackFloor, 2);
    const prometheus = toPrometheus(s.hub.stats());
    assert.match(
      prometheus,
      /^dockipc_hub_consumer_dead_lettered_total\{stream="jobs",consumer="w"\} 2$/m,
    );
    assert.match(prometheus, /^dockipc_hub_consumer_pending\{stream="jobs",consumer="w"\} 0$/m);
  });

  test("maxAckPending pauses delivery, dropping nothing; acks let the rest through", async () => {
    await using s = await withJobs({ messages: 10 });
    await using reader = await s.hub.consume("jobs", { maxAckPending: 3, buffer: 100 });
    const first = await take(reader, 3);
    const more = reader.next();
    assert.equal(await Promise.race([more, sleep(100).then(() => "paused")]), "paused");
    assert.equal((await reader.info()).pending, 3);
    for (const m of first) await m.ack();
    const rest = [(await more).value as ConsumedMessage];
    await rest[0]!.ack();
    while (rest.length < 7) {
      const [m] = await take(reader, 1);
      rest.push(m!);
      await m!.ack();
    }
    assert.deepEqual([...first, ...rest].map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test("deliver: all, new, last, from a sequence, from a time; a filter", async () => {
    await using s = await withJobs({ messages: 3 });
    await sleep(5);
    const between = Date.now();
    await sleep(5);
    await s.hub.publish("jobs.y", "job 4");
    await s.hub.publish("jobs.x", "job 5");
    const firstSeqs = async (options: Parameters<Hub["consume"]>[1], n: number) => {
      await using reader = await s.hub.consume("jobs", options);
      return (await take(reader, n)).map((m) => m.seq);
    };
    assert.deepEqual(await firstSeqs({ deliver: "all" }, 5), [1, 2, 3, 4, 5]);
    assert.deepEqual(await firstSeqs({ deliver: "last" }, 1), [5]);
    assert.deepEqual(await firstSeqs({ deliver: { seq: 3 } }, 3), [3, 4, 5]);
    assert.deepEqual(await firstSeqs({ deliver: { time: between } }, 2), [4, 5]);
    assert.deepEqual(await firstSeqs({ deliver: { time: new Date(between) } }, 2), [4, 5]);
    assert.deepEqual(await firstSeqs({ filter: "jobs.y" }, 1), [4]);
    await using fresh = await s.hub.consume("jobs", { deliver: "new" });
    await s.hub.publish("jobs.x", "job 6");
    assert.deepEqual((await take(fresh, 1)).map((m) => [m.seq, text(m)]), [[6, "job 6"]]);
  });

  test("a durable consumer goes on after a restart: what was acked is not delivered again, the rest is", async () => {
    await using dir = await tempDir();
    const total = 3000; // past the log's compaction, more than once
    {
      await using hub = new Hub({ store: dir.path });
      await hub.addStream({ name: "jobs", subjects: ["jobs.>"], durability: "batch" });
      await Promise.all(Array.from({ length: total }, (_, i) => hub.publish("jobs.x", `${i + 1}`)));
      await using reader = await hub.consume("jobs", { durable: "w", buffer: 500 });
      // Acks out of order, with some left out: 7, 77, 777 and every one past 2900.
      // Acks are not awaited one by one: those made together share a sync.
      const acks: Promise<void>[] = [];
      for (let n = 0; n < 2900; n++) {
        const [m] = await take(reader, 1);
        if (![7, 77, 777].includes(m!.seq)) acks.push(m!.ack());
      }
      await Promise.all(acks);
      await take(reader, 50); // delivered, never acknowledged
    }
    {
      await using hub = new Hub({ store: dir.path });
      await using reader = await hub.consume("jobs", { durable: "w", buffer: 500 });
      const again = await take(reader, 3 + 100);
      assert.deepEqual(
        again.map((m) => m.seq),
        [7, 77, 777, ...Array.from({ length: 100 }, (_, i) => 2901 + i)],
      );
      // Each had one attempt before: the unacknowledged ones say so.
      assert.deepEqual(again.slice(0, 3).map((m) => m.attempt), [2, 2, 2]);
      await Promise.all(again.slice(0, 60).map((m) => m.ack()));
      const info = await reader.info();
      assert.equal(info.ackFloor, 2957);
    }
    {
      // Once more: nothing acked comes back, and the one acked past a gap is skipped.
      await using hub = new Hub({ store: dir.path });
      await using reader = await hub.consume("jobs", { durable: "w", buffer: 500 });
      const again = await take(reader, 43);
      assert.deepEqual(again.map((m) => m.seq), Array.from({ length: 43 }, (_, i) => 2958 + i));
    }
  });

  test('retention "workqueue": an acknowledged message is removed; consumers may not share messages', async () => {
    await using s = await withJobs({ retention: "workqueue", messages: 5 });
    await rejectsWith(
      s.hub.consume("jobs", { durable: "a", filter: "jobs.*" }).then(async (a) => {
        await using _a = a;
        await s.hub.consume("jobs", { durable: "b", filter: "jobs.x" });
      }),
      "EEXIST",
      /may not share messages/,
    );
    await using reader = await s.hub.consume("jobs", { durable: "a", filter: "jobs.*" });
    const ms = await take(reader, 5);
    assert.equal((await s.hub.streamInfo("jobs")).messages, 5);
    await ms[0]!.ack();
    await ms[1]!.ack();
    await ms[3]!.ack(); // past a gap: the stream keeps from the gap on
    const info = await s.hub.streamInfo("jobs");
    assert.equal(info.firstSeq, 3);
    assert.equal(info.messages, 3);
    await ms[2]!.ack();
    await ms[4]!.ack();
    assert.equal((await s.hub.streamInfo("jobs")).messages, 0);
  });

  test('retention "interest": kept until every consumer has finished; with none, not kept', async () => {
    await using s = await withJobs({ retention: "interest" });
    await s.hub.publish("jobs.x", "nobody wants this");
    assert.equal((await s.hub.streamInfo("jobs")).messages, 0);
    await using a = await s.hub.consume("jobs", { durable: "a", deliver: "new" });
    await using b = await s.hub.consume("jobs", { durable: "b", deliver: "new" });
    await s.hub.publish("jobs.x", "for both");
    const [ma] = await take(a, 1);
    const [mb] = await take(b, 1);
    await ma!.ack();
    assert.equal((await s.hub.streamInfo("jobs")).messages, 1, "b still needs it");
    await mb!.ack();
    assert.equal((await s.hub.streamInfo("jobs")).messages, 0);
  });

  test("an ephemeral consumer ends with its reader; an ordered one reads in order without acks", async () => {
    await using s = await withJobs({ messages: 20 });
    const reader = await s.hub.consume("jobs", { buffer: 4 });
    assert.match(reader.name, /^_ephemeral-/);
    assert.equal((await s.hub.consumers("jobs")).length, 1);
    await reader.close();
    assert.deepEqual(await s.hub.consumers("jobs"), []);
    await using ordered = await s.hub.consume("jobs", { ordered: true, buffer: 3 });
    const seqs: number[] = [];
    for await (const m of ordered) {
      seqs.push(m.seq);
      await m.ack(); // not needed, and harmless: the acknowledgement made as it was read
      if (seqs.length === 20) break;
    }
    assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => i + 1));
  });

  test("a reader is a ReadableStream too; cancelling it closes the reader", async () => {
    await using s = await withJobs({ messages: 3 });
    const reader = await s.hub.consume("jobs", { ackWait: 60_000 });
    const stream = reader.readable.getReader();
    const seqs: number[] = [];
    for (let i = 0; i < 2; i++) {
      const { value } = await stream.read();
      seqs.push(value!.seq);
      await value!.ack();
    }
    assert.deepEqual(seqs, [1, 2]);
    await stream.cancel();
    await reader.closed;
    assert.deepEqual(await s.hub.consumers("jobs"), [], "the ephemeral consumer ended with it");
  });

  test("deleting a consumer or its stream ends its readers with ENOENT", async () => {
    await using s = await withJobs({ messages: 1 });
    const reader = await s.hub.consume("jobs", { durable: "w" });
    await take(reader, 1);
    await s.hub.deleteConsumer("jobs", "w");
    await rejectsWith(reader.next(), "ENOENT", /Consumer "w" of stream "jobs" was deleted/);
    await rejectsWith(s.hub.consumerInfo("jobs", "w"), "ENOENT", /no consumer "w"/);
    const other = await s.hub.consume("jobs", { durable: "v" });
    await s.hub.deleteStream("jobs");
    await rejectsWith(other.next(), "ENOENT", /Stream "jobs" was deleted/);
  });

  test("bad input: unknown stream or consumer, other settings for a durable, bad options", async () => {
    await using s = await withJobs();
    await rejectsWith(s.hub.consume("nope"), "ENOENT", /no stream "nope"/);
    await rejectsWith(s.hub.consumerInfo("jobs", "nope"), "ENOENT", /no consumer "nope"/);
    await rejectsWith(s.hub.deleteConsumer("jobs", "nope"), "ENOENT");
    await rejectsWith(s.hub.consumers("nope"), "ENOENT");
    await using _w = await s.hub.consume("jobs", { durable: "w", filter: "jobs.a" });
    await rejectsWith(
      s.hub.consume("jobs", { durable: "w", filter: "jobs.b" }),
      "EEXIST",
      /exists with other settings: filter "jobs.b"/,
    );
    const bad: [Parameters<Hub["consume"]>[1], RegExp][] = [
      [{ durable: "a b" }, /durable "a b"/],
      [{ ordered: true, durable: "x" }, /ordered consumer cannot be durable/],
      [{ ackWait: 0 }, /ackWait must be above 0: got 0/],
      [{ maxDeliver: 1.5 }, /maxDeliver must be a whole number/],
      [{ maxAckPending: -1 }, /maxAckPending/],
      [{ backoff: [10, -1] }, /backoff must be an array/],
      [{ deliver: { seq: 0 } }, /deliver must be/],
      [{ deliver: "first" as "all" }, /deliver must be/],
      [{ deliver: { time: Number.NaN } }, /deliver must be/],
      [{ buffer: 0 }, /buffer must be a whole number above 0: got 0/],
      [{ filter: "a..b" }, /Cannot use pattern/],
      [{ deadLetter: "dead.*" }, /Cannot use topic/],
    ];
    for (const [options, message] of bad) {
      await assert.rejects(s.hub.consume("jobs", options), message, JSON.stringify(options));
    }
    await using plain = new Hub();
    await rejectsWith(plain.consume("jobs"), "ENOENT", /has no store/);
  });

  test("a record that fails its checksum as a consumer reads it ends the readers with ECORRUPT", async () => {
    await using s = await withJobs();
    for (let i = 1; i <= 5; i++) await s.hub.publish("jobs.x", `payload-${i}`);
    const log = `${s.dir}/jobs/log`;
    const segment = `${log}/${readdirSync(log).find((n) => n.endsWith(".wal"))}`;
    const bytes = readFileSync(segment);
    bytes[bytes.indexOf("payload-3")]! ^= 1; // damaged on disk after it was written
    writeFileSync(segment, bytes);
    const reader = await s.hub.consume("jobs", { durable: "w" });
    await rejectsWith(
      (async () => {
        for await (const m of reader) await m.ack();
      })(),
      "ECORRUPT",
      /record seq 3 fails its checksum/,
    );
    assert.equal((await s.hub.consumerInfo("jobs", "w")).readers, 0);
  });

  test("a snapshot taken as a delivered mark is stored holds that mark", async () => {
    await using dir = await tempDir();
    const state = () => ({ next: 7, pending: [[3, 1] as const], done: [9] });
    {
      const { log } = await ConsumerLog.open(dir.path, "none", false);
      // One done record just short of the MiB a snapshot waits for; the mark's 9 bytes pass it.
      const acks = Array.from({ length: 131_071 }, (_, i) => log.done(10 + i, state));
      await Promise.all(acks);
      await log.delivered(5000, state);
      await log.close(state);
    }
    const { log, position } = await ConsumerLog.open(dir.path, "none", false);
    await log.close(state);
    assert.equal(position.next, 7, "read from the snapshot");
    assert.deepEqual([...position.pending], [[3, 1]]);
    assert.equal(position.delivered, 5000);
  });

  test("a consumer log that is not one fails the store's opening with ECORRUPT naming it", async () => {
    const bad: [string, Uint8Array | string][] = [
      ["text", "not a consumer record"],
      ["a done record without a sequence", new Uint8Array([1])],
      ["a done record with part of one", new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 1, 7])],
      ["an attempt record cut short", new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0])],
      ["a delivered mark cut short", new Uint8Array([3, 0, 0, 0, 0])],
      ["a delivered mark too long", new Uint8Array([3, 0, 0, 0, 0, 0, 0, 0, 9, 0])],
      ["a kind there is not", new Uint8Array([4, 0, 0, 0, 0, 0, 0, 0, 9])],
    ];
    for (const [what, record] of bad) {
      await using dir = await tempDir();
      {
        await using hub = new Hub({ store: dir.path });
        await hub.addStream({ name: "jobs", subjects: ["jobs.>"] });
        await hub.publish("jobs.x", "a");
        await using reader = await hub.consume("jobs", { durable: "w" });
        await (await take(reader, 1))[0]!.ack();
      }
      {
        await using wal = await Wal.open(`${dir.path}/jobs/consumers/w/log`);
        await wal.append(record);
      }
      await using hub = new Hub({ store: dir.path });
      const err = await rejectsWith(hub.streams(), "ECORRUPT", /consumer log .*consumers\/w\/log/);
      // The one appended, not the delivered mark or the ack before it.
      assert.match(err.message, /record 3 /, what);
    }
  });
});
