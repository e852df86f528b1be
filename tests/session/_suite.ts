/**
 * The session layer's behaviour, written once and run against both vocabularies on it (RPC and
 * the hub): handshake refusals with each code, reconnection, pings that find a silent server,
 * the outage queue's timeout, GOAWAY, a shutdown that drains, and closing.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Conn, connect, listen } from "../../mod.ts";
import type { ConnectionEvent, Server, ServerOptions, SessionOptions } from "../../src/rpc/mod.ts";
import { decodeHub } from "../../src/hub/protocol.ts";
import {
  Control,
  type ControlMessage,
  encodeControl,
  VERSION,
} from "../../src/session/protocol.ts";
import { encodeFramesRaw, readAll, rejectsWith, tempDir, until } from "../_helpers.ts";

/** A client of either vocabulary, reduced to what the session layer gives it. */
export interface SessionClientUnderTest extends AsyncDisposable {
  readonly connected: boolean;
  status(): AsyncIterableIterator<ConnectionEvent>;
  /** A round trip through the server that answers at once. */
  call(timeout?: number): Promise<unknown>;
  /** A round trip the server takes `ms` to answer. */
  slow(ms: number): Promise<unknown>;
  /** Sends a message of about `bytes` bytes: a request, or a publish. */
  big(bytes: number): Promise<unknown>;
  close(): Promise<void>;
  abort(): void;
}

/** One vocabulary, as the suite drives it. */
export interface Vocabulary {
  /** "RPC" or "hub", as its refusals name it. */
  readonly protocol: string;
  /** What its server sends right after WELCOME, before anything is asked of it. */
  readonly opening: readonly Uint8Array[];
  serve(path: string, options?: ServerOptions): Promise<Server>;
  dial(path: string, options?: SessionOptions): Promise<SessionClientUnderTest>;
}

/**
 * Sends `payloads` as a raw client, on a new connection to `path` or on `conn`, and reads the
 * session messages the server sends until it closes.
 */
async function rawExchange(
  path: string | Conn,
  payloads: Uint8Array[],
): Promise<ControlMessage[]> {
  const conn = typeof path === "string" ? await connect(path) : path;
  const writer = conn.writable.getWriter();
  if (payloads.length > 0) await writer.write(encodeFramesRaw(payloads));
  const bytes = await readAll(conn.readable).catch(() => new Uint8Array(0));
  await writer.close().catch(() => {});
  const out: ControlMessage[] = [];
  for (let at = 0; at + 4 <= bytes.length;) {
    const size = new DataView(bytes.buffer, bytes.byteOffset + at).getUint32(0);
    // The session's messages decode the same through either vocabulary's decoder.
    out.push(decodeHub(bytes.subarray(at + 4, at + 4 + size)) as ControlMessage);
    at += 4 + size;
  }
  return out;
}

/**
 * A server that welcomes every client (with `opening` after its WELCOME) and then never answers
 * anything again.
 */
async function mute(path: string, opening: readonly Uint8Array[]): Promise<AsyncDisposable> {
  const listener = await listen(path);
  const conns: Conn[] = [];
  void (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const w = conn.writable.getWriter();
      await w.write(
        encodeFramesRaw([
          encodeControl({
            type: Control.WELCOME,
            version: VERSION,
            maxInflight: 0,
            maxFrameSize: 0,
          }),
          ...opening,
        ]),
      ).catch(() => {});
      void conn.readable.pipeTo(new WritableStream()).catch(() => {});
    }
  })();
  return {
    [Symbol.asyncDispose]: async () => {
      for (const conn of conns) conn.close();
      await listener.close();
    },
  };
}

const hello = (over: { version?: number; app?: string } = {}): Uint8Array =>
  encodeControl({
    type: Control.HELLO,
    version: over.version ?? VERSION,
    app: over.app ?? "dockipc",
    token: new Uint8Array(0),
  });

/** Registers the suite's tests for `v`. */
export function sessionBehaviour(name: string, v: Vocabulary): void {
  test(`${name}: a wrong token or app id is refused with EAUTH, another version with EPROTOCOL`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    await using _server = await v.serve(path, { app: "billing", token: "s3cret" });
    await rejectsWith(v.dial(path, { app: "billing", token: "wrong" }), "EAUTH", /token is wrong/);
    await rejectsWith(
      v.dial(path, { app: "billing" }),
      "EAUTH",
      /sent no token; this server needs/,
    );
    await rejectsWith(v.dial(path, { app: "other", token: "s3cret" }), "EAUTH", /app "other"/);
    const [refused] = await rawExchange(path, [hello({ version: 99, app: "billing" })]);
    assert.equal(refused?.type, Control.REFUSE);
    assert.equal((refused as { code: string }).code, "EPROTOCOL");
    assert.match(
      (refused as { message: string }).message,
      new RegExp(`${v.protocol} protocol version 99; this server speaks ${VERSION}`),
    );
    await using ok = await v.dial(path, { app: "billing", token: "s3cret" });
    await ok.call();
  });

  test(`${name}: a full server refuses with ECONNREFUSED; one shutting down with ECLOSED`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    await using _server = await v.serve(path, { maxConnections: 1 });
    await using _first = await v.dial(path);
    await rejectsWith(v.dial(path), "ECONNREFUSED", /maxConnections \(1\)/);

    // A client still in its handshake when the server starts to shut down.
    const other = await v.serve(`${dir.path}/t.sock`);
    const late = await connect(`${dir.path}/t.sock`);
    await until(() => other.connections === 1, 5000, "the server to take the connection");
    const stopping = other.shutdown();
    const [refused] = await rawExchange(late, [hello()]);
    assert.equal(refused?.type, Control.REFUSE);
    assert.equal((refused as { code: string }).code, "ECLOSED");
    await stopping;
  });

  test(`${name}: silent connections do not lock clients out; past maxHandshakes the oldest go`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    for (const bad of [{ maxHandshakes: 0 }, { maxConnections: 1.5 }, { idleTimeout: -1 }]) {
      await assert.rejects(v.serve(path, bad), RangeError);
    }
    await using server = await v.serve(path, { maxConnections: 2, maxHandshakes: 4 });
    const silent = [];
    for (let i = 0; i < 10; i++) {
      silent.push(await connect(path));
      // Each is taken in before the next, so "oldest" is well defined.
      await until(() => server.connections === Math.min(i + 1, 4), 5000, "the server to take it");
    }
    // Only sessions past their handshake count toward maxConnections.
    await using _a = await v.dial(path);
    await using _b = await v.dial(path);
    await _a.call();
    await rejectsWith(v.dial(path), "ECONNREFUSED", /maxConnections \(2\)/);
    // A connection that finds four in their handshake sheds the oldest: six went as the silent
    // ones came, one more as the first client came (the next found room). The server ended them.
    const ended = await Promise.all(
      silent.map((conn) =>
        Promise.race([
          readAll(conn.readable).then(() => true, () => true),
          new Promise((resolve) => setTimeout(() => resolve(false), 300)),
        ])
      ),
    );
    assert.deepEqual(ended, Array.from({ length: 10 }, (_, i) => i < 7));
    for (const conn of silent) conn.close();
  });

  test(`${name}: a first frame (the HELLO) over 16 KiB is refused; a token is at most 8 KiB`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    await assert.rejects(v.serve(path, { token: "x".repeat(8193) }), /at most 8192 bytes/);
    await using _server = await v.serve(path, { token: "t".repeat(8192) });
    const conn = await connect(path);
    const writer = conn.writable.getWriter();
    await writer.write(new Uint8Array([1, 0, 0, 0, 1])); // a 16 MiB HELLO begins
    writer.releaseLock();
    const [refused] = await rawExchange(conn, []);
    assert.equal(refused?.type, Control.REFUSE);
    assert.equal((refused as { code: string }).code, "EFRAMETOOLARGE");
    await using ok = await v.dial(path, { token: "t".repeat(8192) });
    await ok.call();
  });

  test(`${name}: a frame trickled in a byte at a time holds a connection no longer than idleTimeout`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    await using _server = await v.serve(path, { idleTimeout: 300 });
    const conn = await connect(path);
    const writer = conn.writable.getWriter();
    await writer.write(encodeFramesRaw([hello()]));
    await writer.write(new Uint8Array([0, 0, 4, 0])); // a 1 KiB frame begins...
    let ended = false;
    const reading = readAll(conn.readable).finally(() => (ended = true)).catch(() => {});
    for (let i = 0; i < 200 && !ended; i++) {
      await writer.write(new Uint8Array([0])).catch(() => {}); // ...and never ends
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(ended, true, "the server closed it");
    await reading;
    conn.close();
  });

  test(`${name}: no WELCOME within timeout is ETIMEDOUT; no HELLO within handshakeTimeout is refused`, async () => {
    await using dir = await tempDir();
    const silent = await listen(`${dir.path}/silent.sock`);
    const held: Conn[] = [];
    void (async () => {
      for await (const conn of silent) held.push(conn);
    })();
    await rejectsWith(v.dial(`${dir.path}/silent.sock`, { timeout: 100 }), "ETIMEDOUT");
    for (const conn of held) conn.close();
    await silent.close();

    const path = `${dir.path}/s.sock`;
    await using _server = await v.serve(path, { handshakeTimeout: 50 });
    const [refused] = await rawExchange(path, []);
    assert.equal(refused?.type, Control.REFUSE);
    assert.equal((refused as { code: string }).code, "ETIMEDOUT");
  });

  test(`${name}: pings find a server that stopped answering`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/mute.sock`;
    await using _mute = await mute(path, v.opening);
    await using client = await v.dial(path, {
      pingInterval: 30,
      pingTimeout: 60,
      reconnect: false,
    });
    assert.equal(client.connected, true);
    await until(() => !client.connected, 5000, "the ping to time out");
    await rejectsWith(client.call(), "ECONNRESET", /reconnect is off/);
  });

  test(`${name}: a call made while the server is away fails with ETIMEDOUT when it stays away`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    const server = await v.serve(path);
    await using client = await v.dial(path, {
      queueTimeout: 100,
      reconnect: { initialDelay: 10, maxDelay: 20 },
    });
    await client.call();
    server.abort();
    await until(() => !client.connected, 5000, "the client to notice");
    await rejectsWith(client.call(100), "ETIMEDOUT");
    await server.close();
  });

  test(`${name}: after the server restarts the client reconnects, and a call made meanwhile gets through`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    let server = await v.serve(path);
    await using client = await v.dial(path, { reconnect: { initialDelay: 10, maxDelay: 50 } });
    await client.call();
    server.abort();
    await until(() => !client.connected, 5000, "the client to notice");
    const during = client.call(30_000);
    server = await v.serve(path);
    try {
      await during;
      assert.equal(client.connected, true);
      await client.call();
    } finally {
      await server.close();
    }
  });

  test(`${name}: status() tells disconnected, reconnecting and reconnected, then error when it gives up`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    let server = await v.serve(path);
    const client = await v.dial(path, {
      reconnect: { initialDelay: 10, maxDelay: 20, maxAttempts: 40 },
    });
    const events: ConnectionEvent[] = [];
    const early = client.status();
    const watching = (async () => {
      for await (const event of early) events.push(event);
    })();
    // A second reader follows on its own and may leave when it likes.
    const second = client.status();
    server.abort();
    await until(() => events.some((e) => e.type === "reconnecting" && e.attempt >= 2), 5000);
    assert.equal((await second.next()).value?.type, "disconnected");
    await second.return?.();
    server = await v.serve(path);
    await until(() => events.some((e) => e.type === "reconnected"), 5000, "the reconnection");
    await client.call();
    const lost = events.find((e) => e.type === "disconnected");
    assert.ok(lost?.type === "disconnected" && lost.error.code === "ECONNRESET", String(lost));
    const retries = events.filter((e) => e.type === "reconnecting");
    assert.deepEqual(retries.map((e) => e.type === "reconnecting" && e.attempt).slice(0, 2), [
      1,
      2,
    ]);
    const failed = retries[1];
    // Why the attempt before failed: nothing listens at the path any more.
    assert.ok(
      failed?.type === "reconnecting" &&
        ["ENOENT", "ECONNREFUSED"].includes(failed.error?.code ?? ""),
      JSON.stringify(failed),
    );
    // Gone for good: "error", and the events end.
    server.abort();
    await until(() => events.at(-1)?.type === "error", 10_000, "the client to give up");
    await watching;
    const last = events.at(-1);
    assert.ok(last?.type === "error" && last.error.code === "ECONNRESET", String(last));
    await rejectsWith(client.call(), "ECONNRESET");
    await client.close();
    // A reader that starts after the end ends at once.
    assert.equal((await client.status().next()).done, true);
  });

  test(`${name}: a message over the server's maxFrameSize is refused here, with the reason; the connection stays`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    await using _server = await v.serve(path, { maxFrameSize: 1024 });
    await using client = await v.dial(path, { reconnect: false });
    await client.call();
    await rejectsWith(client.big(4096), "EFRAMETOOLARGE", /exceeds maxFrameSize \(1024\)/);
    assert.equal(client.connected, true);
    await client.call();
  });

  test(`${name}: status() ends when the client closes`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    await using _server = await v.serve(path);
    const client = await v.dial(path);
    const seen: string[] = [];
    const watching = (async () => {
      for await (const event of client.status()) seen.push(event.type);
    })();
    await client.call();
    await client.close();
    await watching;
    assert.deepEqual(seen, []);
  });

  test(`${name}: shutdown says GOAWAY, answers the call in flight, and the client moves to the next server`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    let server = await v.serve(path);
    await using client = await v.dial(path, { reconnect: { initialDelay: 10, maxDelay: 50 } });
    await client.call();
    const inflight = client.slow(100);
    // The slow call has reached the server once a later round trip is answered.
    await client.call();
    await server.shutdown();
    await inflight;
    server = await v.serve(path);
    try {
      await client.call(30_000);
      assert.equal(client.connected, true);
    } finally {
      await server.close();
    }
  });

  test(`${name}: close() resolves once done and later calls fail with ECLOSED; abort() too`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/s.sock`;
    await using _server = await v.serve(path);
    const closing = await v.dial(path);
    await closing.call();
    await closing.close();
    await closing.close(); // again: the same, at once
    await rejectsWith(closing.call(), "ECLOSED");
    const aborted = await v.dial(path);
    aborted.abort();
    await rejectsWith(aborted.call(), "ECLOSED");
    await aborted.close();
  });
}
