/**
 * The byte layout of segments, records and snapshots, and the scanner that walks a segment's
 * records checking each one. `mod.ts` states the format for users; this file implements it.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { FileHandle } from "../runtime/types.ts";
import { crc32cWords } from "./crc32c.ts";

/** Records start at offsets that are multiples of this, so no length field straddles a sector. */
export const ALIGN = 8;
/** A record's fixed part: length (u32), checksum (u32), sequence (u64), all little-endian. */
export const RECORD_HEADER = 16;
/** A segment's header: magic, version, flags, first sequence, chain seed, header checksum. */
export const SEGMENT_HEADER = 32;
/** Format version in segment and snapshot headers. */
export const VERSION = 1;
/** "DKWAL\r\n\x1a": the line ending and ^Z catch files mangled by text-mode copies. */
export const SEGMENT_MAGIC: Uint8Array = new Uint8Array([
  0x44,
  0x4b,
  0x57,
  0x41,
  0x4c,
  0x0d,
  0x0a,
  0x1a,
]);
/** "DKSNP\r\n\x1a". */
export const SNAPSHOT_MAGIC: Uint8Array = new Uint8Array([
  0x44,
  0x4b,
  0x53,
  0x4e,
  0x50,
  0x0d,
  0x0a,
  0x1a,
]);
/** A snapshot's header: magic, version, state length, sequence, checksum, padding. */
export const SNAPSHOT_HEADER = 32;

const HIGH = 0x1_0000_0000;

/** The bytes a record with `length` data bytes takes, padding included. */
export function recordSize(length: number): number {
  return (RECORD_HEADER + length + ALIGN - 1) & ~(ALIGN - 1);
}

/** Writes a little-endian u32. */
export function putU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v;
  buf[off + 1] = v >>> 8;
  buf[off + 2] = v >>> 16;
  buf[off + 3] = v >>> 24;
}

/** Reads a little-endian u32. */
export function getU32(buf: Uint8Array, off: number): number {
  return (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
}

/** Writes a sequence number (an integer below 2^53) as a little-endian u64. */
export function putU64(buf: Uint8Array, off: number, v: number): void {
  putU32(buf, off, v >>> 0);
  putU32(buf, off + 4, Math.floor(v / HIGH));
}

/** Reads a little-endian u64 that holds a sequence number. */
export function getU64(buf: Uint8Array, off: number): number {
  return getU32(buf, off) + getU32(buf, off + 4) * HIGH;
}

/**
 * Encodes a record at `off` (a multiple of 8) of `buf`, whose word view is `words`, and returns
 * its checksum: CRC-32C seeded with the previous record's checksum, over the length, the
 * sequence and the data. `buf` must have room for `recordSize(data.length)` bytes from `off`.
 */
export function encodeRecord(
  buf: Uint8Array,
  words: Int32Array,
  off: number,
  seq: number,
  data: Uint8Array,
  seed: number,
): number {
  const n = data.length;
  putU32(buf, off, n);
  putU64(buf, off + 8, seq);
  buf.set(data, off + RECORD_HEADER);
  const end = off + RECORD_HEADER + n;
  buf.fill(0, end, off + recordSize(n));
  const crc = crc32cWords(crc32cWords(seed, buf, words, off, off + 4), buf, words, off + 8, end);
  putU32(buf, off + 4, crc);
  return crc;
}

/** Encodes a segment header. */
export function encodeSegmentHeader(firstSeq: number, seed: number): Uint8Array {
  const h = new Uint8Array(SEGMENT_HEADER);
  h.set(SEGMENT_MAGIC, 0);
  putU32(h, 8, VERSION);
  putU64(h, 16, firstSeq);
  putU32(h, 24, seed);
  putU32(h, 28, crc32cWords(0, h, undefined, 0, 28));
  return h;
}

/** A decoded segment header. */
export interface SegmentHeader {
  firstSeq: number;
  /** The checksum of the record before this segment's first one (0 for the log's first). */
  seed: number;
}

/** Decodes a segment header; `undefined` with `why` set when it is not one. */
export function decodeSegmentHeader(h: Uint8Array): SegmentHeader | string {
  if (h.length < SEGMENT_HEADER) return `its header is cut short at ${h.length} bytes`;
  for (let i = 0; i < 8; i++) {
    if (h[i] !== SEGMENT_MAGIC[i]) return "it does not start with the segment magic";
  }
  if (getU32(h, 28) !== crc32cWords(0, h, undefined, 0, 28)) return "its header fails its checksum";
  const version = getU32(h, 8);
  if (version !== VERSION) {
    return `it has format version ${version}, and this code reads ${VERSION}`;
  }
  return { firstSeq: getU64(h, 16), seed: getU32(h, 24) };
}

/** What {@linkcode SegmentScanner.step} found. */
export const VALID = 1;
/** The buffer ends inside the next record: refill. */
export const NEED = 0;
/** The next record's header is all zeros: the end of what was written. */
export const ZERO = -1;
/** The next record is damaged: see `why`. */
export const BAD = -2;

/** The state a scan carries from record to record: the checksum chain and the next sequence. */
export interface Chain {
  crc: number;
  seq: number;
}

/** Reads this many bytes per refill; a bigger record gets a buffer of its own size. */
const CHUNK = 1024 * 1024;

/**
 * Walks the records of one segment file in order, reading it in chunks, checking each record's
 * length against the bytes left in the file before allocating for it, its sequence against the
 * chain and its checksum. Data handed out are views into a fresh chunk per refill.
 */
export class SegmentScanner {
  readonly file: FileHandle;
  readonly path: string;
  /** The file size the length checks use; `refill` updates it. */
  size: number;
  /** The file offset of the next record. */
  offset: number;
  readonly chain: Chain;
  readonly maxRecordSize: number;
  /** After `VALID`: where the record's data lies in the buffer. */
  #dataStart = 0;
  #dataEnd = 0;
  /** After `BAD`: what is wrong. */
  why = "";
  #buf: Uint8Array = new Uint8Array(0);
  #words: Int32Array = new Int32Array(0);
  /** The file offset of `#buf[0]`. */
  #bufStart = 0;

  constructor(
    file: FileHandle,
    path: string,
    size: number,
    offset: number,
    chain: Chain,
    maxRecordSize: number,
  ) {
    this.file = file;
    this.path = path;
    this.size = size;
    this.offset = offset;
    this.chain = chain;
    this.maxRecordSize = maxRecordSize;
    this.#bufStart = offset;
  }

  /**
   * After `VALID`: the record's data, a view of the buffer made when asked for, since recovery
   * checks records without looking at them.
   */
  get data(): Uint8Array {
    return this.#buf.subarray(this.#dataStart, this.#dataEnd);
  }

  /** Checks the next record in the buffer and, when it is valid, moves past it. */
  step(): number {
    const buf = this.#buf;
    const at = this.offset - this.#bufStart;
    const have = buf.length - at;
    if (have < RECORD_HEADER) {
      const fileLeft = this.size - this.offset;
      if (fileLeft <= 0) return ZERO;
      if (have < fileLeft) return NEED;
      // The file ends inside a record header: zeros are an unwritten tail, anything else a cut.
      for (let i = at; i < buf.length; i++) {
        if (buf[i] !== 0) {
          this.why = `the file ends ${fileLeft} bytes into a record header`;
          return BAD;
        }
      }
      return ZERO;
    }
    const length = getU32(buf, at);
    const crc = getU32(buf, at + 4);
    const seq = getU64(buf, at + 8);
    if (length === 0 && crc === 0 && seq === 0) return ZERO;
    const left = this.size - this.offset - RECORD_HEADER;
    if (length > left || length > this.maxRecordSize) {
      this.why = length > this.maxRecordSize
        ? `a record claims ${length} data bytes, more than maxRecordSize (${this.maxRecordSize})`
        : `a record claims ${length} data bytes and the file has ${left} left`;
      return BAD;
    }
    if (have < Math.min(recordSize(length), this.size - this.offset)) return NEED;
    if (seq !== this.chain.seq) {
      this.why = `a record holds seq ${seq} where ${this.chain.seq} was expected`;
      return BAD;
    }
    const words = this.#words;
    const sum = crc32cWords(
      crc32cWords(this.chain.crc, buf, words, at, at + 4),
      buf,
      words,
      at + 8,
      at + RECORD_HEADER + length,
    );
    if (sum !== crc) {
      this.why = `record seq ${seq} fails its checksum`;
      return BAD;
    }
    // Padding is not checksummed, so it is checked to be zero: no byte of a record may change.
    const padEnd = Math.min(at + recordSize(length), buf.length);
    for (let i = at + RECORD_HEADER + length; i < padEnd; i++) {
      if (buf[i] !== 0) {
        this.why = `record seq ${seq} has non-zero padding`;
        return BAD;
      }
    }
    this.#dataStart = at + RECORD_HEADER;
    this.#dataEnd = at + RECORD_HEADER + length;
    this.chain.crc = crc;
    this.chain.seq = seq + 1;
    this.offset = Math.min(this.offset + recordSize(length), this.size);
    return VALID;
  }

  /**
   * Reads the file again from the next record on, into a new buffer big enough for that record.
   * Resolves `false` when the file has no bytes there.
   */
  async refill(): Promise<boolean> {
    const at = this.offset - this.#bufStart;
    let want = CHUNK;
    if (this.#buf.length - at >= RECORD_HEADER) {
      const length = getU32(this.#buf, at);
      // step() refused lengths past the end of the file, so this allocation is bounded by it.
      if (length <= this.maxRecordSize) want = Math.max(want, recordSize(length));
    }
    want = Math.max(0, Math.min(want, this.size - this.offset));
    const buf = new Uint8Array(want);
    const n = await readFully(this.file, buf, this.offset);
    this.#buf = n === want ? buf : buf.subarray(0, n);
    this.#words = new Int32Array(buf.buffer, 0, n >>> 2);
    this.#bufStart = this.offset;
    return n > 0;
  }
}

/** Reads until `buf` is full or the file ends; resolves with the count read. */
export async function readFully(
  file: FileHandle,
  buf: Uint8Array,
  position: number,
): Promise<number> {
  let n = 0;
  while (n < buf.length) {
    const got = await file.read(buf.subarray(n), position + n);
    if (got === 0) break;
    n += got;
  }
  return n;
}

/** The error for damage found in a file of the log. */
export function corrupt(path: string, offset: number, why: string, hint = ""): IpcError {
  return new IpcError(
    "ECORRUPT",
    `The log file "${path}" is damaged at byte ${offset}: ${why}${hint}`,
    {
      op: "read",
      path,
    },
  );
}
