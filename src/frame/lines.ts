/**
 * Line frames: UTF-8 text terminated by `\n`, with `\r\n` accepted on input. The format is
 * specified in `docs/PROTOCOL.md`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import {
  checkLimit,
  decodeError,
  type Decoder,
  decoderTransformer,
  type Encoder,
  encoderTransformer,
} from "./format.ts";

const LF = 10;
const CR = 13;

/** The default for `maxLineLength`: 64 KiB. */
export const DEFAULT_MAX_LINE_LENGTH = 64 * 1024;

/** Options of {@linkcode LineEncoderStream} and {@linkcode LineDecoderStream}. */
export interface LineStreamOptions {
  /**
   * The longest line accepted, in UTF-8 bytes, not counting its `\n` or `\r\n`. The encoder
   * refuses a longer line before writing any of it; the decoder refuses one as soon as that
   * many bytes arrived without a line break, so a peer cannot make it buffer more.
   *
   * @default {65536}
   */
  maxLineLength?: number;
}

/** Reads the `maxLineLength` option. */
export function maxLineLengthOf(owner: string, options: LineStreamOptions): number {
  return checkLimit(
    owner,
    "maxLineLength",
    options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH,
    2 ** 31,
  );
}

function tooLong(op: string, length: number, max: number): string {
  return `Cannot ${op} line as its length exceeds maxLineLength (${max}): current value is ${length}`;
}

const utf8 = new TextEncoder();

/** The line format's encoder; {@linkcode LineEncoderStream} and `lines()` drive it. */
export class LineEncoding implements Encoder<string> {
  readonly #max: number;

  constructor(maxLineLength: number) {
    this.#max = maxLineLength;
  }

  encode(line: string, buf: Uint8Array, at: number): number {
    this.#check(line);
    // A UTF-8 encoding is never shorter than the string's UTF-16 length.
    if (at + line.length + 1 > buf.length) return -1;
    const { read, written } = utf8.encodeInto(line, buf.subarray(at, buf.length - 1));
    if (read < line.length) return -1;
    if (written > this.#max) this.#refuse(written);
    buf[at + written] = LF;
    return written + 1;
  }

  encodeAlone(line: string): Uint8Array[] {
    const bytes = utf8.encode(`${line}\n`);
    if (bytes.length - 1 > this.#max) this.#refuse(bytes.length - 1);
    return [bytes];
  }

  #check(line: string): void {
    if (typeof line !== "string") {
      throw new TypeError(
        `Cannot encode line as it is not a string: current type is ${typeof line}`,
      );
    }
    if (line.length > this.#max) this.#refuse(line.length);
    const lf = line.indexOf("\n");
    if (lf >= 0 || line.endsWith("\r")) {
      const at = lf >= 0 ? lf : line.length - 1;
      throw new IpcError(
        "EPROTOCOL",
        `Cannot encode line as it contains a line break: at index ${at}`,
        { op: "encode" },
      );
    }
  }

  #refuse(length: number): never {
    throw new IpcError("ELINETOOLONG", tooLong("encode", length, this.#max), { op: "encode" });
  }
}

/** The line format's decoder. */
export class LineParser implements Decoder<string> {
  readonly #max: number;
  readonly #text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  /** Stream bytes consumed before the current chunk, for error messages. */
  #offset = 0;
  /** The start of a line split across chunks, at most `max + 1` bytes. */
  #partial = new Uint8Array(0);
  #partialLength = 0;

  constructor(maxLineLength: number) {
    this.#max = maxLineLength;
  }

  push(chunk: Uint8Array, emit: (line: string) => void): void {
    let pos = 0;
    let lf = chunk.indexOf(LF);
    if (this.#partialLength > 0 && lf >= 0) {
      this.#keep(chunk, 0, lf);
      emit(
        this.#line(this.#partial, 0, this.#partialLength, this.#offset - this.#partialLength + lf),
      );
      this.#partialLength = 0;
      pos = lf + 1;
      lf = chunk.indexOf(LF, pos);
    }
    while (lf >= 0) {
      emit(this.#line(chunk, pos, lf, this.#offset + pos));
      pos = lf + 1;
      lf = chunk.indexOf(LF, pos);
    }
    if (pos < chunk.length) this.#keep(chunk, pos, chunk.length);
    this.#offset += chunk.length;
  }

  /** A last line without a line break still counts, as in most line readers. */
  end(emit: (line: string) => void): void {
    if (this.#partialLength === 0) return;
    const length = this.#partialLength;
    this.#partialLength = 0;
    emit(this.#line(this.#partial, 0, length, this.#offset - length));
  }

  /** Decodes `bytes[start, end)` without a trailing `\r`; `offset` is where the line starts. */
  #line(bytes: Uint8Array, start: number, end: number, offset: number): string {
    if (end > start && bytes[end - 1] === CR) end--;
    if (end - start > this.#max) {
      throw decodeError("ELINETOOLONG", tooLong("decode", end - start, this.#max), offset);
    }
    try {
      return this.#text.decode(bytes.subarray(start, end));
    } catch (err) {
      throw decodeError("EPROTOCOL", "Cannot decode line as it is not valid UTF-8", offset, err);
    }
  }

  /** Appends `chunk[start, end)` to the partial line, refusing it once it is too long. */
  #keep(chunk: Uint8Array, start: number, end: number): void {
    const length = this.#partialLength + end - start;
    // One byte over the limit may still be the `\r` of a `\r\n`.
    const last = end > start ? chunk[end - 1] : this.#partial[this.#partialLength - 1];
    if (length > this.#max + 1 || (length === this.#max + 1 && last !== CR)) {
      throw decodeError(
        "ELINETOOLONG",
        `Cannot decode line as its length exceeds maxLineLength (${this.#max}): at least ${length} bytes`,
        this.#offset + start - this.#partialLength,
      );
    }
    if (length > this.#partial.length) {
      const grown = new Uint8Array(
        Math.min(Math.max(length, this.#partial.length * 2, 256), this.#max + 1),
      );
      grown.set(this.#partial.subarray(0, this.#partialLength));
      this.#partial = grown;
    }
    this.#partial.set(chunk.subarray(start, end), this.#partialLength);
    this.#partialLength = length;
  }
}

/**
 * Encodes each written string as one line: its UTF-8 bytes, then `\n`.
 *
 * Lines written in one burst are coalesced into one chunk of up to 64 KiB. A string that
 * contains `\n`, or ends in `\r`, cannot be sent as one line and is refused with `IpcError`
 * `EPROTOCOL`; one longer than `maxLineLength` bytes with `ELINETOOLONG`. Either way nothing
 * of it is written, the lines accepted before it still come out, and the readable side ends.
 *
 * @example Write two lines
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineEncoderStream } from "@dockipc/dockipc";
 *
 * const text = await new Response(
 *   ReadableStream.from(["PING", "ECHO héllo"]).pipeThrough(new LineEncoderStream()),
 * ).text();
 * assert.equal(text, "PING\nECHO héllo\n");
 * ```
 */
export class LineEncoderStream extends TransformStream<string, Uint8Array> {
  /**
   * Creates an encoder.
   *
   * @param options The line length limit.
   * @throws {RangeError} If `maxLineLength` is not a whole number from 0 to 2³¹.
   */
  constructor(options: LineStreamOptions = {}) {
    super(encoderTransformer(new LineEncoding(maxLineLengthOf("LineEncoderStream", options))));
  }
}

/**
 * Decodes lines: splits UTF-8 bytes at each `\n`, drops a `\r` before it, and emits each line
 * as a string without its line break. A last line without a line break is emitted too.
 *
 * Bad input errors the stream with an `IpcError`: a line longer than `maxLineLength` bytes is
 * `ELINETOOLONG` (found before more than that is buffered); bytes that are not UTF-8 are
 * `EPROTOCOL`. A byte-order mark is kept as text, not removed.
 *
 * @example Read lines from a byte stream
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineDecoderStream } from "@dockipc/dockipc";
 *
 * const bytes = new TextEncoder().encode("PING\r\nECHO a b\nlast");
 * const lines = await Array.fromAsync(
 *   ReadableStream.from([bytes.subarray(0, 5), bytes.subarray(5)])
 *     .pipeThrough(new LineDecoderStream()),
 * );
 * assert.deepEqual(lines, ["PING", "ECHO a b", "last"]);
 * ```
 */
export class LineDecoderStream extends TransformStream<Uint8Array, string> {
  /**
   * Creates a decoder.
   *
   * @param options The line length limit.
   * @throws {RangeError} If `maxLineLength` is not a whole number from 0 to 2³¹.
   */
  constructor(options: LineStreamOptions = {}) {
    super(
      decoderTransformer(
        new LineParser(maxLineLengthOf("LineDecoderStream", options)),
        "LineDecoderStream",
      ),
    );
  }
}
