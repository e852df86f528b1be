/**
 * `dockipc bench pub|sub|req|stream`, in the spirit of `nats bench`: a bounded load through a
 * running hub server, a progress bar on a terminal while it runs, then messages and bytes per
 * second and latency percentiles (`sub`: of one message in 16, stamped with its sending time;
 * `req`: of every round trip).
 *
 * @module
 */

import type { RemoteHub } from "../hub/remote.ts";
import { type Command, type Context, intOption, stringOption } from "./command.ts";
import { duration, rate } from "./format.ts";
import { connect, SERVER_OPTION } from "./hub_commands.ts";
import { formatTable } from "./output.ts";

const LOAD = {
  msgs: { type: "string", short: "n", arg: "N", help: "Messages to send (default 100000)" },
  size: { type: "string", arg: "BYTES", help: "Payload size, at least 16 (default 128)" },
  ...SERVER_OPTION,
} as const;

/** Stored publishes in flight at once, waiting for their acknowledgement. */
const WINDOW = 256;

/** What one run measured. */
interface Result {
  readonly workload: string;
  readonly msgs: number;
  readonly size: number;
  readonly seconds: number;
  /** Latency percentiles in seconds, where the workload measures them. */
  readonly latency?: { p50: number; p90: number; p99: number; max: number };
}

/** The percentiles of `samples` (milliseconds), in seconds. */
function percentiles(samples: Float64Array): NonNullable<Result["latency"]> {
  const sorted = samples.slice().sort();
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! / 1000;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1]! / 1000 };
}

/** Prints a result as a table or one JSON value. */
async function report(context: Context, r: Result): Promise<void> {
  const msgsPerSec = r.msgs / r.seconds;
  const bytesPerSec = msgsPerSec * r.size;
  await context.out.result({ ...r, msgsPerSec, mbPerSec: bytesPerSec / 1e6 }, () =>
    formatTable([
      ["workload", r.workload],
      ["messages", `${r.msgs} × ${r.size} B in ${r.seconds.toFixed(2)} s`],
      ["throughput", `${rate(msgsPerSec)} msgs/s, ${(bytesPerSec / 1e6).toFixed(1)} MB/s`],
      ...(r.latency === undefined ? [] : [[
        "latency",
        `p50 ${duration(r.latency.p50)}  p90 ${duration(r.latency.p90)}  p99 ${
          duration(r.latency.p99)
        }  max ${duration(r.latency.max)}`,
      ]]),
    ]).join("\n"));
}

/** Messages from one timed message to the next: the others share one payload, as `bench/` does. */
const STAMP_EVERY = 16;

/**
 * A payload of `size` bytes that carries its sending time: byte 0 is 1, bytes 8–15 hold
 * `performance.now()`. The untimed messages' shared payload has 0 there.
 */
function stamped(size: number): Uint8Array {
  const data = new Uint8Array(size);
  data[0] = 1;
  new DataView(data.buffer).setFloat64(8, performance.now(), true);
  return data;
}

/** The sending time a stamped payload carries, or undefined for an untimed one. */
function stampOf(data: Uint8Array): number | undefined {
  return data[0] === 1
    ? new DataView(data.buffer, data.byteOffset, 16).getFloat64(8, true)
    : undefined;
}

/**
 * Publishes `msgs` messages to `topic`: one at a time, or to a stored stream with a window in
 * flight. One in STAMP_EVERY is stamped with its sending time (when `stamp`); the rest share a
 * payload, so that the load is the hub's, not the allocator's.
 */
async function publishAll(
  context: Context,
  hub: RemoteHub,
  topic: string,
  load: { msgs: number; size: number; stamp: boolean; stored?: boolean },
): Promise<void> {
  const shared = new Uint8Array(load.size);
  let inFlight: Promise<unknown>[] = [];
  for (let i = 1; i <= load.msgs && !context.signal.aborted; i++) {
    const timed = load.stamp && i % STAMP_EVERY === 1;
    const published = hub.publish(topic, timed ? stamped(load.size) : shared);
    if (i % 4096 === 0) context.out.progress("publishing", i, load.msgs);
    if (!load.stored) {
      // A plain publish resolves once the connection took it: awaiting each is backpressure.
      await published;
      continue;
    }
    // A stored one resolves once stored: a window of them shares the stream's syncs.
    inFlight.push(published);
    if (inFlight.length >= WINDOW) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
}

function loadOf(context: Context): { msgs: number; size: number } {
  return { msgs: intOption(context, "msgs", 100_000), size: intOption(context, "size", 128, 16) };
}

/** A topic of this run alone, so that two benches never meet. */
function benchTopic(kind: string): string {
  return `dockipc.bench.${kind}.${Math.random().toString(36).slice(2, 10)}`;
}

const pub: Command = {
  name: "bench pub",
  summary: "Publish as fast as the server takes messages",
  usage: "",
  arity: [0, 0],
  options: LOAD,
  examples: [["bench pub -n 200000 --size 64", "200,000 messages of 64 bytes"]],
  async run(context): Promise<number> {
    const load = loadOf(context);
    await using hub = await connect(context);
    const start = performance.now();
    await publishAll(context, hub, benchTopic("pub"), { ...load, stamp: false });
    await hub.flush();
    await report(context, {
      workload: "pub",
      ...load,
      seconds: (performance.now() - start) / 1000,
    });
    return 0;
  },
};

const sub: Command = {
  name: "bench sub",
  summary: "One publisher to one subscriber through the server: rate and publish→receive latency",
  usage: "",
  arity: [0, 0],
  options: LOAD,
  examples: [["bench sub -n 100000", "Pub/sub 1 → 1, 128-byte messages"]],
  async run(context): Promise<number> {
    const load = loadOf(context);
    const topic = benchTopic("sub");
    await using publisher = await connect(context);
    await using subscriber = await connect(context);
    const subscription = subscriber.subscribe(topic, { buffer: 4096 });
    await subscriber.flush();
    const samples = new Float64Array(Math.ceil(load.msgs / STAMP_EVERY));
    let timed = 0;
    /** Sends `msgs` through and takes them; resolves with how many arrived. */
    const round = async (msgs: number): Promise<number> => {
      timed = 0;
      const receiving = (async () => {
        // next() rather than for-await: leaving a for-await would end the subscription.
        let n = 0;
        for (; n < msgs; n++) {
          const { done, value } = await subscription.next();
          if (done) break;
          const sent = stampOf(value.data);
          if (sent !== undefined) samples[timed++] = performance.now() - sent;
        }
        return n;
      })();
      await publishAll(context, publisher, topic, { msgs, size: load.size, stamp: true });
      return await receiving;
    };
    // A fifth of the load first, off the clock, as bench/ warms up before it measures.
    await round(Math.max(1, Math.floor(load.msgs / 5)));
    const start = performance.now();
    const received = await round(load.msgs);
    const seconds = (performance.now() - start) / 1000;
    await report(context, {
      workload: "sub",
      ...load,
      msgs: received,
      seconds,
      latency: percentiles(samples.subarray(0, timed)),
    });
    return 0;
  },
};

const req: Command = {
  name: "bench req",
  summary: "Requests one at a time to a responder through the server: round trips and latency",
  usage: "",
  arity: [0, 0],
  options: LOAD,
  examples: [["bench req -n 20000", "20,000 round trips"]],
  async run(context): Promise<number> {
    const load = loadOf(context);
    const topic = benchTopic("req");
    await using responder = await connect(context);
    await using requester = await connect(context);
    responder.handle(topic, (m) => m.data);
    await responder.flush();
    const samples = new Float64Array(load.msgs);
    const data = new Uint8Array(load.size);
    const start = performance.now();
    let n = 0;
    for (; n < load.msgs && !context.signal.aborted; n++) {
      const t = performance.now();
      await requester.request(topic, data);
      samples[n] = performance.now() - t;
      if (n % 256 === 0) context.out.progress("requesting", n, load.msgs);
    }
    const seconds = (performance.now() - start) / 1000;
    await report(context, {
      workload: "req",
      ...load,
      msgs: n,
      seconds,
      latency: percentiles(samples.subarray(0, n)),
    });
    return 0;
  },
};

const stream: Command = {
  name: "bench stream",
  summary: "Publish to a stored stream (acknowledged), then consume it with acks",
  usage: "",
  arity: [0, 0],
  options: {
    durability: {
      type: "string",
      arg: "SYNC",
      help: "The stream's durability: always (default), batch or none",
    },
    ...LOAD,
  },
  examples: [["bench stream -n 50000 --durability none", "A stream without fsync"]],
  async run(context): Promise<number> {
    const load = loadOf(context);
    const durability = (stringOption(context, "durability") ?? "always") as
      | "always"
      | "batch"
      | "none";
    const topic = benchTopic("stream");
    const name = topic.replaceAll(".", "_");
    await using hub = await connect(context);
    await hub.addStream({ name, subjects: [topic], durability });
    try {
      let start = performance.now();
      await publishAll(context, hub, topic, { ...load, stamp: false, stored: true });
      await report(context, {
        workload: `stream publish (${durability})`,
        ...load,
        seconds: (performance.now() - start) / 1000,
      });
      start = performance.now();
      const consumer = await hub.consume(name, { durable: "bench", buffer: 1024 });
      let n = 0;
      for await (const m of consumer) {
        void m.ack();
        if (++n % 256 === 0) context.out.progress("consuming", n, load.msgs);
        if (n === load.msgs || context.signal.aborted) break;
      }
      await consumer.close();
      await report(context, {
        workload: "stream consume (ack each)",
        ...load,
        msgs: n,
        seconds: (performance.now() - start) / 1000,
      });
    } finally {
      await hub.deleteStream(name);
    }
    return 0;
  },
};

/** The benchmark commands. */
export const BENCH_COMMANDS: readonly Command[] = [pub, sub, req, stream];
