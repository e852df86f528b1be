import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { LineDecoderStream, LineEncoderStream } from "../../mod.ts";
import { concat, rejectsWith, splitAt, transformAll } from "../_helpers.ts";

const utf8 = new TextEncoder();

function decode(chunks: readonly Uint8Array[], maxLineLength?: number): Promise<string[]> {
  const options = maxLineLength === undefined ? {} : { maxLineLength };
  return transformAll(new LineDecoderStream(options), chunks);
}

function decodeText(text: string, maxLineLength?: number): Promise<string[]> {
  return decode([utf8.encode(text)], maxLineLength);
}

async function encode(lines: readonly string[], maxLineLength?: number): Promise<Uint8Array> {
  const options = maxLineLength === undefined ? {} : { maxLineLength };
  return concat(await transformAll(new LineEncoderStream(options), lines));
}

/** Strings without line breaks, including multi-byte and astral characters. */
const lineText = fc.string({ unit: "binary", maxLength: 200 })
  .map((s) => s.replace(/[\n\r]/g, " "));

describe("LineEncoderStream and LineDecoderStream", () => {
  test("decode(encode(lines)) equals lines for random text and random chunk splits", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(lineText, { maxLength: 30 }).chain((lines) => {
          const total = lines.reduce((n, l) => n + utf8.encode(l).length + 1, 0);
          const cuts = fc.uniqueArray(fc.integer({ min: 0, max: total }), { maxLength: 20 });
          return fc.tuple(fc.constant(lines), cuts.map((c) => c.sort((a, b) => a - b)));
        }),
        async ([lines, cuts]) => {
          const wire = await encode(lines);
          assert.deepEqual(wire, utf8.encode(lines.map((l) => `${l}\n`).join("")));
          assert.deepEqual(await decode(splitAt(wire, cuts)), lines);
        },
      ),
      { numRuns: 150 },
    );
  });

  test("LineDecoderStream accepts \\r\\n, and a \\r and \\n split across chunks", async () => {
    const wire = utf8.encode("a\r\nbb\r\n\r\nc\n");
    const expected = ["a", "bb", "", "c"];
    for (let cut = 0; cut <= wire.length; cut++) {
      assert.deepEqual(await decode(splitAt(wire, [cut])), expected, `cut at ${cut}`);
    }
    assert.deepEqual(await decodeText("x\ry\r\n"), ["x\ry"]);
  });

  test("LineDecoderStream decodes input fed one byte at a time, multi-byte characters included", async () => {
    const text = "héllo wörld 😀\r\nзадача\n\n";
    const wire = utf8.encode(text);
    const bytes = Array.from(wire, (_, i) => wire.subarray(i, i + 1));
    assert.deepEqual(await decode(bytes), ["héllo wörld 😀", "задача", ""]);
  });

  test("LineDecoderStream emits a last line without a line break, and nothing for empty input", async () => {
    assert.deepEqual(await decodeText("one\ntwo"), ["one", "two"]);
    assert.deepEqual(await decodeText("tail\r"), ["tail"]);
    assert.deepEqual(await decode([]), []);
    assert.deepEqual(await decodeText(""), []);
  });

  test("LineDecoderStream keeps a byte-order mark as text", async () => {
    assert.deepEqual(await decodeText("\uFEFFa\n\uFEFFb\n"), ["\uFEFFa", "\uFEFFb"]);
  });

  test("LineDecoderStream accepts a line of exactly maxLineLength bytes, with \\n or \\r\\n", async () => {
    const line = "x".repeat(100);
    for (const end of ["\n", "\r\n"]) {
      const wire = utf8.encode(line + end + "y\n");
      for (const cut of [0, 50, 100, 101, wire.length]) {
        assert.deepEqual(await decode(splitAt(wire, [cut]), 100), [line, "y"], `cut ${cut}`);
      }
    }
  });

  test("LineDecoderStream refuses a longer line with ELINETOOLONG before buffering more", async () => {
    const long = "y".repeat(101);
    await rejectsWith(
      decodeText(`ok\n${long}\n`, 100),
      "ELINETOOLONG",
      /^Cannot decode line as its length exceeds maxLineLength \(100\): current value is 101 \(at stream offset 3\)$/,
    );
    // No line break ever comes: refused once the 101st byte (not a \r) is buffered.
    const decoder = new LineDecoderStream({ maxLineLength: 100 });
    const writer = decoder.writable.getWriter();
    const reading = Array.fromAsync(decoder.readable);
    reading.catch(() => {});
    for (let i = 0; i < 100; i++) await writer.write(utf8.encode("z"));
    writer.write(utf8.encode("z")).catch(() => {});
    await rejectsWith(reading, "ELINETOOLONG", /at least 101 bytes \(at stream offset 0\)/);
    // Multi-byte characters count as bytes, not characters.
    await rejectsWith(
      decodeText(`${"é".repeat(51)}\n`, 100),
      "ELINETOOLONG",
      /current value is 102/,
    );
  });

  test("LineDecoderStream refuses bytes that are not UTF-8 with EPROTOCOL", async () => {
    const bad = concat([utf8.encode("fine\n"), new Uint8Array([0x61, 0xff, 0x62, 0x0a])]);
    for (let cut = 0; cut <= bad.length; cut++) {
      await rejectsWith(
        decode(splitAt(bad, [cut])),
        "EPROTOCOL",
        /^Cannot decode line as it is not valid UTF-8 \(at stream offset 5\)$/,
      );
    }
    // A multi-byte character cut off by the end of the stream.
    await rejectsWith(decode([new Uint8Array([0x61, 0xc3])]), "EPROTOCOL");
  });

  test("LineEncoderStream refuses a line break inside a line and a trailing \\r", async () => {
    await rejectsWith(encode(["a", "b\nc"]), "EPROTOCOL", /contains a line break: at index 1$/);
    await rejectsWith(encode(["b\r"]), "EPROTOCOL", /at index 1$/);
    assert.deepEqual(await encode(["a\rb"]), utf8.encode("a\rb\n"));
  });

  test("LineEncoderStream refuses a line over maxLineLength bytes and keeps the lines before it", async () => {
    const encoder = new LineEncoderStream({ maxLineLength: 10 });
    const writer = encoder.writable.getWriter();
    const ok = [writer.write("0123456789"), writer.write("ééééé")];
    const tooLong = writer.write("éééééé");
    tooLong.catch(() => {});
    writer.closed.catch(() => {});
    const out = concat(await Array.fromAsync(encoder.readable));
    await Promise.all(ok);
    await rejectsWith(
      tooLong,
      "ELINETOOLONG",
      /^Cannot encode line as its length exceeds maxLineLength \(10\): current value is 12$/,
    );
    assert.equal(new TextDecoder().decode(out), "0123456789\nééééé\n");
  });

  test("LineEncoderStream writes a line longer than one batch", async () => {
    const long = "é".repeat(100_000);
    const wire = await encode(["a", long, "b"], 1_000_000);
    assert.deepEqual(await decode([wire], 1_000_000), ["a", long, "b"]);
    await rejectsWith(encode([long], 199_999), "ELINETOOLONG", /current value is 200000$/);
  });

  test("LineEncoderStream refuses a value that is not a string with a TypeError", async () => {
    const encoder = new LineEncoderStream() as unknown as TransformStream<unknown, Uint8Array>;
    await assert.rejects(transformAll(encoder, [42]), TypeError);
  });

  test("the line streams refuse a maxLineLength that is not a whole number from 0 to 2^31", () => {
    for (const maxLineLength of [-1, 0.5, 2 ** 31 + 1, Number.NaN]) {
      assert.throws(() => new LineEncoderStream({ maxLineLength }), RangeError);
      assert.throws(
        () => new LineDecoderStream({ maxLineLength }),
        /maxLineLength is not a whole number/,
      );
    }
  });
});
