/**
 * The session protocol's toolkit (`docs/PROTOCOL.md`, "Session"), shared by RPC and the hub.
 * Every frame starts with a type byte. Types below {@linkcode FIRST_VOCABULARY_TYPE} are the
 * session's own control messages (HELLO, WELCOME, REFUSE, GOAWAY, PING/PONG, FLUSH/FLUSHED);
 * the rest belong to the protocol on top, its vocabulary. Decoders check every length against
 * the bytes left and refuse anything else with `IpcError` `EPROTOCOL`.
 *
 * @module
 */

import type { IpcError } from "../errors.ts";
import type { Encoder } from "../frame/format.ts";
import { FrameEncoding, FrameParser, type FrameTaker } from "../frame/codec.ts";
import { textField, WireReader } from "../internal/wire.ts";

/** The version of the session protocol, and so of every vocabulary on it. */
export const VERSION = 4;

/** The session's message types. */
export const Control = {
  HELLO: 1,
  WELCOME: 2,
  REFUSE: 3,
  GOAWAY: 4,
  PING: 5,
  PONG: 6,
  FLUSH: 7,
  FLUSHED: 8,
} as const;

/** The first type byte a vocabulary may use; the ones below are the session's. */
export const FIRST_VOCABULARY_TYPE = 16;

/** The type of the pseudo-message for a frame that does not decode. */
export const INVALID = 0;

/** A session message. */
export type ControlMessage =
  /** Client → server, first: the protocol version, the application, the shared secret. */
  | { type: typeof Control.HELLO; version: number; app: string; token: Uint8Array }
  /** Server → client: the handshake succeeded; requests the server runs at once (0: no bound). */
  | { type: typeof Control.WELCOME; version: number; maxInflight: number; maxFrameSize: number }
  /** Server → client: the connection is refused (at the handshake or later); it closes next. */
  | { type: typeof Control.REFUSE; code: string; message: string }
  /** Server → client: send nothing more here; the server reads until the client ends its side. */
  | { type: typeof Control.GOAWAY }
  /** Client → server, for liveness: answered with PONG at once. */
  | { type: typeof Control.PING }
  | { type: typeof Control.PONG }
  /** Client → server: answered with FLUSHED once everything sent before it was dealt with. */
  | { type: typeof Control.FLUSH }
  | { type: typeof Control.FLUSHED };

/** Not on the wire: how a session parser hands over a frame it could not decode. */
export interface Invalid {
  type: typeof INVALID;
  error: IpcError;
}

/** What a session connection carries: control messages and a vocabulary's `V`. */
export type SessionMessage<V> = V | ControlMessage;

const NONE = new Uint8Array(0);

/**
 * Builds a frame's payload: the type byte, then each field (a u32, or a u16-prefixed UTF-8
 * string, cut at a character boundary to fit 65,535 bytes), then `payload`.
 */
export function buildFrame(
  type: number,
  fields: readonly (number | string)[],
  payload: Uint8Array = NONE,
): Uint8Array {
  const parts = fields.map((f) => typeof f === "number" ? f : textField(f));
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

/** Whether a message is the session's rather than its vocabulary's. */
export function isControl<V extends { type: number }>(
  m: SessionMessage<V>,
): m is ControlMessage {
  return m.type < FIRST_VOCABULARY_TYPE;
}

/** Encodes a session message as one frame's payload. */
export function encodeControl(m: ControlMessage): Uint8Array {
  switch (m.type) {
    case Control.HELLO:
      return buildFrame(m.type, [m.version, m.app], m.token);
    case Control.WELCOME:
      return buildFrame(m.type, [m.version, m.maxInflight, m.maxFrameSize]);
    case Control.REFUSE:
      return buildFrame(m.type, [m.code, m.message.slice(0, 4096)]);
    default:
      return buildFrame(m.type, []);
  }
}

/** Decodes a session message from `r`, whose type byte is `type`; throws `EPROTOCOL`. */
function decodeControl(r: WireReader, type: number): ControlMessage {
  let m: ControlMessage;
  switch (type) {
    case Control.HELLO:
      m = { type, version: r.u32("version"), app: r.str("app id"), token: r.rest() };
      break;
    case Control.WELCOME:
      m = {
        type,
        version: r.u32("version"),
        maxInflight: r.u32("maxInflight"),
        maxFrameSize: r.u32("maxFrameSize"),
      };
      break;
    case Control.REFUSE:
      m = { type, code: r.str("code"), message: r.text("message") };
      break;
    case Control.GOAWAY:
    case Control.PING:
    case Control.PONG:
    case Control.FLUSH:
    case Control.FLUSHED:
      m = { type };
      break;
    default:
      throw r.bad(`its type ${type} is unknown`);
  }
  r.end();
  return m;
}

/** A vocabulary's decoder of one frame, `length` bytes of `bytes` from `start`. */
export type VocabularyDecoder<V> = (bytes: Uint8Array, start: number, length: number) => V;

/**
 * A decoder of one frame's payload, `length` bytes of `bytes` from `start` (the whole array by
 * default); throws `EPROTOCOL` for anything malformed or unknown.
 */
export type WireDecoder<T> = (bytes: Uint8Array, start?: number, length?: number) => T;

/**
 * A protocol's whole decoder: session messages by the toolkit, the rest by `vocabulary`. Throws
 * `EPROTOCOL` for anything malformed or unknown, naming `protocol`.
 */
export function sessionDecoder<V>(
  protocol: string,
  vocabulary: VocabularyDecoder<V>,
): WireDecoder<SessionMessage<V>> {
  return (bytes, start = 0, length = bytes.length - start) => {
    if (length > 0 && bytes[start]! >= FIRST_VOCABULARY_TYPE) {
      return vocabulary(bytes, start, length);
    }
    const r = new WireReader(bytes, protocol, start, length);
    return decodeControl(r, r.type());
  };
}

/**
 * Encodes a protocol's messages into a connection's write batch: the vocabulary's by its own
 * encoder (field by field, on the hot path), the session's few as whole frames.
 */
export class SessionEncoding<V extends { type: number }> implements Encoder<SessionMessage<V>> {
  readonly #vocabulary: Encoder<V>;
  readonly #frames: FrameEncoding;

  constructor(maxFrameSize: number, vocabulary: Encoder<V>) {
    this.#vocabulary = vocabulary;
    this.#frames = new FrameEncoding(maxFrameSize);
  }

  encode(m: SessionMessage<V>, buf: Uint8Array, at: number): number {
    if (isControl(m)) return this.#frames.encode(encodeControl(m), buf, at);
    return this.#vocabulary.encode(m, buf, at);
  }

  encodeAlone(m: SessionMessage<V>): Uint8Array[] {
    if (isControl(m)) return this.#frames.encodeAlone(encodeControl(m));
    return this.#vocabulary.encodeAlone(m);
  }

  narrow(max: number): void {
    this.#frames.narrow(max);
    this.#vocabulary.narrow?.(max);
  }
}

/** What a session needs of a protocol's wire format. */
export interface Codec<V extends { type: number }> {
  /** Named in errors and refusals: "RPC", "hub". */
  readonly protocol: string;
  /** The decoder of a new connection. */
  parser(maxFrameSize: number, firstFrameSize?: number): FrameParser<SessionMessage<V> | Invalid>;
  /** The encoder of a new connection. */
  encoding(maxFrameSize: number): Encoder<SessionMessage<V>>;
}

/**
 * A protocol's wire format: its frames decoded in place by `decode` (a frame that does not
 * decode becomes {@linkcode Invalid}, for the receiver to act on after the messages before it),
 * its vocabulary encoded by `encoding` and the session's messages by the toolkit.
 */
export function sessionCodec<V extends { type: number }>(
  protocol: string,
  decode: WireDecoder<SessionMessage<V>>,
  encoding: (maxFrameSize: number) => Encoder<V>,
): Codec<V> {
  const take: FrameTaker<SessionMessage<V> | Invalid> = (bytes, start, length) => {
    try {
      return decode(bytes, start, length);
    } catch (err) {
      return { type: INVALID, error: err as IpcError };
    }
  };
  return {
    protocol,
    parser: (maxFrameSize, firstFrameSize) => new FrameParser(maxFrameSize, take, firstFrameSize),
    encoding: (maxFrameSize) => new SessionEncoding(maxFrameSize, encoding(maxFrameSize)),
  };
}
