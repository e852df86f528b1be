/**
 * The peer servers the benchmarks compare against, started and stopped by PID: `nats-server`
 * on loopback TCP, `redis-server` on a unix socket, both from Debian and both bound only where
 * this machine can reach them.
 *
 * @module
 */

import type { ChildProcess } from "../src/runtime/types.ts";
import { rt, spawnChild } from "./_harness.ts";

/** A started server: where to reach it, and how to stop it. */
export interface Started {
  readonly where: string;
  stop(): Promise<void>;
}

/** Waits for `pattern` to appear in a log file; returns its first group. */
async function fromLog(log: string, pattern: RegExp, what: string): Promise<string> {
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const text = new TextDecoder().decode(await rt.fs.readFile(log).catch(() => new Uint8Array()));
    const found = pattern.exec(text);
    if (found) return found[1] ?? "";
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${what} did not start within 10 s`);
}

async function stopped(child: ChildProcess): Promise<void> {
  child.kill("SIGTERM");
  await child.status;
}

/**
 * `nats-server` on 127.0.0.1 and a port of its choosing; `where` is the port. With `jetstream`,
 * JetStream is on, its file storage under `dir`; with `tls`, clients must speak TLS (the PEM
 * files of its certificate and key).
 */
export async function startNats(
  dir: string,
  { jetstream = false, tls }: { jetstream?: boolean; tls?: { cert: string; key: string } } = {},
): Promise<Started> {
  const log = `${dir}/nats.log`;
  const js = jetstream ? ["-js", "-sd", `${dir}/jetstream`] : [];
  const secure = tls === undefined ? [] : ["--tls", "--tlscert", tls.cert, "--tlskey", tls.key];
  const child = spawnChild("nats-server", [
    "-a",
    "127.0.0.1",
    "-p",
    "-1",
    "-l",
    log,
    ...js,
    ...secure,
  ], {
    stdout: "null",
    stderr: "null",
  });
  const port = await fromLog(
    log,
    /Listening for client connections on 127\.0\.0\.1:(\d+)/,
    "nats-server",
  );
  return { where: port, stop: () => stopped(child) };
}

/**
 * `redis-server` on a unix socket only (no TCP port), no output limit for pub/sub clients;
 * `where` is the path. No persistence, or with `appendfsync` its append-only file under `dir`,
 * synced as that says.
 */
export async function startRedis(
  dir: string,
  { appendfsync }: { appendfsync?: "always" | "everysec" } = {},
): Promise<Started> {
  const path = `${dir}/redis.sock`;
  const log = `${dir}/redis.log`;
  const child = spawnChild("redis-server", [
    "--port",
    "0",
    "--unixsocket",
    path,
    "--unixsocketperm",
    "700",
    "--save",
    "",
    ...(appendfsync === undefined
      ? ["--appendonly", "no"]
      : ["--appendonly", "yes", "--appendfsync", appendfsync, "--dir", dir]),
    // Its default cuts a pub/sub client 8 MB behind; the benchmark's subscribers share a CPU
    // with the publisher, so they fall behind by more for a moment and are not to be cut.
    "--client-output-buffer-limit",
    "pubsub 0 0 0",
    "--logfile",
    log,
  ], { stdout: "null", stderr: "null" });
  await fromLog(log, /(ready to accept connections)/i, "redis-server");
  return { where: path, stop: () => stopped(child) };
}

/** The part of the `nats` client the benchmarks use. */
export interface NatsLike {
  publish(subject: string, data: Uint8Array): void;
  request(subject: string, data: Uint8Array, opts: { timeout: number }): Promise<unknown>;
  subscribe(
    subject: string,
    opts: {
      callback: (err: unknown, m: { respond(d: Uint8Array): boolean; data: Uint8Array }) => void;
    },
  ): unknown;
  flush(): Promise<void>;
  drain(): Promise<void>;
}

/** Connects the official `nats` client to a started nats-server; over TLS trusting `tls.ca`. */
export async function natsConnect(port: string, tls?: { ca: string }): Promise<NatsLike> {
  const nats = await import("nats") as unknown as {
    connect(o: { servers: string; tls?: { ca: string } }): Promise<NatsLike>;
  };
  return await nats.connect({
    servers: `${tls === undefined ? "127.0.0.1" : "localhost"}:${port}`,
    ...(tls === undefined ? {} : { tls }),
  });
}
