/**
 * Length-prefixed frames: a 4-byte big-endian unsigned payload length, then the payload.
 * The format is specified in `docs/PROTOCOL.md`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { readUint32, view } from "../internal/wire.ts";
import { copyBytes } from "../runtime/bytes.ts";
import {
  checkLimit,
  COPY_BELOW,
  decodeError,
  type Decoder,
  decoderTransformer,
  type Encoder,
  encoderTransformer,
} from "./format.ts";

/** The bytes before each payload. */
const PREFIX = 4;
/** A frame split across chunks up to this size gets its whole buffer at once; a larger one grows. */
const WHOLE_UPFRONT = 1024 * 1024;

/** The largest length the prefix can state. */
const MAX_LENGTH = 0xffff_ffff;

/** The default for `maxFrameSize`: 16 MiB. */
export const DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024;

/** Options of {@linkcode FrameEncoderStream} and {@linkcode FrameDecoderStream}. */
export interface FrameStreamOptions {
  /**
   * The largest payload, in bytes, that is accepted. The encoder refuses a larger frame before
   * writing any of it; the decoder refuses a larger length before allocating anything.
   *
   * @default {16777216}
   */
  maxFrameSize?: number;
}

/** Reads the `maxFrameSize` option. */
export function maxFrameSizeOf(owner: string, options: FrameStreamOptions): number {
  return checkLimit(
    owner,
    "maxFrameSize",
    options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
    MAX_LENGTH,
  );
}

function tooLarge(op: string, size: number, max: number): string {
  return `Cannot ${op} frame as its length exceeds maxFrameSize (${max}): current value is ${size}`;
}

/** Writes `n` as a 4-byte big-endian unsigned integer at `at`: a length prefix, an RPC id. */
export function writeUint32(buf: Uint8Array, at: number, n: number): void {
  buf[at] = n >>> 24;
  buf[at + 1] = n >>> 16;
  buf[at + 2] = n >>> 8;
  buf[at + 3] = n;
}

/** The frame format's encoder; {@linkcode FrameEncoderStream} and `framed()` drive it. */
export class FrameEncoding implements Encoder<Uint8Array> {
  #max: number;

  constructor(maxFrameSize: number) {
    this.#max = maxFrameSize;
  }

  /** The largest frame it writes. */
  get max(): number {
    return this.#max;
  }

  narrow(max: number): void {
    this.#max = Math.min(this.#max, max);
  }

  encode(frame: Uint8Array, buf: Uint8Array, at: number): number {
    if (!(frame instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot encode frame as it is not a Uint8Array: current type is ${typeof frame}`,
      );
    }
    const size = frame.length;
    if (size > this.#max) {
      throw new IpcError("EFRAMETOOLARGE", tooLarge("encode", size, this.#max), { op: "encode" });
    }
    if (size >= COPY_BELOW || at + PREFIX + size > buf.length) return -1;
    writeUint32(buf, at, size);
    copyBytes(buf, at + PREFIX, frame);
    return PREFIX + size;
  }

  encodeAlone(frame: Uint8Array): Uint8Array[] {
    const prefix = new Uint8Array(PREFIX);
    writeUint32(prefix, 0, frame.length);
    return frame.length === 0 ? [prefix] : [prefix, frame];
  }
}

/**
 * Makes a decoder's value from one frame: its `length` bytes in `bytes` from `start`. `view`
 * hands out the bytes themselves; a protocol decodes its message in place, with no view of the
 * whole frame made first.
 */
export type FrameTaker<T> = (bytes: Uint8Array, start: number, length: number) => T;

/**
 * The frame format's decoder: takes a frame that lies whole in one chunk in place (with `view`,
 * a view into that chunk), and assembles a split frame in a buffer of exactly its size.
 */
export class FrameParser<T> implements Decoder<T> {
  readonly #max: number;
  /** The largest first frame: a server's cap on what a client may send before its handshake. */
  readonly #firstMax: number;
  readonly #take: FrameTaker<T>;
  /** Stream bytes consumed before the current chunk, for error messages. */
  #offset = 0;
  /** A prefix split across chunks: its bytes so far. */
  readonly #prefix = new Uint8Array(PREFIX);
  #prefixLength = 0;
  /**
   * A payload split across chunks: its buffer, how much of it is filled, and the frame's size.
   * The buffer holds the whole frame up to `WHOLE_UPFRONT` bytes; past that it grows as bytes
   * come, so a length prefix alone cannot make the parser hold more than twice what was sent.
   */
  #payload: Uint8Array | undefined;
  #filled = 0;
  #size = 0;

  /**
   * @param maxFrameSize The largest length accepted.
   * @param take Makes each value from its frame's bytes, e.g. `view`.
   * @param firstFrameSize The largest length accepted for the stream's first frame.
   */
  constructor(maxFrameSize: number, take: FrameTaker<T>, firstFrameSize = maxFrameSize) {
    this.#max = maxFrameSize;
    this.#firstMax = Math.min(firstFrameSize, maxFrameSize);
    this.#take = take;
  }

  push(chunk: Uint8Array, emit: (value: T) => void): void {
    const end = chunk.length;
    let pos = this.#prefixLength > 0 || this.#payload !== undefined ? this.#resume(chunk, emit) : 0;
    // The fast path: whole frames inside the chunk, each taken in place, no copy.
    const max = this.#max;
    const take = this.#take;
    while (end - pos >= PREFIX) {
      const size = readUint32(chunk, pos);
      if (size > max || (pos === 0 && this.#offset === 0)) this.#check(size, pos);
      const start = pos + PREFIX;
      if (end - start < size) {
        this.#begin(size);
        this.#append(chunk.subarray(start));
        this.#offset += end;
        return;
      }
      pos = start + size;
      emit(take(chunk, start, size));
    }
    if (pos < end) {
      this.#prefix.set(chunk.subarray(pos));
      this.#prefixLength = end - pos;
    }
    this.#offset += end;
  }

  end(): void {
    if (this.#prefixLength > 0) {
      throw decodeError(
        "ETRUNCATED",
        `Cannot decode frame as the stream ended ${this.#prefixLength} bytes into a ${PREFIX}-byte length prefix`,
        this.#offset - this.#prefixLength,
      );
    }
    if (this.#payload !== undefined) {
      throw decodeError(
        "ETRUNCATED",
        `Cannot decode frame as the stream ended after ${this.#filled} of ${this.#size} payload bytes`,
        this.#offset - this.#filled - PREFIX,
      );
    }
  }

  /** Completes a frame split across chunks; returns where the rest of `chunk` starts. */
  #resume(chunk: Uint8Array, emit: (value: T) => void): number {
    let pos = 0;
    if (this.#payload === undefined) {
      const take = Math.min(PREFIX - this.#prefixLength, chunk.length);
      this.#prefix.set(chunk.subarray(0, take), this.#prefixLength);
      this.#prefixLength += take;
      pos = take;
      if (this.#prefixLength < PREFIX) return pos;
      const size = readUint32(this.#prefix, 0);
      this.#prefixLength = 0;
      this.#check(size, pos - PREFIX);
      this.#begin(size);
    }
    const take = Math.min(this.#size - this.#filled, chunk.length - pos);
    this.#append(chunk.subarray(pos, pos + take));
    pos += take;
    if (this.#filled === this.#size) {
      const payload = this.#payload!;
      this.#payload = undefined;
      emit(this.#take(payload, 0, this.#size));
    }
    return pos;
  }

  /** A frame of `size` bytes starts, split across chunks. */
  #begin(size: number): void {
    this.#size = size;
    this.#filled = 0;
    this.#payload = new Uint8Array(Math.min(size, WHOLE_UPFRONT));
  }

  /** Adds bytes of the split frame, growing its buffer (by doubling, up to its size) to fit. */
  #append(bytes: Uint8Array): void {
    let payload = this.#payload!;
    const filled = this.#filled + bytes.length;
    if (filled > payload.length) {
      const grown = new Uint8Array(Math.min(this.#size, Math.max(payload.length * 2, filled)));
      grown.set(payload.subarray(0, this.#filled));
      this.#payload = payload = grown;
    }
    payload.set(bytes, this.#filled);
    this.#filled = filled;
  }

  /** Refuses a frame of `size` that starts `pos` bytes into the chunk, when it is too large. */
  #check(size: number, pos: number): void {
    const at = this.#offset + pos;
    const max = at === 0 ? this.#firstMax : this.#max;
    if (size > max) throw decodeError("EFRAMETOOLARGE", tooLarge("decode", size, max), at);
  }
}

/**
 * The taker of a message protocol over frames: decodes each frame in place with `decode`, and
 * turns a frame that does not decode into `invalid(error)`, for the receiver to act on (refuse
 * the peer) after the messages before it. Make one per protocol and share it between parsers.
 */
export function decodeOrInvalid<T>(
  decode: FrameTaker<T>,
  invalid: (error: IpcError) => T,
): FrameTaker<T> {
  return (bytes, start, length) => {
    try {
      return decode(bytes, start, length);
    } catch (err) {
      return invalid(err as IpcError);
    }
  };
}

/**
 * Encodes each written payload as one frame: a 4-byte big-endian length, then the payload.
 *
 * Frames written in one burst (writes queued without waiting in between) are coalesced into
 * one chunk of up to 64 KiB, so small frames do not cost a socket write each. A payload of
 * 16 KiB or more is not copied: its length goes out in a chunk of its own, then the payload
 * itself, so do not modify a buffer once written.
 *
 * A payload larger than `maxFrameSize` is refused before any of it is written: its write
 * rejects with `IpcError` `EFRAMETOOLARGE`, the frames accepted before it still come out, and
 * the readable side then ends.
 *
 * @example Frame two messages
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameEncoderStream } from "@dockipc/dockipc";
 *
 * const bytes = await new Response(
 *   ReadableStream.from([new Uint8Array([1, 2]), new Uint8Array([3])])
 *     .pipeThrough(new FrameEncoderStream()),
 * ).bytes();
 * assert.deepEqual([...bytes], [0, 0, 0, 2, 1, 2, 0, 0, 0, 1, 3]);
 * ```
 */
export class FrameEncoderStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * Creates an encoder.
   *
   * @param options The frame size limit.
   * @throws {RangeError} If `maxFrameSize` is not a whole number from 0 to 2³² − 1.
   */
  constructor(options: FrameStreamOptions = {}) {
    super(encoderTransformer(new FrameEncoding(maxFrameSizeOf("FrameEncoderStream", options))));
  }
}

/**
 * Decodes frames: a 4-byte big-endian length, then that many payload bytes; each payload comes
 * out as one chunk. Zero-length frames are valid and come out as empty chunks.
 *
 * Any chunking of the input works. Ownership: a frame that lies whole inside one input chunk
 * comes out as a view of that chunk (a plain `Uint8Array`), without a copy; a frame split
 * across chunks comes out in a buffer of its own. The decoder never touches a frame again once
 * handed out, so the reader owns it, but a view keeps its whole input chunk alive: `slice()` a
 * small frame you keep for long. Writers must not modify a chunk after writing it.
 *
 * Bad input errors the stream with an `IpcError`: a length above `maxFrameSize` is
 * `EFRAMETOOLARGE`, refused before anything is allocated for it; input that ends inside a
 * frame is `ETRUNCATED`, and the message says where. As with any `TransformStream` error, frames
 * still queued unread are dropped with it; `framed()` delivers them first.
 *
 * @example Decode frames from arbitrary chunks
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameDecoderStream } from "@dockipc/dockipc";
 *
 * const chunks = [new Uint8Array([0, 0]), new Uint8Array([0, 2, 7, 8, 0, 0, 0, 0])];
 * const frames = await Array.fromAsync(
 *   ReadableStream.from(chunks).pipeThrough(new FrameDecoderStream()),
 * );
 * assert.deepEqual(frames, [new Uint8Array([7, 8]), new Uint8Array(0)]);
 * ```
 */
export class FrameDecoderStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * Creates a decoder.
   *
   * @param options The frame size limit.
   * @throws {RangeError} If `maxFrameSize` is not a whole number from 0 to 2³² − 1.
   */
  constructor(options: FrameStreamOptions = {}) {
    super(
      decoderTransformer(
        new FrameParser(maxFrameSizeOf("FrameDecoderStream", options), view),
        "FrameDecoderStream",
      ),
    );
  }
}
