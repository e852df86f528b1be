import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connect, formatAddress, IpcError, json, lines, text } from "../../mod.ts";
import { framed } from "../../src/frame/framed.ts";
import { dial, RemoteError, type RpcContext, serve, serveLines } from "../../src/rpc/mod.ts";
import { encode, Type } from "../../src/rpc/protocol.ts";
import { Control, VERSION } from "../../src/session/protocol.ts";
import {
  readAll,
  rejectsWith,
  rt,
  RUNTIMES,
  skipWithout,
  spawnFixture,
  tempDir,
  until,
} from "../_helpers.ts";

const T = { timeout: 60_000 };
const withNc = { ...T, skip: await skipWithout("nc") };
const utf8 = new TextEncoder();
const echo = (request: Uint8Array): Uint8Array => request;

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Sends raw frames as a misbehaving client would; returns what the server sent until it closed. */
async function rawSession(address: string, frames: Uint8Array[]): Promise<Uint8Array[]> {
  const conn = framed(await connect(address));
  const writer = conn.writable.getWriter();
  for (const f of frames) await writer.write(f).catch(() => {});
  const replies: Uint8Array[] = [];
  try {
    for await (const frame of conn.readable) replies.push(frame);
  } catch {
    // A reset after the server's last frame is as good as an end here.
  }
  return replies;
}

const hello = (over: Partial<{ version: number; app: string; token: string }> = {}): Uint8Array =>
  encode({
    type: Control.HELLO,
    version: over.version ?? VERSION,
    app: over.app ?? "dockipc",
    token: utf8.encode(over.token ?? ""),
  });

describe("RPC", () => {
  test("1,000 concurrent requests on one connection, replies out of order", T, async () => {
    await using dir = await tempDir();
    let running = 0;
    let most = 0;
    await using server = await serve(`${dir.path}/r.sock`, async (request, { signal }) => {
      most = Math.max(most, ++running);
      // Later requests wait less: replies come back in a different order than requests went out.
      await sleep(20 - (request[0]! % 20), signal);
      running--;
      return request;
    }, { maxInflight: 1000 });
    await using client = await dial(server.addr);
    const requests = Array.from({ length: 1000 }, (_, i) => new Uint8Array([i % 256, i >> 8]));
    const order: number[] = [];
    const replies = await Promise.all(
      requests.map((r, i) => client.request(r).then((reply) => (order.push(i), reply))),
    );
    assert.deepEqual(replies, requests);
    assert.notDeepEqual(
      order,
      [...order].sort((a, b) => a - b),
      "replies arrived in request order",
    );
    assert.ok(most > 100, `only ${most} ran at once`);
  });

  test("200 clients at once, each with its own requests", T, async () => {
    await using dir = await tempDir();
    await using server = await serve(`${dir.path}/r.sock`, echo);
    const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      await using client = await dial(server.addr);
      const replies = await Promise.all([0, 1, 2].map((k) => client.request(`${i}-${k}`)));
      return replies.map((r) => text.decode(r));
    }));
    results.forEach((r, i) => assert.deepEqual(r, [`${i}-0`, `${i}-1`, `${i}-2`]));
  });

  test(
    "a handler that throws reaches the client as RemoteError, without a stack unless exposed",
    T,
    async () => {
      for (const exposeStack of [false, true]) {
        await using server = await serve("tcp://127.0.0.1:0", () => {
          throw Object.assign(new RangeError("bad input"), { code: "EBADINPUT" });
        }, { exposeStack });
        await using client = await dial(server.addr);
        const err = await client.request("x").catch((e: unknown) => e);
        assert.ok(err instanceof RemoteError);
        assert.equal(err.code, "EREMOTE");
        assert.equal(err.remoteCode, "EBADINPUT");
        assert.equal(err.message, "bad input");
        assert.equal(err.remoteStack === undefined, !exposeStack);
        // The connection is fine afterwards.
        await assert.rejects(client.request("y"), RemoteError);
      }
      await using server = await serve("tcp://127.0.0.1:0", () => {
        throw new TypeError("no code");
      });
      await using client = await dial(server.addr);
      await assert.rejects(
        client.request(""),
        (e: unknown) => e instanceof RemoteError && e.remoteCode === "TypeError",
      );
    },
  );

  test(
    "handlers answer with bytes, text, JSON values, nothing or streams; anything else is ECODEC",
    T,
    async () => {
      await using server = await serve("tcp://127.0.0.1:0", (request) => {
        switch (new TextDecoder().decode(request)) {
          case "number":
            return 42;
          case "object":
            return { ok: true, items: ["a"] };
          case "nothing":
            return undefined;
          case "lines":
            return ReadableStream.from(["one\n", new TextEncoder().encode("two\n")]);
          case "bad stream":
            return ReadableStream.from(["fine", 7]) as ReadableStream<string>;
          default:
            return new Set([1]) as unknown as string;
        }
      });
      await using client = await dial(server.addr);
      assert.equal(json.decode(await client.request("number")), 42);
      assert.deepEqual(json.decode(await client.request("object")), { ok: true, items: ["a"] });
      assert.equal((await client.request("nothing")).length, 0);
      const lines: string[] = [];
      for await (const chunk of client.requestStream("lines")) lines.push(text.decode(chunk));
      assert.deepEqual(lines, ["one\n", "two\n"]);
      const bad = await client.request("set").catch((e: unknown) => e);
      assert.ok(bad instanceof RemoteError, String(bad));
      assert.equal(bad.remoteCode, "ECODEC");
      assert.match(bad.message, /The handler answered with something that cannot be sent/);
      assert.match(bad.message, /a Set as JSON without losing its contents/);
      const chunks: string[] = [];
      const streamed = await (async () => {
        for await (const chunk of client.requestStream("bad stream")) {
          chunks.push(text.decode(chunk));
        }
      })().catch((e: unknown) => e);
      assert.deepEqual(chunks, ["fine"]);
      assert.ok(
        streamed instanceof RemoteError && streamed.remoteCode === "ECODEC",
        String(streamed),
      );
      assert.match(streamed.message, /a chunk that is a number \(7\)/);
    },
  );

  test(
    "a hanging handler: the client's timeout fires and the handler's signal aborts",
    T,
    async () => {
      let aborted: (reason: unknown) => void;
      const handlerSaw = new Promise<unknown>((resolve) => (aborted = resolve));
      await using server = await serve(
        "tcp://127.0.0.1:0",
        (_, ctx: RpcContext) =>
          new Promise((_, reject) => {
            ctx.signal.addEventListener("abort", () => {
              aborted(ctx.signal.reason);
              reject(ctx.signal.reason);
            });
          }),
      );
      await using client = await dial(server.addr);
      await rejectsWith(client.request("x", { timeout: 50 }), "ETIMEDOUT", /within 50 ms/);
      const reason = await handlerSaw;
      assert.ok(reason instanceof IpcError && reason.code === "ECLOSED", String(reason));
    },
  );

  test(
    "timeouts still fire after the client went idle, whatever the timeouts of earlier requests",
    T,
    async () => {
      // "hang" is answered never: its handler ends when the client's timeout cancels it.
      await using server = await serve(
        "tcp://127.0.0.1:0",
        (request, { signal }: RpcContext) =>
          text.decode(request) === "hang"
            ? new Promise<never>((_, reject) => signal.addEventListener("abort", reject))
            : request,
      );
      await using client = await dial(server.addr);
      // Finished requests leave the shared timer armed for their deadlines, long or short.
      assert.equal(text.decode(await client.request("a", { timeout: 60_000 })), "a");
      await rejectsWith(client.request("hang", { timeout: 40 }), "ETIMEDOUT", /within 40 ms/);
      assert.equal(text.decode(await client.request("b", { timeout: 30 })), "b");
      // The timer set for that one fires with nothing left to expire; later ones still time out.
      await new Promise((resolve) => setTimeout(resolve, 60));
      await rejectsWith(client.request("hang", { timeout: 40 }), "ETIMEDOUT", /within 40 ms/);
      const slow = client.request("hang", { timeout: 80 });
      const quick = client.request("c", { timeout: 60_000 });
      assert.equal(text.decode(await quick), "c");
      await rejectsWith(slow, "ETIMEDOUT", /within 80 ms/);
    },
  );

  test(
    "a timeout past the longest timer waits as long as it takes; NaN or a negative one is refused",
    T,
    async () => {
      await using server = await serve("tcp://127.0.0.1:0", async (request) => {
        await new Promise((resolve) => setTimeout(resolve, 30));
        return request;
      });
      await using client = await dial(server.addr);
      for (const timeout of [Infinity, 2 ** 31, 2 ** 40]) {
        assert.equal(new TextDecoder().decode(await client.request("ok", { timeout })), "ok");
      }
      for (const timeout of [NaN, -1, 0]) {
        await assert.rejects(client.request("x", { timeout }), RangeError);
        assert.throws(() => client.requestStream("x", { timeout }), RangeError);
      }
    },
  );

  test("a client abort mid-request rejects with the reason and aborts the handler", T, async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    let handlerAborted = false;
    await using server = await serve("tcp://127.0.0.1:0", async (_, { signal }) => {
      started();
      await sleep(30_000, signal).catch((e) => {
        handlerAborted = true;
        throw e;
      });
      return "late";
    });
    await using client = await dial(server.addr);
    const controller = new AbortController();
    const pending = client.request("x", { signal: controller.signal });
    await running;
    controller.abort(new Error("user pressed ^C"));
    await assert.rejects(pending, /user pressed \^C/);
    await until(() => handlerAborted, 10_000, "the handler's signal to abort");
    assert.equal(server.connections, 1, "the connection stays open");
  });

  test(
    "a handler that looks at its signal only after the client gave up sees it aborted",
    T,
    async () => {
      let release!: () => void;
      const later = new Promise<void>((resolve) => (release = resolve));
      let seen: boolean | undefined;
      let started!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      await using server = await serve("tcp://127.0.0.1:0", async (request, ctx) => {
        if (text.decode(request) === "barrier") return "passed";
        started();
        await later;
        seen = ctx.signal.aborted;
        return "late";
      });
      await using client = await dial(server.addr);
      const controller = new AbortController();
      const pending = client.request("x", { signal: controller.signal }).catch((e: unknown) => e);
      await running;
      controller.abort(new Error("gave up"));
      assert.match(String(await pending), /gave up/);
      // The server reads a connection in order: once the barrier's reply is back, it has
      // seen the CANCEL sent before it.
      assert.equal(text.decode(await client.request("barrier")), "passed");
      release();
      await until(() => seen !== undefined, 10_000, "the handler to look at its signal");
      assert.equal(seen, true);
    },
  );

  test(
    "requestStream() delivers a streamed reply chunk by chunk; cancelling it stops the handler",
    T,
    async () => {
      let stopped = false;
      await using server = await serve("tcp://127.0.0.1:0", (request) => {
        if (text.decode(request) === "forever") {
          return new ReadableStream<Uint8Array>({
            pull: (c) =>
              new Promise<void>((resolve) =>
                setTimeout(() => {
                  if (!stopped) c.enqueue(utf8.encode("."));
                  resolve();
                }, 1)
              ),
            cancel: () => void (stopped = true),
          });
        }
        return ReadableStream.from(["a", "bb", "ccc"].map((s) => utf8.encode(s)));
      });
      await using client = await dial(server.addr);
      const chunks = await Array.fromAsync(client.requestStream("three"));
      assert.deepEqual(chunks.map((c) => text.decode(c)), ["a", "bb", "ccc"]);
      assert.equal(text.decode(await client.request("three")), "abbccc");
      const reader = client.requestStream("forever").getReader();
      for (let i = 0; i < 5; i++) assert.equal(text.decode((await reader.read()).value!), ".");
      await reader.cancel(new Error("enough"));
      await until(() => stopped, 10_000, "the server's stream to be cancelled");
    },
  );

  for (
    const [transport, mode] of [["unix", "wait"], ["tcp", "wait"], ["unix", "stream"]] as const
  ) {
    test(
      `a client killed with SIGKILL aborts its handlers at once (${transport}, ${mode})`,
      T,
      async () => {
        await using dir = await tempDir();
        const aborted = new Set<string>();
        let chunks = 0;
        let started = 0;
        await using server = await serve(
          transport === "unix" ? `${dir.path}/rpc.sock` : "tcp://127.0.0.1:0",
          (request, { signal }) => {
            const what = text.decode(request);
            started++;
            signal.addEventListener("abort", () => aborted.add(what), { once: true });
            if (what === "wait") return sleep(600_000, signal).then(() => "late");
            // A stream the client reads only once: it waits for the client's credit.
            return new ReadableStream<Uint8Array>({
              pull: (c) => void c.enqueue(new Uint8Array(chunks++ === 0 ? 1 : 1024)),
            });
          },
        );
        await using child = spawnFixture(rt.name, "rpc_hang.ts", [
          formatAddress(server.addr),
          mode,
        ]);
        assert.equal(await child.line(), "calling");
        await until(() => started === (mode === "stream" ? 2 : 1), 10_000, "the calls to start");
        child.process.kill("SIGKILL");
        await child.status.catch(() => {});
        await until(() => aborted.size === started, 10_000, "the handlers' signals to abort");
        const produced = chunks;
        await until(() => server.connections === 0, 10_000, "the connection to go");
        assert.ok(chunks - produced <= 16, `${chunks - produced} chunks made after the abort`);
      },
    );
  }

  test("serve() and serveLines() refuse a handler that is not a function", async () => {
    await using dir = await tempDir();
    await assert.rejects(
      serve(`${dir.path}/a.sock`, undefined as unknown as () => string),
      /Cannot serve RPC as the handler must be a function: got undefined/,
    );
    await assert.rejects(
      serveLines(`${dir.path}/b.sock`, "x" as unknown as () => string),
      /Cannot serve lines as the handler must be a function: got string/,
    );
  });

  test("the handshake refuses a wrong token, app id or version with a clear error", T, async () => {
    await using server = await serve("tcp://127.0.0.1:0", echo, { app: "daemon", token: "s3cret" });
    await rejectsWith(
      dial(server.addr, { app: "daemon", token: "wrong" }),
      "EAUTH",
      /server refused: The client's token is wrong/,
    );
    await rejectsWith(dial(server.addr, { app: "daemon" }), "EAUTH");
    await rejectsWith(
      dial(server.addr, { app: "other", token: "s3cret" }),
      "EAUTH",
      /for app "other"; this server is "daemon"/,
    );
    const address = `127.0.0.1:${(server.addr as { port: number }).port}`;
    const replies = await rawSession(address, [
      hello({ version: 99, app: "daemon", token: "s3cret" }),
    ]);
    assert.equal(replies[0]![0], Control.REFUSE);
    assert.match(
      text.decode(replies[0]!),
      new RegExp(`protocol version 99; this server speaks ${VERSION}`),
    );
    await using ok = await dial(server.addr, { app: "daemon", token: "s3cret" });
    assert.equal(text.decode(await ok.request("fine")), "fine");
  });

  test(
    "garbage, an oversize frame and unknown messages close that connection; others go on",
    T,
    async () => {
      await using dir = await tempDir();
      await using server = await serve(`${dir.path}/r.sock`, echo, { maxFrameSize: 1024 });
      await using good = await dial(server.addr);
      const path = `${dir.path}/r.sock`;
      // Garbage instead of a handshake: refused with EPROTOCOL.
      const garbage = await rawSession(path, [utf8.encode("GET / HTTP/1.1")]);
      assert.match(new TextDecoder().decode(garbage[0] ?? new Uint8Array()), /EPROTOCOL/);
      // Raw bytes that are not even frames: the length says 1.9 GB, more than maxFrameSize.
      const raw = await connect(path);
      const w = raw.writable.getWriter();
      await w.write(utf8.encode("GARBAGE!"));
      const refused = await readAll(raw.readable).catch(() => new Uint8Array(0));
      assert.equal(refused[4], Control.REFUSE, "one frame, a REFUSE, and nothing else");
      assert.match(new TextDecoder().decode(refused), /EFRAMETOOLARGE/);
      // After a good handshake: an unknown message type, then an oversize frame.
      for (const bad of [new Uint8Array([99, 1, 2]), new Uint8Array(2000)]) {
        const session = await rawSession(path, [
          hello(),
          bad,
          encode({ type: Type.REQUEST, id: 1, data: utf8.encode("x") }),
        ]);
        assert.equal(session[0]![0], Control.WELCOME);
        assert.equal(session[1]![0], Control.REFUSE, "the bad input is refused, saying why");
        assert.equal(session.length, 2, "nothing else is answered after bad input");
      }
      assert.equal(text.decode(await good.request("still served")), "still served");
    },
  );

  test(
    "a handler error longer than a field is cut at a character boundary; the connection goes on",
    T,
    async () => {
      await using server = await serve("tcp://127.0.0.1:0", (request) => {
        // 1 + 3 × 30,000 bytes: a cut at 65,535 bytes would fall inside a character.
        if (text.decode(request) === "long") throw new Error(`x${"€".repeat(30_000)}`);
        return request;
      });
      await using client = await dial(server.addr, { reconnect: false });
      const other = client.request("other");
      const err = await client.request("long").catch((e: unknown) => e);
      assert.ok(err instanceof RemoteError, String(err));
      assert.equal(
        err.message,
        `x${"€".repeat(21_844)}`,
        "cut before the character that would split",
      );
      assert.equal(text.decode(await other), "other");
      assert.equal(text.decode(await client.request("after")), "after");
    },
  );

  test("a request or reply over maxFrameSize fails that request only", T, async () => {
    await using server = await serve(
      "tcp://127.0.0.1:0",
      (request) => text.decode(request) === "big" ? new Uint8Array(5000) : request,
      { maxFrameSize: 1000 },
    );
    await using client = await dial(server.addr, { maxFrameSize: 1000 });
    await rejectsWith(client.request(new Uint8Array(2000), { timeout: 60_000 }), "EFRAMETOOLARGE");
    const err = await client.request("big", { timeout: 60_000 }).catch((e: unknown) => e);
    assert.ok(err instanceof RemoteError && err.remoteCode === "EFRAMETOOLARGE", String(err));
    assert.equal(text.decode(await client.request("small")), "small");
  });

  test("a connection that sends no handshake is closed after handshakeTimeout", T, async () => {
    await using server = await serve("tcp://127.0.0.1:0", echo, { handshakeTimeout: 100 });
    const conn = await connect(server.addr);
    const reply = framed(conn);
    const frames = await Array.fromAsync(reply.readable);
    assert.match(text.decode(frames[0]!), /No handshake within 100 ms/);
  });

  test("maxInflight bounds the handlers running for one connection; the rest wait", T, async () => {
    let running = 0;
    let most = 0;
    await using server = await serve("tcp://127.0.0.1:0", async (request, { signal }) => {
      most = Math.max(most, ++running);
      await sleep(5, signal);
      running--;
      return request;
    }, { maxInflight: 4 });
    await using client = await dial(server.addr);
    const replies = await Promise.all(
      Array.from({ length: 100 }, (_, i) => client.request(String(i))),
    );
    assert.equal(replies.length, 100);
    assert.equal(most, 4);
  });

  test(
    "at maxInflight, cancelling hung requests still reaches their handlers, and new requests run",
    T,
    async () => {
      let running = 0;
      let most = 0;
      let begun = 0;
      let aborted = 0;
      await using server = await serve("tcp://127.0.0.1:0", async (request, { signal }) => {
        if (text.decode(request) === "quick") return "quick";
        begun++;
        most = Math.max(most, ++running);
        // Hangs until the client gives up on it.
        await new Promise((_, reject) => {
          signal.addEventListener("abort", () => {
            aborted++;
            running--;
            reject(signal.reason);
          });
        });
        return "never";
      }, { maxInflight: 2 });
      await using client = await dial(server.addr);
      const hung = Array.from({ length: 4 }, () => client.request("hang", { timeout: 100 }));
      for (const request of hung) await rejectsWith(request, "ETIMEDOUT");
      // The CANCELs got through although the server was at maxInflight, so this one runs.
      assert.equal(text.decode(await client.request("quick", { timeout: 30_000 })), "quick");
      // Two ran at once at most, and every handler that began was aborted in the end.
      await until(() => aborted === begun, 10_000, "every hung handler to be aborted");
      assert.ok(begun >= 2);
      assert.equal(most, 2);
    },
  );

  test(
    "maxConnections refuses a client beyond it; idleTimeout closes idle connections",
    T,
    async () => {
      await using server = await serve("tcp://127.0.0.1:0", echo, { maxConnections: 2 });
      await using a = await dial(server.addr);
      await using b = await dial(server.addr);
      await rejectsWith(dial(server.addr), "ECONNREFUSED", /maxConnections \(2\)/);
      a.close();
      await until(() => server.connections < 2, 10_000, "a's connection to close");
      await using c = await dial(server.addr);
      assert.equal(text.decode(await c.request("in")), "in");
      assert.equal(text.decode(await b.request("b")), "b");

      await using idle = await serve("tcp://127.0.0.1:0", async (request) => {
        if (text.decode(request) === "slow") await new Promise((r) => setTimeout(r, 300));
        return request;
      }, { idleTimeout: 50 });
      await using sleeper = await dial(idle.addr, { reconnect: false, pingInterval: 60_000 });
      // A request that runs six idle periods keeps its connection: it is not idle.
      assert.equal(text.decode(await sleeper.request("slow")), "slow");
      assert.equal(text.decode(await sleeper.request("x")), "x");
      await until(() => idle.connections === 0, 10_000, "the idle connection to close");
      await rejectsWith(sleeper.request("y"), "ECONNRESET");
    },
  );

  test(
    "shutdown() waits for requests in flight, refuses new connections, then closes",
    T,
    async () => {
      await using dir = await tempDir();
      let started = 0;
      let finished = 0;
      const server = await serve(`${dir.path}/r.sock`, async (_, { signal }) => {
        started++;
        await sleep(100, signal);
        finished++;
        return "done";
      });
      const client = await dial(server.addr);
      const inflight = Array.from({ length: 5 }, () => client.request("x"));
      await until(() => started === 5, 10_000, "the handlers to start");
      await server.shutdown();
      assert.equal(finished, 5);
      assert.deepEqual(
        (await Promise.all(inflight)).map((r) => text.decode(r)),
        Array(5).fill("done"),
      );
      await rejectsWith(dial(server.addr), "ENOENT");
      client.close();
    },
  );

  test("shutdown({ signal }) aborts handlers when the signal fires first", T, async () => {
    let aborted = 0;
    let started = 0;
    const server = await serve("tcp://127.0.0.1:0", async (_, { signal }) => {
      started++;
      await sleep(30_000, signal).catch((e) => {
        aborted++;
        throw e;
      });
      return "never";
    });
    const client = await dial(server.addr);
    const pending = client.request("x").catch((e: unknown) => e);
    await until(() => started === 1, 10_000, "the handler to start");
    await server.shutdown({ signal: AbortSignal.timeout(50) });
    const err = await pending;
    assert.ok(err instanceof IpcError && err.code === "ECONNRESET", String(err));
    assert.equal(aborted, 1);
    client.close();
  });

  test("a server killed with SIGKILL mid-request: a typed error, then reconnect and succeed", {
    timeout: 120_000,
  }, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/k.sock`;
    const first = spawnFixture(rt.name, "rpc_server.ts", [path]);
    assert.equal(await first.line(), "ready");
    await using client = await dial(path, { reconnect: { initialDelay: 20, maxDelay: 200 } });
    const firstPid = text.decode(await client.request("pid"));
    const lost = client.request("slow:30000").catch((e: unknown) => e);
    const resent = client.request("slow:1000", { idempotent: true });
    // The server reads a connection in order: once "pid" is answered, both slow requests run.
    assert.equal(text.decode(await client.request("pid")), firstPid);
    first.process.kill("SIGKILL");
    await first.status;
    const err = await lost;
    assert.ok(err instanceof IpcError && err.code === "ECONNRESET", String(err));
    // Requests made while the server is down wait for it (bounded by their own timeout).
    const waiting = client.request("pid", { timeout: 30_000 });
    await using second = spawnFixture(rt.name, "rpc_server.ts", [path]);
    assert.equal(await second.line(), "ready");
    const secondPid = text.decode(await waiting);
    assert.notEqual(secondPid, firstPid);
    assert.equal(
      text.decode(await resent),
      `slow done by ${secondPid}`,
      "the idempotent request was sent again, to the new server",
    );
    await first[Symbol.asyncDispose]();
  });

  test("failFast: while not connected, requests fail at once", T, async () => {
    const server = await serve("tcp://127.0.0.1:0", echo);
    const client = await dial(server.addr, { failFast: true });
    server.close();
    await until(() => server.connections === 0, 10_000, "the server to close");
    await rejectsWith(client.request("x", { timeout: 60_000 }), "ECONNRESET");
    client.close();
    await rejectsWith(client.request("x"), "ECLOSED");
  });

  test("cross-runtime: child clients of every runtime against this server, and a child server", {
    timeout: 120_000,
  }, async () => {
    await using dir = await tempDir();
    await using _server = await serve(
      `${dir.path}/x.sock`,
      (request) => text.decode(request).slice("echo:".length),
    );
    const reports = await Promise.all(RUNTIMES.map(async (name) => {
      await using child = spawnFixture(name, "rpc_client.ts", [`${dir.path}/x.sock`, "300"]);
      return JSON.parse(await child.line(60_000));
    }));
    assert.deepEqual(
      reports.map((r) => [r.runtime, r.replies, r.ok]),
      RUNTIMES.map((n) => [n, 300, true]),
    );
    // And this runtime as the client of a server in each other runtime.
    for (const name of RUNTIMES.filter((n) => n !== rt.name)) {
      const path = `${dir.path}/${name}.sock`;
      await using child = spawnFixture(name, "rpc_server.ts", [path]);
      assert.equal(await child.line(), "ready");
      await using client = await dial(path);
      assert.equal(text.decode(await client.request(`echo:from ${rt.name}`)), `from ${rt.name}`);
    }
  });

  test(
    "serveLines() answers nc -U and a lines() client, one reply per command",
    withNc,
    async () => {
      await using dir = await tempDir();
      const path = `${dir.path}/l.sock`;
      await using server = await serveLines(path, (command) => {
        if (command === "status") return ["state running", "clients 1"];
        if (command === "boom") throw new Error("it broke");
        return `echo ${command}`;
      });
      const nc = rt.spawn("nc", ["-U", "-N", path], {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "inherit",
      });
      const output = readAll(nc.stdout!);
      const writer = nc.stdin!.getWriter();
      await writer.write(utf8.encode("status\nboom\nhello there\n"));
      await writer.close();
      assert.equal(
        text.decode(await output),
        "state running\nclients 1\nERR it broke\necho hello there\n",
      );
      assert.equal((await nc.status).code, 0);
      const client = lines(await connect(server.addr));
      const w = client.writable.getWriter();
      await w.write("again");
      await w.close();
      assert.deepEqual(await Array.fromAsync(client.readable), ["echo again"]);
    },
  );

  test(
    "serveLines(): close() lets the command being answered finish, sends its reply, then closes",
    T,
    async () => {
      let begin: () => void = () => {};
      const begun = new Promise<void>((resolve) => (begin = resolve));
      const server = await serveLines("tcp://127.0.0.1:0", async (command) => {
        begin();
        await new Promise((resolve) => setTimeout(resolve, 50));
        return [`done ${command}`, "bye"];
      });
      const busy = lines(await connect(server.addr));
      await busy.writable.getWriter().write("work"); // its sending side stays open
      const idle = lines(await connect(server.addr));
      await begun;
      await server.close();
      assert.deepEqual(await Array.fromAsync(busy.readable), ["done work", "bye"]);
      assert.deepEqual(await Array.fromAsync(idle.readable), [], "an idle client sees a clean end");
    },
  );
});
