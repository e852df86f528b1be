// The Deno driver's write staging, over a stand-in socket: runs on every runtime, since the driver
// only needs the four calls of a `Deno.Conn`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { SocketConn } from "../../src/runtime/_socket_conn.ts";
import { DenoDriver, type DenoSocket } from "../../src/runtime/deno_driver.ts";
import { concat, pattern } from "../_helpers.ts";

/** What the driver asked of the socket, in order. */
type Call = { write: Uint8Array } | "closeWrite" | "close";

/**
 * A socket that records its calls. Writes take every byte and complete at once, as Deno's do
 * when the kernel has room, unless `hold` is set: then each waits until `release()`.
 */
class StandIn implements DenoSocket {
  calls: Call[] = [];
  hold = false;
  #held: (() => void)[] = [];

  read(): Promise<number | null> {
    return new Promise(() => {}); // nothing arrives
  }
  write(p: Uint8Array): Promise<number> {
    this.calls.push({ write: p.slice() });
    if (!this.hold) return Promise.resolve(p.byteLength);
    return new Promise((resolve) => this.#held.push(() => resolve(p.byteLength)));
  }
  closeWrite(): Promise<void> {
    this.calls.push("closeWrite");
    return Promise.resolve();
  }
  close(): void {
    this.calls.push("close");
  }
  /** Completes the writes held so far. */
  release(): void {
    this.hold = false;
    for (const done of this.#held.splice(0)) done();
  }
  get writes(): Uint8Array[] {
    return this.calls.flatMap((c) => typeof c === "object" ? [c.write] : []);
  }
}

function connOver(socket: StandIn): SocketConn {
  const driver = new DenoDriver(socket);
  const addr = { transport: "unix", path: "/stand-in.sock" } as const;
  const conn = new SocketConn(driver, addr, addr, "stand-in");
  driver.attach(conn);
  return conn;
}

/** Lets every pending microtask and I/O callback run. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

describe("DenoDriver", () => {
  test("a lone write reaches the socket at once", async () => {
    const socket = new StandIn();
    const writer = connOver(socket).writable.getWriter();
    const msg = pattern(64, 1);
    await writer.write(msg);
    assert.deepEqual(socket.writes, [msg]);
  });

  test("the writes of a burst after its first leave together, in order", async () => {
    const socket = new StandIn();
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
    const socket = new StandIn();
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
    const socket = new StandIn();
    socket.hold = true;
    const writer = connOver(socket).writable.getWriter();
    const big = pattern(32 * 1024, 3);
    let settled = false;
    const writing = writer.write(big).then(() => (settled = true));
    await settle();
    assert.equal(settled, false, "settled before the socket wrote it");
    socket.release();
    await writing;
    assert.deepEqual(socket.writes, [big]);
  });

  test("small writes wait once 64 KiB is staged, and go on once it is written", async () => {
    const socket = new StandIn();
    socket.hold = true;
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
    socket.release();
    await writing;
    await settle();
    assert.equal(accepted, 200);
    assert.equal(concat(socket.writes).byteLength, 200 * 1024);
  });
});
