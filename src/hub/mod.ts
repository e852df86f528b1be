/**
 * The pub/sub hub: topics with `*` and `>` wildcards, subscriptions as bounded streams with an
 * overflow policy, queue groups with round robin or key affinity, request/reply, and counters
 * in Prometheus format.
 *
 * @example A hub with a worker pool
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub } from "@dockipc/dockipc/hub";
 *
 * await using hub = new Hub();
 * const workers = [1, 2, 3].map(() => hub.subscribe("jobs.>", { queue: "workers" }));
 * for (let i = 0; i < 6; i++) await hub.publish("jobs.resize", `job ${i}`);
 * // Round robin: each worker got two of the six jobs.
 * assert.deepEqual(workers.map((w) => w.stats().pending), [2, 2, 2]);
 * ```
 *
 * @module
 */

export { DEAD_LETTER_HEADERS, ERROR_CODE_HEADER, ERROR_HEADER, Hub, MSG_ID_HEADER } from "./hub.ts";
export type {
  ConsumedMessage,
  ConsumeOptions,
  ConsumerConfig,
  ConsumerInfo,
  DeliverPolicy,
  NakOptions,
} from "./consumer.ts";
export type { Consumer } from "./consumer_reader.ts";
export type {
  PublishAck,
  ReadStreamOptions,
  StoredMessage,
  StreamConfig,
  StreamInfo,
  StreamRetention,
  StreamStats,
} from "./stream.ts";
export type { SyncMode } from "../wal/options.ts";
export type { JsonValue, ReplyValue } from "../codec.ts";
export { RemoteError } from "../errors.ts";
export type { RemoteErrorOptions } from "../errors.ts";
export type {
  HandleOptions,
  Handler,
  HubOptions,
  HubStats,
  PublishOptions,
  PubSub,
  RequestOptions,
  StoredStreams,
  TopicStats,
} from "./hub.ts";
export type { Subscription } from "./subscription.ts";
export type {
  Gap,
  Message,
  OverflowPolicy,
  SubscribeOptions,
  SubscriptionStats,
} from "./subscription.ts";
export { PRIORITY_HEADER } from "./subscription.ts";
export { NOT_BEFORE_HEADER } from "./schedule.ts";
export type { ScheduleStats } from "./schedule.ts";
export type { HubLimits, LimitPolicy, LimitStats, RateLimit } from "./limits.ts";
export { toPrometheus } from "./prometheus.ts";
export type { HistogramSnapshot } from "../internal/histogram.ts";
export { serveHub } from "./server.ts";
export type {
  ConnectionStats,
  HubServer,
  ServedHubStats,
  ServeHubOptions,
  ServerLimits,
} from "./server.ts";
export { connectHub } from "./remote.ts";
export type { ConnectHubOptions, RemoteHub, RemoteHubStats } from "./remote.ts";
export type { ConnectionEvent, ReconnectOptions, SessionOptions } from "../session/client.ts";
export type { Server, ServerOptions } from "../session/server.ts";
export type { CertIdentity, StreamOperation, TopicPermission, User } from "../session/users.ts";
export type { ConnectTlsOptions, ListenTlsOptions, Pem } from "../tls.ts";
export type { PeerCertificate, TlsInfo } from "../runtime/types.ts";
export { topicMatches, validatePattern, validateTopic } from "./topics.ts";
