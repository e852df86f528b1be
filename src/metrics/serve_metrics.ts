/**
 * `serveMetrics()`: an HTTP server, on the runtime's own, for Prometheus (`/metrics`), scripts
 * (`/api/*`) and people (the dashboard at `/`).
 *
 * @module
 */

import { parseAddress, type TcpAddress } from "../address.ts";
import { IpcError } from "../errors.ts";
import { getRuntime } from "../runtime/detect.ts";
import { sameSecret, tokenBytes } from "../session/handshake.ts";
import { DASHBOARD_HTML } from "./dashboard.ts";
import { exposition, type MetricsSnapshot, type MetricsSources, snapshot } from "./exposition.ts";

/** Options of {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
  /**
   * Where to listen, `HOST:PORT`; port 0 lets the system choose. An address other than loopback
   * needs a `token`. @default {"127.0.0.1:0"}
   */
  listen?: string;
  /**
   * A secret every request must carry, as `Authorization: Bearer TOKEN` or (for a browser
   * opening the dashboard) `?token=TOKEN`; others get 401. Give the hub server's token.
   */
  token?: string | Uint8Array;
}

/** A running metrics server. */
export interface MetricsServer extends AsyncDisposable {
  /** The bound address. */
  readonly addr: TcpAddress;
  /** Its base URL, such as `http://127.0.0.1:9464/`. */
  readonly url: string;
  /** Stops serving. */
  close(): Promise<void>;
}

/** The JSON endpoints, and which part of a snapshot each serves. */
const API: Readonly<Record<string, (s: MetricsSnapshot) => unknown>> = {
  "/api/hub": (s) => s,
  "/api/connections": (s) => s.connections,
  "/api/subscriptions": (s) => s.subscriptions,
  "/api/streams": (s) => ({ streams: s.streams, consumers: s.consumers }),
  "/api/rpc": (s) => s.rpc,
  "/api/wal": (s) => s.wal,
};

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/**
 * Serves a hub's, its server's, RPC servers' and logs' counters over HTTP: `/metrics` in the
 * Prometheus text format, JSON at `/api/hub` (everything), `/api/connections`,
 * `/api/subscriptions`, `/api/streams`, `/api/rpc` and `/api/wal`, and at `/` a dashboard that
 * updates every second. Only GET and HEAD are served. Counters are read when a request comes,
 * so an unscraped server costs nothing.
 *
 * @param sources What to report on.
 * @param options Where to listen, and the token requests must carry.
 * @returns The running server.
 * @throws {IpcError} `EADDRINVALID` for a bad `listen`; `EAUTH` for an address other than
 * loopback without a token; `EADDRINUSE` and the like from the system.
 *
 * @example Scrape a hub
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub } from "@dockipc/dockipc/hub";
 * import { serveMetrics } from "@dockipc/dockipc/metrics";
 *
 * await using hub = new Hub();
 * hub.subscribe("jobs.>");
 * await hub.publish("jobs.new", "x");
 * await using metrics = await serveMetrics({ hub });
 * const text = await (await fetch(`${metrics.url}metrics`)).text();
 * assert.match(text, /^dockipc_hub_published_total\{topic="jobs.new"\} 1$/m);
 * const subscriptions = await (await fetch(`${metrics.url}api/subscriptions`)).json() as {
 *   pending: number;
 * }[];
 * assert.equal(subscriptions[0]?.pending, 1);
 * ```
 */
export async function serveMetrics(
  sources: MetricsSources,
  options: ServeMetricsOptions = {},
): Promise<MetricsServer> {
  const { listen = "127.0.0.1:0" } = options;
  const address = parseAddress(`tcp://${listen}`) as TcpAddress;
  const secret = options.token === undefined ? undefined : tokenBytes(options.token);
  if (secret !== undefined && secret.length === 0) {
    throw new TypeError("Cannot serve metrics as token is empty: give a secret or no token");
  }
  if (secret === undefined && !isLoopback(address.hostname)) {
    throw new IpcError(
      "EAUTH",
      `Cannot serve metrics on "${listen}" without a token: bind 127.0.0.1, or give a token`,
      { op: "serveMetrics" },
    );
  }
  const authorized = (request: Request, url: URL): boolean => {
    if (secret === undefined) return true;
    const bearer = /^Bearer (.+)$/.exec(request.headers.get("authorization") ?? "")?.[1];
    const given = bearer ?? url.searchParams.get("token");
    return given !== null && sameSecret(tokenBytes(given), secret);
  };
  const handle = (request: Request): Response => {
    const url = new URL(request.url);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return json({ error: "Only GET and HEAD are served" }, 405);
    }
    if (!authorized(request, url)) return json({ error: "A valid token is needed" }, 401);
    if (url.pathname === "/") {
      return new Response(DASHBOARD_HTML, {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    if (url.pathname === "/metrics") {
      return new Response(exposition(snapshot(sources), sources), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    const api = Object.hasOwn(API, url.pathname) ? API[url.pathname] : undefined;
    if (api !== undefined) return json(api(snapshot(sources)));
    return json({ error: `Nothing is served at ${url.pathname}` }, 404);
  };
  const rt = await getRuntime();
  const server = await rt.serveHttp(
    { hostname: address.hostname, port: address.port },
    (request) => {
      try {
        return handle(request);
      } catch (err) {
        return json({ error: err instanceof Error ? err.message : String(err) }, 500);
      }
    },
  );
  const host = server.addr.hostname.includes(":")
    ? `[${server.addr.hostname}]`
    : server.addr.hostname;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => closing ??= server.close();
  return {
    addr: server.addr,
    url: `http://${host}:${server.addr.port}/`,
    close,
    [Symbol.asyncDispose]: close,
  };
}
