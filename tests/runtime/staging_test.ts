// The write staging every driver shares, over a stand-in socket: runs on every runtime.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { SocketConn } from "../../src/runtime/_socket_conn.ts";
import { StagingDriver } from "../../src/runtime/_staging.ts";
import { concat, pattern } from "../_helpers.ts";

/** What the driver asked of the socket, in order. */
type Call = { write: Uint8Array } | "closeWrite" | "release" | "close";

/**
 * A socket that records its calls. A write takes every byte at once: synchronously like Bun's
 * (`sync`), or through a promise like Deno's. With `stall` set, writes take nothing until
 * `release()`; with `room` set, a write takes at most that many bytes.
 */
class StandIn extends StagingDriver {
  calls: Call[] = [];
  stall = false;
  room = Infinity;
  /** Set: writes fail with this, thrown (`sync`) or as a rejection. */
  failure: Error | undefined;
  /** Set: `writeNow` takes every byte but keeps them until this resolves. */
  keeps: Promise<void> | undefined;
  #held: (() => void)[] = [];

  readonly sync: boolean;

  constructor(sync: boolean) {
    super();
    this.sync = sync;
  }

  protected write(p: Uint8Array): number | Promise<number> {
    if (this.stall) {
      return new Promise((resolve) => this.#held.push(() => resolve(this.write(p) as number)));
    }
    if (this.failure !== undefined) {
      if (this.sync) throw this.failure;
      return Promise.reject(this.failure);
    }
    const n = Math.min(p.byteLength, this.room);
    this.calls.push({ write: p.slice(0, n) });
    return this.sync ? n : Promise.resolve(n);
  }
  protected writeNow(p: Uint8Array): number {
    if (this.keeps !== undefined) {
      // Like Node: takes everything, but holds on to it until flushed.
      this.calls.push({ write: p.slice() });
      this.hold(this.keeps);
      return p.byteLength;
    }
    return this.sync && !this.stall ? this.write(p) as number : 0;
  }
  protected closeWrite(): void {
    this.calls.push("closeWrite");
  }
  protected release(): void {
    this.calls.push("release");
  }
  protected close(): void {
    this.calls.push("close");
  }
  pause(): void {}
  resume(): void {}

  /** Lets the writes held so far, and later ones, take bytes. */
  unstall(): void {
    this.stall = false;
    for (const done of this.#held.splice(0)) done();
  }
  get writes(): Uint8Array[] {
    return this.calls.flatMap((c) => typeof c === "object" ? [c.write] : []);
  }
}

function connOver(socket: StandIn): SocketConn {
  const addr = { transport: "unix", path: "/stand-in.sock" } as const;
  const conn = new SocketConn(socket, addr, addr, "stand-in");
  socket.attach(conn);
  return conn;
}

/** Lets every pending microtask and I/O callback run. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

for (const sync of [false, true]) {
  describe(`StagingDriver, writes that complete ${sync ? "synchronously (Bun)" : "by promise (Deno)"}`, () => {
    test("a lone write reaches the socket at once", async () => {
      const socket = new StandIn(sync);
      const writer = connOver(socket).writable.getWriter();
      const msg = pattern(64, 1);
      await writer.write(msg);
      assert.deepEqual(socket.writes, [msg]);
    });

    test("the writes of a burst after its first leave together, in order", async () => {
      const socket = new StandIn(sync);
      const writer = connOver(socket).writable.getWriter();
      const chunks = Array.from({ length: 200 }, (_, i) => pattern(100, i));
      for (const chunk of chunks) await writer.write(chunk);
      await settle();
      const writes = socket.writes;
      assert.deepEqual(writes[0], chunks[0], "the first write of the burst left alone");
      // 19,900 bytes after the first: staging buffers of 4, 8 and 16 KiB, at most.
      assert.ok(writes.length <= 4, `${writes.length} socket writes for a burst of 200`);
      assert.deepEqual(concat(writes), concat(chunks));
      // Once the burst has ended, the next write leaves at once again.
      const next = pattern(10, 7);
      await writer.write(next);
      assert.deepEqual(socket.writes.at(-1), next);
    });

    test("close() writes what is staged before it ends the sending direction", async () => {
      const socket = new StandIn(sync);
      const writer = connOver(socket).writable.getWriter();
      const chunks = Array.from({ length: 10 }, (_, i) => pattern(50, i));
      for (const chunk of chunks) void writer.write(chunk);
      await writer.close();
      await settle();
      assert.deepEqual(socket.calls.filter((c) => typeof c !== "object"), ["closeWrite"]);
      assert.equal(socket.calls.at(-1), "closeWrite", "a write came after the end");
      assert.deepEqual(concat(socket.writes), concat(chunks));
    });

    test("a large chunk is written from the caller's memory and settles once written", async () => {
      const socket = new StandIn(sync);
      socket.stall = true;
      const writer = connOver(socket).writable.getWriter();
      const big = pattern(32 * 1024, 3);
      let settled = false;
      const writing = writer.write(big).then(() => (settled = true));
      await settle();
      assert.equal(settled, false, "settled before the socket wrote it");
      socket.unstall();
      await writing;
      assert.deepEqual(socket.writes, [big]);
    });

    test("small writes wait once 64 KiB is staged, and go on once it is written", async () => {
      const socket = new StandIn(sync);
      socket.stall = true;
      const writer = connOver(socket).writable.getWriter();
      const chunk = pattern(1024, 5);
      let accepted = 0;
      const writing = (async () => {
        for (let i = 0; i < 200; i++) {
          await writer.write(chunk);
          accepted++;
        }
      })();
      await settle();
      // 64 KiB waits, the write held by the socket included; the write that reached it waits.
      assert.ok(accepted >= 63 && accepted <= 64, `${accepted} writes accepted while held`);
      socket.unstall();
      await writing;
      await settle();
      assert.equal(accepted, 200);
      assert.equal(concat(socket.writes).byteLength, 200 * 1024);
    });

    test("once both directions have ended, the socket is let go after what is staged", async () => {
      const socket = new StandIn(sync);
      const conn = connOver(socket);
      const writer = conn.writable.getWriter();
      const chunks = Array.from({ length: 10 }, (_, i) => pattern(50, i));
      for (const chunk of chunks) void writer.write(chunk);
      conn.onEnd(); // the peer's FIN
      await writer.close();
      await settle();
      assert.deepEqual(socket.calls.filter((c) => typeof c !== "object"), [
        "closeWrite",
        "release",
      ]);
      assert.deepEqual(socket.calls.slice(-2), ["closeWrite", "release"]);
      assert.deepEqual(concat(socket.writes), concat(chunks));
    });

    test("a write the socket fails ends the connection with the failure", async () => {
      const socket = new StandIn(sync);
      const writer = connOver(socket).writable.getWriter();
      await writer.write(pattern(64, 1));
      await settle();
      socket.failure = Object.assign(new Error("broken pipe"), { code: "EPIPE" });
      await writer.write(pattern(64, 2)).catch(() => {});
      await settle();
      await assert.rejects(writer.write(pattern(64, 3)), {
        name: "IpcError",
        code: "ECONNRESET",
      });
      assert.equal(socket.calls.at(-1), "close");
      assert.equal(socket.writes.length, 1);
    });

    test("a write the socket takes in parts goes out whole, in order", async () => {
      const socket = new StandIn(sync);
      socket.room = 1000;
      const writer = connOver(socket).writable.getWriter();
      const chunks = [pattern(5000, 1), pattern(40 * 1024, 2), pattern(300, 3)];
      for (const chunk of chunks) await writer.write(chunk);
      await writer.close();
      await settle();
      assert.ok(socket.writes.every((w) => w.byteLength <= 1000));
      assert.deepEqual(concat(socket.writes), concat(chunks));
      assert.equal(socket.calls.at(-1), "closeWrite");
    });
  });
}

test("StagingDriver: a write the socket took but still holds settles once it is flushed", async () => {
  const socket = new StandIn(true);
  let flush!: () => void;
  socket.keeps = new Promise((resolve) => (flush = resolve));
  const writer = connOver(socket).writable.getWriter();
  const msg = pattern(64, 9);
  let settled = false;
  const writing = writer.write(msg).then(() => (settled = true));
  await settle();
  assert.deepEqual(socket.writes, [msg], "handed to the socket at once");
  assert.equal(settled, false, "settled while the socket still held it");
  flush();
  await writing;
});
