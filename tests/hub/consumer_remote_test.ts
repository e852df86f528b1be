/**
 * Stored streams and consumers over the socket: the same calls through `connectHub`, readers in
 * other processes and runtimes, connections that drop, servers that restart or are killed, and
 * clients that send what they should not.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connect, IpcError } from "../../mod.ts";
import { connectHub, Hub, type HubServer, type PublishAck, serveHub } from "../../src/hub/mod.ts";
import { decodeHub, encodeHub, jsonBody, Op } from "../../src/hub/protocol.ts";
import { Control, VERSION } from "../../src/session/protocol.ts";
import {
  encodeFramesRaw,
  rejectsWith,
  rt,
  RUNTIMES,
  seeded,
  spawnFixture,
  tempDir,
  until,
} from "../_helpers.ts";
import { take } from "./_consume.ts";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** Another runtime than this one: the other side of the mixed-runtime tests. */
const OTHER = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 1) % RUNTIMES.length]!;

/** A hub with a store and a stream "jobs" on "jobs.>", served on a unix socket. */
async function served(): Promise<
  { hub: Hub; server: HubServer; path: string; dir: string } & AsyncDisposable
> {
  const dir = await tempDir();
  const hub = new Hub({ store: dir.path });
  await hub.addStream({ name: "jobs", subjects: ["jobs.>"] });
  const path = `${dir.path}/hub.sock`;
  const server = await serveHub(hub, path);
  return {
    hub,
    server,
    path,
    dir: dir.path,
    [Symbol.asyncDispose]: async () => {
      await server.close();
      await hub.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

describe("stored streams over the socket", () => {
  test("every stream operation through connectHub, with the in-process hub's results and errors", async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    const info = await client.addStream({ name: "orders", subjects: ["orders.>"], maxAge: 60_000 });
    assert.equal(info.config.maxMessages, Infinity);
    assert.equal(info.config.maxAge, 60_000);
    const ack = await client.publish("orders.eu", "o-1", { id: "o-1" }) as PublishAck;
    assert.deepEqual(ack, { stream: "orders", seq: 1, duplicate: false, durability: "always" });
    assert.equal(
      (await client.publish("orders.eu", "o-1", { id: "o-1" }) as PublishAck).duplicate,
      true,
    );
    assert.equal(await client.publish("plain.topic", "x"), undefined);
    assert.deepEqual((await client.streams()).map((i) => i.config.name), ["jobs", "orders"]);
    assert.equal((await client.streamInfo("orders")).messages, 1);
    assert.equal(
      (await client.updateStream({ name: "orders", subjects: ["orders.>"], maxMessages: 5 })).config
        .maxMessages,
      5,
    );
    assert.equal((await client.purge("orders")).messages, 0);
    await client.deleteStream("orders");
    await rejectsWith(client.streamInfo("orders"), "ENOENT", /no stream "orders"/);
    await assert.rejects(client.addStream({ name: "bad name", subjects: ["x"] }), TypeError);
    await assert.rejects(
      client.addStream({ name: "m", subjects: ["m"], maxBytes: -1 }),
      RangeError,
    );
    await rejectsWith(client.addStream({ name: "j2", subjects: ["jobs.x"] }), "EEXIST", /overlaps/);
    await rejectsWith(client.consume("nope"), "ENOENT", /no stream "nope"/);
    await assert.rejects(client.consume("jobs", { ackWait: 0 }), RangeError);
    await assert.rejects(client.consume("jobs", { buffer: 0 }), RangeError);
    // A stream added by another client is stored from this client's next publish on.
    await s.hub.addStream({ name: "late", subjects: ["late.*"] });
    await until(() => client.stats().connected);
    await client.flush();
    assert.equal((await client.publish("late.x", "y") as PublishAck).stream, "late");
  });

  test("a durable's remote readers share its messages; what a dropped connection held comes back at once", async () => {
    await using s = await served();
    await using a = await connectHub(s.path);
    await using b = await connectHub(s.path, { reconnect: false });
    for (let i = 1; i <= 6; i++) await a.publish("jobs.x", `job ${i}`);
    const readerA = await a.consume("jobs", { durable: "w", buffer: 3, ackWait: 60_000 });
    const readerB = await b.consume("jobs", { durable: "w", buffer: 3, ackWait: 60_000 });
    const fromA = await take(readerA, 3);
    const fromB = await take(readerB, 3);
    assert.deepEqual(
      [...fromA, ...fromB].map((m) => m.seq).sort((x, y) => x - y),
      [1, 2, 3, 4, 5, 6],
    );
    await Promise.all(fromA.map((m) => m.ack()));
    b.abort(); // its three come back to A, at once
    const again = await take(readerA, 3);
    assert.deepEqual(again.map((m) => [m.seq, m.attempt]), fromB.map((m) => [m.seq, 2]));
    await rejectsWith(fromB[0]!.ack(), "ECLOSED");
    await Promise.all(again.map((m) => m.ack()));
    const info = await readerA.info();
    assert.equal(info.ackFloor, 6);
    assert.equal(info.redelivered, 3);
  });

  test("a reader in another runtime, killed while it holds messages: they come back at once", async () => {
    await using s = await served();
    for (let i = 1; i <= 4; i++) await s.hub.publish("jobs.x", `job ${i}`);
    const child = spawnFixture(OTHER, "stream_worker.ts", [s.path]);
    await using _child = child;
    assert.equal(await child.line(), "ready");
    const held = [await child.line(), await child.line(), await child.line(), await child.line()];
    assert.deepEqual(held, ["1 1", "2 1", "3 1", "4 1"]);
    await using local = await s.hub.consume("jobs", { durable: "w", ackWait: 60_000 });
    child.process.kill("SIGKILL");
    const again = await take(local, 4);
    assert.deepEqual(again.map((m) => [m.seq, m.attempt]), [[1, 2], [2, 2], [3, 2], [4, 2]]);
  });

  test(`a hub server in ${OTHER} killed after delivering: the messages come again as repeats`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/hub.sock`;
    const run = async () => {
      const child = spawnFixture(OTHER, "stream_server.ts", [`${dir.path}/store`, path]);
      assert.equal(await child.line(), "ready");
      return child;
    };
    {
      await using child = await run();
      await using client = await connectHub(path, { reconnect: false });
      for (const job of ["a", "b", "c"]) await client.publish("crash.job", job);
      const reader = await client.consume("crash", { durable: "w", ackWait: 60_000 });
      const first = await take(reader, 3);
      assert.deepEqual(first.map((m) => m.attempt), [1, 1, 1]);
      // Killed with no ack, no close and no snapshot: only the log says they went out.
      child.process.kill("SIGKILL");
      await child.status.catch(() => {});
      client.abort();
    }
    await using child = await run();
    await using client = await connectHub(path, { reconnect: false });
    await client.publish("crash.job", "d"); // stored after the kill: new
    await using reader = await client.consume("crash", { durable: "w", ackWait: 60_000 });
    const again = await take(reader, 4);
    assert.deepEqual(
      again.map((m) => [new TextDecoder().decode(m.data), m.attempt]),
      [["a", 2], ["b", 2], ["c", 2], ["d", 1]],
    );
    assert.ok(child.process.pid);
  });

  test("an ephemeral and an ordered reader go on after the server restarts, from where they were", async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: dir.path });
    await hub.addStream({ name: "jobs", subjects: ["jobs.>"] });
    const path = `${dir.path}/hub.sock`;
    let server = await serveHub(hub, path);
    await using client = await connectHub(path, { reconnect: { initialDelay: 5, maxDelay: 20 } });
    for (let i = 1; i <= 10; i++) await hub.publish("jobs.x", `job ${i}`);
    const ephemeral = await client.consume("jobs", { buffer: 4, ackWait: 60_000 });
    const ordered = await client.consume("jobs", { ordered: true, buffer: 2 });
    const first = await take(ephemeral, 4);
    await first[0]!.ack();
    await first[1]!.ack();
    const seen = (await take(ordered, 3)).map((m) => m.seq);
    await server.close();
    server = await serveHub(hub, path);
    await until(() => client.connected, 10_000, "the reconnection");
    // 3 and 4 were not finished: the new ephemeral consumer starts at 3 (what the old one had
    // given may come twice: at least once, never lost). 1 and 2 were finished.
    const after = new Set<number>();
    while (after.size < 8) {
      const [m] = await take(ephemeral, 1);
      assert.ok(m!.seq >= 3, `message ${m!.seq} was acknowledged before`);
      after.add(m!.seq);
      await m!.ack().catch(() => {}); // one from the old connection is not pending any more
    }
    assert.deepEqual([...after].sort((a, b) => a - b), [3, 4, 5, 6, 7, 8, 9, 10]);
    for await (const m of ordered) {
      seen.push(m.seq);
      if (seen.length === 10) break;
    }
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await server.close();
  });

  test("acks of one moment travel together, and each answers for itself", async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    for (let i = 1; i <= 600; i++) await client.publish("jobs.x", `job ${i}`);
    const reader = await client.consume("jobs", { durable: "w", buffer: 600, maxAckPending: 600 });
    const got = await take(reader, 600);
    // One loop: 600 acks (past a quarter of the buffer, so in several SETTLEs), one of them twice.
    const results = await Promise.allSettled([
      ...got.map((m) => m.ack()),
      got[7]!.ack(),
    ]);
    assert.equal(results.slice(0, 600).every((r) => r.status === "fulfilled"), true);
    const twice = results[600]!;
    assert.equal(twice.status, "rejected");
    assert.equal((twice as PromiseRejectedResult).reason.code, "ENOTPENDING");
    const info = await client.consumerInfo("jobs", "w");
    assert.equal(info.acked, 600);
    assert.equal(info.pending, 0);
    await reader.close();
    // Stored: a new reader of the durable gets nothing of them again.
    await client.publish("jobs.x", "job 601");
    await using again = await client.consume("jobs", { durable: "w" });
    assert.equal((await take(again, 1))[0]!.seq, 601);
  });

  test("readStream() over the socket replays from a sequence and from a time", async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    for (let i = 1; i <= 5; i++) await client.publish("jobs.x", `job ${i}`);
    await sleep(5);
    const middle = Date.now();
    await sleep(5);
    for (let i = 6; i <= 8; i++) await client.publish("jobs.x", `job ${i}`);
    const seqs = async (options: Parameters<Hub["readStream"]>[1]) =>
      (await Array.fromAsync(client.readStream("jobs", options))).map((m) => m.seq);
    assert.deepEqual(await seqs({}), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(await seqs({ from: 4, to: 6 }), [4, 5, 6]);
    assert.deepEqual(await seqs({ since: middle }), [6, 7, 8]);
    const [m] = await Array.fromAsync(client.readStream("jobs", { from: 8 }));
    assert.deepEqual([m!.stream, new TextDecoder().decode(m!.data), m!.topic], [
      "jobs",
      "job 8",
      "jobs.x",
    ]);
    assert.equal((await client.consumers("jobs")).length, 0, "its ordered consumers are gone");
  });

  test("an ack made just before its reader closes is sent first, and stored", async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    await client.publish("jobs.x", "a");
    const reader = await client.consume("jobs", { durable: "w" });
    let acked: Promise<void> | undefined;
    for await (const m of reader) {
      acked = m.ack(); // not awaited: leaving the loop closes the reader at once
      break;
    }
    await acked;
    assert.equal((await client.consumerInfo("jobs", "w")).ackFloor, 1);
  });

  test("deleting a consumer ends its remote readers with ENOENT", async () => {
    await using s = await served();
    await using a = await connectHub(s.path);
    await using b = await connectHub(s.path);
    const reader = await a.consume("jobs", { durable: "w" });
    assert.deepEqual((await b.consumers("jobs")).map((c) => c.config.name), ["w"]);
    await b.deleteConsumer("jobs", "w");
    await rejectsWith(reader.next(), "ENOENT", /Consumer "w" of stream "jobs" was deleted/);
    await rejectsWith(b.consumerInfo("jobs", "w"), "ENOENT");
  });

  test("a client that sends bad stream messages gets an ERR and keeps its connection", async () => {
    await using s = await served();
    const conn = await connect(s.path);
    const writer = conn.writable.getWriter();
    const hello = new Uint8Array([
      Control.HELLO,
      0,
      0,
      0,
      VERSION,
      0,
      7,
      ...new TextEncoder().encode("dockipc"),
    ]);
    await writer.write(encodeFramesRaw([
      hello,
      encodeHub({ type: Op.CALL, id: 1, method: "nope", body: jsonBody([]) }),
      encodeHub({
        type: Op.CALL,
        id: 2,
        method: "streamInfo",
        body: new TextEncoder().encode("{"),
      }),
      encodeHub({
        type: Op.CONSUME,
        cid: 3,
        buffer: 4,
        stream: "jobs",
        body: jsonBody({ ackWait: -5 }),
      }),
      encodeHub({ type: Op.SETTLE, id: 4, cid: 99, seqs: [1], how: "ack", arg: "" }),
      encodeHub({ type: Op.CALL, id: 5, method: "streamInfo", body: jsonBody(["jobs"]) }),
    ]));
    const got: { type: number; id?: number; code?: string }[] = [];
    const reader = conn.readable.getReader();
    let buffered = new Uint8Array(0);
    while (!got.some((m) => m.type === Op.RESULT)) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered = new Uint8Array([...buffered, ...value]);
      while (buffered.length >= 4) {
        const size = new DataView(buffered.buffer, buffered.byteOffset).getUint32(0);
        if (buffered.length < 4 + size) break;
        got.push(decodeHub(buffered.subarray(4, 4 + size)) as never);
        buffered = buffered.slice(4 + size);
      }
    }
    const errs = Object.fromEntries(
      got.filter((m) => m.type === Op.ERR).map((m) => [m.id, m.code]),
    );
    assert.deepEqual(errs, { 1: "EPROTOCOL", 2: "EPROTOCOL", 3: "RangeError", 4: "ENOTPENDING" });
    assert.ok(got.some((m) => m.type === Op.RESULT && m.id === 5), "the connection still serves");
    await writer.close().catch(() => {});
    conn.close();
  });

  test(`crash test: a hub server in ${OTHER} killed 30 times while this process publishes and acks`, async () => {
    await using dir = await tempDir();
    const random = seeded(25);
    const path = `${dir.path}/hub.sock`;
    /** Publishes that resolved: n → the sequence it was stored as. */
    const stored = new Map<number, number>();
    /** Messages whose ack resolved: never delivered again. */
    const acked = new Set<number>();
    /** Messages delivered at least once. */
    const delivered = new Set<number>();
    let redelivered = 0;
    let nextId = 1;
    const runServer = async () => {
      const child = spawnFixture(OTHER, "stream_server.ts", [`${dir.path}/store`, path]);
      assert.equal(await child.line(), "ready");
      return child;
    };
    const work = async (client: Awaited<ReturnType<typeof connectHub>>, stopped: () => boolean) => {
      const acks: Promise<void>[] = [];
      try {
        const reader = await client.consume("crash", { durable: "w", ackWait: 60_000, buffer: 64 });
        while (!stopped()) {
          const { value: m, done } = await reader.next();
          if (done) break;
          assert.equal(
            acked.has(m.seq),
            false,
            `message ${m.seq} came again after its ack resolved`,
          );
          if (delivered.has(m.seq)) {
            redelivered++;
            // Even across a kill: delivered before, so never taken for new.
            assert.ok(m.attempt >= 2, `message ${m.seq} came again as attempt ${m.attempt}`);
          }
          delivered.add(m.seq);
          acks.push(m.ack().then(() => void acked.add(m.seq), () => {}));
        }
      } catch (err) {
        // The server was killed: the client says so with an IpcError. Anything else is a failure.
        if (!(err instanceof IpcError)) throw err;
      }
      await Promise.all(acks);
    };
    for (let round = 0; round < 30; round++) {
      const child = await runServer();
      const client = await connectHub(path, { reconnect: false });
      // From the lowest id whose publish did not resolve: those may be stored already.
      let n = nextId;
      let stop = false;
      const publishers = Array.from({ length: 4 }, async () => {
        while (!stop) {
          const id = n++;
          const ack = await client.publish("crash.job", `job ${id}`, { id: `p-${id}` })
            .catch(() => undefined) as PublishAck | undefined;
          if (ack === undefined) return;
          const before = stored.get(id);
          if (before !== undefined) assert.equal(ack.seq, before, `p-${id} stored twice`);
          stored.set(id, ack.seq);
        }
      });
      const worker = work(client, () => stop);
      await sleep(20 + random() * 60);
      child.process.kill("SIGKILL");
      await child.status.catch(() => {});
      stop = true;
      await Promise.all(publishers);
      await worker;
      client.abort();
      await child[Symbol.asyncDispose]();
      while (stored.has(nextId)) nextId++;
    }
    // Once more, to the end: every message not acknowledged is delivered until all are. (An ack
    // stored as the server was killed, before it could answer, does not come again.)
    const child = await runServer();
    await using _child = child;
    await using client = await connectHub(path, { reconnect: false });
    const { lastSeq } = await client.streamInfo("crash");
    await using reader = await client.consume("crash", { durable: "w", ackWait: 60_000 });
    while ((await client.consumerInfo("crash", "w")).ackFloor < lastSeq) {
      const next = await Promise.race([reader.next(), sleep(500).then(() => undefined)]);
      if (next === undefined || next.done) continue;
      const m = next.value;
      assert.equal(acked.has(m.seq), false, `message ${m.seq} came again after its ack resolved`);
      if (delivered.has(m.seq)) redelivered++;
      delivered.add(m.seq);
      await m.ack();
      acked.add(m.seq);
    }
    const messages = await Array.fromAsync(client.readStream("crash"));
    const seqs = messages.map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), "contiguous");
    const ids = messages.map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, "each id stored once");
    for (const [id, seq] of stored) assert.equal(messages[seq - 1]?.id, `p-${id}`);
    assert.equal(delivered.size, messages.length, "every message delivered");
    assert.ok(stored.size > 30, `publishes resolved: ${stored.size}`);
    assert.ok(redelivered > 0, "some messages whose ack did not resolve came again");
  });
});
