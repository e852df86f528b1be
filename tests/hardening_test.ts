/**
 * Bounded memory against misbehaving peers: a hub server in a child process, its resident set
 * sampled while raw-socket attackers run for two seconds each. Before the fixes of issue 23
 * each of these took the server to hundreds of MiB, or GiB.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Conn, connect } from "../mod.ts";
import { encodeHub, Op } from "../src/hub/protocol.ts";
import { Control, VERSION } from "../src/session/protocol.ts";
import { encodeFramesRaw, serverRssUnder, writeFor } from "./_helpers.ts";

const T = { timeout: 120_000 };
const ATTACK_MS = 2000;
/** Growth allowed over the server's size at rest: a small multiple of the bounds involved. */
const BOUND_MIB = 150;

const hello = encodeHub({
  type: Control.HELLO,
  version: VERSION,
  app: "dockipc",
  token: new Uint8Array(0),
});

/** `count` connections to `path`, each sent `first` (when given). */
async function connections(path: string, count: number, first?: Uint8Array): Promise<Conn[]> {
  const conns: Conn[] = [];
  for (let i = 0; i < count; i++) {
    const conn = await connect(path);
    if (first !== undefined) {
      const writer = conn.writable.getWriter();
      await writer.write(first);
      writer.releaseLock();
    }
    conns.push(conn);
  }
  return conns;
}

const floods: [string, (path: string) => Promise<void>][] = [
  ["a client that sends PINGs and never reads", async (path) => {
    const [conn] = await connections(path, 1, encodeFramesRaw([hello]));
    const pings = encodeFramesRaw(
      Array.from({ length: 8192 }, () => encodeHub({ type: Control.PING })),
    );
    await writeFor(conn!, pings, ATTACK_MS);
    conn!.close();
  }],
  ["requests through the hub that nobody answers", async (path) => {
    const conns = await connections(path, 4, encodeFramesRaw([hello]));
    const req = encodeHub({
      type: Op.REQ,
      id: 1,
      timeout: 600_000,
      env: { topic: "silent", data: new Uint8Array(64 * 1024), headers: {}, seq: 0 },
    });
    const reqs = encodeFramesRaw(Array.from({ length: 16 }, () => req));
    await Promise.all(conns.map((c) => writeFor(c, reqs, ATTACK_MS)));
    for (const c of conns) c.close();
  }],
  ["40 connections that each announce a 16 MiB HELLO and send it", async (path) => {
    const prefix = new Uint8Array([1, 0, 0, 0]);
    const conns = await connections(path, 40, prefix);
    const body = new Uint8Array(64 * 1024);
    await Promise.all(conns.map((c) => writeFor(c, body, ATTACK_MS)));
    for (const c of conns) c.close();
  }],
  ["1,100 connections that send nothing", async (path) => {
    const conns = await connections(path, 1100);
    await new Promise((resolve) => setTimeout(resolve, ATTACK_MS));
    for (const c of conns) c.close();
  }],
];

describe("bounded memory against misbehaving peers", () => {
  for (const [name, attack] of floods) {
    test(`${name}: the server grows by less than ${BOUND_MIB} MiB`, T, async () => {
      const { before, peak } = await serverRssUnder(attack);
      console.log(`# ${name}: server RSS ${before.toFixed(0)} -> ${peak.toFixed(0)} MiB`);
      assert.ok(
        peak - before < BOUND_MIB,
        `server RSS ${before.toFixed(0)} MiB at rest, ${peak.toFixed(0)} MiB at its peak`,
      );
    });
  }
});
