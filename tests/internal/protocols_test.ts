/**
 * The two wire protocols' decoders against bad bytes: random frames, every truncation and every
 * single-byte change of valid ones. A decoder either returns a message or throws an `IpcError`
 * with `EPROTOCOL`, never anything else, so a bad peer costs only its own connection.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { decodeHub, encodeHub, HUB, type HubWire, Op } from "../../src/hub/protocol.ts";
import { NO_HEADERS } from "../../src/hub/subscription.ts";
import { decode, encode, type Message, RPC, Type } from "../../src/rpc/protocol.ts";
import { Control, VERSION } from "../../src/session/protocol.ts";
import type { Decoder, Encoder } from "../../src/frame/format.ts";
import { readFileSync } from "node:fs";
import { acceptedOrRefused, ROOT } from "../_helpers.ts";

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);
/** An envelope as decoded: absent fields are there, undefined; a published one has seq 0. */
const env = (topic: string, data: Uint8Array, seq = 0) => ({
  topic,
  data,
  headers: NO_HEADERS,
  seq,
  key: undefined,
  reply: undefined,
});

const HUB_MESSAGES: HubWire[] = [
  { type: Control.HELLO, version: VERSION, app: "app", token: bytes(1, 2, 3) },
  { type: Control.WELCOME, version: VERSION, maxInflight: 0, maxFrameSize: 1 << 20 },
  { type: Op.ERR, id: 7, code: "EPROTOCOL", message: "no", remoteCode: "" },
  { type: Op.ERR, id: 8, code: "EREMOTE", message: "boom", remoteCode: "TypeError" },
  {
    type: Op.SUB,
    sid: 3,
    buffer: 1024,
    credit: 256,
    maxBytes: 0,
    overflow: "drop-oldest",
    ordered: false,
    pattern: "a.*.>",
    queue: "workers",
  },
  { type: Op.UNSUB, sid: 3 },
  { type: Op.CREDIT, sid: 3, n: 9 },
  { type: Op.PUB, env: env("a.b", bytes(9, 8)) },
  {
    type: Op.MSG,
    sid: 3,
    env: {
      topic: "a.b",
      data: bytes(),
      headers: { x: "1", y: "ü" },
      seq: 2 ** 40,
      key: "k",
      reply: "_r.1",
    },
  },
  {
    type: Op.OMSG,
    sid: 4,
    env: { ...env("a.b", bytes(7), 9), topicSeq: 3, publisher: 2, pubSeq: 5 },
  },
  {
    type: Op.OMSG,
    sid: 4,
    env: {
      ...env("a.c", bytes(), 10),
      topicSeq: 2 ** 40,
      publisher: 0,
      pubSeq: 1,
      gap: { reason: "overflow", count: 3, from: 6 },
    },
  },
  {
    type: Op.OMSG,
    sid: 4,
    env: {
      ...env("a.c", bytes(1), 11),
      topicSeq: 1,
      publisher: 7,
      pubSeq: 2,
      gap: { reason: "reconnect", count: undefined, from: 11 },
    },
  },
  { type: Op.REQ, id: 5, timeout: 1000, env: env("q", bytes(1)) },
  { type: Op.RES, id: 5, env: env("_r.1", bytes(2), 12) },
  { type: Op.SPUB, id: 9, env: env("jobs.a", bytes(1, 2)) },
  { type: Op.PUBACK, id: 9, seq: 2 ** 40, duplicate: true, durability: "always", stream: "jobs" },
  { type: Op.CALL, id: 10, method: "streamInfo", body: bytes(0x5b, 0x5d) },
  { type: Op.RESULT, id: 10, body: bytes(0x7b, 0x7d) },
  { type: Op.CONSUME, cid: 4, buffer: 256, stream: "jobs", body: bytes(0x7b, 0x7d) },
  { type: Op.CONSUMING, cid: 4, name: "workers" },
  {
    type: Op.DELIVER,
    cid: 4,
    attempt: 3,
    env: { ...env("jobs.a", bytes(7), 12), stream: "", timestamp: 1_765_000_000_000, id: "m-1" },
  },
  { type: Op.SETTLE, id: 11, cid: 4, seqs: [12, 2 ** 53 - 1, 1], how: "ack", arg: "" },
  { type: Op.SETTLE, id: 12, cid: 4, seqs: [5], how: "nak", arg: "250" },
  { type: Op.SETTLED, id: 11, failed: [] },
  {
    type: Op.SETTLED,
    id: 11,
    failed: [{ at: 0, code: "ENOTPENDING", message: "acked already" }, {
      at: 2,
      code: "EIO",
      message: "ü",
    }],
  },
  { type: Op.UNCONSUME, cid: 4 },
  { type: Op.STREAMS, body: bytes(0x5b, 0x5d) },
  { type: Control.PING },
  { type: Control.PONG },
  { type: Control.FLUSH },
  { type: Control.FLUSHED },
];

const RPC_MESSAGES: Message[] = [
  { type: Control.HELLO, version: VERSION, app: "app", token: bytes(4, 5) },
  { type: Control.WELCOME, version: VERSION, maxInflight: 64, maxFrameSize: 0 },
  { type: Control.REFUSE, code: "EAUTH", message: "bad token" },
  { type: Type.REQUEST, id: 1, data: bytes(1, 2, 3) },
  { type: Type.REPLY, id: 1, data: bytes() },
  { type: Type.ERROR, id: 2, code: "EREMOTE", message: "boom", stack: "at x" },
  { type: Type.CANCEL, id: 3 },
  { type: Type.CHUNK, id: 4, data: bytes(7) },
  { type: Type.END, id: 4 },
  { type: Control.GOAWAY },
];

/** Decodes, and says how: a message, or `EPROTOCOL`; anything else fails the test. */
function outcome(decoder: (frame: Uint8Array) => unknown, frame: Uint8Array): string {
  return acceptedOrRefused("EPROTOCOL", frame, () => decoder(frame)) ? "message" : "EPROTOCOL";
}

for (
  const [name, decoder, encoder, valid, batchEncoder, parser] of [
    ["hub", decodeHub, encodeHub, HUB_MESSAGES, HUB.encoding, HUB.parser],
    ["rpc", decode, encode, RPC_MESSAGES, RPC.encoding, RPC.parser],
  ] as const
) {
  describe(`${name} protocol decoder`, () => {
    const frames = (valid as readonly unknown[]).map((m) =>
      (encoder as (m: unknown) => Uint8Array)(m)
    );

    test("valid messages round-trip", () => {
      frames.forEach((frame, i) => assert.deepEqual(decoder(frame), valid[i]));
    });

    test("every truncation and every changed byte of a valid frame: a message or EPROTOCOL", () => {
      frames.forEach((frame, i) => {
        const m = valid[i] as object;
        // Whether the last field is the rest of the frame (a token, a payload): then a shorter
        // or longer frame can still be a valid message.
        const restLast = "token" in m || "data" in m || "env" in m || "body" in m;
        for (let cut = 0; cut < frame.length; cut++) {
          const got = outcome(decoder, frame.subarray(0, cut));
          if (!restLast) assert.equal(got, "EPROTOCOL", `${JSON.stringify(m)} cut at ${cut}`);
        }
        assert.equal(outcome(decoder, new Uint8Array(0)), "EPROTOCOL", "an empty frame");
        for (let at = 0; at < frame.length; at++) {
          for (const value of [0, 1, 0x7f, 0x80, 0xff, frame[at]! ^ 0x40]) {
            const changed = frame.slice();
            changed[at] = value;
            outcome(decoder, changed);
          }
        }
        // A byte after a complete message is refused, unless the last field takes the rest.
        assert.equal(
          outcome(decoder, new Uint8Array([...frame, 0])),
          restLast ? "message" : "EPROTOCOL",
          JSON.stringify(m),
        );
      });
    });

    test("decoded in place among other bytes, a frame reads only its own", () => {
      const inPlace = decoder as (bytes: Uint8Array, start: number, length: number) => unknown;
      const alone = (frame: Uint8Array): unknown => {
        try {
          return decoder(frame);
        } catch (err) {
          return (err as Error).message;
        }
      };
      frames.forEach((frame) => {
        for (let cut = 0; cut <= frame.length; cut++) {
          // The frame, whole or cut short, between bytes that would read as more fields.
          const around = new Uint8Array(3 + cut + 40).fill(0x01);
          around.set(frame.subarray(0, cut), 3);
          let got: unknown;
          try {
            got = inPlace(around, 3, cut);
          } catch (err) {
            got = (err as Error).message;
          }
          assert.deepEqual(got, alone(frame.subarray(0, cut)), `cut at ${cut}`);
        }
      });
    });

    test("written into a write batch at any offset, each message is one frame that decodes back", () => {
      const batch = batchEncoder(1024) as Encoder<unknown>;
      valid.forEach((m, i) => {
        const frame = frames[i]!;
        for (const at of [0, 5]) {
          const buf = new Uint8Array(at + 4 + frame.length + 64).fill(0xaa);
          assert.equal(batch.encode(m, buf, at), 4 + frame.length, JSON.stringify(m));
          assert.deepEqual(buf.subarray(at + 4, at + 4 + frame.length), frame);
          const out: unknown[] = [];
          (parser(1024) as Decoder<unknown>).push(
            buf.subarray(at, at + 4 + frame.length),
            (v) => out.push(v),
          );
          assert.deepEqual(out, [m]);
          // No room (a string's room is counted at 3 bytes a unit): -1, and nothing written.
          const small = new Uint8Array(at + 4 + frame.length - 1).fill(0xaa);
          assert.equal(batch.encode(m, small, at), -1);
          assert.ok(small.every((b) => b === 0xaa));
        }
        // Over the frame limit: refused before anything is written.
        if (frame.length > 4) {
          const buf = new Uint8Array(64).fill(0xaa);
          assert.throws(
            () => (batchEncoder(4) as Encoder<unknown>).encode(m, buf, 0),
            (err: Error & { code?: string }) => err.code === "EFRAMETOOLARGE",
          );
          assert.ok(buf.every((b) => b === 0xaa));
        }
      });
    });

    test("random frames: a message or EPROTOCOL", () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.uint8Array({ maxLength: 64 }),
            fc.tuple(fc.integer({ min: 0, max: 20 }), fc.uint8Array({ maxLength: 64 }))
              .map(([type, rest]) => new Uint8Array([type, ...rest])),
          ),
          (frame) => {
            outcome(decoder, frame);
          },
        ),
        { numRuns: 5000 },
      );
    });
  });
}

describe("hub protocol decoder: the repeated-topic cache", () => {
  test("a topic that differs from the last, even by one byte or in bad UTF-8, is read afresh", () => {
    const pub = (topic: string): Uint8Array =>
      encodeHub({ type: Op.PUB, env: env(topic, bytes(1)) });
    const topicOf = (frame: Uint8Array): string => {
      const m = decodeHub(frame);
      assert.equal(m.type, Op.PUB);
      return (m as { env: { topic: string } }).env.topic;
    };
    const long = `t.${"x".repeat(200)}`; // past the cache's first buffer, and past short ASCII
    const topics = ["a.b", "a.c", "a.b", "a.b", "b.b", "", "x", "a.bc", "a.b", long, "a.b", long];
    for (const topic of [...topics, "ü.ß", "a.b", "ü.ß", `${long}.ü`, long, "a.b"]) {
      assert.equal(topicOf(pub(topic)), topic);
    }
    const bad = pub("a.b");
    bad[bad.indexOf(0x62)] = 0xff; // "a.\xff": same length as the cached "a.b", not UTF-8
    assert.throws(() => decodeHub(bad), (err: Error & { code?: string }) => {
      assert.equal(err.code, "EPROTOCOL");
      assert.match(err.message, /topic is not valid UTF-8/);
      return true;
    });
    assert.equal(topicOf(pub("a.b")), "a.b");
    assert.equal(topicOf(pub("a.d")), "a.d");
  });
});

describe("hub protocol decoder: counts", () => {
  test("a SETTLE or SETTLED counting more than its frame holds is refused, and none is empty", () => {
    const refused = (frame: Uint8Array, why: RegExp) =>
      assert.throws(() => decodeHub(frame), (err: Error & { code?: string }) => {
        assert.equal(err.code, "EPROTOCOL");
        assert.match(err.message, why);
        return true;
      });
    const settle = encodeHub({ type: Op.SETTLE, id: 1, cid: 2, seqs: [3], how: "ack", arg: "" });
    const countAt = 1 + 4 + 4 + 1 + 2; // type, id, cid, settlement, empty argument
    for (const count of [2, 0x1000_0000, 0xffff_ffff]) {
      const bad = settle.slice();
      new DataView(bad.buffer).setUint32(countAt, count);
      refused(bad, /its sequence list runs past the end/);
    }
    const none = settle.slice(0, countAt + 4);
    new DataView(none.buffer).setUint32(countAt, 0);
    refused(none, /it settles no message/);
    const settled = encodeHub({ type: Op.SETTLED, id: 1, failed: [] });
    new DataView(settled.buffer).setUint32(1 + 4, 0xffff_ffff);
    refused(settled, /its failure list runs past the end/);
  });
});

describe("hub protocol decoder: the plain-message path", () => {
  /** What decoding gives: the message, or the error's code and message. */
  const result = (frame: Uint8Array): unknown => {
    try {
      return decodeHub(frame);
    } catch (err) {
      const { code, message } = err as Error & { code?: string };
      return { code, message };
    }
  };
  /** Decodes with the topic cache holding `topic` first: "a.b" takes the plain path. */
  const after = (topic: string, frame: Uint8Array): unknown => {
    decodeHub(encodeHub({ type: Op.PUB, env: env(topic, bytes()) }));
    return result(frame);
  };
  const plain = [
    encodeHub({ type: Op.PUB, env: env("a.b", bytes(1, 2, 3)) }),
    encodeHub({ type: Op.MSG, sid: 7, env: env("a.b", bytes(9), 2 ** 53 - 1) }),
    encodeHub({ type: Op.MSG, sid: 2 ** 32 - 1, env: env("a.b", bytes(), 2 ** 32 + 5) }),
  ];

  test("every truncation and changed byte reads as the full decoder reads it", () => {
    for (const frame of plain) {
      assert.deepEqual(after("a.b", frame), after("x.y", frame));
      for (let cut = 0; cut < frame.length; cut++) {
        const short = frame.subarray(0, cut);
        assert.deepEqual(after("a.b", short), after("x.y", short), `cut at ${cut}`);
      }
      for (let at = 0; at < frame.length; at++) {
        for (const value of [0, 1, 0x20, 0x62, 0x7f, 0x80, 0xff, frame[at]! ^ 0x40]) {
          const changed = frame.slice();
          changed[at] = value;
          assert.deepEqual(after("a.b", changed), after("x.y", changed), `${at} = ${value}`);
        }
      }
    }
  });

  test("a sequence above 2^53 is refused on either path", () => {
    const frame = plain[1]!.slice();
    frame[5] = 0x00;
    frame[6] = 0x20; // seq's high word 0x200000: 2^53
    for (const topic of ["a.b", "x.y"]) {
      const got = after(topic, frame) as { code: string; message: string };
      assert.equal(got.code, "EPROTOCOL");
      assert.match(got.message, /seq is above 2\^53/);
    }
  });
});

/**
 * Inputs that once went wrong, kept in `tests/fixtures/corpus.json` with why: each must decode
 * to what it says, forever. Add the input of every decoder bug found to it.
 */
describe("the corpus of inputs that once failed", () => {
  const corpus: {
    decoder: "rpc" | "hub";
    expect: string;
    why: string;
    hex: string;
    header?: string;
  }[] = JSON.parse(readFileSync(`${ROOT}tests/fixtures/corpus.json`, "utf8"));
  for (const entry of corpus) {
    test(`${entry.decoder}: ${entry.why}`, () => {
      const frame = new Uint8Array(entry.hex.match(/../g)!.map((h) => parseInt(h, 16)));
      const decoder = entry.decoder === "rpc" ? decode : decodeHub;
      assert.equal(outcome(decoder, frame), entry.expect);
      if (entry.header !== undefined) {
        const m = decodeHub(frame) as { env: { headers: Record<string, string> } };
        assert.ok(Object.hasOwn(m.env.headers, entry.header), `header ${entry.header} is kept`);
      }
    });
  }
});
