import assert from "node:assert/strict";
import process from "node:process";
import { describe, test } from "node:test";
import fc from "fast-check";
import { FrameDecoderStream, FrameEncoderStream, IpcError } from "../../mod.ts";
import { FrameParser } from "../../src/frame/codec.ts";
import { view } from "../../src/internal/wire.ts";
import {
  concat,
  encodeFramesRaw,
  rejectsWith,
  sameBytes,
  splitAt,
  transformAll,
} from "../_helpers.ts";

const MiB = 1024 * 1024;

/** Decodes `chunks` with a fresh FrameDecoderStream. */
function decode(chunks: readonly Uint8Array[], maxFrameSize?: number): Promise<Uint8Array[]> {
  const options = maxFrameSize === undefined ? {} : { maxFrameSize };
  return transformAll(new FrameDecoderStream(options), chunks);
}

/** Encodes `frames` with a fresh FrameEncoderStream, writing them all in one burst. */
async function encode(frames: readonly Uint8Array[]): Promise<Uint8Array[]> {
  const encoder = new FrameEncoderStream();
  const writer = encoder.writable.getWriter();
  const writes = frames.map((f) => writer.write(f));
  const closing = writer.close();
  const out = await Array.fromAsync(encoder.readable);
  await Promise.all([...writes, closing]);
  return out;
}

/** A payload whose bytes say which frame it is. */
function payload(index: number, size: number): Uint8Array {
  return new Uint8Array(size).fill(index & 0xff);
}

const frameList = fc.array(
  fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 16 * 1024, max: 70 * 1024 }).map((n) => payload(n, n)),
    },
  ),
  { maxLength: 40 },
);

/** Random cut points inside `length`, sorted and distinct. */
function cutsIn(length: number): fc.Arbitrary<number[]> {
  return fc.uniqueArray(fc.integer({ min: 0, max: length }), { maxLength: 30 })
    .map((cuts) => cuts.sort((a, b) => a - b));
}

describe("FrameEncoderStream and FrameDecoderStream", () => {
  test("decode(encode(frames)) equals frames for random frames and random chunk splits", async () => {
    await fc.assert(
      fc.asyncProperty(
        frameList.chain((frames) => {
          const total = frames.reduce((n, f) => n + 4 + f.length, 0);
          return fc.tuple(fc.constant(frames), cutsIn(total));
        }),
        async ([frames, cuts]) => {
          const wire = concat(await encode(frames));
          assert.deepEqual(wire, encodeFramesRaw(frames));
          assert.deepEqual(await decode(splitAt(wire, cuts)), frames);
        },
      ),
      { numRuns: 150 },
    );
  });

  test("FrameDecoderStream decodes a length prefix split at every offset", async () => {
    const frames = [payload(1, 5), payload(2, 0), payload(3, 300), payload(4, 1)];
    const wire = encodeFramesRaw(frames);
    for (let cut = 0; cut <= wire.length; cut++) {
      assert.deepEqual(await decode(splitAt(wire, [cut])), frames, `cut at ${cut}`);
    }
    // Three pieces: every pair of cuts inside the second frame's prefix and payload.
    for (let a = 9; a < 20; a++) {
      for (let b = a; b < 20; b++) {
        assert.deepEqual(await decode(splitAt(wire, [a, b])), frames, `cuts at ${a}, ${b}`);
      }
    }
  });

  test("FrameDecoderStream decodes input fed one byte at a time", async () => {
    const frames = [payload(1, 0), payload(2, 3), payload(3, 1000), payload(4, 0)];
    const wire = encodeFramesRaw(frames);
    const bytes = Array.from(wire, (_, i) => wire.subarray(i, i + 1));
    assert.deepEqual(await decode(bytes), frames);
  });

  test("FrameDecoderStream hands out a frame whole in one chunk as a view, a split one as a copy", async () => {
    const wire = encodeFramesRaw([payload(1, 10), payload(2, 10)]);
    const [first, second] = await decode([wire.subarray(0, 20), wire.subarray(20)]);
    assert.equal(first!.buffer, wire.buffer);
    assert.equal(first!.byteOffset, 4);
    assert.notEqual(second!.buffer, wire.buffer);
    assert.deepEqual(second, payload(2, 10));
  });

  test("FrameDecoderStream accepts zero-length frames, alone and in a row", async () => {
    assert.deepEqual(await decode([new Uint8Array(4)]), [new Uint8Array(0)]);
    assert.deepEqual(await decode([new Uint8Array(12)]), [
      new Uint8Array(0),
      new Uint8Array(0),
      new Uint8Array(0),
    ]);
    assert.deepEqual(await decode([]), []);
  });

  test("FrameDecoderStream refuses oversize lengths up to 0xFFFFFFFF before allocating", async () => {
    const lengths = [16 * MiB + 1, 17 * MiB, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1];
    const native = globalThis.Uint8Array;
    const allocations: number[] = [];
    // Count every large buffer the decoder makes while it reads the prefixes.
    class CountingUint8Array extends native {
      constructor(...args: unknown[]) {
        if (typeof args[0] === "number" && args[0] > 64 * 1024) allocations.push(args[0]);
        super(...(args as [number]));
      }
    }
    const before = process.memoryUsage();
    for (const length of lengths) {
      const prefix = new native(4);
      new DataView(prefix.buffer).setUint32(0, length);
      for (const chunks of [[prefix], [prefix.subarray(0, 1), prefix.subarray(1)]]) {
        const parser = new FrameParser(16 * MiB, view);
        globalThis.Uint8Array = CountingUint8Array as Uint8ArrayConstructor;
        let err: unknown;
        try {
          for (const chunk of chunks) parser.push(chunk, () => assert.fail("no frame expected"));
        } catch (e) {
          err = e;
        } finally {
          globalThis.Uint8Array = native;
        }
        assert.ok(err instanceof IpcError);
        assert.equal(err.code, "EFRAMETOOLARGE");
        assert.equal(
          err.message,
          `Cannot decode frame as its length exceeds maxFrameSize (16777216): current value is ${length} (at stream offset 0)`,
        );
      }
      // The same through the stream, with the prefix after a valid frame.
      await rejectsWith(
        decode([concat([encodeFramesRaw([payload(1, 3)]), prefix])]),
        "EFRAMETOOLARGE",
        /current value is \d+ \(at stream offset 7\)/,
      );
    }
    assert.deepEqual(allocations, []);
    // Deno and Node account array buffers in `external` (Bun reports 0 and is covered above).
    const grown = process.memoryUsage().external - before.external;
    assert.ok(grown < 8 * MiB, `external memory grew by ${grown} bytes`);
  });

  test("a large frame's buffer grows as its bytes come, not from its length prefix alone", () => {
    const native = globalThis.Uint8Array;
    let largest = 0;
    class CountingUint8Array extends native {
      constructor(...args: unknown[]) {
        if (typeof args[0] === "number") largest = Math.max(largest, args[0]);
        super(...(args as [number]));
      }
    }
    const frame = payload(7, 16 * MiB);
    const bytes = encodeFramesRaw([frame]);
    const parser = new FrameParser(16 * MiB, view);
    const got: Uint8Array[] = [];
    const push = (from: number, to: number): void =>
      parser.push(bytes.subarray(from, to), (f) => void got.push(f.slice()));
    globalThis.Uint8Array = CountingUint8Array as Uint8ArrayConstructor;
    let afterPrefix: number;
    try {
      push(0, 14); // the prefix of a 16 MiB frame and 10 bytes of it
      afterPrefix = largest;
      for (let at = 14; at < bytes.length; at += 64 * 1024) {
        push(at, Math.min(at + 64 * 1024, bytes.length));
      }
    } finally {
      globalThis.Uint8Array = native;
    }
    assert.ok(afterPrefix <= MiB, `${afterPrefix} bytes held for 10 bytes received`);
    assert.equal(got.length, 1);
    assert.equal(sameBytes(got[0]!, frame), undefined);
  });

  test("FrameDecoderStream honours a smaller maxFrameSize, and a frame of exactly that size", async () => {
    const exact = payload(1, 100);
    assert.deepEqual(await decode([encodeFramesRaw([exact])], 100), [exact]);
    await rejectsWith(
      decode([encodeFramesRaw([payload(1, 101)])], 100),
      "EFRAMETOOLARGE",
      /maxFrameSize \(100\): current value is 101/,
    );
    assert.deepEqual(await decode([new Uint8Array(4)], 0), [new Uint8Array(0)]);
  });

  test("FrameDecoderStream reports ETRUNCATED at every byte offset inside a 3-frame stream", async () => {
    const sizes = [3, 0, 40];
    const wire = encodeFramesRaw(sizes.map((n, i) => payload(i, n)));
    const boundaries = new Set([0, 7, 11, 55]);
    for (let end = 0; end <= wire.length; end++) {
      const cut = wire.subarray(0, end);
      if (boundaries.has(end)) {
        const frames = await decode([cut]);
        assert.equal(frames.length, [0, 7, 11, 55].indexOf(end), `clean end at ${end}`);
        continue;
      }
      // Where the frame that was cut starts, and how far into it the stream got.
      const start = end < 7 ? 0 : end < 11 ? 7 : 11;
      const into = end - start;
      const size = sizes[[0, 7, 11].indexOf(start)]!;
      const expected = into < 4
        ? `the stream ended ${into} bytes into a 4-byte length prefix`
        : `the stream ended after ${into - 4} of ${size} payload bytes`;
      for (const chunks of [[cut], splitAt(cut, [Math.floor(end / 2)])]) {
        const err = await rejectsWith(decode(chunks), "ETRUNCATED");
        assert.equal(
          err.message,
          `Cannot decode frame as ${expected} (at stream offset ${start})`,
          `end at ${end}`,
        );
      }
    }
  });

  test("FrameDecoderStream refuses a chunk that is not a Uint8Array with a TypeError", async () => {
    const decoder = new FrameDecoderStream() as unknown as TransformStream<unknown, Uint8Array>;
    await assert.rejects(transformAll(decoder, ["text"]), TypeError);
  });

  test("FrameEncoderStream coalesces small frames written in one burst into one chunk", async () => {
    const frames = Array.from({ length: 200 }, (_, i) => payload(i, 64));
    const chunks = await encode(frames);
    assert.equal(chunks.length, 1);
    assert.deepEqual(chunks[0], encodeFramesRaw(frames));
  });

  test("FrameEncoderStream bounds a coalesced chunk to 64 KiB", async () => {
    const frames = Array.from({ length: 3000 }, (_, i) => payload(i, 60));
    const chunks = await encode(frames);
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    for (const chunk of chunks) assert.ok(chunk.length <= 64 * 1024, `a chunk of ${chunk.length}`);
    assert.deepEqual(concat(chunks), encodeFramesRaw(frames));
  });

  test("FrameEncoderStream writes a large payload by reference, not by copy", async () => {
    const big = payload(9, 100_000);
    const chunks = await encode([payload(1, 10), big, payload(2, 10)]);
    assert.ok(chunks.includes(big), "the payload itself is one of the chunks");
    assert.deepEqual(concat(chunks), encodeFramesRaw([payload(1, 10), big, payload(2, 10)]));
  });

  test("FrameEncoderStream sends one frame at once when no more follow", async () => {
    const encoder = new FrameEncoderStream();
    const writer = encoder.writable.getWriter();
    const reader = encoder.readable.getReader();
    // No close() follows: the burst's end alone hands the frame on.
    const reading = reader.read();
    await writer.write(new Uint8Array([5]));
    assert.deepEqual((await reading).value, new Uint8Array([0, 0, 0, 1, 5]));
    const next = reader.read();
    await writer.write(new Uint8Array(0));
    assert.deepEqual((await next).value, new Uint8Array(4));
  });

  test("FrameEncoderStream refuses an oversize frame before writing a byte and keeps earlier frames", async () => {
    const encoder = new FrameEncoderStream({ maxFrameSize: 1000 });
    const writer = encoder.writable.getWriter();
    const first = writer.write(payload(1, 10));
    const second = writer.write(payload(2, 1000));
    const tooBig = writer.write(payload(3, 1001));
    tooBig.catch(() => {});
    writer.closed.catch(() => {});
    const out = concat(await Array.fromAsync(encoder.readable));
    await Promise.all([first, second]);
    await rejectsWith(
      tooBig,
      "EFRAMETOOLARGE",
      /^Cannot encode frame as its length exceeds maxFrameSize \(1000\): current value is 1001$/,
    );
    assert.deepEqual(out, encodeFramesRaw([payload(1, 10), payload(2, 1000)]));
    await assert.rejects(writer.write(payload(4, 1)));
  });

  test("the frame streams refuse a maxFrameSize that is not a whole number from 0 to 2^32 - 1", () => {
    for (const maxFrameSize of [-1, 1.5, 2 ** 32, Number.NaN, Infinity]) {
      assert.throws(() => new FrameEncoderStream({ maxFrameSize }), RangeError);
      assert.throws(
        () => new FrameDecoderStream({ maxFrameSize }),
        /maxFrameSize is not a whole number/,
      );
    }
    new FrameDecoderStream({ maxFrameSize: 2 ** 32 - 1 });
  });
});
