/**
 * Request/response between processes: {@linkcode serve} runs a handler for each request,
 * {@linkcode dial} connects a client that has many requests in flight on one connection, with
 * timeouts and cancellation that reach the handler, a handshake (protocol version, app id,
 * optional token), reconnection, and graceful shutdown. {@linkcode serveLines} serves a plain
 * line protocol that `nc -U` can talk to. The wire format is in `docs/PROTOCOL.md`.
 *
 * @example A daemon and its CLI
 * ```ts
 * import assert from "node:assert/strict";
 * import { dial, serve } from "@dockipc/dockipc/rpc";
 *
 * const path = `/tmp/dockipc-rpc-${Date.now()}.sock`;
 * await using daemon = await serve(path, (request) => `you said ${new TextDecoder().decode(request)}`, {
 *   app: "my-daemon",
 *   token: "s3cret",
 * });
 * await using cli = await dial(path, { app: "my-daemon", token: "s3cret" });
 * assert.equal(new TextDecoder().decode(await cli.request("hi")), "you said hi");
 * ```
 *
 * @module
 */

export { dial } from "./client.ts";
export type { JsonValue, ReplyValue } from "../codec.ts";
export { RemoteError } from "../errors.ts";
export type { RemoteErrorOptions } from "../errors.ts";
export type { DialOptions, RpcClient, RpcRequestOptions } from "./client.ts";
export type { ConnectionEvent, ReconnectOptions, SessionOptions } from "../session/client.ts";
export type { Server, ServerOptions } from "../session/server.ts";
export type { CertIdentity, StreamOperation, TopicPermission, User } from "../session/users.ts";
export type { ConnectTlsOptions, ListenTlsOptions, Pem } from "../tls.ts";
export type { PeerCertificate, TlsInfo } from "../runtime/types.ts";
export { serve } from "./server.ts";
export type {
  RpcContext,
  RpcHandler,
  RpcReply,
  RpcServer,
  RpcServerStats,
  ServeOptions,
} from "./server.ts";
export type { HistogramSnapshot } from "../internal/histogram.ts";
export { serveLines } from "./lines.ts";
export type { LineHandler, LineServer, ServeLinesOptions } from "./lines.ts";
