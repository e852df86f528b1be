/**
 * Payload codecs: {@linkcode text} and {@linkcode json} turn values into the bytes every
 * dockipc payload is, and back, refusing what they cannot carry faithfully with `ECODEC`.
 *
 * @module
 */

import { IpcError } from "./errors.ts";

/** A value JSON carries as it is: what {@linkcode json} encodes and decodes. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue | undefined };

/** Turns values into payload bytes and back. */
export interface Codec<T> {
  /** The bytes of `value`; throws `IpcError` `ECODEC` for a value it cannot carry. */
  encode(value: T): Uint8Array;
  /** The value `bytes` hold; throws `IpcError` `ECODEC` for bytes that hold none. */
  decode(bytes: Uint8Array): T;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What a value is, for messages: `a number (NaN)`, `a Map`, `undefined`. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === "number") return `a number (${value})`;
  if (typeof value !== "object") return `a ${typeof value}`;
  if (Array.isArray(value)) return "an array";
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return "an object";
  return `a ${proto?.constructor?.name ?? "object"}`;
}

function codecError(message: string, cause?: unknown): IpcError {
  return new IpcError("ECODEC", message, cause === undefined ? {} : { cause });
}

/** Bytes as UTF-8, or `ECODEC` naming where they are not. */
function decodeUtf8(bytes: Uint8Array, as: string): string {
  if (!(bytes instanceof Uint8Array)) {
    throw codecError(`Cannot decode ${describe(bytes)} as ${as}: a payload is a Uint8Array`);
  }
  try {
    return strictUtf8.decode(bytes);
  } catch (err) {
    throw codecError(`Cannot decode ${bytes.length} bytes as ${as}: they are not UTF-8`, err);
  }
}

/**
 * Text as UTF-8 bytes. Decoding refuses bytes that are not UTF-8 rather than replacing them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { text } from "@dockipc/dockipc";
 *
 * assert.equal(text.decode(text.encode("grüß dich")), "grüß dich");
 * ```
 */
export const text: Codec<string> = {
  encode(value: string): Uint8Array {
    if (typeof value !== "string") {
      throw codecError(`Cannot encode ${describe(value)} as text: give a string`);
    }
    return utf8.encode(value);
  },
  decode(bytes: Uint8Array): string {
    return decodeUtf8(bytes, "text");
  },
};

/**
 * Refuses, while `JSON.stringify` walks a value, what it would change without a word: numbers
 * that become `null`, `Map`s, `Set`s and byte arrays that become `{}` or numbered keys, and
 * functions and symbols that vanish. `undefined` properties are left out, as JSON does.
 */
function faithful(this: unknown, key: string, value: unknown): unknown {
  const where = key === "" ? "" : ` at key "${key}"`;
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw codecError(`Cannot encode ${describe(value)}${where} as JSON, which has no such number`);
  }
  if (typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
    throw codecError(`Cannot encode ${describe(value)}${where} as JSON, which has no such value`);
  }
  if (value instanceof Map || value instanceof Set || ArrayBuffer.isView(value)) {
    throw codecError(
      `Cannot encode ${describe(value)}${where} as JSON without losing its contents: ` +
        "convert it to an array or a plain object first",
    );
  }
  return value;
}

/**
 * JSON values as UTF-8 JSON text. Encoding refuses what JSON would silently change or drop
 * (`undefined`, `NaN`, functions, a `Map`, cycles); decoding refuses bytes that are not JSON.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { json } from "@dockipc/dockipc";
 *
 * const bytes = json.encode({ id: 7, tags: ["a", "b"] });
 * assert.deepEqual(json.decode(bytes), { id: 7, tags: ["a", "b"] });
 * assert.throws(() => json.encode({ ratio: NaN }), { code: "ECODEC" }); // JSON would say null
 * ```
 */
export const json: Codec<JsonValue> = {
  encode(value: JsonValue): Uint8Array {
    let out: string | undefined;
    try {
      out = JSON.stringify(value, faithful);
    } catch (err) {
      if (err instanceof IpcError) throw err;
      // A cycle, or a toJSON() that threw.
      throw codecError(`Cannot encode ${describe(value)} as JSON: ${(err as Error).message}`, err);
    }
    if (out === undefined) {
      throw codecError(`Cannot encode ${describe(value)} as JSON, which has no such value`);
    }
    return utf8.encode(out);
  },
  decode(bytes: Uint8Array): JsonValue {
    const source = decodeUtf8(bytes, "JSON");
    try {
      return JSON.parse(source) as JsonValue;
    } catch (err) {
      throw codecError(
        `Cannot decode ${bytes.length} bytes as JSON: ${(err as Error).message}`,
        err,
      );
    }
  },
};

/** What a handler may answer with, besides a stream: bytes, text, a JSON value, or nothing. */
export type ReplyValue = Uint8Array | JsonValue | undefined | void;

const EMPTY = new Uint8Array(0);

/**
 * A handler's answer as payload bytes: bytes as they are, a string as UTF-8 text (not JSON),
 * nothing as no bytes, any other JSON value as JSON. Throws `ECODEC` for anything else, naming
 * `who` answered.
 */
export function replyBytes(reply: unknown, who: string): Uint8Array {
  if (reply instanceof Uint8Array) return reply;
  if (typeof reply === "string") return utf8.encode(reply);
  if (reply === undefined) return EMPTY;
  try {
    return json.encode(reply as JsonValue);
  } catch (err) {
    throw codecError(
      `${who} answered with something that cannot be sent (${(err as Error).message}): ` +
        "answer with bytes, a string, a JSON value or, from an RPC handler, a ReadableStream",
      err,
    );
  }
}

/** A chunk of a streamed reply as bytes: bytes or UTF-8 text, else `ECODEC` naming `who`. */
export function chunkBytes(chunk: unknown, who: string): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === "string") return utf8.encode(chunk);
  throw codecError(`${who} gave a chunk that is ${describe(chunk)}: a chunk is bytes or a string`);
}
