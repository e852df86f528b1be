/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the write-ahead log.
 *
 * Slicing-by-16: sixteen 256-entry tables, so the loop consumes 16 bytes per step with four
 * 32-bit word loads instead of sixteen byte loads. About 2 GB/s in Deno, Bun and Node 24 on
 * the benchmark machine, where the byte-at-a-time table reaches 0.3 GB/s.
 *
 * @module
 */

const TABLES: Int32Array = makeTables();

function makeTables(): Int32Array {
  const t = new Int32Array(256 * 16);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 16; s++) {
      const prev = t[(s - 1) * 256 + i]!;
      t[s * 256 + i] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  }
  return t;
}

/** Word loads read bytes in the machine's order; the tables assume little-endian words. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Continues a CRC-32C over `bytes[start, end)`. Pass `0` to start a new checksum, or the result
 * of an earlier call to extend it (`crc32c(crc32c(0, a), b)` equals the checksum of `a` then `b`).
 *
 * @param crc The checksum so far.
 * @param bytes The bytes to add.
 * @param start The first offset. @default {0}
 * @param end The offset after the last byte. @default {bytes.length}
 */
export function crc32c(
  crc: number,
  bytes: Uint8Array,
  start = 0,
  end: number = bytes.length,
): number {
  const base = bytes.byteOffset & ~3;
  const words = end - start >= 64
    ? new Int32Array(bytes.buffer, base, (bytes.byteOffset - base + end) >>> 2)
    : undefined;
  return crc32cWords(crc, bytes, words, start, end);
}

/**
 * The same as {@linkcode crc32c}, given a word view of the bytes' buffer: `words[k]!` covers the
 * bytes at buffer offsets `4k` to `4k + 3` (so `words.byteOffset` is `bytes.byteOffset` rounded
 * down to 4). Callers that checksum many small ranges of one buffer keep the view, since making
 * one costs as much as checksumming a hundred bytes.
 */
export function crc32cWords(
  crc: number,
  bytes: Uint8Array,
  words: Int32Array | undefined,
  start: number,
  end: number,
): number {
  const t = TABLES;
  let c = ~crc;
  let i = start;
  if (words !== undefined && LITTLE_ENDIAN && end - i >= 32) {
    // Byte offsets in `bytes` from here on; `shift` turns them into offsets in `words`' buffer.
    const shift = bytes.byteOffset - words.byteOffset;
    for (; ((i + shift) & 3) !== 0; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
    let w = (i + shift) >>> 2;
    const stop = w + (((end - i) >>> 4) << 2);
    for (; w < stop; w += 4) {
      const a = c ^ words[w]!;
      const b = words[w + 1]!;
      const d = words[w + 2]!;
      const e = words[w + 3]!;
      c = t[3840 + (a & 0xff)]! ^ t[3584 + ((a >>> 8) & 0xff)]! ^ t[3328 + ((a >>> 16) & 0xff)]! ^
        t[3072 + (a >>> 24)]! ^ t[2816 + (b & 0xff)]! ^ t[2560 + ((b >>> 8) & 0xff)]! ^
        t[2304 + ((b >>> 16) & 0xff)]! ^ t[2048 + (b >>> 24)]! ^ t[1792 + (d & 0xff)]! ^
        t[1536 + ((d >>> 8) & 0xff)]! ^ t[1280 + ((d >>> 16) & 0xff)]! ^ t[1024 + (d >>> 24)]! ^
        t[768 + (e & 0xff)]! ^ t[512 + ((e >>> 8) & 0xff)]! ^ t[256 + ((e >>> 16) & 0xff)]! ^
        t[e >>> 24]!;
    }
    i = (w << 2) - shift;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
