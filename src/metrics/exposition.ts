/**
 * What a metrics server shows: the hub, its server's connections, RPC servers and logs, as
 * one JSON snapshot and as one Prometheus exposition.
 *
 * @module
 */

import type { HistogramSnapshot } from "../internal/histogram.ts";
import { PrometheusText } from "../internal/prometheus.ts";
import type { Hub, HubStats } from "../hub/hub.ts";
import { hubFamilies } from "../hub/prometheus.ts";
import type { ConnectionStats, HubServer } from "../hub/server.ts";
import type { RpcServer, RpcServerStats } from "../rpc/server.ts";
import type { Wal, WalStats } from "../wal/wal.ts";
import { formatAddress } from "../address.ts";

/** What {@linkcode serveMetrics} reports on; each part is optional. */
export interface MetricsSources {
  /** A hub: its topics, subscriptions, streams, consumers and latencies. */
  hub?: Hub;
  /** The server of that hub: its connections. */
  hubServer?: HubServer;
  /** RPC servers: their requests and latencies. */
  rpc?: readonly RpcServer[];
  /** Write-ahead logs: their sequences, segments and sync latency. */
  wal?: readonly Wal[];
}

/** One snapshot of every source, as `/api/hub` serves it. */
export interface MetricsSnapshot extends HubStats {
  /** The hub server's connections (none without `hubServer`). */
  readonly connections: readonly ConnectionStats[];
  /** Operations the hub server refused for want of permission (0 without `hubServer`). */
  readonly denied: number;
  /** Each RPC server's counters. */
  readonly rpc: readonly RpcServerStats[];
  /** Each log's state. */
  readonly wal: readonly WalStats[];
  /** When it was taken, in milliseconds since the epoch. */
  readonly time: number;
}

const NO_LATENCY: HistogramSnapshot = { buckets: [], counts: [], count: 0, sum: 0 };

/** Takes a snapshot of every source now. */
export function snapshot(sources: MetricsSources): MetricsSnapshot {
  const hub: HubStats = sources.hub?.stats() ?? {
    topics: [],
    subscriptions: [],
    requests: 0,
    streams: [],
    consumers: [],
    latency: { delivery: NO_LATENCY, request: NO_LATENCY },
    limits: [],
    scheduled: { waiting: 0, delivered: 0, cancelled: 0, refused: 0 },
  };
  return {
    ...hub,
    connections: sources.hubServer?.connectionStats() ?? [],
    denied: sources.hubServer?.denied ?? 0,
    rpc: (sources.rpc ?? []).map((s) => s.stats()),
    wal: (sources.wal ?? []).map((w) => w.stats()),
    time: Date.now(),
  };
}

/** The Prometheus text of a snapshot: the hub's families, then connections, RPC and logs. */
export function exposition(s: MetricsSnapshot, sources: MetricsSources): string {
  const text = new PrometheusText();
  if (sources.hub !== undefined) {
    hubFamilies(text, s, s.connections.flatMap((c) => c.limit === undefined ? [] : [c.limit]));
  }
  if (sources.hubServer !== undefined) {
    text
      .family("dockipc_hub_connections", "Client connections of the hub server.", "gauge", [[
        {},
        s.connections.length,
      ]])
      .family(
        "dockipc_hub_denied_total",
        "Operations the hub server refused for want of permission (EPERM).",
        "counter",
        [[{}, s.denied]],
      );
  }
  if (s.rpc.length > 0) {
    const rows = <K extends keyof RpcServerStats>(key: K) =>
      s.rpc.map((r) => [{ server: formatAddress(r.addr) }, r[key] as number] as const);
    text
      .family(
        "dockipc_rpc_connections",
        "Client connections, by server.",
        "gauge",
        rows("connections"),
      )
      .family(
        "dockipc_rpc_requests_total",
        "Requests answered, by server.",
        "counter",
        rows("requests"),
      )
      .family(
        "dockipc_rpc_failed_total",
        "Requests whose handler threw.",
        "counter",
        rows("failed"),
      )
      .family(
        "dockipc_rpc_denied_total",
        "Requests refused for want of permission (EPERM).",
        "counter",
        rows("denied"),
      )
      .family("dockipc_rpc_in_flight", "Requests running now.", "gauge", rows("inFlight"))
      .histogram(
        "dockipc_rpc_request_seconds",
        "From a request's arrival until its reply was sent.",
        s.rpc.map((r) => [{ server: formatAddress(r.addr) }, r.latency] as const),
      );
  }
  if (s.wal.length > 0) {
    const rows = (key: "firstSeq" | "lastSeq" | "segments") =>
      s.wal.map((w) => [{ dir: w.dir }, w[key]] as const);
    text
      .family(
        "dockipc_wal_first_seq",
        "The first sequence still in the log.",
        "gauge",
        rows("firstSeq"),
      )
      .family("dockipc_wal_last_seq", "The last acknowledged sequence.", "gauge", rows("lastSeq"))
      .family("dockipc_wal_segments", "Segment files.", "gauge", rows("segments"))
      .histogram(
        "dockipc_wal_fsync_seconds",
        "How long each fdatasync of the log took.",
        s.wal.map((w) => [{ dir: w.dir }, w.syncs] as const),
      );
  }
  return text.toString();
}
