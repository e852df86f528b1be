/**
 * The hub's counters in the Prometheus text exposition format.
 *
 * @module
 */

import { type Labels, PrometheusText } from "../internal/prometheus.ts";
import type { HubStats, TopicStats } from "./hub.ts";
import type { LimitStats } from "./limits.ts";
import type { ScheduleStats } from "./schedule.ts";
import type { ConsumerInfo } from "./consumer.ts";
import type { StreamStats } from "./stream.ts";
import type { SubscriptionStats } from "./subscription.ts";

/** A metric family: name, help, type, and which counter of which entries it shows. */
type Family<E> = readonly [string, string, "counter" | "gauge", keyof E];

const TOPIC_FAMILIES = [
  ["dockipc_hub_published_total", "Messages published, by topic.", "counter", "published"],
  ["dockipc_hub_published_bytes_total", "Payload bytes published, by topic.", "counter", "bytes"],
  ["dockipc_hub_routed_total", "Messages handed to subscriptions, by topic.", "counter", "routed"],
  [
    "dockipc_hub_gaps_total",
    "Gaps ordered subscriptions reported, by the topic of the message that reported each.",
    "counter",
    "gaps",
  ],
  [
    "dockipc_hub_out_of_order_total",
    "Messages an ordered subscription got out of their topic's order (always 0).",
    "counter",
    "outOfOrder",
  ],
] as const satisfies readonly Family<TopicStats>[];

const LIMIT_FAMILIES = [
  [
    "dockipc_hub_limit_allowed_total",
    "Messages a rate limit let through at once.",
    "counter",
    "allowed",
  ],
  ["dockipc_hub_limit_waited_total", "Messages a rate limit held back first.", "counter", "waited"],
  ["dockipc_hub_limit_rejected_total", "Messages a rate limit refused.", "counter", "rejected"],
  [
    "dockipc_hub_limit_rate",
    "The rate a limit applies now, in messages a second (lower while an adaptive one holds back).",
    "gauge",
    "currentRate",
  ],
] as const satisfies readonly Family<LimitStats>[];

const SCHEDULE_FAMILIES = [
  ["dockipc_hub_scheduled", "Delayed messages waiting for their time.", "gauge", "waiting"],
  [
    "dockipc_hub_scheduled_delivered_total",
    "Delayed messages delivered when due.",
    "counter",
    "delivered",
  ],
  [
    "dockipc_hub_scheduled_cancelled_total",
    "Delayed messages cancelled.",
    "counter",
    "cancelled",
  ],
  [
    "dockipc_hub_scheduled_refused_total",
    "Delayed publishes refused at a bound on waiting messages.",
    "counter",
    "refused",
  ],
] as const satisfies readonly Family<ScheduleStats>[];

const SUBSCRIPTION_FAMILIES = [
  [
    "dockipc_hub_delivered_total",
    "Messages read by the subscriber, by subscription.",
    "counter",
    "delivered",
  ],
  [
    "dockipc_hub_delivered_bytes_total",
    "Payload bytes read by the subscriber, by subscription.",
    "counter",
    "bytes",
  ],
  [
    "dockipc_hub_dropped_total",
    "Messages dropped by the overflow policy, by subscription.",
    "counter",
    "dropped",
  ],
  ["dockipc_hub_pending", "Messages waiting to be read, by subscription.", "gauge", "pending"],
  [
    "dockipc_hub_pending_bytes",
    "Payload bytes waiting to be read, by subscription.",
    "gauge",
    "pendingBytes",
  ],
] as const satisfies readonly Family<SubscriptionStats>[];

const STREAM_FAMILIES = [
  ["dockipc_hub_stream_messages", "Messages a stream holds.", "gauge", "messages"],
  ["dockipc_hub_stream_bytes", "Bytes of the messages a stream holds.", "gauge", "bytes"],
  ["dockipc_hub_stream_last_seq", "The last sequence a stream stored.", "gauge", "lastSeq"],
  ["dockipc_hub_stream_stored_total", "Messages a stream stored.", "counter", "stored"],
  [
    "dockipc_hub_stream_duplicates_total",
    "Publishes a stream did not store again: their id was in its duplicate window.",
    "counter",
    "duplicates",
  ],
] as const satisfies readonly Family<StreamStats>[];

const CONSUMER_FAMILIES = [
  [
    "dockipc_hub_consumer_pending",
    "Messages a consumer delivered and is waiting to hear about.",
    "gauge",
    "pending",
  ],
  ["dockipc_hub_consumer_ack_floor", "Every message below it is finished.", "gauge", "ackFloor"],
  ["dockipc_hub_consumer_lag", "Messages a consumer has not looked at yet.", "gauge", "lag"],
  ["dockipc_hub_consumer_readers", "Readers attached to a consumer.", "gauge", "readers"],
  ["dockipc_hub_consumer_delivered_total", "Deliveries, repeats too.", "counter", "delivered"],
  [
    "dockipc_hub_consumer_redelivered_total",
    "Repeated deliveries: after the ack wait, a nak, or a reader that went.",
    "counter",
    "redelivered",
  ],
  ["dockipc_hub_consumer_acked_total", "Messages acknowledged.", "counter", "acked"],
  [
    "dockipc_hub_consumer_dead_lettered_total",
    "Messages given up on: past maxDeliver, or terminated.",
    "counter",
    "deadLettered",
  ],
] as const satisfies readonly Family<ConsumerInfo>[];

/** Writes `families` of `entries`, each entry labelled by `labels`. */
function families<E>(
  text: PrometheusText,
  list: readonly Family<E>[],
  entries: readonly E[],
  labels: (entry: E) => Labels,
): void {
  for (const [name, help, type, field] of list) {
    text.family(name, help, type, entries.map((e) => [labels(e), e[field] as number] as const));
  }
}

/**
 * Adds the hub's families to `text`; {@linkcode toPrometheus} documents them. `moreLimits` are
 * limits kept elsewhere (a server's connections') to show beside the hub's and subscriptions'.
 */
export function hubFamilies(
  text: PrometheusText,
  stats: HubStats,
  moreLimits: readonly LimitStats[] = [],
): void {
  families(text, TOPIC_FAMILIES, stats.topics, (t) => ({ topic: t.topic }));
  families(text, SUBSCRIPTION_FAMILIES, stats.subscriptions, (s) => ({
    subscription: s.id,
    pattern: s.pattern,
    queue: s.queue ?? "",
  }));
  families(text, STREAM_FAMILIES, stats.streams, (s) => ({ stream: s.stream }));
  families(text, CONSUMER_FAMILIES, stats.consumers, (c) => ({
    stream: c.stream,
    consumer: c.config.name,
  }));
  const limits = [
    ...stats.limits,
    ...stats.subscriptions.flatMap((s) => s.limit === undefined ? [] : [s.limit]),
    ...moreLimits,
  ];
  families(text, LIMIT_FAMILIES, limits, (l) => ({ limit: l.name }));
  families(text, SCHEDULE_FAMILIES, [stats.scheduled], () => ({}));
  text.family("dockipc_hub_requests", "Requests waiting for their reply.", "gauge", [[
    {},
    stats.requests,
  ]]);
  text.histogram(
    "dockipc_hub_delivery_seconds",
    "From publish until a subscriber took the message; one message in 64 is timed.",
    [[{}, stats.latency.delivery]],
  );
  text.histogram(
    "dockipc_hub_request_seconds",
    "From request() until its reply arrived.",
    [[{}, stats.latency.request]],
  );
}

/**
 * Formats `hub.stats()` for a Prometheus scrape: per topic `dockipc_hub_published_total`,
 * `dockipc_hub_published_bytes_total`, `dockipc_hub_routed_total`, `dockipc_hub_gaps_total` and
 * `dockipc_hub_out_of_order_total`; per rate limit (label `limit`: the hub's, and
 * subscriptions') `dockipc_hub_limit_allowed_total`, `_waited_total`, `_rejected_total` and
 * `dockipc_hub_limit_rate`; for delayed messages `dockipc_hub_scheduled` and
 * `dockipc_hub_scheduled_delivered_total`, `_cancelled_total`, `_refused_total`; per subscription
 * `dockipc_hub_delivered_total`, `dockipc_hub_delivered_bytes_total`, `dockipc_hub_dropped_total`,
 * `dockipc_hub_pending` and `dockipc_hub_pending_bytes`; per stored stream
 * `dockipc_hub_stream_messages`, `_bytes`, `_last_seq`, `_stored_total` and
 * `_duplicates_total`; per consumer `dockipc_hub_consumer_pending`, `_ack_floor`, `_lag`,
 * `_readers`, `_delivered_total`, `_redelivered_total`, `_acked_total` and
 * `_dead_lettered_total`; `dockipc_hub_requests`, the requests waiting for their reply; and the
 * histograms `dockipc_hub_delivery_seconds` (publish to delivery, sampled) and
 * `dockipc_hub_request_seconds`.
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
  const text = new PrometheusText();
  hubFamilies(text, stats);
  return text.toString();
}
