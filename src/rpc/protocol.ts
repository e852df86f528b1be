/**
 * The RPC vocabulary on the session protocol (`docs/PROTOCOL.md`, "RPC"): requests, replies,
 * errors, cancellation and streamed replies, each a type byte and its fields. Every decoder
 * checks each length against the bytes left and refuses anything else with `IpcError`
 * `EPROTOCOL`.
 *
 * @module
 */

import { COPY_BELOW, type Encoder } from "../frame/format.ts";
import { FrameEncoding, writeUint32 } from "../frame/codec.ts";
import { WireReader } from "../internal/wire.ts";
import { copyBytes } from "../runtime/bytes.ts";
import {
  buildFrame,
  type Codec,
  encodeControl,
  isControl,
  sessionCodec,
  sessionDecoder,
  type SessionMessage,
  type WireDecoder,
} from "../session/protocol.ts";

/** The RPC message types: the first byte of every frame after the session's own. */
export const Type = {
  REQUEST: 16,
  REPLY: 17,
  ERROR: 18,
  CANCEL: 19,
  CHUNK: 20,
  END: 21,
} as const;

/** An RPC message. */
export type RpcMessage =
  | { type: typeof Type.REQUEST; id: number; data: Uint8Array }
  | { type: typeof Type.REPLY; id: number; data: Uint8Array }
  | { type: typeof Type.ERROR; id: number; code: string; message: string; stack: string }
  | { type: typeof Type.CANCEL; id: number }
  | { type: typeof Type.CHUNK; id: number; data: Uint8Array }
  | { type: typeof Type.END; id: number };

/** What an RPC connection carries: the session's messages and RPC's. */
export type Message = SessionMessage<RpcMessage>;

/** Encodes a message as one frame's payload. */
export function encode(m: Message): Uint8Array {
  if (isControl(m)) return encodeControl(m);
  switch (m.type) {
    case Type.REQUEST:
    case Type.REPLY:
    case Type.CHUNK:
      return buildFrame(m.type, [m.id], m.data);
    case Type.ERROR:
      return buildFrame(m.type, [m.id, m.code, m.message, m.stack]);
    case Type.CANCEL:
    case Type.END:
      return buildFrame(m.type, [m.id]);
  }
}

/** Decodes an RPC message (type 16 and up); throws `EPROTOCOL`. */
function decodeRpc(bytes: Uint8Array, start: number, length: number): RpcMessage {
  const r = new WireReader(bytes, "RPC", start, length);
  const type = r.type();
  let m: RpcMessage;
  switch (type) {
    case Type.REQUEST:
    case Type.REPLY:
    case Type.CHUNK:
      m = { type, id: r.u32("id"), data: r.rest() };
      break;
    case Type.ERROR:
      m = {
        type: Type.ERROR,
        id: r.u32("id"),
        code: r.str("code"),
        message: r.text("message"),
        stack: r.text("stack"),
      };
      break;
    case Type.CANCEL:
    case Type.END:
      m = { type, id: r.u32("id") };
      break;
    default:
      throw r.bad(`its type ${type} is unknown`);
  }
  r.end();
  return m;
}

/** Decodes one frame's payload; throws `EPROTOCOL` for anything malformed or unknown. */
export const decode: WireDecoder<Message> = sessionDecoder("RPC", decodeRpc);

/**
 * Encodes RPC messages straight into a connection's write batch: a request or reply with a
 * small payload is written there field by field, with no frame allocated for it.
 */
class RpcEncoding implements Encoder<RpcMessage> {
  readonly #frames: FrameEncoding;

  constructor(maxFrameSize: number) {
    this.#frames = new FrameEncoding(maxFrameSize);
  }

  narrow(max: number): void {
    this.#frames.narrow(max);
  }

  encode(m: RpcMessage, buf: Uint8Array, at: number): number {
    if (m.type !== Type.REQUEST && m.type !== Type.REPLY && m.type !== Type.CHUNK) {
      return this.#frames.encode(encode(m), buf, at);
    }
    const data = m.data;
    const size = 5 + data.length;
    // Too large (the frame encoder says so) or large enough to write by reference.
    if (size > this.#frames.max || data.length >= COPY_BELOW) {
      return this.#frames.encode(encode(m), buf, at);
    }
    if (at + 4 + size > buf.length) return -1;
    writeUint32(buf, at, size);
    buf[at + 4] = m.type;
    writeUint32(buf, at + 5, m.id);
    copyBytes(buf, at + 9, data);
    return 4 + size;
  }

  encodeAlone(m: RpcMessage): Uint8Array[] {
    return this.#frames.encodeAlone(encode(m));
  }
}

/** The RPC wire format, for the session layer. */
export const RPC: Codec<RpcMessage> = sessionCodec(
  "RPC",
  decode,
  (maxFrameSize) => new RpcEncoding(maxFrameSize),
);
