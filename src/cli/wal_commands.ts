/**
 * The write-ahead log's commands: `wal info|dump|verify|repair|tail DIR`. All but `repair` open
 * the log read-only, so they may run beside the process that writes it.
 *
 * @module
 */

import { Wal } from "../wal/wal.ts";
import type { WalRecord } from "../wal/options.ts";
import { type Command, type Context, intOption, stringOption, UsageError } from "./command.ts";
import { hex, jsonBytes, showBytes } from "./format.ts";
import { formatTable } from "./output.ts";

const FORMATS = ["text", "hex", "json"] as const;

/** How `dump` and `tail` print records: `--format`, or json with `--json`. */
function recordPrinter(context: Context): (r: WalRecord) => Promise<void> {
  const { out } = context;
  const format = out.json ? "json" : stringOption(context, "format") ?? "text";
  if (!(FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--format must be text, hex or json: got "${format}"`);
  }
  return format === "json"
    ? (r) => out.value({ seq: r.seq, size: r.data.length, ...jsonBytes(r.data) })
    : format === "hex"
    ? (r) => out.line(`${r.seq}\t${hex(r.data)}`)
    : (r) => out.line(`${r.seq}\t${showBytes(r.data)}`);
}

const RANGE = {
  from: { type: "string", arg: "SEQ", help: "Start at sequence SEQ" },
  to: { type: "string", arg: "SEQ", help: "Stop after sequence SEQ" },
  format: { type: "string", arg: "FORMAT", help: "text (default), hex or json" },
} as const;

/** The segment files of a log directory, with their sizes, in sequence order. */
async function segmentFiles(
  context: Context,
  dir: string,
): Promise<{ name: string; size: number }[]> {
  const names = (await context.rt.fs.readDir(dir)).filter((n) => /^\d{20}\.wal$/.test(n)).sort();
  return await Promise.all(
    names.map(async (name) => ({ name, size: (await context.rt.fs.stat(`${dir}/${name}`)).size })),
  );
}

const info: Command = {
  name: "wal info",
  summary: "Show a log's segments, sequence range and snapshot",
  usage: "DIR",
  arity: [1, 1],
  options: {},
  examples: [["wal info ./data/orders", "What the log in ./data/orders holds"]],
  async run(context): Promise<number> {
    const dir = context.args[0]!;
    await using wal = await Wal.open(dir, { readOnly: true });
    const segments = await segmentFiles(context, dir);
    const bytes = segments.reduce((sum, s) => sum + s.size, 0);
    const records = wal.lastSeq - wal.firstSeq + 1;
    const value = {
      dir,
      firstSeq: wal.firstSeq,
      lastSeq: wal.lastSeq,
      records,
      bytes,
      segments,
      snapshot: wal.snapshot === undefined ? null : { seq: wal.snapshot.seq },
    };
    await context.out.result(value, () =>
      [
        ...formatTable([
          ["log", dir],
          ["records", records],
          ["sequences", records === 0 ? "none" : `${wal.firstSeq}–${wal.lastSeq}`],
          ["bytes", bytes],
          ["snapshot", wal.snapshot === undefined ? "none" : `covers up to #${wal.snapshot.seq}`],
        ]),
        "",
        ...formatTable([["SEGMENT", "BYTES"], ...segments.map((s) => [s.name, s.size])]),
      ].join("\n"));
    return 0;
  },
};

const dump: Command = {
  name: "wal dump",
  summary: "Print a log's records: sequence and data, as text, hex or JSON",
  usage: "DIR",
  arity: [1, 1],
  options: RANGE,
  examples: [
    ["wal dump ./data/orders --from 100 --to 110", "Eleven records as text"],
    ["wal dump ./data/orders --format hex", "Every record in hex"],
  ],
  async run(context): Promise<number> {
    const print = recordPrinter(context);
    await using wal = await Wal.open(context.args[0]!, { readOnly: true });
    const from = intOption(context, "from", wal.firstSeq);
    const to = intOption(context, "to", wal.lastSeq);
    for await (const r of wal.read({ from, to, signal: context.signal })) await print(r);
    return 0;
  },
};

const verify: Command = {
  name: "wal verify",
  summary: "Check every record's checksum; exit 1 on damage, naming the file and byte offset",
  usage: "DIR",
  arity: [1, 1],
  options: {},
  examples: [["wal verify ./data/orders", "Check a log after a crash"]],
  async run(context): Promise<number> {
    const { out } = context;
    const dir = context.args[0]!;
    await using wal = await Wal.open(dir, { readOnly: true, verify: "all" });
    const total = wal.lastSeq - wal.firstSeq + 1;
    let records = 0;
    for await (const _ of wal.read({ signal: context.signal })) {
      if (++records % 4096 === 0) out.progress("verifying", records, total);
    }
    const torn = wal.recovery.truncatedBytes;
    await out.result(
      { dir, ok: true, records, firstSeq: wal.firstSeq, lastSeq: wal.lastSeq, tornBytes: torn },
      () =>
        `ok: ${records} records${records === 0 ? "" : `, #${wal.firstSeq}–#${wal.lastSeq}`}${
          torn === 0
            ? ""
            : `; ${torn} bytes of a torn write follow the last record (an interrupted append, ` +
              "never acknowledged): the next open for writing cuts them"
        }`,
    );
    return 0;
  },
};

const repair: Command = {
  name: "wal repair",
  summary: "Cut a damaged log back to its last good record (the cut bytes are kept aside)",
  usage: "DIR",
  arity: [1, 1],
  options: { yes: { type: "boolean", short: "y", help: "Do it: records after the damage go" } },
  examples: [["wal repair ./data/orders --yes", "Cut the log at its first damaged record"]],
  async run(context): Promise<number> {
    const dir = context.args[0]!;
    if (context.values.yes !== true) {
      throw new UsageError(
        `Repairing drops every record after the first damaged one: see what "dockipc wal verify ${dir}" ` +
          "reports, then run again with --yes",
      );
    }
    await using wal = await Wal.open(dir, { repair: "truncate", verify: "all" });
    const r = wal.recovery;
    await context.out.result(
      { dir, ...r },
      () =>
        r.truncatedBytes === 0
          ? `nothing to repair: ${dir} ends at #${wal.lastSeq}`
          : `cut ${r.truncatedBytes} bytes: the log now ends at #${wal.lastSeq}; the cut bytes ` +
            `are in ${r.brokenFiles.join(", ")}`,
    );
    return 0;
  },
};

const tail: Command = {
  name: "wal tail",
  summary: "Print records as another process appends them, until stopped or --count",
  usage: "DIR",
  arity: [1, 1],
  options: {
    from: { type: "string", arg: "SEQ", help: "Start at SEQ (default: the next record)" },
    count: { type: "string", short: "n", arg: "N", help: "Stop after N records" },
    format: RANGE.format,
  },
  examples: [["wal tail ./data/orders --json", "Follow a log as JSON lines"]],
  async run(context): Promise<number> {
    const print = recordPrinter(context);
    const count = intOption(context, "count", Infinity);
    await using wal = await Wal.open(context.args[0]!, { readOnly: true, pollInterval: 50 });
    const from = intOption(context, "from", wal.lastSeq + 1);
    let seen = 0;
    try {
      for await (const r of wal.read({ from, follow: true, signal: context.signal })) {
        await print(r);
        if (++seen >= count) break;
      }
    } catch (err) {
      if (!context.signal.aborted) throw err;
    }
    return 0;
  },
};

/** The log's commands. */
export const WAL_COMMANDS: readonly Command[] = [info, dump, verify, repair, tail];
