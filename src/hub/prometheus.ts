/**
 * The hub's counters in the Prometheus text exposition format.
 *
 * @module
 */

import type { HubStats } from "./hub.ts";

/** Escapes a label value: backslash, double quote and line feed. */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: string[];
}

/**
 * Formats `hub.stats()` for a Prometheus scrape: per topic `dockipc_hub_published_total`,
 * `dockipc_hub_published_bytes_total` and `dockipc_hub_routed_total`; per subscription
 * `dockipc_hub_delivered_total`, `dockipc_hub_delivered_bytes_total`, `dockipc_hub_dropped_total`,
 * `dockipc_hub_pending` and `dockipc_hub_pending_bytes`.
 *
 * @param stats A snapshot from `hub.stats()`.
 * @returns The text to serve with content type `text/plain; version=0.0.4`.
 *
 * @example Expose the counters
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub, toPrometheus } from "@dockipc/dockipc/hub";
 *
 * const hub = new Hub();
 * hub.subscribe("jobs.*");
 * await hub.publish("jobs.new", "x");
 * const text = toPrometheus(hub.stats());
 * assert.match(text, /^dockipc_hub_published_total\{topic="jobs.new"\} 1$/m);
 * assert.match(text, /^dockipc_hub_pending\{subscription="1",pattern="jobs.\*",queue=""\} 1$/m);
 * ```
 */
export function toPrometheus(stats: HubStats): string {
  const topic = (t: { topic: string }): string => `{topic="${label(t.topic)}"}`;
  const sub = (s: { id: number; pattern: string; queue: string | undefined }): string =>
    `{subscription="${s.id}",pattern="${label(s.pattern)}",queue="${label(s.queue ?? "")}"}`;
  const families: Family[] = [
    {
      name: "dockipc_hub_published_total",
      help: "Messages published, by topic.",
      type: "counter",
      samples: stats.topics.map((t) => `${topic(t)} ${t.published}`),
    },
    {
      name: "dockipc_hub_published_bytes_total",
      help: "Payload bytes published, by topic.",
      type: "counter",
      samples: stats.topics.map((t) => `${topic(t)} ${t.bytes}`),
    },
    {
      name: "dockipc_hub_routed_total",
      help: "Messages handed to subscriptions, by topic.",
      type: "counter",
      samples: stats.topics.map((t) => `${topic(t)} ${t.routed}`),
    },
    {
      name: "dockipc_hub_delivered_total",
      help: "Messages read by the subscriber, by subscription.",
      type: "counter",
      samples: stats.subscriptions.map((s) => `${sub(s)} ${s.delivered}`),
    },
    {
      name: "dockipc_hub_delivered_bytes_total",
      help: "Payload bytes read by the subscriber, by subscription.",
      type: "counter",
      samples: stats.subscriptions.map((s) => `${sub(s)} ${s.bytes}`),
    },
    {
      name: "dockipc_hub_dropped_total",
      help: "Messages dropped by the overflow policy, by subscription.",
      type: "counter",
      samples: stats.subscriptions.map((s) => `${sub(s)} ${s.dropped}`),
    },
    {
      name: "dockipc_hub_pending",
      help: "Messages waiting to be read, by subscription.",
      type: "gauge",
      samples: stats.subscriptions.map((s) => `${sub(s)} ${s.pending}`),
    },
    {
      name: "dockipc_hub_pending_bytes",
      help: "Payload bytes waiting to be read, by subscription.",
      type: "gauge",
      samples: stats.subscriptions.map((s) => `${sub(s)} ${s.pendingBytes}`),
    },
  ];
  let out = "";
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
    for (const sample of f.samples) out += `${f.name}${sample}\n`;
  }
  return out;
}
