/**
 * The demo's log writer, for any runtime: opens the write-ahead log in the directory given as the
 * first argument, appends 10,000 records in `"always"` mode from 64 concurrent appenders (so they
 * share fdatasync calls), closes it and prints one JSON line.
 *
 * Run by `examples/demo.ts` under Deno, Bun and Node, one after another: a log has one writer.
 */
import { Wal } from "../src/wal/mod.ts";
import { scriptArgs } from "../scripts/_runtimes.ts";

const [dir] = scriptArgs();
const who = navigator.userAgent;
const wal = await Wal.open(dir!, { sync: "always" });
const first = wal.lastSeq + 1;
const total = 10_000;
let next = 0;
const start = performance.now();
await Promise.all(Array.from({ length: 64 }, async () => {
  while (next < total) await wal.append(`${who} ${next++}`);
}));
const ms = performance.now() - start;
await wal.close();
console.log(JSON.stringify({ who, records: total, first, last: first + total - 1, ms }));
