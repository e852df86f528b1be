import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connect, type IpcError, listen } from "../../mod.ts";
import { connectHub, Hub, serveHub } from "../../src/hub/mod.ts";
import { decodeHub, encodeHub, jsonBody, Op } from "../../src/hub/protocol.ts";
import { Control, VERSION } from "../../src/session/protocol.ts";
import { runtimeName } from "../../src/runtime/platform.ts";
import { deadline } from "../../src/internal/async.ts";
import {
  acceptedWhileStalled,
  encodeFramesRaw,
  readAll,
  rejectsWith,
  spawnFixture,
  tempDir,
  until,
} from "../_helpers.ts";
import { pubsubBehaviour } from "./_behaviour.ts";
import { served } from "./_served.ts";

const text = new TextDecoder();

/** Speaks raw frames to a server: sends `payloads`, then returns every message it answered. */
async function rawExchange(
  path: string,
  payloads: Uint8Array[],
): Promise<ReturnType<typeof decodeHub>[]> {
  const conn = await connect(path);
  const writer = conn.writable.getWriter();
  await writer.write(encodeFramesRaw(payloads));
  const bytes = await readAll(conn.readable); // the server closes after its ERR
  await writer.close().catch(() => {});
  return decodeAll(bytes);
}

/** The hub messages in `bytes`, a run of whole frames. */
function decodeAll(bytes: Uint8Array): ReturnType<typeof decodeHub>[] {
  const out: ReturnType<typeof decodeHub>[] = [];
  for (let at = 0; at + 4 <= bytes.length;) {
    const size = new DataView(bytes.buffer, bytes.byteOffset + at).getUint32(0);
    out.push(decodeHub(bytes.subarray(at + 4, at + 4 + size)));
    at += 4 + size;
  }
  return out;
}

const hello = (app = "dockipc", version = VERSION): Uint8Array =>
  encodeHub({ type: Control.HELLO, version, app, token: new Uint8Array(0) });

describe("RemoteHub: the shared PubSub behaviour", () => {
  pubsubBehaviour("RemoteHub", async () => {
    const s = await served();
    const client = await connectHub(s.path);
    return {
      pubsub: client,
      settle: () => client.flush(),
      [Symbol.asyncDispose]: async () => {
        client.close();
        await s[Symbol.asyncDispose]();
      },
    };
  });
});

describe("serveHub and connectHub", () => {
  test("stats() counts what the client published, its requests and its subscriptions", async () => {
    await using hub = new Hub();
    hub.handle("slow", () => new Promise((resolve) => setTimeout(() => resolve("done"), 200)));
    await using server = await serveHub(hub, "tcp://127.0.0.1:0");
    await using client = await connectHub(server.addr);
    const sub = client.subscribe("news.>", { buffer: 8, queue: "readers" });
    await client.flush();
    for (let i = 0; i < 3; i++) await client.publish("news.today", `item ${i}`);
    const slow = client.request("slow", "");
    await client.flush();
    await until(() => sub.stats().pending === 3, 5000, "the three messages");
    const stats = client.stats();
    assert.equal(stats.connected, true);
    assert.equal(stats.reconnects, 0);
    assert.equal(stats.published, 3);
    assert.deepEqual(stats.requests, { inFlight: 1, waiting: 0 });
    assert.equal(stats.subscriptions.length, 1);
    assert.equal(stats.subscriptions[0]?.pattern, "news.>");
    assert.equal(stats.subscriptions[0]?.queue, "readers");
    assert.equal(stats.subscriptions[0]?.pending, 3);
    assert.equal(new TextDecoder().decode((await slow).data), "done");
    assert.deepEqual(client.stats().requests, { inFlight: 0, waiting: 0 });
    sub.unsubscribe();
    assert.equal(client.stats().subscriptions.length, 0);
  });

  test("the hub's API has no internals: no Subscription or RemoteHub class, no hidden methods on Hub", async () => {
    const api = await import("../../src/hub/mod.ts");
    assert.equal("Subscription" in api, false);
    assert.equal("RemoteHub" in api, false);
    assert.deepEqual(Object.getOwnPropertySymbols(Hub.prototype), [Symbol.asyncDispose]);
  });

  test("in-process publishers reach remote subscribers and back", async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    const remoteSub = client.subscribe("to.client");
    const localSub = s.hub.subscribe("to.hub");
    await client.flush();
    await s.hub.publish("to.client", "hello client", { headers: { a: "1" } });
    await client.publish("to.hub", "hello hub", { key: "k" });
    const fromHub = (await remoteSub.next()).value!;
    assert.equal(text.decode(fromHub.data), "hello client");
    assert.deepEqual(fromHub.headers, { a: "1" });
    const fromClient = (await localSub.next()).value!;
    assert.equal(text.decode(fromClient.data), "hello hub");
    assert.equal(fromClient.key, "k");
  });

  test('a header named "__proto__" crosses like any other', async () => {
    await using s = await served();
    await using client = await connectHub(s.path);
    const sub = s.hub.subscribe("h");
    await client.publish("h", "x", { headers: JSON.parse('{"__proto__":"p","a":"b"}') });
    const { headers } = (await sub.next()).value!;
    assert.deepEqual(Object.entries(headers), [["__proto__", "p"], ["a", "b"]]);
    assert.equal(Object.getPrototypeOf(headers), Object.prototype);
  });

  test("the handshake refuses a wrong app id, a wrong token and another version", async () => {
    await using s = await served({ app: "billing", token: "s3cret" });
    await rejectsWith(
      connectHub(s.path, { app: "other", token: "s3cret" }),
      "EAUTH",
      /app "other"/,
    );
    await rejectsWith(connectHub(s.path, { app: "billing", token: "wrong" }), "EAUTH", /token/);
    await rejectsWith(connectHub(s.path, { app: "billing" }), "EAUTH");
    const answered = await rawExchange(s.path, [hello("billing", 99)]);
    assert.equal(answered[0]?.type, Control.REFUSE);
    assert.match((answered[0] as { message: string }).message, /version 99/);
    await using ok = await connectHub(s.path, { app: "billing", token: "s3cret" });
    await ok.publish("x.y", "still serving");
  });

  test("malformed frames, unknown ops and oversize frames cost that client its connection only", async () => {
    await using s = await served({ maxFrameSize: 4096 });
    await using good = await connectHub(s.path, { maxFrameSize: 4096 });
    const sub = good.subscribe("alive");
    await good.flush();
    const bad: [string, Uint8Array[]][] = [
      ["not a handshake", [new Uint8Array([Op.PUB, 0, 0])]],
      ["a truncated PUB", [hello(), new Uint8Array([Op.PUB, 0, 0, 5, 0x61])]],
      ["an unknown op", [hello(), new Uint8Array([200])]],
      ["a server-only op", [hello(), encodeHub({ type: Control.GOAWAY })]],
      ["a bad overflow policy", [
        hello(),
        new Uint8Array([Op.SUB, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 9, 0, 1, 0x61, 0, 0]),
      ]],
      ["bad UTF-8 in a topic", [hello(), new Uint8Array([Op.PUB, 0, 0, 2, 0xff, 0xfe, 0, 0])]],
    ];
    for (const [what, payloads] of bad) {
      const answered = await rawExchange(s.path, payloads);
      const err = answered.find((m) => m.type === Control.REFUSE) as { code: string } | undefined;
      assert.ok(err !== undefined, `${what}: a REFUSE`);
      assert.equal(err.code, "EPROTOCOL", what);
    }
    // A frame over maxFrameSize is refused from its length prefix alone.
    const conn = await connect(s.path);
    const w = conn.writable.getWriter();
    await w.write(encodeFramesRaw([hello()]));
    await w.write(new Uint8Array([0, 1, 0, 0, Op.PUB]));
    const reply = await readAll(conn.readable);
    assert.match(text.decode(reply), /EFRAMETOOLARGE/);
    await s.hub.publish("alive", "yes");
    assert.equal(text.decode((await sub.next()).value!.data), "yes", "the others are served on");
  });

  test('a slow consumer with "error" is disconnected; its other subscriptions come back, others never notice', async () => {
    await using s = await served();
    await using slow = await connectHub(s.path);
    await using fast = await connectHub(s.path);
    const doomed = slow.subscribe("feed", { buffer: 4, overflow: "error" });
    const survivor = slow.subscribe("other");
    const reader = fast.subscribe("feed", { buffer: 1000 });
    await slow.flush();
    await fast.flush();
    for (let i = 0; i < 100; i++) await s.hub.publish("feed", String(i));
    await assert.rejects(
      (async () => {
        while (!(await doomed.next()).done);
      })(),
      (e: { code?: string }) => e.code === "ESLOWCONSUMER",
    );
    let got = 0;
    for await (const _ of reader) if (++got === 100) break;
    assert.equal(got, 100);
    await until(() => slow.connected, 5000, "the slow client reconnects");
    await slow.flush();
    await s.hub.publish("other", "after");
    assert.equal(text.decode((await survivor.next()).value!.data), "after");
  });

  test('"error" tells a stalled client at once, without waiting for its credit', async () => {
    await using s = await served();
    const conn = await connect(s.path);
    const writer = conn.writable.getWriter();
    await writer.write(encodeFramesRaw([
      hello(),
      encodeHub({
        type: Op.SUB,
        sid: 7,
        buffer: 4,
        credit: 1, // one message, and then it grants no more: it stalls
        maxBytes: 0,
        overflow: "error",
        ordered: false,
        pattern: "feed",
        queue: undefined,
      }),
    ]));
    await until(() => s.hub.stats().subscriptions.length === 1, 5000, "the subscription");
    for (let i = 0; i < 10; i++) await s.hub.publish("feed", String(i));
    // The server ends it (ERR, then REFUSE) and closes, though the client never granted more.
    const got = decodeAll(await readAll(conn.readable));
    assert.deepEqual(got.map((m) => m.type), [
      Control.WELCOME,
      Op.STREAMS,
      Op.MSG,
      Op.ERR,
      Control.REFUSE,
    ]);
    assert.equal((got[3] as { code: string }).code, "ESLOWCONSUMER");
    await writer.close().catch(() => {});
  });

  test("a reply is taken only from a connection that was given the request", async () => {
    await using s = await served();
    await using handler = await connectHub(s.path);
    await using third = await connectHub(s.path);
    const requests = handler.subscribe("work"); // answers when the test says so
    await handler.flush();
    const asked = s.hub.request("work", "x");
    const inbox = (await requests.next()).value!.reply!;
    // A client that learns the inbox some other way answers first: its reply goes nowhere.
    await third.publish(inbox, "forged");
    await third.flush();
    await handler.publish(inbox, "genuine");
    assert.equal(text.decode((await asked).data), "genuine");
  });

  test("after a hub restart the client reconnects, resubscribes, and outage publishes get through", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/hub.sock`;
    let hub = new Hub();
    let server = await serveHub(hub, path);
    await using client = await connectHub(path, { reconnect: { initialDelay: 10, maxDelay: 50 } });
    const sub = client.subscribe("events.>");
    await client.flush();
    await hub.publish("events.a", "before");
    assert.equal(text.decode((await sub.next()).value!.data), "before");
    server.close();
    hub.close();
    await until(() => !client.connected, 5000, "the client notices");
    const during = client.publish("events.b", "during the outage");
    hub = new Hub();
    const local = hub.subscribe("events.>");
    server = await serveHub(hub, path);
    await during;
    assert.equal(text.decode((await local.next()).value!.data), "during the outage");
    await until(() => client.connected, 5000, "the client reconnects");
    await client.flush();
    await hub.publish("events.c", "after");
    const next = (await sub.next()).value!;
    assert.ok(["during the outage", "after"].includes(text.decode(next.data)));
    server.close();
    hub.close();
  });

  test("publishes fail after queueTimeout when the hub stays away; requests in flight fail with ECONNRESET", async () => {
    await using s = await served();
    await using client = await connectHub(s.path, {
      queueTimeout: 50,
      reconnect: { initialDelay: 10 },
    });
    client.handle("never.answers", () => new Promise(() => {}));
    await client.flush();
    await using other = await connectHub(s.path);
    const inflight = other.request("never.answers", "x", { timeout: 60_000 });
    await client.flush();
    await other.flush();
    s.server.abort();
    await rejectsWith(inflight, "ECONNRESET");
    await until(() => !client.connected, 5000, "the client notices");
    await rejectsWith(client.publish("a.b", "x"), "ETIMEDOUT", /50 ms/);
    await rejectsWith(client.flush(), "ECONNRESET");
  });

  test('a publish held up by a "block" subscriber keeps the connection alive; flush() waits for it', async () => {
    await using s = await served();
    const held = s.hub.subscribe("held", { buffer: 1, overflow: "block" }); // full after one
    await using client = await connectHub(s.path, { pingInterval: 10, pingTimeout: 30 });
    await client.publish("held", "1");
    await client.publish("held", "2"); // taken by the socket; the hub holds it up
    let flushed = false;
    const flushing = client.flush().then(() => (flushed = true));
    // Many ping intervals and timeouts go by while the publish is held up.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(client.connected, true, "PINGs are answered while work waits");
    assert.equal(flushed, false, "FLUSHED waits for the held publish");
    assert.equal(text.decode((await held.next()).value!.data), "1");
    assert.equal(text.decode((await held.next()).value!.data), "2");
    await flushing;
    assert.equal(client.connected, true);
  });

  test('a publisher held back past the server\'s read bound by a "block" subscriber waits, alive', async () => {
    await using s = await served();
    const held = s.hub.subscribe("held", { buffer: 1, overflow: "block" });
    // Its PINGs wait unread behind 16 MiB of held PUBs; the server's heartbeat answers them.
    // The hold outlasts pingTimeout by half, so unanswered PINGs would end the connection. The
    // timeout leaves room for a collector's pause late in a long suite, where client and server
    // share this process: at 2 s it was sometimes taken for dead (on ad4ef6a too).
    await using client = await connectHub(s.path, { pingInterval: 300, pingTimeout: 4000 });
    const big = new Uint8Array(1024 * 1024);
    const publishes = Array.from({ length: 40 }, () => client.publish("held", big));
    let failed: unknown;
    for (const p of publishes) p.catch((err) => failed ??= err);
    await new Promise((resolve) => setTimeout(resolve, 6000));
    assert.equal(failed, undefined, "no publish failed");
    assert.equal(client.connected, true, "held back is not dead");
    // Bounded, so that a lost message fails the test rather than hanging it.
    await deadline(
      (async () => {
        for (let i = 0; i < 40; i++) await held.next();
      })(),
      20_000,
      { op: "take the 40 held messages" },
    );
    assert.equal(failed, undefined, "no publish failed");
    await Promise.all(publishes);
    await client.flush();
  });

  test("a server that stops answering PINGs is taken for dead", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/mute.sock`;
    await using listener = await listen(path);
    const accepted = (async () => {
      for await (const conn of listener) {
        const w = conn.writable.getWriter();
        await w.write(
          encodeFramesRaw([
            encodeHub({ type: Control.WELCOME, version: VERSION, maxInflight: 0, maxFrameSize: 0 }),
            encodeHub({ type: Op.STREAMS, body: jsonBody([]) }),
          ]),
        );
        // Reads everything and answers nothing.
        void conn.readable.pipeTo(new WritableStream()).catch(() => {});
        return conn;
      }
    })();
    await using client = await connectHub(path, {
      pingInterval: 30,
      pingTimeout: 60,
      reconnect: false,
    });
    assert.equal(client.connected, true);
    await until(() => !client.connected, 5000, "the ping times out");
    (await accepted)?.close();
  });

  test("a client that stays disconnected ends its subscriptions and fails its calls with ECONNRESET", async () => {
    for (const reconnect of [false, { maxAttempts: 2, initialDelay: 5, maxDelay: 10 }] as const) {
      const s = await served();
      await using client = await connectHub(s.path, { reconnect });
      const sub = client.subscribe("x.>");
      // Checked from the start: the rejection comes while the hub goes away.
      const reading = rejectsWith(
        (async () => {
          for await (const _ of sub) { /* nothing comes */ }
        })(),
        "ECONNRESET",
        reconnect ? /reconnecting gave up/ : /reconnect is off/,
      );
      await client.flush();
      await s[Symbol.asyncDispose](); // the hub goes away for good
      await reading;
      await rejectsWith(
        client.publish("x.y", "late"),
        "ECONNRESET",
        /Cannot publish as the connection/,
      );
      await rejectsWith(client.request("x.y", "late"), "ECONNRESET", /Cannot request/);
      assert.throws(() => client.subscribe("x.z"), (err: IpcError) => err.code === "ECONNRESET");
    }
  });

  test("a client that asks for a huge buffer and never reads gets no more than the server's caps", async () => {
    await using s = await served({ maxSubscriptionBuffer: 100, maxSubscriptionBytes: 10_000 });
    await assert.rejects(serveHub(s.hub, `${s.path}.2`, { maxSubscriptionBuffer: 0 }), RangeError);
    const conn = await connect(s.path);
    const writer = conn.writable.getWriter();
    const sub = (sid: number, pattern: string): Uint8Array =>
      encodeHub({
        type: Op.SUB,
        sid,
        buffer: 0xffff_ffff,
        credit: 0, // nothing may be sent to it, and it reads nothing anyway
        maxBytes: 0,
        ordered: false,
        overflow: "drop-oldest",
        pattern,
        queue: undefined,
      });
    await writer.write(encodeFramesRaw([hello(), sub(1, "small"), sub(2, "large")]));
    await until(() => s.hub.stats().subscriptions.length === 2, 5000, "both subscriptions");
    for (let i = 0; i < 1000; i++) await s.hub.publish("small", "x");
    for (let i = 0; i < 1000; i++) await s.hub.publish("large", new Uint8Array(500));
    const [small, large] = s.hub.stats().subscriptions;
    assert.deepEqual([small?.pending, small?.dropped], [100, 900], "at most 100 messages held");
    assert.deepEqual(
      [large?.pending, large?.pendingBytes],
      [20, 10_000],
      "at most 10,000 bytes held",
    );
    conn.close();
  });

  test('PUBs held up by a full "block" subscription queue up to 16 MiB, then the client is read no further', async () => {
    await using s = await served();
    s.hub.subscribe("big", { buffer: 1, overflow: "block" }); // full after one, never read
    const conn = await connect(s.path);
    const writer = conn.writable.getWriter();
    await writer.write(encodeFramesRaw([hello()]));
    writer.releaseLock();
    const size = 64 * 1024;
    const pub = encodeFramesRaw([
      encodeHub({
        type: Op.PUB,
        env: { topic: "big", data: new Uint8Array(size), headers: {}, seq: 0 },
      }),
    ]);
    const { accepted, writing } = await acceptedWhileStalled(conn.writable, pub, 2000);
    const written = writing.catch(() => {}); // it fails once the connection closes, below
    // 16 MiB queued, plus what the sockets and one read hold: far from 1,024 PUBs (64 MiB).
    const mib = (accepted * size) / 2 ** 20;
    assert.ok(mib >= 16 && mib < 32, `${mib} MiB accepted before the server stopped reading`);
    conn.close();
    await written;
    // Its reads wait behind a subscriber that never reads: a graceful close would wait its bound.
    s.server.abort();
  });

  test("a client that sends PINGs, FLUSHes and refused SUBs but never reads is read no further", async () => {
    await using s = await served({ maxSubscriptions: 1 });
    const subMessage = (sid: number) =>
      encodeHub({
        type: Op.SUB,
        sid,
        buffer: 1,
        credit: 1,
        ordered: false,
        maxBytes: 0,
        overflow: "drop-oldest",
        pattern: "x",
        queue: undefined,
      });
    for (
      const [name, payloads] of [
        ["PING", Array.from({ length: 8192 }, () => encodeHub({ type: Control.PING }))],
        ["FLUSH", Array.from({ length: 8192 }, () => encodeHub({ type: Control.FLUSH }))],
        // Past maxSubscriptions: refused, and their sids stay free to be refused again.
        ["SUB", Array.from({ length: 4096 }, (_, i) => subMessage(i + 1))],
      ] as const
    ) {
      const conn = await connect(s.path);
      const writer = conn.writable.getWriter();
      await writer.write(encodeFramesRaw([hello(), subMessage(0)])); // the one it may have
      writer.releaseLock();
      // Each chunk asks for 4,096–8,192 answers; unread, they would pile up without a bound.
      const chunk = encodeFramesRaw([...payloads]);
      const { accepted, writing } = await acceptedWhileStalled(conn.writable, chunk, 400);
      const written = writing.catch(() => {});
      assert.ok(
        accepted < 100,
        `${name}: ${accepted} chunks accepted of a client that never reads`,
      );
      conn.close();
      await written;
    }
  });

  test("requests through the hub are bounded per connection and end with it", async () => {
    await using s = await served({ maxInflight: 4 });
    s.hub.subscribe("silent", { buffer: 1024 }); // takes requests and never answers
    const conn = await connect(s.path);
    const writer = conn.writable.getWriter();
    await writer.write(encodeFramesRaw([hello()]));
    writer.releaseLock();
    const req = encodeHub({
      type: Op.REQ,
      id: 1,
      timeout: 600_000, // only the connection's end ends them here
      env: { topic: "silent", data: new Uint8Array(32 * 1024), headers: {}, seq: 0 },
    });
    const chunk = encodeFramesRaw(Array.from({ length: 16 }, () => req));
    const { accepted, writing } = await acceptedWhileStalled(conn.writable, chunk, 400);
    const written = writing.catch(() => {});
    assert.ok(accepted < 100, `${accepted} chunks of 16 requests accepted`);
    assert.equal(s.hub.stats().requests, 4, "at most maxInflight wait in the hub");
    conn.close();
    await written;
    await until(
      () => s.hub.stats().requests === 0,
      5000,
      "the requests to end with the connection",
    );
  });

  test("a client keeps to the server's maxInflight: 50 requests at once to its own handler all succeed", async () => {
    await using s = await served({ maxInflight: 2 });
    await using client = await connectHub(s.path);
    client.handle("double", (m) => String(2 * Number(text.decode(m.data))));
    await client.flush();
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.request("double", String(i))),
    );
    assert.deepEqual(replies.map((r) => Number(text.decode(r.data))), replies.map((_, i) => 2 * i));
  });

  test("maxConnections and maxSubscriptions are enforced", async () => {
    await using s = await served({ maxConnections: 2, maxSubscriptions: 2 });
    await using a = await connectHub(s.path);
    await using b = await connectHub(s.path);
    await rejectsWith(connectHub(s.path), "ECONNREFUSED", /maxConnections/);
    a.subscribe("one");
    a.subscribe("two");
    const third = a.subscribe("three");
    await assert.rejects(
      (async () => {
        while (!(await third.next()).done);
      })(),
      /2 subscriptions per connection/,
    );
    await b.publish("one", "x");
  });

  test("500 clients at once each get the message", async () => {
    await using s = await served();
    const clients = [];
    for (let i = 0; i < 5; i++) {
      clients.push(...await Promise.all(Array.from({ length: 100 }, () => connectHub(s.path))));
    }
    const subs = clients.map((c) => c.subscribe("all"));
    await Promise.all(clients.map((c) => c.flush()));
    await s.hub.publish("all", "hi");
    const got = await Promise.all(
      subs.map(async (sub) => text.decode((await sub.next()).value!.data)),
    );
    assert.equal(got.filter((t) => t === "hi").length, 500);
    for (const c of clients) c.close();
  });

  test("shutdown() says GOAWAY and closes; the clients see the hub go", async () => {
    await using s = await served();
    await using client = await connectHub(s.path, { reconnect: false });
    client.subscribe("x");
    await client.flush();
    await s.server.shutdown();
    await until(() => !client.connected, 5000, "the client sees the hub go");
    assert.equal(s.server.connections, 0);
  });

  test("three runtimes at once: a Deno hub, a Bun publisher, a Node subscriber, 100,000 messages", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/x.sock`;
    const count = 100_000;
    await using server = spawnFixture("deno", "hub_server.ts", [path]);
    assert.equal(await server.line(), "ready");
    await using subscriber = spawnFixture("node", "hub_sub.ts", [path, String(count)]);
    assert.equal(await subscriber.line(), "subscribed");
    await using publisher = spawnFixture("bun", "hub_pub.ts", [path, String(count)]);
    assert.equal(await publisher.line(120_000), "done");
    assert.equal(await subscriber.line(120_000), `ok ${count}`);
    assert.ok(["deno", "bun", "node"].includes(runtimeName()));
  });
});
