/**
 * dockipc: local inter-process communication for Deno, Bun and Node.
 *
 * This entry point holds the transport: {@linkcode listen} and {@linkcode connect} over unix
 * sockets and TCP, each connection a pair of Web Streams ({@linkcode Conn}), addresses, the
 * payload codecs {@linkcode json} and {@linkcode text}, and the one error class
 * {@linkcode IpcError}.
 *
 * @example A unix-socket echo server and a client
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen } from "@dockipc/dockipc";
 *
 * const path = `/tmp/dockipc-mod-${Date.now()}.sock`;
 * await using listener = await listen(path);
 * (async () => {
 *   for await (const conn of listener) conn.readable.pipeTo(conn.writable);
 * })();
 *
 * const conn = await connect(path);
 * const writer = conn.writable.getWriter();
 * await writer.write(new TextEncoder().encode("hello"));
 * await writer.close();
 * assert.equal(await new Response(conn.readable).text(), "hello");
 * ```
 *
 * @module
 */

export { formatAddress, parseAddress } from "./src/address.ts";
export type {
  Address,
  ParseAddressOptions,
  TcpAddress,
  TlsAddress,
  UnixAddress,
} from "./src/address.ts";
export { IpcError, RemoteError } from "./src/errors.ts";
export { json, text } from "./src/codec.ts";
export type { Codec, JsonValue, ReplyValue } from "./src/codec.ts";
export type { IpcErrorCode, IpcErrorOptions, RemoteErrorOptions } from "./src/errors.ts";
export { connect, listen } from "./src/transport.ts";
export type { ConnectOptions, Listener, ListenOptions } from "./src/transport.ts";
export type { Conn, PeerCertificate, TlsInfo } from "./src/runtime/types.ts";
export type { ConnectTlsOptions, ListenTlsOptions, Pem } from "./src/tls.ts";
export { FrameDecoderStream, FrameEncoderStream } from "./src/frame/codec.ts";
export type { FrameStreamOptions } from "./src/frame/codec.ts";
export { LineDecoderStream, LineEncoderStream } from "./src/frame/lines.ts";
export type { LineStreamOptions } from "./src/frame/lines.ts";
export { frameChannel, framed, lines } from "./src/frame/framed.ts";
export type { FrameChannel, FramedConn } from "./src/frame/framed.ts";
