/**
 * What the frame and line formats share: the decoder and encoder interfaces, the batching
 * that coalesces small frames into one chunk, and the transformers that turn a format into a
 * `TransformStream`. `framed.ts` drives the same formats straight over a connection.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { BurstTimer } from "../internal/async.ts";

/** Splits a byte stream into values; one instance per stream, as it keeps partial input. */
export interface Decoder<T> {
  /** Calls `emit` for every value completed by `chunk`; throws an `IpcError` on bad input. */
  push(chunk: Uint8Array, emit: (value: T) => void): void;
  /** The stream ended: emits what the format allows, or throws if it ended inside a value. */
  end(emit: (value: T) => void): void;
}

/** Turns values into bytes. Stateless, so one instance may serve many streams. */
export interface Encoder<T> {
  /**
   * Encodes `value` into `buf` at `at` and returns the bytes written, or -1 when the value is
   * better not copied there: it does not fit the room left, or it is large enough that writing
   * it by reference is cheaper. Throws an `IpcError` before writing a byte if the value is
   * refused.
   */
  encode(value: T, buf: Uint8Array, at: number): number;
  /** The chunks that carry `value` on its own, referencing its bytes where it can. */
  encodeAlone(value: T): Uint8Array[];
  /** Lowers the largest frame it writes to `max`, when the peer takes no larger one. */
  narrow?(max: number): void;
}

/** The size of a coalesced chunk: many small frames, one socket write. */
export const BATCH_BYTES = 64 * 1024;

/** Payloads from this size on are written by reference rather than copied into a batch. */
export const COPY_BELOW = 16 * 1024;

/**
 * The part of a `TransformStream`'s transformer the codecs fill in. Declared here rather than
 * taken from the global `Transformer`, which is the DOM library's: a Node project's types (and so
 * the npm package's `.d.ts`) have no such global.
 */
export interface CodecTransformer<I, O> {
  start(controller: TransformStreamDefaultController<O>): void;
  transform(chunk: I): void;
  flush(): void;
}

/** A transformer that decodes with `decoder`: the body of the decoder streams. */
export function decoderTransformer<T>(
  decoder: Decoder<T>,
  name: string,
): CodecTransformer<Uint8Array, T> {
  let emit: (value: T) => void;
  return {
    start(controller): void {
      emit = (value) => controller.enqueue(value);
    },
    transform(chunk): void {
      if (!(chunk instanceof Uint8Array)) throw notBytes(name, chunk);
      decoder.push(chunk, emit);
    },
    flush(): void {
      decoder.end(emit);
    },
  };
}

/**
 * A transformer that encodes with `encoder` and coalesces: values written in one burst share
 * a chunk of up to {@linkcode BATCH_BYTES}, handed on when the burst ends or the chunk is full.
 * A refused value first hands on what was accepted before it, then ends the readable side
 * cleanly (so nothing acknowledged is lost) and rejects its own write.
 */
export function encoderTransformer<T>(encoder: Encoder<T>): CodecTransformer<T, Uint8Array> {
  let controller: TransformStreamDefaultController<Uint8Array>;
  let buf = new Uint8Array(BATCH_BYTES);
  let len = 0;
  const handOn = (): void => {
    // A nearly empty batch is copied out so its buffer can be reused; a fuller one is given
    // away whole, which is cheaper than copying it.
    let chunk: Uint8Array;
    if (len > BATCH_BYTES / 4) {
      chunk = buf.subarray(0, len);
      buf = new Uint8Array(BATCH_BYTES);
    } else {
      chunk = buf.slice(0, len);
    }
    len = 0;
    controller.enqueue(chunk);
  };
  const timer = new BurstTimer(() => {
    if (len === 0) return;
    try {
      handOn();
    } catch {
      // The stream was cancelled or errored meanwhile: there is no one left to hand it to.
    }
  });
  const encode = (value: T): void => {
    let n = encoder.encode(value, buf, len);
    if (n < 0 && len > 0) {
      handOn();
      n = encoder.encode(value, buf, 0);
    }
    if (n >= 0) {
      len += n;
      timer.touch();
      return;
    }
    for (const chunk of encoder.encodeAlone(value)) controller.enqueue(chunk);
  };
  return {
    start(c): void {
      controller = c;
    },
    transform(value): void {
      try {
        encode(value);
      } catch (err) {
        if (len > 0) handOn();
        controller.terminate();
        throw err;
      }
    },
    flush(): void {
      if (len > 0) handOn();
    },
  };
}

/** Checks a size limit given as an option: a whole number from 0 to `max`. */
export function checkLimit(owner: string, name: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(
      `Cannot create ${owner} as ${name} is not a whole number from 0 to ${max}: current value is ${value}`,
    );
  }
  return value;
}

/** The error for a chunk that is not bytes, written to a decoder. */
export function notBytes(owner: string, chunk: unknown): TypeError {
  const type = chunk === null
    ? "null"
    : typeof chunk === "object"
    ? chunk.constructor?.name
    : typeof chunk;
  return new TypeError(
    `Cannot decode with ${owner} as the chunk is not a Uint8Array: current type is ${type}`,
  );
}

/** An `IpcError` raised while decoding, naming the stream offset where the problem begins. */
export function decodeError(
  code: "EFRAMETOOLARGE" | "ETRUNCATED" | "ELINETOOLONG" | "EPROTOCOL",
  message: string,
  offset: number,
  cause?: unknown,
): IpcError {
  return new IpcError(code, `${message} (at stream offset ${offset})`, { op: "decode", cause });
}
