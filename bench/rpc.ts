/**
 * RPC benchmark: 64 B requests between two processes over a unix socket, the server in this
 * process and the client in a child. Round trips per second with 1 request in flight and with
 * 64; the baseline in the same run is framed ping-pong (a `framed()` echo, one frame in flight).
 * Raw ping-pong (the runtime's own socket API, as in the transport bench) is the ceiling of any
 * request/response with 1 in flight: the targets against NATS and node-ipc are set beside it.
 * The peer is NATS request/reply: `nats-server` from Debian on loopback TCP, the official `nats`
 * client in both processes. Also: this server's RSS growth with 1,000 idle client connections.
 *
 * With 1 in flight the ratios to framed ping-pong and to NATS are also measured paired: one
 * child alternates blocks of RPC round trips with blocks of the baseline's (`pairedRatios`), so
 * drift in the machine's speed falls on both alike.
 *
 * Every timed loop follows `WARM_MS` (3 s) of the same calls off the clock, baseline and peers
 * included: the figures are steady state.
 *
 * Usage: `<runtime> bench/rpc.ts [--repeats N]`. Every loop is bounded by a count and by time.
 *
 * @module
 */

import process from "node:process";
import type { RuntimeName } from "../scripts/_runtimes.ts";
import { implFor, serveOnce } from "./_peers.ts";
import { natsConnect, startNats } from "./_servers.ts";
import { connect, framed, listen, type Listener } from "../mod.ts";
import { dial, serve } from "../src/rpc/mod.ts";
import {
  type Caller,
  median,
  pairedRatios,
  printPaired,
  printTable,
  repeatsArg,
  type Row,
  rt,
  scriptArgs,
  spawnSelf,
  stdoutText,
  timedLoop,
} from "./_harness.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const LIMIT_MS = 1000;
const COUNT = 200_000;
const args = scriptArgs();
const payload = new Uint8Array(64);
const runtime = rt.name as RuntimeName;

/** Runs `call` with `inFlight` calls outstanding, after the warm-up for `COUNT` calls or `LIMIT_MS`. */
async function pump(
  inFlight: number,
  call: () => Promise<unknown> | undefined,
): Promise<{ trips: number; ms: number }> {
  const { n, ms } = await timedLoop(call, { count: COUNT, ms: LIMIT_MS, lanes: inFlight });
  return { trips: n, ms };
}

/** The framed ping-pong baseline's server: echoes on the next connection until the peer ends. */
async function echoFramed(listener: Listener): Promise<void> {
  const conn = framed(await listener.accept());
  const writer = conn.writable.getWriter();
  for await (const frame of conn.readable) writer.write(frame);
  await writer.close().catch(() => {});
  conn.close();
}

/** A client of one kind ("raw", "framed", "rpc" or "nats") at `where`: one call is a round trip. */
async function caller(
  kind: string,
  where: string,
): Promise<Caller> {
  if (kind === "raw") {
    const peer = await (await implFor("raw", runtime)).connect(where);
    const trip = peer.tripper(payload);
    return {
      call: trip,
      close: async () => {
        await peer.shutdown();
        peer.close();
      },
    };
  }
  if (kind === "framed") {
    const conn = framed(await connect(where));
    const writer = conn.writable.getWriter();
    const reader = conn.readable.getReader();
    return {
      call: () => {
        writer.write(payload);
        return reader.read();
      },
      close: async () => {
        await writer.close();
        conn.close();
      },
    };
  }
  if (kind === "rpc") {
    const client = await dial(where);
    return { call: () => client.request(payload), close: () => Promise.resolve(client.close()) };
  }
  const nc = await natsConnect(where);
  return {
    call: () => nc.request("bench.echo", payload, { timeout: 10_000 }),
    close: () => nc.drain(),
  };
}

if (args[0] === "client") {
  // The child: [kind, where, inFlight] → prints { trips, ms }.
  const [, kind, where, inFlight = "1"] = args;
  let result: unknown;
  if (kind === "raw" || kind === "framed" || kind === "rpc" || kind === "nats") {
    const { call, close } = await caller(kind, where!);
    const oneAtATime = kind === "raw" || kind === "framed";
    result = await pump(oneAtATime ? 1 : Number(inFlight), call);
    await close();
  } else if (kind === "paired") {
    // [paired, framed path, rpc path, NATS address]: round trips on each baseline and on RPC in
    // turn (see `pairedRatios`), so that drift cannot move the ratios.
    const [, , framedPath, rpcPath, natsWhere] = args as [string, string, string, string, string];
    const [framedC, rpcC, natsC] = [
      await caller("framed", framedPath),
      await caller("rpc", rpcPath),
      await caller("nats", natsWhere),
    ];
    result = {
      framed: await pairedRatios(framedC.call, rpcC.call, LIMIT_MS * 3),
      nats: await pairedRatios(natsC.call, rpcC.call, LIMIT_MS * 3),
    };
    for (const c of [framedC, rpcC, natsC]) await c.close();
  } else if (kind === "node-ipc") {
    const ipc = await nodeIpc(where!, "cli");
    const client = await new Promise<NodeIpcSocket>((resolve) => {
      ipc.connectTo("srv", () => ipc.of.srv!.on("connect", () => resolve(ipc.of.srv!)));
    });
    const waiting = new Map<number, () => void>();
    client.on("res", (d) => {
      const { id } = d as { id: number };
      waiting.get(id)?.();
      waiting.delete(id);
    });
    let next = 0;
    const body = "x".repeat(64);
    result = await pump(Number(inFlight), () =>
      new Promise<void>((resolve) => {
        const id = ++next;
        waiting.set(id, resolve);
        client.emit("req", { id, body });
      }));
    ipc.disconnect("srv");
  } else if (kind === "idle") {
    // In groups, so the listen backlog never overflows.
    const clients = [];
    for (let i = 0; i < Number(inFlight); i += 100) {
      clients.push(...await Promise.all(Array.from({ length: 100 }, () => dial(where!))));
    }
    console.log("connected");
    await new Promise((resolve) => setTimeout(resolve, 60_000));
    for (const c of clients) c.close();
  }
  if (result !== undefined) console.log(JSON.stringify(result));
} else {
  const repeats = repeatsArg(5);
  const dir = await rt.fs.makeTempDir("dk-bench-");
  const nats = await startNats(dir);
  const natsPort = nats.where;
  const responder = await natsConnect(natsPort);
  responder.subscribe("bench.echo", { callback: (_, m) => void m.respond(m.data) });
  await responder.flush();

  const rate = async (kind: string, where: string, inFlight: number): Promise<number> => {
    const child = spawnSelf(SCRIPT, ["client", kind, where, String(inFlight)]);
    const { trips, ms } = JSON.parse(await stdoutText(child));
    await child.status;
    return trips / (ms / 1000);
  };
  // node-ipc runs on Node only: its server lives in this process, its client in the child.
  const nipcRoot = `${dir}/nipc`;
  let nipcServer: { stop(): void } | undefined;
  if (rt.name === "node") {
    await rt.fs.mkdir(nipcRoot, { mode: 0o700 });
    const ipc = await nodeIpc(nipcRoot, "srv");
    await new Promise<void>((resolve) => {
      ipc.serve(() => {
        ipc.server.on("req", (data, socket) => ipc.server.emit(socket, "res", data));
        resolve();
      });
      ipc.server.start();
    });
    nipcServer = ipc.server;
  }
  const rows: Row[] = [];
  const add = (workload: string, impl: string, rates: number[]): void => {
    rows.push({ workload, impl, unit: "rt/s", rates });
  };
  for (const inFlight of [1, 64]) {
    const workload = `64 B requests, ${inFlight} in flight`;
    const runs: Record<string, number[]> = {
      "raw ping-pong": [],
      "framed ping-pong": [],
      "dockipc rpc": [],
      "NATS request": [],
      "node-ipc": [],
    };
    for (let r = 0; r < repeats; r++) {
      if (inFlight === 1) {
        // The runtime's own API echoes here, as in the transport bench.
        const rawPath = `${dir}/raw${r}.sock`;
        const raw = await serveOnce(
          "raw",
          runtime,
          rawPath,
          "ping-pong",
          () => spawnSelf(SCRIPT, ["client", "raw", rawPath, "1"]),
        );
        runs["raw ping-pong"]!.push("trips" in raw ? raw.trips / (raw.ms / 1000) : NaN);
        const path = `${dir}/f${r}.sock`;
        await using listener = await listen(path);
        const served = echoFramed(listener);
        runs["framed ping-pong"]!.push(await rate("framed", path, 1));
        await served;
      }
      const path = `${dir}/r${inFlight}-${r}.sock`;
      await using _server = await serve(path, (request) => request);
      runs["dockipc rpc"]!.push(await rate("rpc", path, inFlight));
      runs["NATS request"]!.push(await rate("nats", natsPort, inFlight));
      if (nipcServer) runs["node-ipc"]!.push(await rate("node-ipc", nipcRoot, inFlight));
    }
    for (const [impl, rates] of Object.entries(runs)) {
      if (rates.length > 0) add(workload, impl, rates);
    }
  }
  printTable(rows, ["framed ping-pong", "dockipc rpc"]);

  // Paired, 1 in flight: one child alternates RPC with each baseline, block by block.
  const pairs = { framed: [] as number[], nats: [] as number[] };
  for (let r = 0; r < repeats; r++) {
    const framedPath = `${dir}/pf${r}.sock`;
    const rpcPath = `${dir}/pr${r}.sock`;
    await using listener = await listen(framedPath);
    await using _server = await serve(rpcPath, (request) => request);
    const child = spawnSelf(SCRIPT, ["client", "paired", framedPath, rpcPath, natsPort]);
    const report = stdoutText(child);
    await echoFramed(listener);
    const got = JSON.parse(await report) as typeof pairs;
    await child.status;
    pairs.framed.push(...got.framed);
    pairs.nats.push(...got.nats);
  }
  const paired = [
    { impl: "rpc ÷ framed ping-pong", ratios: pairs.framed },
    { impl: "rpc ÷ NATS request", ratios: pairs.nats },
  ];
  printPaired("paired, 1 in flight", paired);

  // RSS of this server process with 1,000 idle clients connected, from one child.
  const path = `${dir}/idle.sock`;
  await using idleServer = await serve(path, (request) => request, { maxConnections: 2000 });
  const before = rssBytes();
  const idle = spawnSelf(SCRIPT, ["client", "idle", path, "1000"]);
  const reader = idle.stdout!.pipeThrough(new TextDecoderStream()).getReader();
  await reader.read();
  const waitUntil = Date.now() + 30_000;
  while (idleServer.connections < 1000 && Date.now() < waitUntil) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const grown = (rssBytes()) - before;
  const idleCount = idleServer.connections;
  idle.kill("SIGKILL");
  await idle.status;
  await reader.cancel().catch(() => {});
  console.log(
    `\nRSS with ${idleCount} idle connections: +${(grown / 2 ** 20).toFixed(1)} MiB (${
      (grown / idleCount / 1024).toFixed(1)
    } KiB each)`,
  );

  const m = (workload: string, impl: string): number =>
    median(rows.find((r) => r.workload === workload && r.impl === impl)?.rates ?? [NaN]);
  const one = "64 B requests, 1 in flight";
  const many = "64 B requests, 64 in flight";
  const targets: [string, number, number][] = [
    ["1 in flight / framed ping-pong", m(one, "dockipc rpc") / m(one, "framed ping-pong"), 0.85],
    ["1 in flight / framed ping-pong, paired", median(pairs.framed), 0.85],
    ["64 in flight / 1 in flight", m(many, "dockipc rpc") / m(one, "dockipc rpc"), 5],
    ["rpc / NATS request, 1 in flight", m(one, "dockipc rpc") / m(one, "NATS request"), 3],
    ["rpc / NATS request, 1 in flight, paired", median(pairs.nats), 3],
    ["rpc / NATS request, 64 in flight", m(many, "dockipc rpc") / m(many, "NATS request"), 3],
    ["rpc / node-ipc, 1 in flight", m(one, "dockipc rpc") / m(one, "node-ipc"), 1.5],
    [
      "ceiling: raw ping-pong / node-ipc, 1 in flight",
      m(one, "raw ping-pong") / m(one, "node-ipc"),
      1.5,
    ],
    [
      "ceiling: raw ping-pong / NATS request, 1 in flight",
      m(one, "raw ping-pong") / m(one, "NATS request"),
      3,
    ],
    ["rpc / node-ipc, 64 in flight", m(many, "dockipc rpc") / m(many, "node-ipc"), 1.5],
  ];
  console.log("\n| target | this run | goal | |\n|---|---|---|---|");
  for (const [name, value, goal] of targets.filter(([, value]) => !Number.isNaN(value))) {
    console.log(
      `| ${name} | ${value.toFixed(2)} | ≥ ${goal} | ${value >= goal ? "met" : "NOT MET"} |`,
    );
  }
  nipcServer?.stop();
  await responder.drain();
  await nats.stop();
  await rt.fs.remove(dir, { recursive: true });
}

/**
 * This process's resident set size, in bytes. Not from /proc/self/status: Deno reads that only
 * under --allow-all.
 */
function rssBytes(): number {
  return process.memoryUsage.rss();
}

/** The little of node-ipc's API this benchmark uses. */
interface NodeIpcSocket {
  on(event: string, listener: (data: unknown) => void): void;
  emit(event: string, data: unknown): void;
}
interface NodeIpc {
  config: Record<string, unknown>;
  of: Record<string, NodeIpcSocket | undefined>;
  serve(callback: () => void): void;
  server: {
    start(): void;
    stop(): void;
    on(event: string, listener: (data: unknown, socket: unknown) => void): void;
    emit(socket: unknown, event: string, data: unknown): void;
  };
  connectTo(id: string, callback: () => void): void;
  disconnect(id: string): void;
}

/** A node-ipc instance with its socket in `root` (owner-only, as node-ipc requires). */
async function nodeIpc(root: string, id: string): Promise<NodeIpc> {
  const { IPCModule } = await import("node-ipc") as unknown as { IPCModule: new () => NodeIpc };
  const ipc = new IPCModule();
  Object.assign(ipc.config, { silent: true, socketRoot: `${root}/`, appspace: "b.", id });
  return ipc;
}
