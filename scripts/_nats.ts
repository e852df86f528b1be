/**
 * A NATS cluster for the tests and benchmarks that meet NATS: `nats-server` processes (Debian's
 * package; `.ci/run` installs it) on loopback ports of their choosing, joined by routes, logging
 * into a directory, stopped by PID. A node can be killed and started again on the same ports, as
 * a cluster's failover and restart tests need.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";

/** One `nats-server` of a cluster. */
export interface NatsNode {
  /** `n0`, `n1`, … */
  readonly name: string;
  /** Where clients connect: `nats://127.0.0.1:PORT`. */
  readonly url: string;
  readonly clientPort: number;
  /** Where the other nodes route to it. */
  readonly clusterPort: number;
  /** Whether its process runs. */
  readonly running: boolean;
  /** Stops it with `signal` and waits until its process has ended. */
  kill(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts it again on the same ports, and waits until its routes are up. */
  start(): Promise<void>;
}

/** A running cluster. */
export interface NatsCluster {
  readonly nodes: readonly NatsNode[];
  /** Every node's client URL, for a client's `servers` list. */
  readonly urls: readonly string[];
  /** Stops every node (SIGTERM) and waits for them. */
  stop(): Promise<void>;
}

const CLUSTER = "dockipc-test";

/** Waits until `pattern` matches `count` times in `log`; returns the first match's groups. */
async function fromLog(log: string, pattern: RegExp, count = 1, ms = 10_000): Promise<string[]> {
  const end = Date.now() + ms;
  for (;;) {
    let text = "";
    try {
      text = readFileSync(log, "utf8");
    } catch {
      // not written yet
    }
    const found = [...text.matchAll(new RegExp(pattern.source, "g"))];
    if (found.length >= count) return found[0]!.slice(1);
    if (Date.now() > end) throw new Error(`${log}: no ${count} × ${pattern} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

class Node implements NatsNode {
  readonly name: string;
  clientPort = -1;
  clusterPort = -1;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #starts = 0;
  readonly #dir: string;
  readonly #cluster: Node[];

  constructor(name: string, dir: string, cluster: Node[]) {
    this.name = name;
    this.#dir = dir;
    this.#cluster = cluster;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.clientPort}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the process: on its old ports if it had some, routing to the nodes that have. */
  async launch(): Promise<void> {
    const log = `${this.#dir}/${this.name}.${++this.#starts}.log`;
    const routes = this.#cluster
      .filter((n) => n !== this && n.clusterPort > 0)
      .map((n) => `nats://127.0.0.1:${n.clusterPort}`);
    const child = spawn("nats-server", [
      "-n",
      this.name,
      "-a",
      "127.0.0.1",
      "-p",
      String(this.clientPort),
      "--cluster",
      `nats://127.0.0.1:${this.clusterPort}`,
      "--cluster_name",
      CLUSTER,
      ...(routes.length === 0 ? [] : ["--routes", routes.join(",")]),
      "-l",
      log,
    ], { stdio: "ignore" });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once("exit", () => resolve()));
    void this.#exited.then(() => {
      if (this.#child === child) this.#child = undefined;
    });
    const [client] = await fromLog(log, /Listening for client connections on [\d.]+:(\d+)/);
    const [route] = await fromLog(log, /Listening for route connections on [\d.]+:(\d+)/);
    this.clientPort = Number(client);
    this.clusterPort = Number(route);
  }

  /** Waits until this node has a route to each other running node. */
  async routed(): Promise<void> {
    const others = this.#cluster.filter((n) => n !== this && n.running).length;
    if (others === 0) return;
    const log = `${this.#dir}/${this.name}.${this.#starts}.log`;
    await fromLog(log, /(Route connection created)/, others);
  }

  async kill(signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    this.#child?.kill(signal);
    await this.#exited;
  }

  async start(): Promise<void> {
    if (this.running) return;
    await this.launch();
    await this.routed();
  }
}

/**
 * Starts `size` nodes in `dir` (logs `n0.1.log`…): the first on ports of its choosing, the others
 * routing to it; resolves once every node has a route to every other.
 */
export async function startNatsCluster(dir: string, size = 3): Promise<NatsCluster> {
  const nodes: Node[] = [];
  for (let i = 0; i < size; i++) nodes.push(new Node(`n${i}`, dir, nodes));
  try {
    for (const node of nodes) await node.launch();
    await Promise.all(nodes.map((n) => n.routed()));
  } catch (err) {
    await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
    throw err;
  }
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    stop: async () => {
      await Promise.all(nodes.map((n) => n.kill("SIGTERM")));
    },
  };
}
