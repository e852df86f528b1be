/**
 * Write-ahead log benchmark, per runtime, 64 B and 4 KiB records, in a temporary directory on
 * the machine's disk:
 *
 * - appends in `"none"` mode (1 appender awaiting each append, and 64 concurrent appenders),
 *   against the runtime's raw file API writing the same bytes, one `writeSync` per record; and
 *   the same raw writes with each record's CRC-32C computed first, the ceiling of any log that
 *   checksums in JavaScript, and with an `await` per record too, the ceiling for 1 appender;
 * - appends in `"always"` mode with 1 appender, against `writeSync` + `fdatasync` per record on
 *   a growing file and SQLite in WAL mode with `synchronous=FULL`, one insert per transaction;
 * - `"always"` with 64 concurrent appenders (group commit), as a ratio to 1 appender, beside
 *   raw writes of 64 records at a time each followed by `fdatasync`: the most that 64 appenders
 *   sharing a sync can reach on this disk;
 * - batches of 1,000 records: `appendBatch` in `"none"` mode (one batch at a time), and in
 *   `"batch"` mode with 64 batches in flight, against SQLite `synchronous=NORMAL`, 1,000 inserts
 *   per transaction;
 * - reading the log back, against reading its segment files with the raw API in 256 KiB reads;
 * - opening: a fresh log in `"always"` mode, against making a file the way a crash-safe log must
 *   (create, write a header, sync, rename, sync the directory); and reopening a log of 1,000,000
 *   records, writer and read-only, against reading its segment's bytes and checksumming them,
 *   the least a recovery that checks the records it may have to cut can do.
 *
 * SQLite is `node:sqlite` on Deno and Node 24, `bun:sqlite` on Bun. Every loop is bounded by a
 * count and a time. Usage: `<runtime> bench/wal.ts [--repeats N]`.
 *
 * @module
 */

import { crc32c } from "../src/wal/crc32c.ts";
import { Wal } from "../src/wal/mod.ts";
import { printTable, repeatsArg, rotated, type Row, rt } from "./_harness.ts";

const repeats = repeatsArg(3);
const fs = rt.fs;
const root = await fs.makeTempDir("dk-walbench-");
let runs = 0;

/** A new directory for one measurement; the one before is removed, dirty pages and all. */
async function freshDir(): Promise<string> {
  if (runs > 0) await fs.remove(`${root}/${runs - 1}`, { recursive: true });
  const dir = `${root}/${runs++}`;
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

/**
 * Records per unsynced run: 64 MiB, which stays in the page cache. More would measure the
 * kernel's writeback throttling, that is the disk, for every implementation alike.
 */
const volume = (size: number): number => Math.floor((64 * 1024 * 1024) / (size + 16));

/** Runs `step` until `count` operations or `ms` elapsed; returns operations per second. */
async function timed(
  count: number,
  ms: number,
  step: (i: number) => void | Promise<void>,
): Promise<number> {
  const start = performance.now();
  let i = 0;
  while (i < count && performance.now() - start < ms) {
    const r = step(i++);
    if (r !== undefined) await r;
  }
  return i / ((performance.now() - start) / 1000);
}

const RESOLVED = Promise.resolve();
const RECORD_OVERHEAD = 16; // the WAL's own header per record, before padding

/**
 * Raw writes of the same bytes the log writes for records of `size` (header and all). With
 * `checksum`, each record's CRC-32C is computed before its write: the most any log that
 * checksums its records in JavaScript can do, since no runtime offers a native CRC-32C. With
 * `awaitEach`, the loop also awaits a resolved promise per record: the most an appender that
 * awaits each append can see from any promise-returning API.
 */
async function raw(
  size: number,
  sync: boolean,
  checksum = false,
  awaitEach = false,
): Promise<number> {
  const dir = await freshDir();
  const file = await fs.open(`${dir}/raw`, { write: true, create: true });
  const bytes = new Uint8Array((RECORD_OVERHEAD + size + 7) & ~7);
  let pos = 0;
  let crc = 0;
  const rate = await timed(sync ? 20_000 : volume(size), sync ? 1500 : 800, () => {
    if (checksum) crc = crc32c(crc, bytes);
    file.writeSync(bytes, pos);
    pos += bytes.length;
    if (sync) file.datasyncSync();
    if (awaitEach) return RESOLVED;
  });
  await file.close();
  return rate;
}

/**
 * Raw group commit: 64 records in one `writeSync`, then one `fdatasync`, over and over; in
 * records per second. What 64 appenders sharing each sync can reach on this disk at best.
 */
async function rawGroup(size: number): Promise<number> {
  const dir = await freshDir();
  const file = await fs.open(`${dir}/raw`, { write: true, create: true });
  const group = new Uint8Array(64 * ((RECORD_OVERHEAD + size + 7) & ~7)).fill(7);
  let pos = 0;
  const rate = await timed(2000, 1500, () => {
    file.writeSync(group, pos);
    pos += group.length;
    file.datasyncSync();
  });
  await file.close();
  return rate * 64;
}

/** Appends with `appenders` concurrent loops, each awaiting its own appends. */
async function walAppends(
  size: number,
  sync: "none" | "always" | "batch",
  appenders: number,
): Promise<number> {
  const wal = await Wal.open(await freshDir(), { sync });
  const data = new Uint8Array(size).fill(7);
  const limit = sync === "none" ? volume(size) : 200_000;
  const ms = sync === "none" ? 800 : 1500;
  const start = performance.now();
  let done = 0;
  await Promise.all(Array.from({ length: appenders }, async () => {
    while (done < limit && performance.now() - start < ms) {
      await wal.append(data);
      done++;
    }
  }));
  const rate = done / ((performance.now() - start) / 1000);
  await wal.close();
  return rate;
}

/** `appendBatch` of 1,000 records, `inFlight` batches at a time; returns records per second. */
async function walBatches(size: number, sync: "none" | "batch", inFlight: number): Promise<number> {
  const wal = await Wal.open(await freshDir(), { sync });
  const batch = Array.from({ length: 1000 }, () => new Uint8Array(size).fill(7));
  const start = performance.now();
  let started = 0;
  let done = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    // Counted as they start, so that 64 batches in flight stay within the volume too.
    while (started < volume(size) && performance.now() - start < 1000) {
      started += batch.length;
      await wal.appendBatch(batch);
      done += batch.length;
    }
  }));
  const rate = done / ((performance.now() - start) / 1000);
  await wal.close();
  return rate;
}

interface Sqlite {
  exec(sql: string): void;
  prepare(sql: string): { run(...params: unknown[]): unknown };
  close(): void;
}

async function openSqlite(path: string): Promise<Sqlite> {
  if (rt.name === "bun") {
    const { Database } = await import("bun:sqlite" as string) as {
      Database: new (path: string) => Sqlite;
    };
    return new Database(path);
  }
  const { DatabaseSync } = await import("node:sqlite" as string) as {
    DatabaseSync: new (path: string) => Sqlite;
  };
  return new DatabaseSync(path);
}

/** SQLite in WAL mode: rows per second, `perTx` inserts per transaction. */
async function sqlite(
  size: number,
  synchronous: "FULL" | "NORMAL",
  perTx: number,
): Promise<number> {
  const db = await openSqlite(`${await freshDir()}/db.sqlite`);
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=${synchronous};`);
  db.exec("CREATE TABLE log (seq INTEGER PRIMARY KEY, data BLOB)");
  const insert = db.prepare("INSERT INTO log (data) VALUES (?)");
  const data = new Uint8Array(size).fill(7);
  const rate = await timed(perTx === 1 ? 20_000 : volume(size) / perTx, 1000, () => {
    db.exec("BEGIN");
    for (let i = 0; i < perTx; i++) insert.run(data);
    db.exec("COMMIT");
  });
  db.close();
  return rate * perTx;
}

/** Writes ~64 MiB of records, then reads them back: the log's reader against raw reads. */
async function readBack(size: number, impl: string): Promise<number> {
  const dir = await freshDir();
  const count = Math.floor((64 * 1024 * 1024) / (size + RECORD_OVERHEAD));
  const wal = await Wal.open(dir, { sync: "none", preallocate: false });
  const batch = Array.from({ length: 1000 }, () => new Uint8Array(size).fill(7));
  for (let i = 0; i < count; i += 1000) await wal.appendBatch(batch);
  await wal.sync();
  let bytes = 0;
  const start = performance.now();
  if (impl === "raw 256 KiB reads") {
    for (const name of (await fs.readDir(dir)).filter((n) => n.endsWith(".wal"))) {
      const file = await fs.open(`${dir}/${name}`, { read: true });
      for (let pos = 0;;) {
        const n = await file.read(new Uint8Array(256 * 1024), pos);
        if (n === 0) break;
        pos += n;
        bytes += n;
      }
      await file.close();
    }
  } else {
    for await (const r of wal.read()) bytes += r.data.length + RECORD_OVERHEAD;
  }
  const rate = bytes / 1e6 / ((performance.now() - start) / 1000);
  await wal.close();
  return rate;
}

/** Opens per second of a fresh log in `"always"` mode, or of the raw steps any such log takes. */
async function freshOpens(impl: string): Promise<number> {
  const dirs = await Promise.all(
    Array.from({ length: 50 }, () => freshSubdir()),
  );
  const header = new Uint8Array(32).fill(1);
  const start = performance.now();
  for (const dir of dirs) {
    if (impl === "wal open + close") {
      await (await Wal.open(dir, { sync: "always" })).close();
      continue;
    }
    const file = await fs.open(`${dir}/new.tmp`, { write: true, create: true });
    await file.write(header, 0);
    await file.datasync();
    await fs.rename(`${dir}/new.tmp`, `${dir}/1.wal`);
    await fs.syncDir(dir);
    await file.close();
  }
  return dirs.length / ((performance.now() - start) / 1000);
}

let subdirs = 0;
async function freshSubdir(): Promise<string> {
  const dir = `${root}/open-${subdirs++}`;
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

/** A closed log of 1,000,000 records of 8 B, made once. */
let million: string | undefined;
async function millionRecordLog(): Promise<string> {
  if (million !== undefined) return million;
  const dir = await freshSubdir();
  const wal = await Wal.open(dir, { sync: "none" });
  const batch = Array.from({ length: 1000 }, () => new Uint8Array(8).fill(7));
  for (let i = 0; i < 1000; i++) await wal.appendBatch(batch);
  await wal.close();
  return million = dir;
}

/** Reads a file in 256 KiB reads and checksums every byte: the least a checking recovery does. */
async function checksumFile(path: string): Promise<number> {
  const file = await fs.open(path, { read: true });
  const buf = new Uint8Array(256 * 1024);
  let crc = 0;
  for (let pos = 0, got; (got = await file.read(buf, pos)) > 0; pos += got) {
    crc = crc32c(crc, buf, 0, got);
  }
  await file.close();
  return crc;
}

/** Reopens per second of the million-record log, or raw reads and checksums of its bytes. */
async function reopens(impl: string): Promise<number> {
  const dir = await millionRecordLog();
  const start = performance.now();
  let n = 0;
  while (n < 20 && performance.now() - start < 2000) {
    n++;
    if (impl === "raw read + CRC-32C") {
      for (
        const name of (await fs.readDir(dir)).filter((f) => f.endsWith(".wal"))
      ) {
        await checksumFile(`${dir}/${name}`);
      }
    } else {
      const wal = await Wal.open(dir, { readOnly: impl.includes("read-only") });
      if (wal.lastSeq !== 1_000_000) {
        throw new Error(`reopened at ${wal.lastSeq}`);
      }
      await wal.close();
    }
  }
  return n / ((performance.now() - start) / 1000);
}

const rows: Row[] = [];
try {
  rows.push(
    ...await rotated(
      { name: 'open a fresh log, "always"', unit: "opens/s" },
      ["raw create, sync, rename, sync dir", "wal open + close"],
      repeats,
      freshOpens,
    ),
    ...await rotated(
      { name: "reopen 1,000,000 records of 8 B", unit: "opens/s" },
      ["raw read + CRC-32C", "wal open", "wal open read-only"],
      repeats,
      reopens,
    ),
  );
  for (const size of [64, 4096]) {
    const label = size === 64 ? "64 B" : "4 KiB";
    const mb = (recordsPerSec: number): number => (recordsPerSec * (size + RECORD_OVERHEAD)) / 1e6;
    rows.push(
      ...await rotated(
        { name: `append, no sync, ${label}`, unit: "MB/s" },
        [
          "raw writeSync per record",
          "raw + CRC-32C per record",
          "raw + CRC-32C + await per record",
          "wal none ×1",
          "wal none ×64",
        ],
        repeats,
        async (impl) =>
          mb(
            impl.startsWith("raw")
              ? await raw(size, false, impl.includes("CRC"), impl.includes("await"))
              : await walAppends(size, "none", impl.endsWith("×1") ? 1 : 64),
          ),
      ),
      ...await rotated(
        { name: `durable, 1 appender, ${label}`, unit: "rec/s" },
        ["raw write+fdatasync", "sqlite FULL 1/tx", "wal always ×1"],
        repeats,
        (impl) =>
          impl.startsWith("raw")
            ? raw(size, true)
            : impl.startsWith("sqlite")
            ? sqlite(size, "FULL", 1)
            : walAppends(size, "always", 1),
      ),
      ...await rotated(
        { name: `group commit, ${label}`, unit: "rec/s" },
        ["wal always ×1", "wal always ×64", "raw 64 records per fdatasync"],
        repeats,
        (impl) =>
          impl.startsWith("raw")
            ? rawGroup(size)
            : walAppends(size, "always", impl.endsWith("×1") ? 1 : 64),
      ),
      ...await rotated(
        { name: `batches of 1,000, ${label}`, unit: "rec/s" },
        ["sqlite NORMAL 1000/tx", "wal none appendBatch ×1", "wal batch appendBatch ×64"],
        repeats,
        (impl) =>
          impl.startsWith("sqlite")
            ? sqlite(size, "NORMAL", 1000)
            : impl.includes("none")
            ? walBatches(size, "none", 1)
            : walBatches(size, "batch", 64),
      ),
      ...await rotated(
        { name: `read back, ${label}`, unit: "MB/s" },
        ["raw 256 KiB reads", "wal read()"],
        Math.min(repeats, 2),
        (impl) => readBack(size, impl),
      ),
    );
  }
} finally {
  await fs.remove(root, { recursive: true });
}
printTable(rows, [
  "raw writeSync per record",
  "raw write+fdatasync",
  "wal always ×1",
  "sqlite NORMAL 1000/tx",
  "raw 256 KiB reads",
  "raw create, sync, rename, sync dir",
  "raw read + CRC-32C",
]);
