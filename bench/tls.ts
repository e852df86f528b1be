/**
 * TLS and permissions, 64 B messages. The servers run in a child process of the same runtime
 * (`serve()` echoing, and `serveHub()`, each on plain TCP and on TLS, with the same users); the
 * clients in a fresh child process per measurement. Certificates come from openssl, made for
 * the run (`scripts/_certs.ts`).
 *
 * - RPC, 1 request in flight: paired (`pairedRatios`), plain TCP against TLS: TLS ÷ TCP. Plain
 *   TCP is the ceiling: TLS does all that TCP does, and encrypts.
 * - pub/sub 1 → 1 through the served hub, the publisher awaiting each `publish()` and flushing
 *   every 1,000: messages delivered per second over TCP and over TLS.
 * - Against NATS over TLS (`nats-server --tls` from Debian, the official client trusting the
 *   run's CA), same client runtime: pub/sub 1 → 1 as above; request/reply with 1 in flight,
 *   paired, through the served hub (a broker between two clients, as NATS is) and with `serve()`
 *   (the client talks to the server that answers: one hop less than any broker).
 * - Permissions: publishing through the served hub (unix socket) as a user with 100 publish
 *   rules (the topic matching the last) against a user with none, paired: blocks of 100
 *   publishes and a flush, so that the server has checked each one. Ruled ÷ plain.
 *
 * Usage: `<runtime> bench/tls.ts [--repeats N]`.
 *
 * @module
 */

import process from "node:process";
import { readFileSync } from "node:fs";
import { connectHub, Hub, serveHub, type User } from "../src/hub/mod.ts";
import { dial, serve } from "../src/rpc/mod.ts";
import { formatAddress } from "../src/address.ts";
import { delay } from "../src/internal/async.ts";
import {
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
  WARM_MS,
} from "./_harness.ts";
import { natsConnect, type Started, startNats } from "./_servers.ts";
import { makeCerts } from "../scripts/_certs.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const args = scriptArgs();
const payload = new Uint8Array(64);
const TOPIC = "bench.x";

/** 100 publish rules; the benchmark's topic matches the last. */
const RULES = [
  ...Array.from({ length: 99 }, (_, i) => `team${i}.*.events`),
  "bench.*",
];
const USERS: User[] = [
  { name: "plain", token: "plain-token" },
  { name: "ruled", token: "ruled-token", publish: { allow: RULES } },
];

/** What the servers' child prints: where each server listens. */
interface Addresses {
  rpcTcp: string;
  rpcTls: string;
  hubTcp: string;
  hubTls: string;
  hubUnix: string;
}

/** The PEM files of the run, from the directory `scripts/_certs.ts` made them in. */
function pems(dir: string): { ca: string; cert: string; key: string } {
  const read = (name: string): string => readFileSync(`${dir}/${name}`, "utf8");
  return {
    ca: read("ca.pem"),
    cert: read("server.pem"),
    key: read("server.key"),
  };
}

/** The servers' child: RPC and the hub, each on TCP and TLS, until killed. */
async function servers(certDir: string, unixPath: string): Promise<void> {
  const { ca: _, ...tls } = pems(certDir);
  const echo = (request: Uint8Array): Uint8Array => request;
  const rpcTcp = await serve("tcp://127.0.0.1:0", echo);
  const rpcTls = await serve("tls://127.0.0.1:0", echo, { tls });
  const hub = new Hub();
  const hubTcp = await serveHub(hub, "tcp://127.0.0.1:0", { users: USERS });
  const hubTls = await serveHub(hub, "tls://127.0.0.1:0", {
    users: USERS,
    tls,
  });
  const hubUnix = await serveHub(hub, unixPath, { users: USERS });
  const at = (s: { addr: Parameters<typeof formatAddress>[0] }): string =>
    formatAddress(s.addr).replace("127.0.0.1", "localhost");
  const addresses: Addresses = {
    rpcTcp: at(rpcTcp),
    rpcTls: at(rpcTls),
    hubTcp: at(hubTcp),
    hubTls: at(hubTls),
    hubUnix: formatAddress(hubUnix.addr),
  };
  console.log(JSON.stringify(addresses));
}

/** An RPC client at `where` (TLS trusting the run's CA): one call, one round trip. */
async function rpcCaller(where: string, ca: string): Promise<Caller> {
  const client = await dial(
    where,
    where.startsWith("tls:") ? { tls: { ca } } : {},
  );
  return { call: () => client.request(payload), close: () => client.close() };
}

/** A NATS responder and requester over TLS: one call, one round trip. */
async function natsCaller(port: string, ca: string): Promise<Caller> {
  const responder = await natsConnect(port, { ca });
  responder.subscribe("bench.echo", {
    callback: (_, m) => void m.respond(m.data),
  });
  await responder.flush();
  const requester = await natsConnect(port, { ca });
  return {
    call: () => requester.request("bench.echo", payload, { timeout: 10_000 }),
    close: () => Promise.all([responder.drain(), requester.drain()]),
  };
}

/** One publisher and one subscriber: publish (a promise when it must be awaited), flush, count. */
interface PubSubPair {
  publish(): Promise<unknown> | void;
  flush(): Promise<unknown>;
  readonly received: number;
  close(): Promise<unknown>;
}

/** A publisher and a subscriber of the served hub at `where`, each its own connection. */
async function hubPair(where: string, ca: string): Promise<PubSubPair> {
  const options = {
    token: "plain-token",
    ...(where.startsWith("tls:") ? { tls: { ca } } : {}),
  };
  const sub = await connectHub(where, options);
  const pub = await connectHub(where, options);
  const subscription = sub.subscribe(TOPIC, { buffer: 4096 });
  await sub.flush();
  const pair = {
    received: 0,
    publish: () => pub.publish(TOPIC, payload),
    flush: () => pub.flush(),
    close: () => Promise.all([pub.close(), sub.close()]),
  };
  void (async () => {
    for await (const _ of subscription) pair.received++;
  })();
  return pair;
}

/** A publisher and a subscriber of NATS over TLS. */
async function natsPair(port: string, ca: string): Promise<PubSubPair> {
  const sub = await natsConnect(port, { ca });
  const pub = await natsConnect(port, { ca });
  const pair = {
    received: 0,
    publish: () => pub.publish(TOPIC, payload),
    flush: () => pub.flush(),
    close: () => Promise.all([pub.drain(), sub.drain()]),
  };
  sub.subscribe(TOPIC, { callback: () => void pair.received++ });
  await sub.flush();
  return pair;
}

/** Messages delivered per second from one publisher to one subscriber, flushing every 1,000. */
async function pubSub(pair: PubSubPair): Promise<number> {
  let sent = 0;
  const burst = async (k: number): Promise<void> => {
    for (const stop = sent + k; sent < stop; sent++) {
      const p = pair.publish();
      if (p !== undefined) await p;
      if (sent % 1000 === 999) await pair.flush();
    }
    await pair.flush();
    for (
      const end = Date.now() + 60_000;
      pair.received < sent && Date.now() < end;
    ) {
      await delay(1);
    }
  };
  const warmStart = performance.now();
  while (performance.now() - warmStart < WARM_MS) await burst(1000);
  // About 1.5 s at the warm-up's rate.
  const timed = Math.max(
    20_000,
    Math.round((sent / (performance.now() - warmStart)) * 1500),
  );
  const start = performance.now();
  await burst(timed);
  const rate = timed / ((performance.now() - start) / 1000);
  await pair.close();
  return rate;
}

/** A served hub's responder and requester at `where` over TLS: one call, one round trip. */
async function hubCaller(where: string, ca: string): Promise<Caller> {
  const options = { token: "plain-token", tls: { ca } };
  const responder = await connectHub(where, options);
  responder.handle("bench.echo", (m) => m.data);
  await responder.flush();
  const requester = await connectHub(where, options);
  return {
    call: () => requester.request("bench.echo", payload),
    close: () => Promise.all([responder.close(), requester.close()]),
  };
}

/** Publishing as the user with 100 rules ÷ as the user with none, paired, on the unix socket. */
async function permissions(where: string): Promise<number[]> {
  await using plain = await connectHub(where, { token: "plain-token" });
  await using ruled = await connectHub(where, { token: "ruled-token" });
  const block = (client: typeof plain) => (): Promise<void> => {
    for (let k = 0; k < 100; k++) void client.publish(TOPIC, payload);
    return client.flush();
  };
  return await pairedRatios(block(plain), block(ruled), 3000);
}

if (args[0] === "servers") {
  await servers(args[1]!, args[2]!);
} else if (args[0] === "client") {
  const [, kind, where, certDir, natsPort] = args as [
    string,
    string,
    string,
    string,
    string?,
  ];
  const { ca } = pems(certDir);
  let out: unknown;
  if (kind === "rpc") {
    // [rpc, TCP address, certs, TLS address]: TLS ÷ TCP
    const tcp = await rpcCaller(where, ca);
    const tls = await rpcCaller(natsPort!, ca);
    out = { ratios: await pairedRatios(tcp.call, tls.call, 3000) };
    await Promise.all([tcp.close(), tls.close()]);
  } else if (kind === "rpc-nats" || kind === "hub-nats") {
    // [kind, dockipc's TLS address, certs, NATS port]: dockipc ÷ NATS, both over TLS
    const tls = kind === "rpc-nats" ? await rpcCaller(where, ca) : await hubCaller(where, ca);
    const nats = await natsCaller(natsPort!, ca);
    out = { ratios: await pairedRatios(nats.call, tls.call, 3000) };
    await Promise.all([tls.close(), nats.close()]);
  } else if (kind === "pubsub") {
    out = { rate: await pubSub(await hubPair(where, ca)) };
  } else if (kind === "pubsub-nats") {
    out = { rate: await pubSub(await natsPair(where, ca)) };
  } else {
    out = { ratios: await permissions(where) };
  }
  console.log(JSON.stringify(out));
  process.exit(0); // the NATS client may keep a timer of its own
} else {
  const repeats = repeatsArg(3);
  const certs = makeCerts();
  const dir = await rt.fs.makeTempDir("dk-tlsbench-");
  const server = spawnSelf(SCRIPT, ["servers", certs.dir, `${dir}/hub.sock`]);
  const started: Started[] = [];
  const rows: Row[] = [];
  const paired: Paired[] = [];
  try {
    const lines = server.stdout!.pipeThrough(new TextDecoderStream())
      .getReader();
    const at = JSON.parse((await lines.read()).value!) as Addresses;
    const nats = await startNats(dir, {
      tls: { cert: `${certs.dir}/server.pem`, key: `${certs.dir}/server.key` },
    });
    started.push(nats);
    const client = async (
      ...rest: string[]
    ): Promise<Record<string, unknown>> =>
      await runSelf(SCRIPT, ["client", ...rest]) as Record<string, unknown>;
    const pubSubAt: Record<string, string[]> = {
      "dockipc hub, TCP": ["pubsub", at.hubTcp],
      "dockipc hub, TLS": ["pubsub", at.hubTls],
      "NATS, TLS": ["pubsub-nats", nats.where],
    };
    rows.push(
      ...await rotated(
        { name: "pub/sub 1 → 1, 64 B", unit: "msg/s" },
        Object.keys(pubSubAt),
        repeats,
        async (impl) => {
          const [kind, where] = pubSubAt[impl]!;
          return (await client(kind!, where!, certs.dir)).rate as number;
        },
      ),
    );
    const pairs: [string, string[]][] = [
      ["RPC over TLS ÷ over TCP", ["rpc", at.rpcTcp, certs.dir, at.rpcTls]],
      ["hub request/reply over TLS ÷ NATS's over TLS", [
        "hub-nats",
        at.hubTls,
        certs.dir,
        nats.where,
      ]],
      ["RPC over TLS ÷ NATS request/reply over TLS", [
        "rpc-nats",
        at.rpcTls,
        certs.dir,
        nats.where,
      ]],
      ["publish with 100 rules ÷ with none", [
        "permissions",
        at.hubUnix,
        certs.dir,
      ]],
    ];
    for (const [title, clientArgs] of pairs) {
      paired.push(
        ...await pairedRuns(
          [title],
          repeats,
          async () => (await client(...clientArgs)).ratios as number[],
        ),
      );
    }
  } finally {
    server.kill("SIGTERM");
    await server.status;
    for (const peer of started) await peer.stop();
    await rt.fs.remove(dir, { recursive: true });
  }
  printTable(rows, "dockipc hub, TCP");
  printPaired(`paired, 1 in flight (warm-up ${WARM_MS} ms)`, paired);
}
