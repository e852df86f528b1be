/**
 * A write-ahead log: segmented, checksummed, crash-safe, with explicit durability.
 *
 * ## The format
 *
 * A log is a directory. It holds segment files named by the sequence of their first record,
 * zero-padded to 20 digits (`00000000000000000001.wal`), so name order is sequence order; a
 * `LOCK` file holding the writer's pid and start time; `HIGHWATER`, the last sequence known
 * synced, so that records a disk lost are reported; at most one snapshot
 * (`snapshot-<seq>.snap`); and, after a recovery cut something, `<segment>.broken` copies of the
 * cut bytes. Every integer is little-endian.
 *
 * A segment starts with a 32-byte header:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | magic `44 4B 57 41 4C 0D 0A 1A` (`"DKWAL\r\n\x1a"`) |
 * | 8 | 4 | format version, 1 |
 * | 12 | 4 | flags, 0 |
 * | 16 | 8 | sequence of the segment's first record |
 * | 24 | 4 | chain seed: the checksum of the record before this segment (0 for a new log) |
 * | 28 | 4 | CRC-32C of bytes 0–27 |
 *
 * Records follow, each at an offset that is a multiple of 8, so a record's length field never
 * straddles a sector and cannot be torn:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | data length _n_ |
 * | 4 | 4 | checksum: CRC-32C seeded with the previous record's checksum, over bytes 0–3, 8–15 and the data |
 * | 8 | 8 | sequence (the previous record's plus one) |
 * | 16 | _n_ | data |
 * | 16 + _n_ | 0–7 | zero padding to a multiple of 8 |
 *
 * Because each checksum continues the one before it, across segments too (through the header's
 * chain seed), a record left from an older file cannot pass for a record of this log. A record
 * header of 16 zero bytes ends a segment's records: the active segment is written with zeros a
 * step ahead of its records (`preallocate`), so the rest of the file is zeros, cut off when the
 * segment is sealed or the log closed.
 *
 * A snapshot is a 32-byte header — magic `44 4B 53 4E 50 0D 0A 1A` (`"DKSNP\r\n\x1a"`), version
 * (u32), state length (u32), sequence covered (u64), CRC-32C of bytes 0–23 and the state (u32),
 * 4 zero bytes — then the state.
 *
 * ## Recovery
 *
 * Opening checks every record of the last segment (of every segment with `verify: "all"`); the
 * segments before it were synced whole before the next began, and readers check every record they
 * read. The records of the last segment may end in a torn write: a partial
 * record, a bad checksum or a zero-filled region, with no record after it. That tail is cut back to
 * the last valid record, a copy of the cut bytes is kept as `<segment>.broken`, and
 * {@linkcode Wal.recovery} says how many bytes went. A damaged record followed by valid ones is
 * corruption in the middle: opening fails with `ECORRUPT` naming the file and the byte offset,
 * unless `repair: "truncate"` is given, which cuts the log there.
 *
 * @example Durable appends, read back after a reopen
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { Wal } from "@dockipc/dockipc/wal";
 *
 * const dir = mkdtempSync(`${tmpdir()}/wal-`);
 * {
 *   await using wal = await Wal.open(dir, { sync: "always" });
 *   await wal.append("hello");
 * }
 * await using wal = await Wal.open(dir);
 * assert.equal(wal.recovery.lastSeq, 1);
 * for await (const rec of wal.read()) assert.equal(new TextDecoder().decode(rec.data), "hello");
 * ```
 *
 * @module
 */

export { Wal } from "./wal.ts";
export type { WalStats } from "./wal.ts";
export type { HistogramSnapshot } from "../internal/histogram.ts";
export type {
  ReadOptions,
  RetentionOptions,
  SlowSync,
  SyncMode,
  WalOptions,
  WalRecord,
} from "./options.ts";
export type { WalRecovery } from "./repair.ts";
export type { WalSnapshot } from "./snapshot.ts";
export { crc32c } from "./crc32c.ts";
