/**
 * The stored streams' commands: `stream ls|info|add|rm|purge` and `consumer ls|info|next`, on a
 * hub server's store.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { ConsumerInfo } from "../hub/consumer.ts";
import { deadline } from "../internal/async.ts";
import type { StreamConfig, StreamInfo, StreamRetention } from "../hub/stream.ts";
import type { SyncMode } from "../wal/options.ts";
import { type Command, type Context, intOption, stringOption, UsageError } from "./command.ts";
import { messageJson, messageText } from "./format.ts";
import { connect, SERVER_OPTION } from "./hub_commands.ts";
import { formatTable } from "./output.ts";

/** `Infinity` crosses JSON as `null`: shown as "unlimited". */
function limit(n: number | null): string | number {
  return n === null || n === Infinity ? "unlimited" : n;
}

function streamLines(info: StreamInfo): string {
  const c = info.config;
  return formatTable([
    ["stream", c.name],
    ["subjects", c.subjects.join(", ")],
    ["retention", c.retention],
    ["durability", c.durability],
    ["messages", info.messages],
    ["bytes", info.bytes],
    ["sequences", `${info.firstSeq}–${info.lastSeq}`],
    ["max messages", limit(c.maxMessages)],
    ["max bytes", limit(c.maxBytes)],
    ["max age (ms)", limit(c.maxAge)],
    ["duplicate window (ms)", limit(c.duplicateWindow)],
  ]).join("\n");
}

function consumerLines(info: ConsumerInfo): string {
  return formatTable([
    ["consumer", info.config.name],
    ["stream", info.stream],
    ["readers", info.readers],
    ["lag", info.lag],
    ["pending", info.pending],
    ["ack floor", info.ackFloor],
    ["delivered", info.delivered],
    ["redelivered", info.redelivered],
    ["acked", info.acked],
    ["dead-lettered", info.deadLettered],
  ]).join("\n");
}

/** Refuses to destroy without `--yes`: a usage error that says how. */
function confirmed(context: Context, what: string): void {
  if (context.values.yes !== true) {
    throw new UsageError(`${what} cannot be undone: run again with --yes to do it`);
  }
}

const YES = { yes: { type: "boolean", short: "y", help: "Do it: it cannot be undone" } } as const;

const ls: Command = {
  name: "stream ls",
  summary: "List the hub's stored streams",
  usage: "",
  arity: [0, 0],
  options: SERVER_OPTION,
  examples: [["stream ls", "Every stream, its subjects and size"]],
  async run(context): Promise<number> {
    await using hub = await connect(context);
    const streams = await hub.streams();
    await context.out.result(streams, () =>
      formatTable([
        ["STREAM", "SUBJECTS", "MESSAGES", "BYTES", "LAST"],
        ...streams.map((s) => [
          s.config.name,
          s.config.subjects.join(","),
          s.messages,
          s.bytes,
          s.lastSeq,
        ]),
      ]).join("\n"));
    return 0;
  },
};

const info: Command = {
  name: "stream info",
  summary: "Show a stream's settings and state",
  usage: "STREAM",
  arity: [1, 1],
  options: SERVER_OPTION,
  examples: [["stream info orders", "The stream orders"]],
  async run(context): Promise<number> {
    await using hub = await connect(context);
    const s = await hub.streamInfo(context.args[0]!);
    await context.out.result(s, () => streamLines(s));
    return 0;
  },
};

const add: Command = {
  name: "stream add",
  summary: "Add a stream that stores the messages of its subjects",
  usage: "STREAM",
  arity: [1, 1],
  options: {
    subjects: {
      type: "string",
      multiple: true,
      arg: "PATTERN",
      help: "A topic pattern it stores (repeat for more; at least one)",
    },
    retention: { type: "string", arg: "POLICY", help: "limits, workqueue or interest" },
    durability: { type: "string", arg: "SYNC", help: "always, batch or none (default always)" },
    "max-msgs": { type: "string", arg: "N", help: "Keep at most N messages" },
    "max-bytes": { type: "string", arg: "N", help: "Keep at most N bytes" },
    "max-age": { type: "string", arg: "MS", help: "Keep messages at most MS milliseconds" },
    ...SERVER_OPTION,
  },
  examples: [
    ["stream add orders --subjects 'orders.>'", "Store everything under orders."],
    ["stream add jobs --subjects 'jobs.*' --retention workqueue", "A work queue"],
  ],
  async run(context): Promise<number> {
    const subjects = (context.values.subjects as string[] | undefined) ?? [];
    if (subjects.length === 0) throw new UsageError("stream add needs --subjects PATTERN");
    const optional: Record<string, unknown> = {};
    const retention = stringOption(context, "retention");
    const durability = stringOption(context, "durability");
    if (retention !== undefined) optional.retention = retention as StreamRetention;
    if (durability !== undefined) optional.durability = durability as SyncMode;
    for (const [flag, field] of [["max-msgs", "maxMessages"], ["max-bytes", "maxBytes"]]) {
      if (context.values[flag!] !== undefined) optional[field!] = intOption(context, flag!, 0);
    }
    if (context.values["max-age"] !== undefined) {
      optional.maxAge = intOption(context, "max-age", 0);
    }
    await using hub = await connect(context);
    const config = { name: context.args[0]!, subjects, ...optional } as StreamConfig;
    const s = await hub.addStream(config);
    await context.out.result(s, () => streamLines(s));
    return 0;
  },
};

const rm: Command = {
  name: "stream rm",
  summary: "Remove a stream, its messages and its consumers",
  usage: "STREAM",
  arity: [1, 1],
  options: { ...YES, ...SERVER_OPTION },
  examples: [["stream rm orders --yes", "Remove the stream orders"]],
  async run(context): Promise<number> {
    const name = context.args[0]!;
    confirmed(context, `Removing stream ${name}`);
    await using hub = await connect(context);
    await hub.deleteStream(name);
    await context.out.result({ removed: name }, () => `removed stream ${name}`);
    return 0;
  },
};

const purge: Command = {
  name: "stream purge",
  summary: "Remove every message of a stream, keeping the stream",
  usage: "STREAM",
  arity: [1, 1],
  options: { ...YES, ...SERVER_OPTION },
  examples: [["stream purge orders --yes", "Empty the stream orders"]],
  async run(context): Promise<number> {
    const name = context.args[0]!;
    confirmed(context, `Purging stream ${name}`);
    await using hub = await connect(context);
    const s = await hub.purge(name);
    await context.out.result(s, () => `purged stream ${name}: next sequence ${s.lastSeq + 1}`);
    return 0;
  },
};

const consumerLs: Command = {
  name: "consumer ls",
  summary: "List a stream's consumers and how far behind each is",
  usage: "STREAM",
  arity: [1, 1],
  options: SERVER_OPTION,
  examples: [["consumer ls orders", "The consumers of orders"]],
  async run(context): Promise<number> {
    await using hub = await connect(context);
    const list = await hub.consumers(context.args[0]!);
    await context.out.result(list, () =>
      formatTable([
        ["CONSUMER", "READERS", "LAG", "PENDING", "ACKED", "REDELIVERED", "DEAD"],
        ...list.map((c) => [
          c.config.name,
          c.readers,
          c.lag,
          c.pending,
          c.acked,
          c.redelivered,
          c.deadLettered,
        ]),
      ]).join("\n"));
    return 0;
  },
};

const consumerInfo: Command = {
  name: "consumer info",
  summary: "Show a consumer's state",
  usage: "STREAM CONSUMER",
  arity: [2, 2],
  options: SERVER_OPTION,
  examples: [["consumer info orders billing", "The consumer billing of orders"]],
  async run(context): Promise<number> {
    await using hub = await connect(context);
    const c = await hub.consumerInfo(context.args[0]!, context.args[1]!);
    await context.out.result(c, () => consumerLines(c));
    return 0;
  },
};

const consumerNext: Command = {
  name: "consumer next",
  summary: "Take the next messages of a durable consumer (made if new), acknowledging each",
  usage: "STREAM CONSUMER",
  arity: [2, 2],
  options: {
    count: { type: "string", short: "n", arg: "N", help: "Take N messages (default 1)" },
    "no-ack": {
      type: "boolean",
      help: "Do not acknowledge: they are delivered again after the ack wait",
    },
    timeout: {
      type: "string",
      arg: "MS",
      help: "Give up waiting for a message after MS milliseconds (default 5000)",
    },
    ...SERVER_OPTION,
  },
  examples: [
    ["consumer next orders billing", "Take and acknowledge one message"],
    ["consumer next orders billing -n 10 --json", "Ten, as JSON lines"],
  ],
  async run(context): Promise<number> {
    const { out } = context;
    const [stream, durable] = context.args as [string, string];
    const count = intOption(context, "count", 1);
    const timeout = intOption(context, "timeout", 5000);
    await using hub = await connect(context);
    const consumer = await hub.consume(stream, { durable, buffer: Math.min(count, 1024) });
    try {
      for (let taken = 0; taken < count; taken++) {
        const next = await deadline(consumer.next(), timeout).catch((err: unknown) => {
          if (err instanceof IpcError && err.code === "ETIMEDOUT") return "timeout" as const;
          throw err;
        });
        if (next === "timeout" || next.done === true) {
          await out.note(`no message within ${timeout} ms after ${taken}`);
          return taken === 0 ? 1 : 0;
        }
        const m = next.value;
        if (context.values["no-ack"] !== true) await m.ack();
        await (out.json
          ? out.value({ ...messageJson(m), attempt: m.attempt })
          : out.line(`${messageText(m)}${m.attempt > 1 ? ` (attempt ${m.attempt})` : ""}`));
      }
    } finally {
      await consumer.close();
    }
    return 0;
  },
};

/** The commands of stored streams and their consumers. */
export const STREAM_COMMANDS: readonly Command[] = [
  ls,
  info,
  add,
  rm,
  purge,
  consumerLs,
  consumerInfo,
  consumerNext,
];
