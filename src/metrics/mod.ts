/**
 * Live observability over HTTP: `serveMetrics()` serves a hub's, its server's, RPC servers' and
 * logs' counters and latency histograms to Prometheus (`/metrics`), to scripts (`/api/*`, JSON)
 * and to people (a dashboard at `/`, one self-contained page).
 *
 * @example A hub with its dashboard
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub, serveHub } from "@dockipc/dockipc/hub";
 * import { serveMetrics } from "@dockipc/dockipc/metrics";
 *
 * await using hub = new Hub();
 * await using hubServer = await serveHub(hub, "tcp://127.0.0.1:0");
 * await using metrics = await serveMetrics({ hub, hubServer }, { listen: "127.0.0.1:0" });
 * const page = await fetch(metrics.url);
 * assert.match(await page.text(), /<title>dockipc<\/title>/);
 * ```
 *
 * @module
 */

export { serveMetrics } from "./serve_metrics.ts";
export type { MetricsServer, ServeMetricsOptions } from "./serve_metrics.ts";
export type { MetricsSnapshot, MetricsSources } from "./exposition.ts";
export type { HistogramSnapshot } from "../internal/histogram.ts";
export type { ConnectionStats } from "../hub/server.ts";
export type { RpcServerStats } from "../rpc/server.ts";
export type { WalStats } from "../wal/wal.ts";
