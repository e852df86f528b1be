/**
 * Stored streams across processes, 64 B messages, against NATS JetStream and Redis Streams in
 * the same run. A hub server with a store runs in a child process of the same runtime on a unix
 * socket; each measurement's clients run in a fresh child process (`connectHub`, the official
 * `nats` client, the `redis` client).
 *
 * Workloads:
 * - stored publish, 256 in flight: our `"batch"` stream (each publish resolves after the sync that
 *   follows within 10 ms) and `"always"` stream (synced, group commit), JetStream (file storage,
 *   `js.publish()`), Redis `XADD` (256 pipelined, `appendfsync everysec`);
 * - stored publish, 1 in flight: our `"always"` stream (each publish synced before it resolves)
 *   and `"none"` stream (written, not synced: what JetStream's default does), JetStream (which
 *   syncs its files every two minutes, not per message);
 * - consume with an ack per message, from a stream filled beforehand: a durable reader over the
 *   socket acking each message (acks not awaited one by one, as NATS's `ack()` is not), of a
 *   `"none"` stream (acks written, not synced, as Redis's and JetStream's are) and of an
 *   `"always"` one (acks synced), a JetStream pull consumer with `ack()`, Redis `XREADGROUP` of
 *   256 and an `XACK` per message;
 * - end-to-end latency, one message at a time: from `publish()` to the consumer's hands, p50 and
 *   p99, ours on a `"none"` and an `"always"` stream, JetStream's.
 *
 * Ceilings in the same run: the write-ahead log alone, in the client's process, appending 64 B
 * records with the same sync and as many in flight. A stored publish does that and a socket
 * round trip besides, so none can beat it. With one in flight the round trip adds its whole time,
 * and the fsync of a process woken by its socket takes longer than one in a loop: that row's
 * ceiling is measured, a server on the runtime's own socket API that appends each message to an
 * `"always"` log and then echoes it (`CEILING`).
 *
 * Usage: `<runtime> bench/stream.ts [--repeats N] [--only TEXT]`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import process from "node:process";
import { connectHub, Hub, type RemoteHub, serveHub } from "../src/hub/mod.ts";
import { Wal } from "../src/wal/mod.ts";
import type { SyncMode } from "../src/wal/mod.ts";
import {
  human,
  median,
  printTable,
  repeatsArg,
  rotated,
  type Row,
  rt,
  runSelf,
  scriptArgs,
  spawnSelf,
  timedLoop,
  untilReady,
  WARM_MS,
} from "./_harness.ts";
import { implFor } from "./_peers.ts";
import { natsConnect, type Started, startNats, startRedis } from "./_servers.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const args = scriptArgs();
const payload = new Uint8Array(64);
const OURS = "dockipc";
const JETSTREAM = "JetStream";
const REDIS = "Redis Streams";
const WAL = "WAL alone";
/**
 * The ceiling of a stored publish from another process, one at a time: a server on the
 * runtime's own socket API that appends each 64 B message to the log (`"always"`) and then echoes
 * it. Measured rather than added up: an fsync in a process woken by its socket takes longer here
 * than one in a loop (330 against 180 µs on this machine).
 */
const CEILING = 'the log, "always", behind a raw socket (ceiling)';
/**
 * Messages filled in before a consume measurement: the first half at most is the untimed
 * warm-up (`WARM_MS`, as every timed loop here has), the rest is timed.
 */
const FILL = 120_000;

/** The part of the `nats` client's JetStream the benchmark uses. */
interface JetStreamLike {
  publish(subject: string, data: Uint8Array): Promise<{ seq: number }>;
  consumers: {
    get(stream: string, durable: string): Promise<{
      consume(o: { max_messages: number }): Promise<
        AsyncIterable<{ data: Uint8Array; ack(): void }> & { stop(): void }
      >;
    }>;
  };
}
interface JetStreamManagerLike {
  streams: {
    add(o: { name: string; subjects: string[]; storage: string }): Promise<unknown>;
    delete(name: string): Promise<unknown>;
  };
  consumers: {
    add(stream: string, o: { durable_name: string; ack_policy: string }): Promise<unknown>;
  };
}
interface NatsJs {
  jetstream(): JetStreamLike;
  jetstreamManager(): Promise<JetStreamManagerLike>;
  drain(): Promise<void>;
}

/** The `redis` client's raw command call. */
interface RedisRaw {
  sendCommand(args: (string | Buffer)[]): Promise<unknown>;
  quit(): Promise<unknown>;
}

async function redisRaw(path: string): Promise<RedisRaw> {
  const redis = await import("redis") as unknown as {
    createClient(o: { socket: { path: string } }): RedisRaw & {
      connect(): Promise<unknown>;
      on(e: "error", l: (err: unknown) => void): unknown;
    };
  };
  const client = redis.createClient({ socket: { path } });
  client.on("error", (err: unknown) => console.error("redis client:", err));
  await client.connect();
  return client;
}

async function jetstream(
  port: string,
): Promise<{ nc: NatsJs; js: JetStreamLike; jsm: JetStreamManagerLike }> {
  const nc = await natsConnect(port) as unknown as NatsJs;
  const jsm = await nc.jetstreamManager();
  return { nc, js: nc.jetstream(), jsm };
}

/** A name no earlier measurement used: each gets a stream of its own. */
const fresh = (prefix: string): string =>
  `${prefix}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** Stored publishes per second with `inFlight` outstanding. */
async function publishes(
  impl: string,
  where: string,
  inFlight: number,
  sync: SyncMode,
): Promise<number> {
  const loop = { count: inFlight === 1 ? 50_000 : 1_000_000, ms: 3000, lanes: inFlight, every: 64 };
  if (impl === WAL) {
    const dir = await rt.fs.makeTempDir("dk-streambench-wal-");
    const wal = await Wal.open(dir, { sync });
    const { n, ms } = await timedLoop(() => wal.append(payload), loop);
    await wal.close();
    await rt.fs.remove(dir, { recursive: true });
    return n / (ms / 1000);
  }
  if (impl === CEILING) {
    const peer = await (await implFor("raw", rt.name)).connect(where);
    const { n, ms } = await timedLoop(peer.tripper(payload), loop);
    await peer.shutdown();
    peer.close();
    return n / (ms / 1000);
  }
  if (impl === OURS) {
    const hub = await connectHub(where);
    const name = fresh("p");
    await hub.addStream({ name, subjects: [`${name}.>`], durability: sync });
    const topic = `${name}.x`;
    const { n, ms } = await timedLoop(() => hub.publish(topic, payload), loop);
    await hub.deleteStream(name);
    await hub.close();
    return n / (ms / 1000);
  }
  if (impl === JETSTREAM) {
    const { nc, js, jsm } = await jetstream(where);
    const name = fresh("p");
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: "file" });
    const topic = `${name}.x`;
    const { n, ms } = await timedLoop(() => js.publish(topic, payload), loop);
    await jsm.streams.delete(name);
    await nc.drain();
    return n / (ms / 1000);
  }
  const redis = await redisRaw(where);
  const key = fresh("p");
  const data = Buffer.from(payload);
  const { n, ms } = await timedLoop(() => redis.sendCommand(["XADD", key, "*", "d", data]), loop);
  await redis.sendCommand(["DEL", key]);
  await redis.quit();
  return n / (ms / 1000);
}

/**
 * A consumer's clock: messages are counted from the end of the warm-up (`WARM_MS`, or half of
 * `FILL`, whichever comes first) to the last.
 */
class ConsumeClock {
  readonly #warmEnd = performance.now() + WARM_MS;
  #start = 0;
  #from = -1;
  #got = 0;

  /** `n` more messages were consumed; whether all `FILL` were. */
  add(n: number): boolean {
    if (this.#from < 0 && (performance.now() >= this.#warmEnd || this.#got >= FILL / 2)) {
      this.#start = performance.now();
      this.#from = this.#got;
    }
    return (this.#got += n) >= FILL;
  }

  /** Messages per second past the warm-up. */
  rate(): number {
    return (this.#got - this.#from) / ((performance.now() - this.#start) / 1000);
  }
}

/** Messages consumed per second, each acknowledged, from a stream of `FILL` filled beforehand. */
async function consumes(impl: string, where: string, sync: SyncMode): Promise<number> {
  const name = fresh("c");
  const topic = `${name}.x`;
  const lanes = { count: FILL, ms: 60_000, lanes: 256, every: 64 };
  if (impl === OURS) {
    const hub = await connectHub(where);
    await hub.addStream({ name, subjects: [`${name}.>`], durability: sync });
    await fill(() => hub.publish(topic, payload), lanes);
    const reader = await hub.consume(name, { durable: "w", buffer: 1024, maxAckPending: 4096 });
    let acks: Promise<void>[] = [];
    const clock = new ConsumeClock();
    for await (const m of reader) {
      acks.push(m.ack());
      if (acks.length === 1024) {
        await Promise.all(acks);
        acks = [];
      }
      if (clock.add(1)) break;
    }
    await Promise.all(acks);
    const rate = clock.rate();
    await hub.deleteStream(name);
    await hub.close();
    return rate;
  }
  if (impl === JETSTREAM) {
    const { nc, js, jsm } = await jetstream(where);
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: "file" });
    await fill(() => js.publish(topic, payload), lanes);
    await jsm.consumers.add(name, { durable_name: "w", ack_policy: "explicit" });
    const consumer = await js.consumers.get(name, "w");
    const clock = new ConsumeClock();
    const messages = await consumer.consume({ max_messages: 1024 });
    for await (const m of messages) {
      m.ack();
      if (clock.add(1)) break;
    }
    const rate = clock.rate();
    messages.stop();
    await jsm.streams.delete(name);
    await nc.drain();
    return rate;
  }
  const redis = await redisRaw(where);
  const data = Buffer.from(payload);
  await fill(() => redis.sendCommand(["XADD", name, "*", "d", data]), lanes);
  await redis.sendCommand(["XGROUP", "CREATE", name, "g", "0"]);
  const clock = new ConsumeClock();
  for (let done = false; !done;) {
    const reply = await redis.sendCommand([
      "XREADGROUP",
      "GROUP",
      "g",
      "c",
      "COUNT",
      "256",
      "STREAMS",
      name,
      ">",
    ]) as [string, [string, unknown][]][] | Record<string, [string, unknown][]> | null;
    // The client gives a reply of one stream as `{ [key]: entries }`, or in RESP2's arrays.
    const entries = (Array.isArray(reply) ? reply[0]?.[1] : Object.values(reply ?? {})[0]) ?? [];
    await Promise.all(entries.map(([id]) => redis.sendCommand(["XACK", name, "g", id])));
    done = clock.add(entries.length);
  }
  const rate = clock.rate();
  await redis.sendCommand(["DEL", name]);
  await redis.quit();
  return rate;
}

/** Publishes `count` messages, `lanes` at a time, untimed. */
async function fill(
  publish: (i: number) => Promise<unknown>,
  { count, lanes }: { count: number; lanes: number },
): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: lanes }, async () => {
    while (i < count) await publish(i++);
  }));
}

/** Latency from publish to the consumer's hands, one message at a time: [p50, p99] in µs. */
async function latency(impl: string, where: string, sync: SyncMode): Promise<number[]> {
  const name = fresh("l");
  const topic = `${name}.x`;
  const samples: number[] = [];
  const warmEnd = performance.now() + WARM_MS;
  const count = 3000;
  if (impl === OURS) {
    const pub = await connectHub(where);
    const sub: RemoteHub = await connectHub(where);
    await pub.addStream({ name, subjects: [`${name}.>`], durability: sync });
    const reader = await sub.consume(name, { durable: "w" });
    while (samples.length < count) {
      const t = performance.now();
      await pub.publish(topic, payload);
      const { value } = await reader.next();
      void value!.ack();
      if (t >= warmEnd) samples.push(performance.now() - t);
    }
    await reader.close();
    await pub.deleteStream(name);
    await Promise.all([pub.close(), sub.close()]);
  } else {
    const { nc, js, jsm } = await jetstream(where);
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: "file" });
    await jsm.consumers.add(name, { durable_name: "w", ack_policy: "explicit" });
    const messages = await (await js.consumers.get(name, "w")).consume({ max_messages: 64 });
    const iterator = messages[Symbol.asyncIterator]();
    while (samples.length < count) {
      const t = performance.now();
      await js.publish(topic, payload);
      const { value } = await iterator.next();
      value.ack();
      if (t >= warmEnd) samples.push(performance.now() - t);
    }
    messages.stop();
    await jsm.streams.delete(name);
    await nc.drain();
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
  return [at(0.5) * 1000, at(0.99) * 1000];
}

/** One measurement in a fresh process: see `runSelf`. */
async function measure(clientArgs: string[]): Promise<unknown> {
  return await runSelf(SCRIPT, ["client", ...clientArgs]);
}

if (args[0] === "server") {
  await serveHub(new Hub({ store: args[1]! }), args[2]!);
  console.log("ready");
} else if (args[0] === "ceiling") {
  const wal = await Wal.open(args[1]!, { sync: "always" });
  const server = await (await implFor("raw", rt.name)).listen(args[2]!);
  console.log("ready");
  while (true) void (await server.accept()).keepThenEcho((chunk) => wal.append(chunk));
} else if (args[0] === "client") {
  const [, kind, impl, where, k, sync] = args as [string, string, string, string, string, SyncMode];
  const out = kind === "publish"
    ? { rate: await publishes(impl, where, Number(k), sync) }
    : kind === "consume"
    ? { rate: await consumes(impl, where, sync) }
    : { latency: await latency(impl, where, sync) };
  console.log(JSON.stringify(out));
  process.exit(0); // a peer's client may keep a timer of its own
} else {
  const repeats = repeatsArg(3);
  const dir = await rt.fs.makeTempDir("dk-streambench-");
  const hubPath = `${dir}/hub.sock`;
  const server = spawnSelf(SCRIPT, ["server", `${dir}/store`, hubPath]);
  const ceilingPath = `${dir}/ceiling.sock`;
  const ceiling = spawnSelf(SCRIPT, ["ceiling", `${dir}/ceiling-log`, ceilingPath]);
  const started: Started[] = [];
  const rows: Row[] = [];
  const latencies: { impl: string; p50: number[]; p99: number[] }[] = [];
  try {
    await untilReady(server, "the hub");
    await untilReady(ceiling, "the ceiling's server");
    const nats = await startNats(dir, { jetstream: true });
    started.push(nats);
    const redis = await startRedis(dir, { appendfsync: "everysec" });
    started.push(redis);
    const where: Record<string, string> = {
      [OURS]: hubPath,
      [`${OURS}, "always"`]: hubPath,
      [`${OURS}, "batch"`]: hubPath,
      [`${OURS}, "none"`]: hubPath,
      [JETSTREAM]: nats.where,
      [REDIS]: redis.where,
      [`${WAL}, "batch"`]: "",
      [`${WAL}, "always"`]: "",
      [`${WAL}, "none"`]: "",
      [CEILING]: ceilingPath,
    };
    const impl = (name: string): string => name.replace(/, "(always|batch|none)"$/, "");
    const syncOf = (name: string, fallback: SyncMode): SyncMode =>
      (/"(always|batch|none)"$/.exec(name)?.[1] as SyncMode | undefined) ?? fallback;
    const rate = async (a: string[]) => ((await measure(a)) as { rate: number }).rate;
    rows.push(
      ...await rotated(
        { name: "stored publish, 256 in flight", unit: "msg/s" },
        [
          JETSTREAM,
          REDIS,
          `${OURS}, "batch"`,
          `${OURS}, "always"`,
          `${WAL}, "batch"`,
          `${WAL}, "always"`,
        ],
        repeats,
        (name) => rate(["publish", impl(name), where[name]!, "256", syncOf(name, "batch")]),
      ),
      ...await rotated(
        { name: "stored publish, 1 in flight", unit: "msg/s" },
        [
          JETSTREAM,
          `${OURS}, "none"`,
          `${OURS}, "always"`,
          `${WAL}, "none"`,
          `${WAL}, "always"`,
          CEILING,
        ],
        repeats,
        (name) => rate(["publish", impl(name), where[name]!, "1", syncOf(name, "always")]),
      ),
      ...await rotated(
        { name: "consume, an ack per message", unit: "msg/s" },
        [REDIS, JETSTREAM, `${OURS}, "none"`, `${OURS}, "always"`],
        repeats,
        (name) => rate(["consume", impl(name), where[name]!, "0", syncOf(name, "none")]),
      ),
    );
    for (const name of [JETSTREAM, `${OURS}, "none"`, `${OURS}, "always"`]) {
      const p50: number[] = [];
      const p99: number[] = [];
      for (let i = 0; i < repeats; i++) {
        const out = await measure([
          "latency",
          impl(name),
          where[name]!,
          "1",
          syncOf(name, "batch"),
        ]);
        const [a, b] = (out as { latency: number[] }).latency;
        p50.push(a!);
        p99.push(b!);
      }
      latencies.push({ impl: name, p50, p99 });
    }
  } finally {
    server.kill("SIGTERM");
    ceiling.kill("SIGTERM");
    await Promise.all([server.status, ceiling.status]);
    for (const peer of started) await peer.stop();
    await rt.fs.remove(dir, { recursive: true });
  }
  printTable(rows, [JETSTREAM, REDIS]);
  if (latencies.length > 0) {
    console.log("\n| publish → consumer, one at a time | p50 | p99 |\n|---|---|---|");
    for (const { impl, p50, p99 } of latencies) {
      console.log(`| ${impl} | ${human(median(p50))} µs | ${human(median(p99))} µs |`);
    }
  }
}
