/**
 * The hub across processes, 64 B messages. A hub server runs in a child process of the same
 * runtime on a unix socket (`serveHub`); the publisher and the subscribers are clients
 * (`connectHub`) in a fresh child process per measurement, each on its own connection.
 * Workloads: 1 publisher → 1 subscriber and → 4 subscribers (messages delivered per second, the
 * publisher awaiting each `publish()`, subscriptions with `"block"`, so nothing is dropped; the
 * timed burst is sized from the warm-up's rate to last about 1.5 s), and request/reply round
 * trips per second with 1 and 64 requests in flight.
 *
 * Request/reply with 1 in flight is also measured paired against NATS: one child alternates
 * blocks of the hub's round trips with blocks of NATS's (`pairedRatios`).
 *
 * Its ceiling in the same run: a raw relay, a child process that writes each connection's bytes
 * on to the other through the runtime's own socket API (`relay()`). A round trip through it
 * takes the hub's four hops between processes and does nothing else, so no hub, ours or NATS,
 * can beat it at 1 in flight.
 *
 * Peers in the same run: NATS core (`nats-server` from Debian on loopback TCP, the official
 * `nats` client, `publish()` then a `flush()` every 1,000 messages) and Redis 7 pub/sub
 * (`redis-server` from Debian on a unix socket, the `redis` client, 1,000 `PUBLISH` commands
 * pipelined at a time). Redis has no request/reply. Every loop is bounded by a count and every
 * measurement follows `WARM_MS` of the same workload off the clock.
 *
 * Usage: `<runtime> bench/hub_remote.ts [--repeats N]`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import process from "node:process";
import { connectHub, Hub, type RemoteHub, serveHub } from "../src/hub/mod.ts";
import { deadline } from "../src/internal/async.ts";
import {
  Arrivals,
  type Caller,
  type Paired,
  pairedRatios,
  pairedRuns,
  printPaired,
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
import type { RuntimeName } from "../scripts/_runtimes.ts";
import { implFor } from "./_peers.ts";
import { natsConnect, type NatsLike, type Started, startNats, startRedis } from "./_servers.ts";

const SCRIPT = new URL(import.meta.url).pathname;

/**
 * One measurement, its clients in a fresh process on this process's CPU. Each impl's clients
 * then start from an empty heap: measured in one process, the garbage of the Redis and NATS
 * clients (a heap past 1 GB) made the next measurement pay for major collections of up to
 * 2.9 s, on a CPU where V8's collector has no second core to run on.
 */
async function measure(clientArgs: string[]): Promise<number> {
  return ((await runSelf(SCRIPT, ["client", ...clientArgs])) as { rate: number }).rate;
}
const args = scriptArgs();
/** The ceiling of request/reply through a third process: see `relay()`. */
const RELAY = "raw relay";
const payload = new Uint8Array(64);
const TOPIC = "bench.x";

interface RedisLike {
  on(event: "error", listener: (err: unknown) => void): unknown;
  connect(): Promise<unknown>;
  publish(channel: string, message: Uint8Array): Promise<number>;
  subscribe(channel: string, listener: (m: Uint8Array) => void, buffers: true): Promise<void>;
  quit(): Promise<unknown>;
}

async function redisClient(path: string): Promise<RedisLike> {
  const redis = await import("redis") as unknown as {
    createClient(o: { socket: { path: string } }): RedisLike;
  };
  const client = redis.createClient({ socket: { path } });
  client.on("error", (err: unknown) => console.error("redis client:", err));
  await client.connect();
  return client;
}

/** How long the timed burst of a pub/sub measurement lasts, about, and its fewest messages. */
const TIMED_MS = 1500;
const MIN_TIMED = 20_000;

/**
 * Deliveries per second: one publisher, `fanOut` subscribers, after `WARM_MS` of the same
 * untimed, a burst timed that lasts about `TIMED_MS`, of `n` messages at most.
 */
async function fanOut(
  impl: string,
  where: string,
  fanOutCount: number,
  n: number,
): Promise<number> {
  const received = new Arrivals();
  const hit = (): void => received.add(1);
  let publish: (i: number) => Promise<unknown> | void;
  let close: () => Promise<unknown>;
  if (impl === "dockipc hub") {
    const subs: RemoteHub[] = [];
    for (let i = 0; i < fanOutCount; i++) subs.push(await connectHub(where));
    for (const c of subs) {
      const sub = c.subscribe(TOPIC, { buffer: 4096 });
      void (async () => {
        for await (const _ of sub) hit();
      })();
      await c.flush();
    }
    const pub = await connectHub(where);
    publish = () => pub.publish(TOPIC, payload);
    close = () => Promise.all([...subs, pub].map((c) => c[Symbol.asyncDispose]()));
  } else if (impl === "NATS") {
    const subs: NatsLike[] = [];
    for (let i = 0; i < fanOutCount; i++) {
      const nc = await natsConnect(where);
      nc.subscribe(TOPIC, { callback: () => hit() });
      await nc.flush();
      subs.push(nc);
    }
    const pub = await natsConnect(where);
    publish = (i) => {
      pub.publish(TOPIC, payload);
      if (i % 1000 === 999) return pub.flush();
    };
    close = () => Promise.all([...subs, pub].map((c) => c.drain()));
  } else {
    const subs: RedisLike[] = [];
    for (let i = 0; i < fanOutCount; i++) {
      const c = await redisClient(where);
      await c.subscribe(TOPIC, () => hit(), true);
      subs.push(c);
    }
    const pub = await redisClient(where);
    const message = Buffer.from(payload); // the client takes strings and Buffers only
    let batch: Promise<number>[] = [];
    publish = (i) => {
      batch.push(pub.publish(TOPIC, message));
      if (i % 1000 === 999) {
        const all = Promise.all(batch);
        batch = [];
        return all;
      }
    };
    close = () => Promise.all([...subs, pub].map((c) => c.quit()));
  }
  let i = 0;
  const burst = async (k: number): Promise<void> => {
    for (const stop = i + k; i < stop; i++) {
      const p = publish(i);
      if (p !== undefined) await p;
    }
    const arrived = received.until(i * fanOutCount);
    if (arrived) await deadline(arrived, 60_000, { op: "wait for every delivery" });
  };
  const warmStart = performance.now();
  while (performance.now() - warmStart < WARM_MS) await burst(1000);
  // The timed burst lasts about TIMED_MS at the warm-up's rate: long enough that one pause of
  // this shared machine does not decide the figure, and the same length for every peer.
  const warmRate = i / (performance.now() - warmStart);
  const timed = Math.max(MIN_TIMED, Math.min(n, Math.round(warmRate * TIMED_MS)));
  const start = performance.now();
  await burst(timed);
  const rate = (timed * fanOutCount) / ((performance.now() - start) / 1000);
  await close();
  return rate;
}

/** A responder and a requester of `impl`, each on its own connection: one call is a round trip. */
async function requester(
  impl: string,
  where: string,
): Promise<Caller> {
  if (impl === RELAY) {
    // The runtime's own sockets, one message in flight: the requester's bytes go through the
    // relay process to the responder, which sends them back the same way.
    const raw = await implFor("raw", rt.name as RuntimeName);
    const requester = await raw.connect(where);
    const responder = await raw.connect(where);
    const echoing = responder.echo();
    const trip = requester.tripper(payload);
    return {
      call: trip,
      close: async () => {
        await requester.shutdown();
        await echoing;
        requester.close();
        responder.close();
      },
    };
  }
  if (impl === "dockipc hub") {
    const responder = await connectHub(where);
    responder.handle("bench.echo", (m) => m.data);
    await responder.flush();
    const requester = await connectHub(where);
    return {
      call: () => requester.request("bench.echo", payload),
      close: () => Promise.all([responder.close(), requester.close()]),
    };
  }
  const responder = await natsConnect(where);
  responder.subscribe("bench.echo", { callback: (_, m) => void m.respond(m.data) });
  await responder.flush();
  const requester = await natsConnect(where);
  return {
    call: () => requester.request("bench.echo", payload, { timeout: 10_000 }),
    close: () => Promise.all([responder.drain(), requester.drain()]),
  };
}

/** Request/reply round trips per second with `inFlight` outstanding. */
async function requests(impl: string, where: string, inFlight: number): Promise<number> {
  const count = inFlight === 1 ? 20_000 : 100_000;
  const { call, close } = await requester(impl, where);
  const { n, ms } = await timedLoop(call, { count, ms: 3000, lanes: inFlight, every: 64 });
  const rate = n / (ms / 1000);
  await close();
  return rate;
}

/**
 * Request/reply with 1 in flight, paired: blocks of NATS round trips and of `impl`'s in turn
 * (`pairedRatios`), so drift in the machine's speed falls on both alike. `impl`'s rate ÷ NATS's.
 */
async function pairedRequests(impl: string, where: string, natsWhere: string): Promise<number[]> {
  const measured = await requester(impl, where);
  const nats = await requester("NATS", natsWhere);
  const ratios = await pairedRatios(nats.call, measured.call, 3000);
  await Promise.all([measured.close(), nats.close()]);
  return ratios;
}

/**
 * The relay: the fewest steps a request/reply through a third process can take, as a ceiling
 * for the hub and NATS. Connections come in pairs (requester, then responder), and each side's
 * bytes are written on to the other by the runtime's own socket API.
 */
async function relay(path: string): Promise<void> {
  const server = await (await implFor("raw", rt.name as RuntimeName)).listen(path);
  console.log("ready");
  for (;;) {
    const a = await server.accept();
    const b = await server.accept();
    void Promise.all([a.echo(b), b.echo(a)]).finally(() => {
      a.close();
      b.close();
    });
  }
}

if (args[0] === "server") {
  await serveHub(new Hub(), args[1]!);
  console.log("ready");
} else if (args[0] === "relay") {
  await relay(args[1]!);
} else if (args[0] === "client") {
  // One measurement: [kind, impl, where, fan-out count or in flight, messages].
  const [, kind, impl, where, k, n] = args as [string, string, string, string, string, string?];
  if (kind === "paired") {
    // [paired, impl, its address, NATS address]
    console.log(JSON.stringify({ ratios: await pairedRequests(impl, where, k) }));
    process.exit(0);
  }
  const rate = kind === "fanout"
    ? await fanOut(impl, where, Number(k), Number(n))
    : await requests(impl, where, Number(k));
  console.log(JSON.stringify({ rate }));
  process.exit(0); // a peer's client may keep a timer of its own
} else {
  const repeats = repeatsArg(3);
  const dir = await rt.fs.makeTempDir("dk-hubbench-");
  const hubPath = `${dir}/hub.sock`;
  const relayPath = `${dir}/relay.sock`;
  const server = spawnSelf(SCRIPT, ["server", hubPath]);
  const relayServer = spawnSelf(SCRIPT, ["relay", relayPath]);
  const started: Started[] = [];
  const rows: Row[] = [];
  const paired: Paired[] = [];
  try {
    await untilReady(server, "the hub");
    await untilReady(relayServer, "the relay");
    const nats = await startNats(dir);
    started.push(nats);
    const redis = await startRedis(dir);
    started.push(redis);
    const paths: Record<string, string> = {
      "dockipc hub": hubPath,
      [RELAY]: relayPath,
      NATS: nats.where,
      Redis: redis.where,
    };
    const where = (impl: string): string => paths[impl]!;
    for (const [name, count, n] of [["1 → 1", 1, 4_000_000], ["1 → 4", 4, 1_000_000]] as const) {
      rows.push(
        ...await rotated(
          { name: `pub/sub ${name}, 64 B`, unit: "msg/s" },
          ["NATS", "Redis", "dockipc hub"],
          repeats,
          (impl) => measure(["fanout", impl, where(impl), String(count), String(n)]),
        ),
      );
    }
    for (const inFlight of [1, 64]) {
      rows.push(
        ...await rotated(
          { name: `request/reply, ${inFlight} in flight`, unit: "rt/s" },
          // The relay's one-at-a-time round trips are a ceiling for 1 in flight only.
          inFlight === 1 ? ["NATS", RELAY, "dockipc hub"] : ["NATS", "dockipc hub"],
          repeats,
          (impl) => measure(["requests", impl, where(impl), String(inFlight)]),
        ),
      );
    }
    paired.push(
      ...await pairedRuns(["dockipc hub", RELAY], repeats, async (impl) => {
        const out = await runSelf(SCRIPT, ["client", "paired", impl, where(impl), nats.where]);
        return (out as { ratios: number[] }).ratios;
      }),
    );
  } finally {
    for (const child of [server, relayServer]) {
      child.kill("SIGTERM");
      await child.status;
    }
    for (const peer of started) await peer.stop();
    await rt.fs.remove(dir, { recursive: true });
  }
  printTable(rows, "NATS");
  printPaired("request/reply, 1 in flight, paired: ÷ NATS", paired);
}
