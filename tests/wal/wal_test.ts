import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { describe, test } from "node:test";
import fc from "fast-check";
import { IpcError } from "../../src/errors.ts";
import { ownerText } from "../../src/internal/owner.ts";
import { processStartTime, runtimeName } from "../../src/runtime/platform.ts";
import { crc32c, Wal, type WalOptions, type WalRecord } from "../../src/wal/mod.ts";
import { PREALLOCATION_STEP } from "../../src/wal/preallocation.ts";
import { RECORD_HEADER, recordSize, SEGMENT_HEADER } from "../../src/wal/record.ts";
import {
  collectGarbage,
  concat,
  onSmallDisk,
  pattern,
  rejectsWith,
  rt,
  RUNTIMES,
  seeded,
  spawnFixture,
  tempDir,
  walRecord,
} from "../_helpers.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

async function readAllRecords(wal: Wal, options: Parameters<Wal["read"]>[0] = {}): Promise<
  WalRecord[]
> {
  const out: WalRecord[] = [];
  for await (const r of wal.read(options)) out.push({ seq: r.seq, data: r.data.slice() });
  return out;
}

/** The segment files of a log, oldest first. */
function segmentsOf(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith(".wal")).sort().map((n) => `${dir}/${n}`);
}

/**
 * A closed log of `count` records `walRecord(1..count)` in one segment that is not preallocated.
 * Its synced high-water mark is removed, as after a crash before the mark was next written,
 * unless `keepMark`: damage to its tail is then a torn write, not acknowledged records lost.
 */
async function smallLog(
  dir: string,
  count: number,
  keepMark = false,
): Promise<{ path: string; offsets: number[] }> {
  const wal = await Wal.open(dir, { preallocate: false, sync: "none" });
  const offsets: number[] = [];
  let at = SEGMENT_HEADER;
  for (let seq = 1; seq <= count; seq++) {
    offsets.push(at);
    const data = walRecord(seq);
    at += recordSize(data.length);
    await wal.append(data);
  }
  await wal.close();
  if (!keepMark) rmSync(`${dir}/HIGHWATER`);
  const [path] = segmentsOf(dir);
  assert.equal(statSync(path!).size, at);
  return { path: path!, offsets: [...offsets, at] };
}

/** Checks a log holds exactly records 1..last, each `walRecord(seq)`. */
async function assertRecords(wal: Wal, last: number): Promise<void> {
  const recs = await readAllRecords(wal);
  assert.equal(recs.length, last);
  recs.forEach((r, i) => {
    assert.equal(r.seq, i + 1);
    assert.deepEqual(r.data, walRecord(r.seq));
  });
}

/** A copy of `from` in a new temp dir, for one damage experiment. */
function copyDir(from: string): string {
  const to = mkdtempSync(`${tmpdir()}/dk-walcopy-`);
  cpSync(from, to, { recursive: true });
  return to;
}

describe("crc32c", () => {
  test("matches the standard check values, in one call or in pieces", () => {
    assert.equal(crc32c(0, utf8.encode("123456789")), 0xe3069283);
    assert.equal(crc32c(0, new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc32c(0, new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    const bytes = pattern(5000, 3);
    let piecewise = 0;
    for (let i = 0; i < bytes.length; i += 97) {
      piecewise = crc32c(piecewise, bytes.subarray(i, Math.min(i + 97, bytes.length)));
    }
    assert.equal(crc32c(0, bytes), piecewise);
    // Unaligned views take the same path as aligned ones.
    assert.equal(crc32c(0, bytes.subarray(3, 4003)), crc32c(0, bytes.slice(3, 4003)));
  });
});

describe("Wal", () => {
  test("appends, reads back in order, and keeps everything across a reopen", async () => {
    await using dir = await tempDir();
    {
      await using wal = await Wal.open(dir.path, { segmentSize: 8192 });
      assert.equal(wal.lastSeq, 0);
      assert.equal(await wal.append("one"), 1);
      assert.deepEqual(await wal.appendBatch(["two", new Uint8Array([3])]), [2, 3]);
      assert.deepEqual(await wal.appendBatch([]), []);
      assert.equal(await wal.append(new Uint8Array(0)), 4);
      const many = await Promise.all(
        Array.from({ length: 300 }, (_, i) => wal.append(walRecord(i + 5))),
      );
      assert.deepEqual(many, Array.from({ length: 300 }, (_, i) => i + 5));
      assert.equal(wal.lastSeq, 304);
      assert.ok(segmentsOf(dir.path).length > 3, "small segments rotate");
    }
    await using wal = await Wal.open(dir.path, { segmentSize: 8192 });
    assert.deepEqual(wal.recovery, {
      truncatedBytes: 0,
      lastSeq: 304,
      brokenFiles: [],
      repaired: false,
      lostRecords: 0,
    });
    const recs = await readAllRecords(wal);
    assert.equal(recs.length, 304);
    assert.equal(text.decode(recs[0]!.data), "one");
    assert.deepEqual(recs[2]!.data, new Uint8Array([3]));
    assert.equal(recs[3]!.data.length, 0);
    for (const r of recs.slice(4)) assert.deepEqual(r.data, walRecord(r.seq));
    assert.deepEqual((await readAllRecords(wal, { from: 100, to: 102 })).map((r) => r.seq), [
      100,
      101,
      102,
    ]);
    assert.equal(await wal.append("more"), 305);
  });

  test('"always": zeros reach a step ahead of small syncs, never ahead of large ones; closing and rotation cut them', async () => {
    const segmentSize = 4 * PREALLOCATION_STEP;
    for (const [size, ahead] of [[4096, true], [96 * 1024, false]] as const) {
      await using dir = await tempDir();
      const wal = await Wal.open(dir.path, { sync: "always", segmentSize });
      const first = segmentsOf(dir.path)[0]!;
      assert.equal(statSync(first).size, SEGMENT_HEADER, "nothing is written ahead at open");
      let end = SEGMENT_HEADER;
      let grown = 0;
      while (segmentsOf(dir.path).length < 2) {
        await wal.append(new Uint8Array(size).fill(1));
        const file = statSync(segmentsOf(dir.path).at(-1)!).size;
        if (segmentsOf(dir.path).length > 1) break;
        end += recordSize(size);
        // Zeros never lie under records, and reach at most a step past them.
        assert.ok(
          file >= end && file <= Math.max(end, segmentSize) + PREALLOCATION_STEP,
          `${file}`,
        );
        if (file > end) grown++;
      }
      assert.equal(grown > 0, ahead, `${size} B records: zeros ahead ${grown} times`);
      assert.equal(statSync(first).size, end, "a sealed segment ends with its last record");
      const seq = wal.lastSeq;
      await wal.close();
      const last = segmentsOf(dir.path).at(-1)!;
      assert.equal(statSync(last).size, SEGMENT_HEADER + recordSize(size), "close cuts the zeros");
      await using again = await Wal.open(dir.path);
      assert.equal((await readAllRecords(again)).length, seq);
    }
  });

  test('a fresh "always" log takes no room ahead; a reopened one grows from where it ended', async () => {
    await using dir = await tempDir();
    {
      await using wal = await Wal.open(dir.path, { sync: "always" });
      await wal.append("one");
    }
    const [segment] = segmentsOf(dir.path);
    assert.equal(statSync(segment!).size, SEGMENT_HEADER + recordSize(3));
    await using wal = await Wal.open(dir.path, { sync: "always" });
    await wal.append("two");
    await wal.append("three");
    // The step was written after "two", whose sync it followed.
    assert.equal(statSync(segment!).size, SEGMENT_HEADER + 2 * recordSize(3) + PREALLOCATION_STEP);
    assert.deepEqual(
      (await readAllRecords(wal)).map((r) => new TextDecoder().decode(r.data)),
      ["one", "two", "three"],
    );
  });

  for (const sync of ["always", "batch", "none"] as const) {
    for (const blockingSync of [true, false]) {
      test(`"${sync}" mode${blockingSync ? "" : " with async syncs"}: concurrent appends resolve in order`, async () => {
        await using dir = await tempDir();
        await using wal = await Wal.open(dir.path, { sync, blockingSync, segmentSize: 16384 });
        assert.equal(wal.syncMode, sync);
        const done: number[] = [];
        await Promise.all(
          Array.from(
            { length: 200 },
            (_, i) => wal.append(walRecord(i + 1)).then((s) => done.push(s)),
          ),
        );
        assert.deepEqual(done, Array.from({ length: 200 }, (_, i) => i + 1));
        await assertRecords(wal, 200);
      });
    }
  }

  test("flush() and sync() resolve pending appends; onSlowSync reports each slow sync", async () => {
    await using dir = await tempDir();
    const slow: number[] = [];
    await using wal = await Wal.open(dir.path, {
      sync: "batch",
      syncInterval: 60_000,
      slowSyncThreshold: 0,
      onSlowSync: (info) => {
        assert.ok(info.path.endsWith(".wal"));
        slow.push(info.ms);
      },
    });
    const pending = wal.append("a");
    await wal.flush();
    assert.equal(wal.lastSeq, 0, "flushed is not yet durable in batch mode");
    await wal.sync();
    assert.equal(await pending, 1);
    assert.equal(wal.lastSeq, 1);
    assert.ok(slow.length >= 1 && slow.every((ms) => ms >= 0));
  });

  test("refuses bad options, oversize records, wrong types, and use after close", async () => {
    await using dir = await tempDir();
    const bad: [WalOptions, RegExp][] = [
      [{ sync: "sometimes" as "none" }, /sync must be "always", "batch" or "none"/],
      [{ segmentSize: 100 }, /segmentSize must be a number >= 4096/],
      [{ maxRecordSize: 2 ** 31 }, /maxRecordSize must be at most/],
      [{ syncInterval: -1 }, /syncInterval/],
      [{ repair: "drop" as "truncate" }, /repair must be "truncate"/],
      [{ retention: { maxSegments: 0 } }, /retention.maxSegments/],
    ];
    for (const [options, message] of bad) {
      await assert.rejects(
        Wal.open(dir.path, options),
        (e: Error) => e instanceof RangeError && message.test(e.message),
      );
    }
    await assert.rejects(Wal.open(""), TypeError);
    const wal = await Wal.open(dir.path, { maxRecordSize: 16, sync: "none" });
    await rejectsWith(
      wal.append(new Uint8Array(17)),
      "EFRAMETOOLARGE",
      /17 bytes as maxRecordSize is 16/,
    );
    await rejectsWith(wal.appendBatch(["ok", new Uint8Array(17)]), "EFRAMETOOLARGE");
    assert.equal(wal.lastSeq, 0, "a refused batch writes nothing");
    await assert.rejects(wal.append(42 as unknown as string), TypeError);
    assert.throws(() => wal.read({ from: -1 }), RangeError);
    assert.throws(() => wal.read({ from: 0 }), /integer >= 1 \(records are numbered from 1\)/);
    await assert.rejects(wal.checkpoint(5, new Uint8Array(0)), /last record is 0/);
    assert.equal(await wal.append("x".repeat(16)), 1);
    await wal.close();
    await rejectsWith(wal.append("late"), "ECLOSED");
    await wal.close(); // twice is fine
  });

  test("follow readers see every append, in order, as it is acknowledged", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, { sync: "always", segmentSize: 8192 });
    const total = 1500;
    const followers = [1, 1, 700].map((from) =>
      readAllRecords(wal, { from, follow: true, to: total })
    );
    let next = 1;
    await Promise.all([0, 1, 2, 3].map(async () => {
      while (next <= total) {
        const seq = next++;
        assert.equal(await wal.append(walRecord(seq)), seq);
      }
    }));
    const [a, b, c] = await Promise.all(followers);
    for (const [recs, from] of [[a!, 1], [b!, 1], [c!, 700]] as const) {
      assert.equal(recs.length, total - from + 1);
      recs.forEach((r, i) => {
        assert.equal(r.seq, from + i);
        assert.deepEqual(r.data, walRecord(r.seq));
      });
    }
    // A follower without an end stops when the log closes, and with its signal.
    const ac = new AbortController();
    const open = readAllRecords(wal, { from: total + 1, follow: true, signal: ac.signal });
    ac.abort(new Error("enough"));
    await assert.rejects(open, /enough/);
  });

  test("reads from anywhere in a large segment, before and after earlier reads left seek points", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, { sync: "none", segmentSize: 4 * 1024 * 1024 });
    for (let seq = 1; seq <= 3000; seq++) wal.append(walRecord(seq));
    await wal.flush();
    const random = seeded(7);
    const froms = [1, 255, 256, 257, 511, 512, 513, 2999, 3000];
    for (let i = 0; i < 30; i++) froms.push(1 + Math.floor(random() * 3000));
    for (const pass of ["first", "again"]) {
      for (const from of froms) {
        const to = Math.min(3000, from + 5);
        const recs = await readAllRecords(wal, { from, to });
        assert.deepEqual(
          recs.map((r) => r.seq),
          Array.from({ length: to - from + 1 }, (_, k) => from + k),
          `${pass} read from ${from}`,
        );
        recs.forEach((r) => assert.deepEqual(r.data, walRecord(r.seq)));
      }
      await assertRecords(wal, 3000); // leaves a seek point every 256 records
    }
  });

  test("read() is a stream too: getReader(), pipeTo(), and leaving a for await early", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, { sync: "none", segmentSize: 4096 });
    for (let seq = 1; seq <= 300; seq++) await wal.append(walRecord(seq));
    const reader = wal.read({ from: 5, to: 7 }).getReader();
    const seqs: number[] = [];
    for (let r = await reader.read(); !r.done; r = await reader.read()) seqs.push(r.value.seq);
    assert.deepEqual(seqs, [5, 6, 7]);
    let piped = 0;
    await wal.read().pipeTo(
      new WritableStream({
        write(rec): void {
          assert.deepEqual(rec.data, walRecord(rec.seq));
          piped++;
        },
      }),
    );
    assert.equal(piped, 300);
    const stream = wal.read();
    for await (const rec of stream) if (rec.seq === 10) break;
    assert.equal(stream.locked, false, "leaving the loop releases the stream");
  });

  test("retention by segment count and bytes, truncateBefore, and reading removed records", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, {
      sync: "none",
      segmentSize: 4096,
      retention: { maxSegments: 3 },
    });
    for (let seq = 1; seq <= 400; seq++) await wal.append(walRecord(seq));
    assert.ok(segmentsOf(dir.path).length <= 3);
    const first = wal.firstSeq;
    assert.ok(first > 1);
    await rejectsWith(readAllRecords(wal, { from: 1 }), "ENOENT", /removed/);
    const rest = await readAllRecords(wal);
    assert.equal(rest[0]!.seq, first);
    assert.equal(rest.at(-1)!.seq, 400);
    assert.equal(await wal.truncateBefore(400), wal.firstSeq);
    assert.equal(segmentsOf(dir.path).length, 1, "only the active segment is left");
    assert.equal((await readAllRecords(wal)).at(-1)!.seq, 400);

    await using dir2 = await tempDir();
    await using byBytes = await Wal.open(dir2.path, {
      sync: "none",
      segmentSize: 4096,
      retention: { maxBytes: 3 * 4096 },
    });
    for (let seq = 1; seq <= 400; seq++) await byBytes.append(walRecord(seq));
    const bytes = segmentsOf(dir2.path).reduce((n, p) => n + statSync(p).size, 0);
    assert.ok(bytes <= 4 * 4096, `${bytes} bytes kept`);
  });

  test("checkpoint() writes a snapshot atomically, drops covered segments, and restores on open", async () => {
    await using dir = await tempDir();
    {
      await using wal = await Wal.open(dir.path, { sync: "none", segmentSize: 4096 });
      for (let seq = 1; seq <= 200; seq++) await wal.append(walRecord(seq));
      const before = segmentsOf(dir.path).length;
      await wal.checkpoint(150, utf8.encode("state@150"));
      const snap = await wal.checkpoint(180, utf8.encode("state@180"));
      assert.equal(snap.seq, 180);
      assert.ok(segmentsOf(dir.path).length < before);
      assert.ok(wal.firstSeq <= 181, "records after the snapshot stay");
      assert.deepEqual(readdirSync(dir.path).filter((n) => n.endsWith(".snap")).length, 1);
    }
    await using wal = await Wal.open(dir.path, { segmentSize: 4096 });
    assert.equal(wal.snapshot?.seq, 180);
    assert.equal(text.decode(wal.snapshot?.state), "state@180");
    const tail = await readAllRecords(wal, { from: 181 });
    assert.deepEqual(tail.map((r) => r.seq), Array.from({ length: 20 }, (_, i) => 181 + i));
    await wal.close();
    // A damaged snapshot is reported, never used.
    const snapPath = `${dir.path}/${readdirSync(dir.path).find((n) => n.endsWith(".snap"))}`;
    const bytes = readFileSync(snapPath);
    bytes[bytes.length - 1]! ^= 1;
    writeFileSync(snapPath, bytes);
    await rejectsWith(Wal.open(dir.path), "ECORRUPT", /snap.* fails its checksum/);
  });

  for (const runtime of RUNTIMES) {
    test(`a follower waiting in the writer's process keeps it alive until the log closes (${runtime})`, async () => {
      await using dir = await tempDir();
      await using child = spawnFixture(runtime, "wal_follow.ts", [dir.path]);
      assert.equal(await child.line(), "ended 3");
      assert.equal((await child.status).code, 0);
    });
  }

  test("a follower whose stream is cancelled while it waits lets its process end", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, { sync: "none" });
    const reader = wal.read({ follow: true }).getReader();
    const pending = reader.read();
    await new Promise((resolve) => setTimeout(resolve, 20)); // it waits for an append now
    await reader.cancel();
    assert.deepEqual(await pending, { done: true, value: undefined });
  });

  test("an empty log opened read-only reads nothing; its follower sees records once a writer makes them", async () => {
    await using dir = await tempDir();
    await using reader = await Wal.open(dir.path, { readOnly: true, pollInterval: 5 });
    assert.deepEqual(await Array.fromAsync(reader.read()), []);
    const following = reader.read({ follow: true, to: 2 });
    await using writer = await Wal.open(dir.path, { sync: "none" });
    await writer.appendBatch(["a", "b"]);
    const got = await Array.fromAsync(following);
    assert.deepEqual(got.map((r) => new TextDecoder().decode(r.data)), ["a", "b"]);
  });

  test("a second writer gets ELOCKED; a read-only reader works alongside the writer", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, { sync: "always" });
    await wal.append("a");
    await rejectsWith(Wal.open(dir.path), "ELOCKED", /another Wal in this process/);
    await using reader = await Wal.open(dir.path, { readOnly: true, pollInterval: 5 });
    await rejectsWith(reader.append("no"), "EACCES", /read-only/);
    assert.deepEqual((await readAllRecords(reader)).map((r) => text.decode(r.data)), ["a"]);
    const followed = readAllRecords(reader, { from: 1, follow: true, to: 3 });
    await wal.append("b");
    await wal.append("c");
    assert.deepEqual((await followed).map((r) => text.decode(r.data)), ["a", "b", "c"]);
  });

  for (const child of ["deno", "bun", "node"] as const) {
    test(`a writer in a ${child} child holds the lock; after it is killed the stale lock is taken over`, async () => {
      await using dir = await tempDir();
      {
        await using writer = spawnFixture(child, "wal_writer.ts", [dir.path]);
        assert.equal(await writer.line(), "ready 0");
        await writer.line();
        await rejectsWith(Wal.open(dir.path), "ELOCKED", /process \d+|another process/);
        writer.process.kill("SIGKILL");
        await writer.status;
      }
      assert.ok(existsSync(`${dir.path}/LOCK`), "a killed writer leaves its lock file");
      await using wal = await Wal.open(dir.path, { segmentSize: 64 * 1024 });
      assert.ok(wal.lastSeq >= 1);
      await assertRecords(wal, wal.lastSeq);
    });
  }

  test("six processes of three runtimes racing for one stale lock: exactly one wins", async () => {
    for (let round = 0; round < 3; round++) {
      await using dir = await tempDir();
      await using gate = await tempDir();
      // A pid above Linux's largest (2^22) belongs to no process: the lock is stale.
      writeFileSync(`${dir.path}/LOCK`, `${2 ** 22 + 1}\n`);
      const contenders = (["deno", "bun", "node", "deno", "bun", "node"] as const).map((runtime) =>
        spawnFixture(runtime, "wal_locker.ts", [dir.path, `${gate.path}/GO`])
      );
      try {
        for (const c of contenders) assert.equal(await c.line(), "waiting");
        writeFileSync(`${gate.path}/GO`, "");
        const outcomes = await Promise.all(contenders.map((c) => c.line()));
        const winners = outcomes.filter((o) => o.startsWith("locked "));
        assert.equal(winners.length, 1, `round ${round}: ${outcomes.join(", ")}`);
        assert.equal(outcomes.filter((o) => o === "ELOCKED").length, 5, outcomes.join(", "));
        // "pid start", or the pid alone in a process that may not read /proc (Deno).
        const [owner] = readFileSync(`${dir.path}/LOCK`, "utf8").trim().split(" ");
        assert.equal(owner, winners[0]!.slice(7));
      } finally {
        for (const c of contenders) await c[Symbol.asyncDispose]();
      }
    }
  });

  test("readers dropped half read give their files back at garbage collection, quietly", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, { sync: "none", segmentSize: 8192 });
    await wal.appendBatch(Array.from({ length: 500 }, () => new Uint8Array(100)));
    // Counted by a child `ls`: Deno lets a process list its own /proc/self/fd only with --allow-all.
    const open = async (): Promise<number> => {
      const ls = rt.spawn("ls", ["-1", `/proc/${rt.pid}/fd`], { stdout: "pipe" });
      const listing = await new Response(ls.stdout).text();
      await ls.status;
      return listing.split("\n").filter((line) => line !== "").length;
    };
    const before = await open();
    // 20 readers that read one batch, leaving their file open, and are never cancelled: held
    // until counted, so that no collection closes them early, and dropped when this returns.
    const withReaders = async (): Promise<number> => {
      const readers: ReadableStreamDefaultReader<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        readers.push(wal.read().getReader());
        await readers[i]!.read();
      }
      return await open();
    };
    const during = await withReaders();
    // A few descriptors of the runtime's own come and go: the margins are for them.
    assert.ok(
      during >= before + 15,
      `each reader holds its file: ${before} before, ${during} during`,
    );
    for (let i = 0; i < 3; i++) {
      collectGarbage();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Bun used to throw an uncaught error here for each file, and Node to warn.
    const after = await open();
    assert.ok(after <= before + 5, `files open: ${before} before, ${after} after`);
  });

  test("200 random damages to a log of several segments: it opens consistent, or fails with ECORRUPT", async () => {
    await using base = await tempDir();
    {
      await using wal = await Wal.open(base.path, {
        sync: "none",
        segmentSize: 4096,
        preallocate: false,
      });
      for (let i = 1; i <= 60; i++) await wal.append(new Uint8Array(20 + (i % 50)).fill(i));
    }
    const names = segmentsOf(base.path).map((p) => p.slice(base.path.length + 1));
    const random = seeded(11);
    const pick = (n: number): number => Math.floor(random() * n);
    const outcomes = { opened: 0, ECORRUPT: 0 };
    for (let round = 0; round < 200; round++) {
      await using dir = await tempDir();
      for (const n of names) cpSync(`${base.path}/${n}`, `${dir.path}/${n}`);
      const target = `${dir.path}/${names[pick(names.length)]}`;
      const bytes = readFileSync(target);
      const kind = round % 4;
      if (kind === 0) { for (let k = 0; k <= pick(8); k++) bytes[pick(bytes.length)] = pick(256); }
      if (kind === 3) bytes.writeUInt32LE(pick(2 ** 32), pick(bytes.length - 8) & ~7); // a length or seq field
      const damaged = kind === 1
        ? bytes.subarray(0, pick(bytes.length))
        : kind === 2
        ? Buffer.concat([bytes, Buffer.from(Array.from({ length: pick(300) }, () => pick(256)))])
        : bytes;
      writeFileSync(target, damaged);
      try {
        await using wal = await Wal.open(dir.path, { sync: "none", segmentSize: 4096 });
        const records = await readAllRecords(wal);
        assert.equal(records.length, wal.lastSeq - wal.firstSeq + 1, "what opens reads back whole");
        records.forEach((r, i) => assert.equal(r.seq, wal.firstSeq + i));
        for (const r of records) {
          assert.deepEqual(r.data, new Uint8Array(20 + (r.seq % 50)).fill(r.seq));
        }
        assert.equal(await wal.append("after"), wal.lastSeq);
        outcomes.opened++;
      } catch (err) {
        assert.ok(err instanceof IpcError, String(err));
        assert.equal(err.code, "ECORRUPT", err.message);
        outcomes.ECORRUPT++;
      }
    }
    assert.ok(outcomes.opened > 20 && outcomes.ECORRUPT > 20, JSON.stringify(outcomes));
  });

  test("batches far larger than a segment rotate inside the batch and read back whole", async () => {
    for (const sync of ["none", "batch", "always"] as const) {
      await using dir = await tempDir();
      const record = (seq: number): Uint8Array => new Uint8Array(37 + (seq % 300)).fill(seq & 255);
      {
        await using wal = await Wal.open(dir.path, { sync, segmentSize: 8192 });
        for (let first = 1; first <= 3000; first += 1000) {
          const items = Array.from({ length: 1000 }, (_, k) => record(first + k));
          assert.deepEqual(await wal.appendBatch(items), items.map((_, k) => first + k));
        }
      }
      assert.ok(segmentsOf(dir.path).length > 50, "many segments");
      await using wal = await Wal.open(dir.path, { sync, segmentSize: 8192 });
      assert.equal(wal.recovery.truncatedBytes, 0);
      const records = await readAllRecords(wal);
      assert.equal(records.length, 3000, sync);
      for (const r of records) assert.deepEqual(r.data, record(r.seq));
    }
  });

  test("a follower that falls behind retention gets ENOENT, read-only or not, never ECORRUPT or a hang", async () => {
    for (const readOnly of [false, true]) {
      await using dir = await tempDir();
      await using wal = await Wal.open(dir.path, {
        sync: "none",
        segmentSize: 8192,
        retention: { maxSegments: 2 },
      });
      await wal.appendBatch(Array.from({ length: 50 }, () => new Uint8Array(100)));
      await using reader = readOnly
        ? await Wal.open(dir.path, { readOnly: true, pollInterval: 5 })
        : wal;
      const records = reader.read({ from: 1, follow: true })[Symbol.asyncIterator]();
      assert.equal((await records.next()).value?.seq, 1); // its first segment is open now
      // Enough to fill many segments: the reader's first segment and those after it are removed.
      for (let i = 0; i < 20; i++) {
        await wal.appendBatch(Array.from({ length: 100 }, () => new Uint8Array(100)));
      }
      let last = 1;
      await assert.rejects(
        (async () => {
          for (let r = await records.next(); !r.done; r = await records.next()) {
            assert.equal(r.value.seq, ++last, "what it does return is contiguous");
          }
        })(),
        (err: IpcError) =>
          err.code === "ENOENT" &&
          new RegExp(`from seq ${last + 1} as it starts at \\d+: earlier records were removed`)
            .test(err.message),
        `readOnly: ${readOnly}`,
      );
    }
  });

  test("two opens of one log at once in one process: one writer, one ELOCKED", async () => {
    for (const stale of [false, true]) {
      await using dir = await tempDir();
      if (stale) writeFileSync(`${dir.path}/LOCK`, `${2 ** 22 + 1}\n`);
      const results = await Promise.allSettled([Wal.open(dir.path), Wal.open(dir.path)]);
      const opened = results.filter((r) => r.status === "fulfilled");
      assert.equal(opened.length, 1, `stale lock: ${stale}`);
      const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      assert.equal((refused.reason as IpcError).code, "ELOCKED");
      await (opened[0] as PromiseFulfilledResult<Wal>).value.close();
    }
  });

  test("a full disk: ENOSPC, nothing left half written, nothing acknowledged lost", async () => {
    await using mount = await tempDir();
    await using child = onSmallDisk("wal_full.ts", mount.path);
    const r = JSON.parse(await child.line(60_000));
    assert.equal(r.appendError, "ENOSPC", "a full disk has its own code");
    assert.ok(r.acknowledged > 10, `${r.acknowledged} records fit`);
    // No zero-filled next segment, no temporary file, is left to hold the space.
    assert.deepEqual(r.afterFailure.filter((f: string) => !f.endsWith(".wal")), ["LOCK"]);
    // Reopening while full either works or fails cleanly; it leaves no partial copy behind.
    assert.ok(["ok", "ENOSPC"].includes(r.fullReopen), r.fullReopen);
    assert.deepEqual(r.afterFullReopen.filter((f: string) => !f.endsWith(".wal")), []);
    // With room again: every acknowledged record is there, and at most one copy of a cut tail.
    assert.ok(r.read >= r.acknowledged, `${r.read} of ${r.acknowledged} acknowledged read back`);
    assert.ok(r.brokenFiles <= 1);
    assert.ok(r.afterSpace.filter((f: string) => f.includes(".broken")).length <= 1, r.afterSpace);
  });

  test("a lock naming a live pid that another process started with is stale (pid reuse)", async () => {
    await using dir = await tempDir();
    const start = await processStartTime(1, (path) => rt.fs.readFile(path));
    if (start === undefined) {
      // Deno without --allow-all may not read /proc: the pid alone decides, and pid 1 runs.
      assert.equal(rt.name, "deno");
      writeFileSync(`${dir.path}/LOCK`, "1 12345\n");
      await rejectsWith(Wal.open(dir.path), "ELOCKED", /process 1 holds/);
      return;
    }
    // Pid 1 runs, but not the process that took this lock: it started at another time.
    writeFileSync(`${dir.path}/LOCK`, `1 ${Number(start) + 1}\n`);
    {
      await using wal = await Wal.open(dir.path, { sync: "none" });
      assert.equal(await wal.append("x"), 1);
      assert.equal(readFileSync(`${dir.path}/LOCK`, "utf8"), await ownerText(rt.fs, rt.pid));
    }
    // The same pid with its own start time is the live owner; so is a pid alone (can't tell).
    for (const lock of [`1 ${start}\n`, "1\n"]) {
      writeFileSync(`${dir.path}/LOCK`, lock);
      await rejectsWith(Wal.open(dir.path), "ELOCKED", /process 1 holds/);
    }
  });

  test("a takeover left by a dead process is cleared; one by a live process means ELOCKED", async () => {
    const dead = `${2 ** 22 + 1}\n`; // above Linux's largest pid: no such process
    await using dir = await tempDir();
    writeFileSync(`${dir.path}/LOCK`, dead);
    writeFileSync(`${dir.path}/LOCK.takeover`, `${rt.pid}\n`); // a live process is taking over
    await rejectsWith(Wal.open(dir.path), "ELOCKED", /another process taking it over/);
    writeFileSync(`${dir.path}/LOCK.takeover`, dead);
    {
      await using wal = await Wal.open(dir.path, { sync: "none" });
      assert.equal(await wal.append("x"), 1);
      assert.equal(readFileSync(`${dir.path}/LOCK`, "utf8"), await ownerText(rt.fs, rt.pid));
      assert.ok(!existsSync(`${dir.path}/LOCK.takeover`), "the takeover lock is gone once done");
      assert.deepEqual(readdirSync(dir.path).filter((n) => n.includes(".new")), []);
    }
    assert.ok(!existsSync(`${dir.path}/LOCK`), "closing releases the lock");
  });

  test('crash test: 30 SIGKILLs of a writer in "always" mode lose nothing acknowledged', async () => {
    await using dir = await tempDir();
    const random = seeded(7);
    const runtime = runtimeName();
    let acked = 0;
    for (let round = 0; round < 30; round++) {
      const writer = spawnFixture(runtime, "wal_writer.ts", [dir.path]);
      const ready = await writer.line();
      assert.match(ready, /^ready \d+$/);
      assert.ok(Number(ready.slice(6)) >= acked, "every acknowledged record survived the restart");
      await writer.line();
      await new Promise((resolve) => setTimeout(resolve, random() * 40));
      writer.process.kill("SIGKILL");
      while (true) {
        const line = await writer.line().catch(() => undefined);
        if (line === undefined) break;
        assert.match(line, /^\d+$/, `the writer said ${line}`);
        acked = Math.max(acked, Number(line));
      }
      await writer[Symbol.asyncDispose]();
      await using wal = await Wal.open(dir.path, { segmentSize: 64 * 1024 });
      assert.ok(wal.lastSeq >= acked, `round ${round}: acked ${acked}, recovered ${wal.lastSeq}`);
      await assertRecords(wal, wal.lastSeq);
    }
    assert.ok(acked > 30);
  });

  test("a flipped bit anywhere in the last record cuts that record, keeping a .broken copy", async () => {
    await using dir = await tempDir();
    const { path, offsets } = await smallLog(dir.path, 5);
    const [start, end] = offsets.slice(-2) as [number, number];
    for (let at = start; at < end; at++) {
      const copy = copyDir(dir.path);
      try {
        const seg = segmentsOf(copy)[0]!;
        const bytes = readFileSync(seg);
        bytes[at]! ^= 0x10;
        writeFileSync(seg, bytes);
        {
          await using wal = await Wal.open(copy, { preallocate: false });
          assert.equal(wal.recovery.lastSeq, 4, `flip at byte ${at}`);
          assert.equal(wal.recovery.truncatedBytes, end - start);
          assert.equal(wal.recovery.brokenFiles.length, 1);
          assert.deepEqual(
            new Uint8Array(readFileSync(wal.recovery.brokenFiles[0]!)),
            new Uint8Array(bytes.subarray(start, end)),
          );
          await assertRecords(wal, 4);
          assert.equal(await wal.append(walRecord(5)), 5, "the log goes on from the cut");
        }
        await using again = await Wal.open(copy, { preallocate: false });
        assert.equal(again.recovery.truncatedBytes, 0);
        await assertRecords(again, 5);
      } finally {
        rmSync(copy, { recursive: true, force: true });
      }
    }
    assert.ok(existsSync(path));
  });

  test("truncation at every offset of the last record cuts it back", async () => {
    await using dir = await tempDir();
    const { offsets } = await smallLog(dir.path, 3);
    const [start, end] = offsets.slice(-2) as [number, number];
    const dataEnd = start + 16 + walRecord(3).length;
    for (let cutAt = start + 1; cutAt < end; cutAt++) {
      const copy = copyDir(dir.path);
      try {
        truncateSync(segmentsOf(copy)[0]!, cutAt);
        await using wal = await Wal.open(copy, { preallocate: false });
        // Cutting only padding leaves the record whole.
        const whole = cutAt >= dataEnd;
        assert.equal(wal.recovery.lastSeq, whole ? 3 : 2, `cut at ${cutAt}`);
        assert.equal(wal.recovery.truncatedBytes, whole ? 0 : cutAt - start);
        await assertRecords(wal, whole ? 3 : 2);
      } finally {
        rmSync(copy, { recursive: true, force: true });
      }
    }
  });

  test("a zero-filled tail and a torn write across a 512-byte sector are cut back", async () => {
    await using dir = await tempDir();
    const wal0 = await Wal.open(dir.path, { preallocate: false, sync: "none" });
    await wal0.append(new Uint8Array(400).fill(1)); // 32 + 416 = 448: the next record crosses 512
    await wal0.append(new Uint8Array(300).fill(2));
    await wal0.close();
    rmSync(`${dir.path}/HIGHWATER`); // as after a crash before the mark was written again
    const seg = segmentsOf(dir.path)[0]!;
    const original = readFileSync(seg);
    const cases: [string, (b: Buffer) => Buffer, number][] = [
      ["zeros appended", (b) => Buffer.concat([b, Buffer.alloc(4096)]), 2],
      ["the last record zeroed", (b) => (b.fill(0, 448), b), 1],
      ["the sector after the tear lost", (b) => (b.fill(0, 512), b), 1],
      ["the sector before the tear lost", (b) => (b.fill(0, 448, 512), b), 1],
    ];
    for (const [name, damage, last] of cases) {
      const copy = copyDir(dir.path);
      try {
        writeFileSync(segmentsOf(copy)[0]!, damage(Buffer.from(original)));
        await using wal = await Wal.open(copy, { preallocate: false });
        assert.equal(wal.recovery.lastSeq, last, name);
        const recs = await readAllRecords(wal);
        assert.equal(recs.length, last, name);
        assert.ok(recs[0]!.data.every((b) => b === 1));
      } finally {
        rmSync(copy, { recursive: true, force: true });
      }
    }
  });

  test("zeros over acknowledged records: the synced high-water mark reports them lost", async () => {
    await using dir = await tempDir();
    const { path, offsets } = await smallLog(dir.path, 6, true);
    // A disk that lost the writes of records 5 and 6: zeros, like space never written.
    const bytes = readFileSync(path);
    bytes.fill(0, offsets[4]!);
    writeFileSync(path, bytes);
    await rejectsWith(
      Wal.open(dir.path),
      "ECORRUPT",
      /records 5 to 6 were acknowledged \(its synced high-water mark says so\) but are gone/,
    );
    await rejectsWith(Wal.open(dir.path, { readOnly: true }), "ECORRUPT", /records 5 to 6/);
    {
      await using wal = await Wal.open(dir.path, { repair: "truncate", preallocate: false });
      assert.equal(wal.recovery.lostRecords, 2);
      assert.equal(wal.recovery.repaired, true);
      assert.equal(wal.recovery.lastSeq, 4);
      await assertRecords(wal, 4);
      assert.equal(await wal.append(walRecord(5)), 5); // the lost sequences are given again
    }
    // Repaired, the log opens as any other; a mark a damaged file holds is no mark.
    await using wal = await Wal.open(dir.path, { preallocate: false });
    assert.equal(wal.recovery.lostRecords, 0);
    await assertRecords(wal, 5);
  });

  test('corruption in the middle fails with ECORRUPT, or is cut with repair: "truncate"', async () => {
    await using dir = await tempDir();
    const { path, offsets } = await smallLog(dir.path, 6);
    const bytes = readFileSync(path);
    bytes[offsets[2]! + 17]! ^= 1; // record 3's data
    writeFileSync(path, bytes);
    const err = await rejectsWith(Wal.open(dir.path), "ECORRUPT");
    assert.ok(err.message.includes(path), err.message);
    assert.match(err.message, new RegExp(`at byte ${offsets[2]}: record seq 3 fails its checksum`));
    assert.match(err.message, /repair: "truncate"/);
    await using wal = await Wal.open(dir.path, { repair: "truncate", preallocate: false });
    assert.equal(wal.recovery.repaired, true);
    assert.equal(wal.recovery.lastSeq, 2);
    assert.equal(wal.recovery.truncatedBytes, offsets[6]! - offsets[2]!);
    await assertRecords(wal, 2);
  });

  test("a damaged segment header or a missing segment is ECORRUPT, on open or on read", async () => {
    await using dir = await tempDir();
    {
      await using wal = await Wal.open(dir.path, { sync: "none", segmentSize: 4096 });
      for (let seq = 1; seq <= 100; seq++) await wal.append(walRecord(seq));
    }
    const segs = segmentsOf(dir.path);
    assert.ok(segs.length >= 3);
    const copy = copyDir(dir.path);
    try {
      rmSync(segmentsOf(copy)[1]!);
      await rejectsWith(
        Wal.open(copy, { verify: "all" }),
        "ECORRUPT",
        /starts at seq \d+ where \d+ was expected/,
      );
      // By default only the last segment is checked on open: the reader finds the gap.
      await using wal = await Wal.open(copy);
      assert.equal(wal.lastSeq, 100);
      await rejectsWith(readAllRecords(wal), "ECORRUPT", /record seq \d+ is missing/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
    const head = readFileSync(segs.at(-1)!);
    head[20]! ^= 1;
    writeFileSync(segs.at(-1)!, head);
    await rejectsWith(Wal.open(dir.path), "ECORRUPT", /header fails its checksum/);
  });

  test('damage before the last segment: the reader finds it; verify: "all" finds it on open', async () => {
    await using dir = await tempDir();
    {
      await using wal = await Wal.open(dir.path, { sync: "none", segmentSize: 4096 });
      for (let seq = 1; seq <= 100; seq++) await wal.append(walRecord(seq));
    }
    const first = segmentsOf(dir.path)[0]!;
    const bytes = readFileSync(first);
    const fourth = [1, 2, 3].reduce(
      (at, seq) => at + recordSize(walRecord(seq).length),
      SEGMENT_HEADER,
    );
    bytes[fourth + RECORD_HEADER]! ^= 0xff; // the first byte of record 4's data
    writeFileSync(first, bytes);
    await rejectsWith(Wal.open(dir.path, { verify: "all" }), "ECORRUPT", /more records follow/);
    {
      await using wal = await Wal.open(dir.path);
      assert.equal(wal.lastSeq, 100);
      const seen: number[] = [];
      await rejectsWith(
        (async () => {
          for await (const r of wal.read()) seen.push(r.seq);
        })(),
        "ECORRUPT",
        /checksum/,
      );
      assert.deepEqual(seen, [1, 2, 3], "the records before the damage are read");
    }
    await using repaired = await Wal.open(dir.path, { verify: "all", repair: "truncate" });
    assert.equal(repaired.lastSeq, 3);
    assert.ok(repaired.recovery.repaired);
  });

  test("a read-only open stops where the last segment's records stop; the writer looks further", async () => {
    await using dir = await tempDir();
    const { path, offsets } = await smallLog(dir.path, 5);
    // Zeros after the records, then a record-like header: corruption to a writer.
    const bytes = readFileSync(path);
    const tail = new Uint8Array(64);
    new DataView(tail.buffer).setUint32(32, 8, true);
    new DataView(tail.buffer).setBigUint64(40, 7n, true);
    writeFileSync(path, concat([bytes, tail]));
    await using reader = await Wal.open(dir.path, { readOnly: true });
    assert.equal(reader.lastSeq, 5);
    assert.equal((await readAllRecords(reader)).length, offsets.length - 1);
    await rejectsWith(Wal.open(dir.path, { readOnly: true, verify: "all" }), "ECORRUPT");
    await rejectsWith(Wal.open(dir.path), "ECORRUPT", /more records follow/);
  });

  test('a read-only open with verify: "all" reports a torn tail and cuts nothing', async () => {
    await using dir = await tempDir();
    const { path } = await smallLog(dir.path, 5);
    const bytes = readFileSync(path);
    // A torn append: a header promising 200 bytes, and 3 of them.
    const torn = new Uint8Array(11);
    new DataView(torn.buffer).setUint32(0, 200, true);
    torn.set([1, 2, 3], 8);
    writeFileSync(path, concat([bytes, torn]));
    {
      await using reader = await Wal.open(dir.path, { readOnly: true, verify: "all" });
      assert.equal(reader.lastSeq, 5);
      assert.equal(reader.recovery.truncatedBytes, 11);
      assert.deepEqual(reader.recovery.brokenFiles, []);
    }
    assert.equal(readFileSync(path).length, bytes.length + 11, "nothing was cut");
    await using writer = await Wal.open(dir.path);
    assert.equal(writer.recovery.truncatedBytes, 11);
  });

  test("1,000,000 small records are written and read back", async () => {
    await using dir = await tempDir();
    await using wal = await Wal.open(dir.path, { sync: "batch", segmentSize: 16 * 1024 * 1024 });
    const batch = 1000;
    for (let b = 0; b < 1000; b++) {
      const items: Uint8Array[] = [];
      for (let i = 0; i < batch; i++) {
        const rec = new Uint8Array(16);
        new DataView(rec.buffer).setUint32(0, b * batch + i + 1, true);
        items.push(rec);
      }
      void wal.appendBatch(items);
    }
    await wal.sync();
    assert.equal(wal.lastSeq, 1_000_000);
    let n = 0;
    for await (const r of wal.read()) {
      n++;
      if (r.seq !== n || new DataView(r.data.buffer, r.data.byteOffset).getUint32(0, true) !== n) {
        assert.fail(`record ${n} reads as seq ${r.seq}`);
      }
    }
    assert.equal(n, 1_000_000);
  });

  test("errors are IpcErrors naming the log", async () => {
    await using dir = await tempDir();
    writeFileSync(`${dir.path}/00000000000000000001.wal`, "not a segment at all, clearly not");
    const err = await rejectsWith(
      Wal.open(dir.path),
      "ECORRUPT",
      /does not start with the segment magic/,
    );
    assert.ok(err instanceof IpcError);
    assert.equal(rt.name, runtimeName());
  });
});

describe("Wal recovery, fuzzed", () => {
  test("any damage to a segment: a prefix of the records, ECORRUPT, or with repair a prefix", async () => {
    await using dir = await tempDir();
    const { path, offsets } = await smallLog(dir.path, 12, true);
    const original = readFileSync(path);
    const mark = readFileSync(`${dir.path}/HIGHWATER`); // says 12
    const damage = fc.oneof(
      // Bytes changed anywhere, the header included.
      fc.array(fc.tuple(fc.nat({ max: original.length - 1 }), fc.integer({ min: 1, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      }).map((edits) => (b: Uint8Array) => {
        const out = b.slice();
        for (const [at, x] of edits) out[at]! ^= x;
        return out;
      }),
      // Cut anywhere, or zeros (unused preallocated space) or garbage after a cut.
      fc.tuple(
        fc.nat({ max: original.length }),
        fc.constantFrom("none", "zeros", "garbage"),
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
      ).map(([cut, tail, junk]) => (b: Uint8Array) =>
        concat([
          b.subarray(0, cut),
          tail === "none"
            ? new Uint8Array(0)
            : tail === "zeros"
            ? new Uint8Array(junk.length)
            : junk,
        ])
      ),
    );
    await fc.assert(
      // With the mark, a lost record is reported; without it (a crash before it was written
      // again), a damaged tail is taken for a torn write.
      fc.asyncProperty(damage, fc.boolean(), async (damaged, keepMark) => {
        const copy = mkdtempSync(`${tmpdir()}/dk-walfuzz-`);
        try {
          writeFileSync(`${copy}/${path.split("/").at(-1)}`, damaged(original));
          if (keepMark) writeFileSync(`${copy}/HIGHWATER`, mark);
          for (const repair of [undefined, "truncate"] as const) {
            const opened = await Wal.open(copy, {
              preallocate: false,
              sync: "none",
              ...(repair === undefined ? {} : { repair }),
            }).then((wal) => wal, (err: unknown) => err);
            if (!(opened instanceof Wal)) {
              assert.ok(opened instanceof IpcError, String(opened));
              assert.equal(opened.code, "ECORRUPT", opened.message);
              assert.equal(repair, undefined, `repair: "truncate" failed: ${opened.message}`);
              continue;
            }
            try {
              // Whatever it kept is a prefix of what was written, each record intact.
              const recs = await readAllRecords(opened);
              assert.ok(recs.length <= offsets.length - 1);
              recs.forEach((r, i) => {
                assert.equal(r.seq, i + 1);
                assert.deepEqual(r.data, walRecord(r.seq));
              });
              assert.equal(opened.lastSeq, recs.length);
              const lost = keepMark ? 12 - recs.length : 0;
              assert.equal(opened.recovery.lostRecords, repair === undefined ? 0 : lost);
              if (repair === undefined) assert.equal(lost, 0, "records lost, yet it opened");
            } finally {
              await opened.close();
            }
          }
        } finally {
          rmSync(copy, { recursive: true, force: true });
        }
      }),
      { numRuns: 150 },
    );
  });
});
