/**
 * Reading and writing the fields of a binary protocol message: the type byte, then integers
 * (big-endian) and u16-length-prefixed UTF-8 strings. The reader checks every length against the
 * bytes left and refuses anything else with `IpcError` `EPROTOCOL`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { copyBytes } from "../runtime/bytes.ts";

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);
const text = new TextDecoder("utf-8", { fatal: true });
/** For message texts (an error's message or stack): bad bytes become U+FFFD, never a failure. */
const lenient = new TextDecoder("utf-8");
const HIGH = 0x1_0000_0000;

/**
 * `length` bytes of `bytes` from `start`, as a view of the same memory: what `subarray()` gives,
 * 1.1 to 1.6 times faster (it looks up no species constructor), and always a plain `Uint8Array`,
 * whatever the class of `bytes`. Decoders make one per message.
 *
 * The messages of one chunk are cut from the same `bytes`, so its buffer and offset are looked
 * up once per chunk, not per message: a quarter of the cost of a view on every runtime. The
 * last chunk stays referenced until the next view is made of another.
 */
export function view(bytes: Uint8Array, start: number, length: number): Uint8Array {
  if (bytes !== lastView.bytes) {
    lastView.bytes = bytes;
    lastView.buffer = bytes.buffer;
    lastView.offset = bytes.byteOffset;
  }
  return new Uint8Array(lastView.buffer, lastView.offset + start, length);
}

/** Reads the 4-byte big-endian unsigned integer at `at`: a length prefix, an id. */
export function readUint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>>
    0;
}

/**
 * Reads the 8-byte big-endian unsigned integer at `at`; -1 when it is 2^53 or more, which a
 * number does not hold exactly.
 */
export function readUint53(bytes: Uint8Array, at: number): number {
  const high = readUint32(bytes, at);
  return high >= 0x20_0000 ? -1 : high * HIGH + readUint32(bytes, at + 4);
}

/** Whether the `n` bytes of `bytes` at `at` are the text `last` holds. */
export function repeats(last: LastString, bytes: Uint8Array, at: number, n: number): boolean {
  if (n !== last.length) return false;
  const prev = last.bytes;
  for (let i = 0; i < n; i++) if (bytes[at + i] !== prev[i]) return false;
  return true;
}

/** The bytes `view()` was last given, with their buffer and offset. */
const lastView: { bytes: Uint8Array | undefined; buffer: ArrayBufferLike; offset: number } = {
  bytes: undefined,
  buffer: new ArrayBuffer(0),
  offset: 0,
};

/** Text up to this many bytes, all ASCII, is built in JavaScript: see `WireReader.#decode`. */
const ASCII_BELOW = 64;

/**
 * The last text a string field decoded to, and its bytes: the first `length` of `bytes`, a
 * buffer kept and grown as needed, so that a new text allocates nothing but itself. See
 * `WireReader.strRepeated`.
 */
export interface LastString {
  bytes: Uint8Array;
  length: number;
  text: string;
}

/** Reads fields from one frame, from the byte after its type. */
export class WireReader {
  readonly #bytes: Uint8Array;
  readonly #protocol: string;
  readonly #length: number;
  readonly #end: number;
  #at: number;

  /**
   * @param bytes Holds the message's bytes, type byte first, from `start`.
   * @param protocol Named in errors: "Cannot read <protocol> message as …".
   * @param start Where the message starts in `bytes`.
   * @param length The message's length.
   */
  constructor(bytes: Uint8Array, protocol: string, start = 0, length = bytes.length - start) {
    this.#bytes = bytes;
    this.#protocol = protocol;
    this.#length = length;
    this.#at = start + 1;
    this.#end = start + length;
  }

  /** The message's type byte, its first; throws `EPROTOCOL` for an empty frame. */
  type(): number {
    if (this.#length === 0) throw this.bad("the frame is empty");
    return this.#bytes[this.#at - 1]!;
  }

  /** The error for a malformed message. */
  bad(why: string, cause?: unknown): IpcError {
    return new IpcError("EPROTOCOL", `Cannot read ${this.#protocol} message as ${why}`, {
      op: "decode",
      cause,
    });
  }

  #need(n: number, what: string): void {
    if (this.#at + n > this.#end) {
      throw this.bad(`its ${what} runs past the end of the ${this.#length}-byte frame`);
    }
  }

  u8(what: string): number {
    this.#need(1, what);
    return this.#bytes[this.#at++]!;
  }

  u32(what: string): number {
    this.#need(4, what);
    this.#at += 4;
    return readUint32(this.#bytes, this.#at - 4);
  }

  /**
   * A u32 count of items that follow, each at least `each` bytes: a count the frame cannot hold
   * is refused before anything is made for it.
   */
  count(what: string, each: number): number {
    const n = this.u32(`${what} count`);
    this.#need(n * each, what);
    return n;
  }

  /** A u64 that must hold an integer below 2^53. */
  u64(what: string): number {
    this.#need(8, what);
    this.#at += 8;
    const n = readUint53(this.#bytes, this.#at - 8);
    if (n < 0) throw this.bad(`its ${what} is above 2^53`);
    return n;
  }

  str(what: string): string {
    const n = this.#strLength(what);
    this.#at += n;
    return this.#decode(this.#at - n, n, what);
  }

  /**
   * A string field of free text, such as an error's message: bytes that are not UTF-8 become
   * U+FFFD rather than failing the message, and so the connection.
   */
  text(what: string): string {
    const n = this.#strLength(what);
    this.#at += n;
    return lenient.decode(view(this.#bytes, this.#at - n, n));
  }

  /**
   * A string field that mostly repeats (a topic): compared in place with `last`, and decoded,
   * `last` then updated, only when it differs. That saves a view and a decode per message.
   */
  strRepeated(what: string, last: LastString): string {
    const n = this.#strLength(what);
    const bytes = this.#bytes;
    const at = this.#at;
    this.#at += n;
    if (repeats(last, bytes, at, n)) return last.text;
    // Decoded first: a field that is not UTF-8 leaves `last` as it was.
    const text = this.#decode(at, n, what);
    let prev = last.bytes;
    if (prev.length < n) prev = last.bytes = new Uint8Array(Math.max(n, 2 * prev.length));
    for (let i = 0; i < n; i++) prev[i] = bytes[at + i]!;
    last.length = n;
    last.text = text;
    return text;
  }

  /** Reads a string field's length and checks that its bytes follow; returns the length. */
  #strLength(what: string): number {
    this.#need(2, `${what} length`);
    const n = (this.#bytes[this.#at]! << 8) | this.#bytes[this.#at + 1]!;
    this.#at += 2;
    this.#need(n, what);
    return n;
  }

  /**
   * Decodes the `n` bytes of a string field at `at`, refusing anything that is not UTF-8. Short
   * ASCII (topics, names) is built here: on Deno a `TextDecoder` call costs more than twice
   * what the rest of a message's decoding does.
   */
  #decode(at: number, n: number, what: string): string {
    const bytes = this.#bytes;
    if (n < ASCII_BELOW) {
      let s = "";
      let i = 0;
      for (; i < n && bytes[at + i]! < 0x80; i++) s += String.fromCharCode(bytes[at + i]!);
      if (i === n) return s;
    }
    try {
      return text.decode(view(bytes, at, n));
    } catch (err) {
      throw this.bad(`its ${what} is not valid UTF-8`, err);
    }
  }

  /** Everything after the fields read so far. */
  rest(): Uint8Array {
    const out = view(this.#bytes, this.#at, this.#end - this.#at);
    this.#at = this.#end;
    return out;
  }

  /** Refuses bytes left after the last field. */
  end(): void {
    if (this.#at !== this.#end) {
      throw this.bad(`${this.#end - this.#at} bytes follow its last field`);
    }
  }
}

/**
 * Free text as a field: its UTF-8 bytes, cut to fit a u16 length at a character boundary (so
 * that what arrives is still UTF-8).
 */
export function textField(s: string): Uint8Array {
  const bytes = utf8.encode(s);
  if (bytes.length <= 0xffff) return bytes;
  let end = 0xffff;
  // Back off over continuation bytes (10xxxxxx) to the start of the character that would be cut.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** A string as a field: its UTF-8 bytes, which must fit a u16 length. */
export function strField(s: string, what: string): Uint8Array {
  if (s.length === 0) return EMPTY; // most optional fields (a message id) are empty
  const bytes = utf8.encode(s);
  if (bytes.length > 0xffff) {
    throw new IpcError(
      "EFRAMETOOLARGE",
      `Cannot send a ${what} of ${bytes.length} bytes: the limit is 65535`,
      {
        op: "encode",
      },
    );
  }
  return bytes;
}

/** Writes fields into a buffer sized by the caller. */
export class WireWriter {
  readonly buf: Uint8Array;
  at: number;

  constructor(buf: Uint8Array, at: number) {
    this.buf = buf;
    this.at = at;
  }

  u8(v: number): void {
    this.buf[this.at++] = v;
  }

  u32(v: number): void {
    const b = this.buf;
    const at = this.at;
    b[at] = v >>> 24;
    b[at + 1] = v >>> 16;
    b[at + 2] = v >>> 8;
    b[at + 3] = v;
    this.at += 4;
  }

  u64(v: number): void {
    this.u32(Math.floor(v / HIGH));
    this.u32(v >>> 0);
  }

  /** A string field from `strField()`. */
  str(bytes: Uint8Array): void {
    const buf = this.buf;
    const n = bytes.length;
    const at = this.at + 2;
    buf[at - 2] = n >>> 8;
    buf[at - 1] = n;
    // A short string (a topic) is copied by hand: cheaper than `set()`, a native call.
    if (n > 16) copyBytes(buf, at, bytes);
    else for (let i = 0; i < n; i++) buf[at + i] = bytes[i]!;
    this.at = at + n;
  }

  bytes(b: Uint8Array): void {
    copyBytes(this.buf, this.at, b);
    this.at += b.length;
  }
}
