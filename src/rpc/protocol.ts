/**
 * The RPC wire messages, one per frame (`docs/PROTOCOL.md`, "RPC"): a type byte, then fields.
 * Every decoder checks each length against the bytes left and refuses anything else with
 * `IpcError` `EPROTOCOL`.
 *
 * @module
 */

import type { IpcError } from "../errors.ts";
import { COPY_BELOW, type Encoder } from "../frame/_codec.ts";
import {
  decodeOrInvalid,
  FrameEncoding,
  FrameParser,
  type FrameTaker,
  writeUint32,
} from "../frame/codec.ts";
import { WireReader } from "../internal/wire.ts";
import { copyBytes } from "../runtime/_bytes.ts";

/** The protocol version this code speaks. */
export const VERSION = 1;

/** Message types: the first byte of every frame. */
export const Type = {
  HELLO: 1,
  WELCOME: 2,
  REFUSED: 3,
  REQUEST: 4,
  REPLY: 5,
  ERROR: 6,
  CANCEL: 7,
  CHUNK: 8,
  END: 9,
  GOAWAY: 10,
} as const;

/** The type of the pseudo-message for a frame that does not decode. */
export const INVALID = 0;

/** A decoded message. */
export type Message =
  | { type: typeof Type.HELLO; version: number; app: string; token: Uint8Array }
  | { type: typeof Type.WELCOME; version: number; maxInflight: number }
  | { type: typeof Type.REFUSED; code: string; message: string }
  | { type: typeof Type.REQUEST; id: number; data: Uint8Array }
  | { type: typeof Type.REPLY; id: number; data: Uint8Array }
  | { type: typeof Type.ERROR; id: number; code: string; message: string; stack: string }
  | { type: typeof Type.CANCEL; id: number }
  | { type: typeof Type.CHUNK; id: number; data: Uint8Array }
  | { type: typeof Type.END; id: number }
  | { type: typeof Type.GOAWAY }
  /** Not on the wire: how `messageParser()` hands over a frame it could not decode. */
  | { type: typeof INVALID; error: IpcError };

const utf8 = new TextEncoder();

const NONE = new Uint8Array(0);

/** Builds a frame: the type byte, then each field (a u32, or a u16-prefixed UTF-8 string). */
function build(
  type: number,
  fields: readonly (number | string)[],
  payload: Uint8Array = NONE,
): Uint8Array {
  // A string field holds at most 65,535 bytes: longer text (a stack, say) is cut.
  const parts = fields.map((f) => typeof f === "number" ? f : utf8.encode(f).subarray(0, 0xffff));
  let size = 1 + payload.length;
  for (const part of parts) size += typeof part === "number" ? 4 : 2 + part.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = type;
  let at = 1;
  for (const part of parts) {
    if (typeof part === "number") {
      view.setUint32(at, part);
      at += 4;
    } else {
      view.setUint16(at, part.length);
      out.set(part, at + 2);
      at += 2 + part.length;
    }
  }
  out.set(payload, at);
  return out;
}

/** Encodes a message as one frame's payload. */
export function encode(m: Message): Uint8Array {
  switch (m.type) {
    case Type.HELLO:
      return build(m.type, [m.version, m.app], m.token);
    case Type.WELCOME:
      return build(m.type, [m.version, m.maxInflight]);
    case Type.REFUSED:
      return build(m.type, [m.code, m.message]);
    case Type.REQUEST:
    case Type.REPLY:
    case Type.CHUNK:
      return build(m.type, [m.id], m.data);
    case Type.ERROR:
      return build(m.type, [m.id, m.code, m.message, m.stack]);
    case Type.CANCEL:
    case Type.END:
      return build(m.type, [m.id]);
    case Type.GOAWAY:
      return build(m.type, []);
    case INVALID:
      throw new TypeError("Cannot encode the INVALID pseudo-message");
  }
}

/**
 * Decodes one frame's payload, `length` bytes of `bytes` from `start`; throws `EPROTOCOL` for
 * anything malformed or unknown.
 */
export function decode(
  bytes: Uint8Array,
  start = 0,
  length: number = bytes.length - start,
): Message {
  const r = new WireReader(bytes, "RPC", start, length);
  const type = r.type();
  let m: Message;
  switch (type) {
    case Type.HELLO:
      m = { type: Type.HELLO, version: r.u32("version"), app: r.str("app id"), token: r.rest() };
      break;
    case Type.WELCOME:
      m = { type: Type.WELCOME, version: r.u32("version"), maxInflight: r.u32("maxInflight") };
      break;
    case Type.REFUSED:
      m = { type: Type.REFUSED, code: r.str("code"), message: r.str("message") };
      break;
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
        message: r.str("message"),
        stack: r.str("stack"),
      };
      break;
    case Type.CANCEL:
    case Type.END:
      m = { type, id: r.u32("id") };
      break;
    case Type.GOAWAY:
      m = { type: Type.GOAWAY };
      break;
    default:
      throw r.bad(`its type ${type} is unknown`);
  }
  r.end();
  return m;
}

/**
 * Encodes messages straight into a connection's write batch: a request or reply with a small
 * payload is written there field by field, with no frame allocated for it.
 */
export class MessageEncoding implements Encoder<Message> {
  readonly #max: number;
  readonly #frames: FrameEncoding;

  constructor(maxFrameSize: number) {
    this.#max = maxFrameSize;
    this.#frames = new FrameEncoding(maxFrameSize);
  }

  encode(m: Message, buf: Uint8Array, at: number): number {
    if (m.type !== Type.REQUEST && m.type !== Type.REPLY && m.type !== Type.CHUNK) {
      return this.#frames.encode(encode(m), buf, at);
    }
    const data = m.data;
    const size = 5 + data.length;
    // Too large (the frame encoder says so) or large enough to write by reference.
    if (size > this.#max || data.length >= COPY_BELOW) {
      return this.#frames.encode(encode(m), buf, at);
    }
    if (at + 4 + size > buf.length) return -1;
    writeUint32(buf, at, size);
    buf[at + 4] = m.type;
    writeUint32(buf, at + 5, m.id);
    copyBytes(buf, at + 9, data);
    return 4 + size;
  }

  encodeAlone(m: Message): Uint8Array[] {
    return this.#frames.encodeAlone(encode(m));
  }
}

/** Decodes a frame in place into a message; one that does not decode, into INVALID. */
const takeMessage: FrameTaker<Message> = decodeOrInvalid(
  decode,
  (error) => ({ type: INVALID, error }),
);

/** The decoder of an RPC connection: frames, each decoded in place into a message. */
export function messageParser(maxFrameSize: number): FrameParser<Message> {
  return new FrameParser(maxFrameSize, takeMessage);
}
