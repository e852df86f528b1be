/**
 * The hub's wire messages, one per frame (`docs/PROTOCOL.md`, "Hub"): a type byte, then fields.
 * Topics, keys and headers travel as u16-length UTF-8 strings; payloads pass untouched.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { COPY_BELOW, type Encoder } from "../frame/format.ts";
import { FrameEncoding, writeUint32 } from "../frame/codec.ts";
import {
  type LastString,
  readUint32,
  readUint53,
  repeats,
  strField,
  view,
  WireReader,
  WireWriter,
} from "../internal/wire.ts";
import {
  type Codec,
  encodeControl,
  isControl,
  sessionCodec,
  sessionDecoder,
  type SessionMessage,
  type WireDecoder,
} from "../session/protocol.ts";
import type { SyncMode } from "../wal/options.ts";
import { type Gap, type Message, NO_HEADERS, type OverflowPolicy } from "./subscription.ts";

/** What a reader did with a consumed message: acknowledged, gave back, gave up, still working. */
export type Settlement = "ack" | "nak" | "term" | "working";

/** A message as a stream stored it: what DELIVER carries (a `StoredMessage`). */
export interface StoredEnvelope extends Message {
  readonly stream: string;
  readonly timestamp: number;
  readonly id: string;
}

/** The hub's message types: the first byte of every frame after the session's own. */
export const Op = {
  ERR: 16,
  SUB: 17,
  UNSUB: 18,
  CREDIT: 19,
  PUB: 20,
  MSG: 21,
  REQ: 22,
  RES: 23,
  DRAIN: 24,
  END: 25,
  SPUB: 26,
  PUBACK: 27,
  CALL: 28,
  RESULT: 29,
  CONSUME: 30,
  CONSUMING: 31,
  DELIVER: 32,
  SETTLE: 33,
  SETTLED: 34,
  UNCONSUME: 35,
  STREAMS: 36,
  OMSG: 37,
} as const;

/** How SETTLE says what the reader did with a message. */
export const SETTLEMENTS: readonly Settlement[] = ["ack", "nak", "term", "working"];
/** How PUBACK says how durable a stored message is. */
const SYNC_MODES: readonly SyncMode[] = ["always", "batch", "none"];
const utf8 = new TextEncoder();

const NO_FIELDS: readonly Uint8Array[] = [];

/** A hub message. */
export type HubMessage =
  /** A subscription or request failed: `id` names it. */
  /** `remoteCode`: for `EREMOTE`, what the handler's error called itself; else empty. */
  | { type: typeof Op.ERR; id: number; code: string; message: string; remoteCode: string }
  | {
    type: typeof Op.SUB;
    sid: number;
    buffer: number;
    credit: number;
    maxBytes: number;
    overflow: OverflowPolicy;
    /** An `ordered` subscription: its messages come as OMSG. */
    ordered: boolean;
    pattern: string;
    queue: string | undefined;
  }
  | { type: typeof Op.UNSUB; sid: number }
  /** Stop taking messages for `sid`, send what it holds as credit allows, then END. */
  | { type: typeof Op.DRAIN; sid: number }
  /** Subscription `sid` has ended on the server: nothing more comes for it. */
  | { type: typeof Op.END; sid: number }
  | { type: typeof Op.CREDIT; sid: number; n: number }
  /**
   * The envelope of PUB, MSG, REQ and RES is a message as the subscriber gets it, all but its
   * `seq` on the wire for MSG and RES. A published one (PUB, REQ) has `seq` 0: the hub sets it.
   */
  | { type: typeof Op.PUB; env: Message }
  | { type: typeof Op.MSG; sid: number; env: Message }
  /** MSG for an `ordered` subscription: the message's numbering and any gap before it too. */
  | { type: typeof Op.OMSG; sid: number; env: Message }
  | { type: typeof Op.REQ; id: number; timeout: number; env: Message }
  | { type: typeof Op.RES; id: number; env: Message }
  /** A publish to a stream's topic: PUBACK (or ERR) answers `id` once it is stored. */
  | { type: typeof Op.SPUB; id: number; env: Message }
  | {
    type: typeof Op.PUBACK;
    id: number;
    seq: number;
    duplicate: boolean;
    durability: SyncMode;
    stream: string;
  }
  /** A call of a stream or consumer operation by name, its arguments as JSON: RESULT answers. */
  | { type: typeof Op.CALL; id: number; method: string; body: Uint8Array }
  | { type: typeof Op.RESULT; id: number; body: Uint8Array }
  /** Attach reader `cid` to a consumer (its options as JSON): CONSUMING (or ERR) answers. */
  | { type: typeof Op.CONSUME; cid: number; buffer: number; stream: string; body: Uint8Array }
  | { type: typeof Op.CONSUMING; cid: number; name: string }
  /** A message for reader `cid`: its attempt, and the stored message (its `seq` the stream's). */
  | { type: typeof Op.DELIVER; cid: number; attempt: number; env: StoredEnvelope }
  /**
   * Reader `cid` settles messages `seqs` alike (the acks of a moment share one SETTLE): SETTLED
   * answers `id` with those that failed, or ERR when none could be.
   */
  | {
    type: typeof Op.SETTLE;
    id: number;
    cid: number;
    seqs: readonly number[];
    how: Settlement;
    arg: string;
  }
  | { type: typeof Op.SETTLED; id: number; failed: readonly SettleFailure[] }
  /** Reader `cid` is closed: what it holds goes to the consumer's other readers. */
  | { type: typeof Op.UNCONSUME; cid: number }
  /** The streams' names, subjects and durability, as JSON: sent on connecting and on a change. */
  | { type: typeof Op.STREAMS; body: Uint8Array };

/**
 * A message of a SETTLE that could not be settled: where it stands in the SETTLE's list (one
 * message may stand twice), and why, as an `IpcError`'s code and message.
 */
export interface SettleFailure {
  readonly at: number;
  readonly code: string;
  readonly message: string;
}

/** What a hub connection carries: the session's messages and the hub's. */
export type HubWire = SessionMessage<HubMessage>;

const OVERFLOW: readonly OverflowPolicy[] = ["block", "drop-oldest", "drop-newest", "error"];
/** SUB's overflow byte: the policy, and this bit for an `ordered` subscription. */
const ORDERED = 0x80;
/** How OMSG says which gap came before its message: none, or a `Gap`'s reason. */
const GAP_REASONS: readonly (Gap["reason"] | undefined)[] = [undefined, "overflow", "reconnect"];
const HAS_KEY = 1;
const HAS_REPLY = 2;

/** An envelope's fields but its payload, encoded once, and their size on the wire. */
interface EncodedEnvelope {
  topic: Uint8Array;
  key: Uint8Array | undefined;
  reply: Uint8Array | undefined;
  headers: readonly Uint8Array[];
  /** The bytes of the fields above, with their lengths and the flags: all but the payload. */
  size: number;
}

/**
 * Envelopes of a topic alone (no key, reply or headers), encoded, by topic: most traffic
 * repeats a few topics and nothing else.
 */
const plainEnvelopes = new Map<string, EncodedEnvelope>();

function plainEnvelope(topic: string): EncodedEnvelope {
  let e = plainEnvelopes.get(topic);
  if (e === undefined) {
    if (plainEnvelopes.size >= 1024) plainEnvelopes.clear();
    const bytes = strField(topic, "topic");
    e = {
      topic: bytes,
      key: undefined,
      reply: undefined,
      headers: NO_FIELDS,
      size: 1 + 2 + bytes.length + 2,
    };
    plainEnvelopes.set(topic, e);
  }
  return e;
}

function encodeEnvelope(env: Message): EncodedEnvelope {
  const plain = plainEnvelope(env.topic);
  if (env.key === undefined && env.reply === undefined && env.headers === NO_HEADERS) return plain;
  const key = env.key === undefined ? undefined : strField(env.key, "key");
  const reply = env.reply === undefined ? undefined : strField(env.reply, "reply topic");
  let headers: Uint8Array[] | undefined;
  let size = plain.size;
  if (key) size += 2 + key.length;
  if (reply) size += 2 + reply.length;
  for (const name in env.headers) {
    const n = strField(name, "header name");
    const v = strField(env.headers[name]!, "header value");
    (headers ??= []).push(n, v);
    size += 4 + n.length + v.length;
  }
  const fields = headers ?? NO_FIELDS;
  if (fields.length / 2 > 0xffff) {
    throw new TypeError(`Cannot send ${fields.length / 2} headers: the limit is 65535`);
  }
  return { topic: plain.topic, key, reply, headers: fields, size };
}

function writeEnvelope(w: WireWriter, e: EncodedEnvelope, data: Uint8Array): void {
  w.u8((e.key ? HAS_KEY : 0) | (e.reply ? HAS_REPLY : 0));
  w.str(e.topic);
  if (e.key) w.str(e.key);
  if (e.reply) w.str(e.reply);
  w.buf[w.at] = (e.headers.length / 2) >>> 8;
  w.buf[w.at + 1] = e.headers.length / 2;
  w.at += 2;
  for (const h of e.headers) w.str(h);
  w.bytes(data);
}

/** The topic decoded last, and its bytes: a stream of messages mostly repeats its topic. */
const lastTopic: LastString = { bytes: new Uint8Array(64), length: 0, text: "" };

/** Reads an envelope, as a message with sequence `seq`. */
function readEnvelope(r: WireReader, seq: number): Message {
  const flags = r.u8("flags");
  if (flags & ~(HAS_KEY | HAS_REPLY)) throw r.bad(`its flags ${flags} are unknown`);
  const topic = r.strRepeated("topic", lastTopic);
  const key = flags & HAS_KEY ? r.str("key") : undefined;
  const reply = flags & HAS_REPLY ? r.str("reply topic") : undefined;
  const count = (r.u8("header count") << 8) | r.u8("header count");
  if (count === 0) return { topic, data: r.rest(), headers: NO_HEADERS, seq, key, reply };
  const headers: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const name = r.str("header name");
    if (Object.hasOwn(headers, name)) throw r.bad(`its header "${name}" comes twice`);
    const value = r.str("header value");
    // Assigning "__proto__" would set the prototype instead and lose the header.
    if (name === "__proto__") {
      Object.defineProperty(headers, name, { value, enumerable: true, writable: true });
    } else headers[name] = value;
  }
  return { topic, data: r.rest(), headers, seq, key, reply };
}

/** The bytes of a message's frame payload after its type byte and fixed fields. */
function fixedSize(m: HubMessage): number {
  switch (m.type) {
    case Op.MSG:
    case Op.RES:
      return 4 + 8;
    case Op.OMSG:
      return 4 + 8 + 8 + 4 + 8 + 1 + 4 + 8;
    case Op.REQ:
      return 4 + 4;
    case Op.SPUB:
      return 4;
    case Op.DELIVER:
      return 4 + 4 + 8 + 8 + 2 + 3 * m.env.id.length;
    default:
      return 0;
  }
}

/** Writes a message into `buf` at `at` (its size known); returns the end. */
function writeMessage(m: HubMessage, buf: Uint8Array, at: number, env?: EncodedEnvelope): number {
  const w = new WireWriter(buf, at);
  w.u8(m.type);
  switch (m.type) {
    case Op.ERR:
      w.u32(m.id);
      w.str(strField(m.code, "code"));
      w.str(strField(m.message.slice(0, 4096), "message"));
      w.str(strField(m.remoteCode, "remote code"));
      break;
    case Op.SUB:
      w.u32(m.sid);
      w.u32(m.buffer);
      w.u32(m.credit);
      w.u32(m.maxBytes);
      w.u8(OVERFLOW.indexOf(m.overflow) | (m.ordered ? ORDERED : 0));
      w.str(strField(m.pattern, "pattern"));
      w.str(strField(m.queue ?? "", "queue"));
      break;
    case Op.UNSUB:
    case Op.DRAIN:
    case Op.END:
      w.u32(m.sid);
      break;
    case Op.CREDIT:
      w.u32(m.sid);
      w.u32(m.n);
      break;
    case Op.PUB:
      writeEnvelope(w, env!, m.env.data);
      break;
    case Op.MSG:
      w.u32(m.sid);
      w.u64(m.env.seq);
      writeEnvelope(w, env!, m.env.data);
      break;
    case Op.OMSG: {
      const { seq, topicSeq = 0, publisher = 0, pubSeq = 0, gap } = m.env;
      w.u32(m.sid);
      w.u64(seq);
      w.u64(topicSeq);
      w.u32(publisher);
      w.u64(pubSeq);
      w.u8(GAP_REASONS.indexOf(gap?.reason));
      w.u32(Math.min(gap?.count ?? 0, 0xffff_ffff));
      w.u64(gap?.from ?? 0);
      writeEnvelope(w, env!, m.env.data);
      break;
    }
    case Op.REQ:
      w.u32(m.id);
      w.u32(m.timeout);
      writeEnvelope(w, env!, m.env.data);
      break;
    case Op.RES:
      w.u32(m.id);
      w.u64(m.env.seq);
      writeEnvelope(w, env!, m.env.data);
      break;
    case Op.SPUB:
      w.u32(m.id);
      writeEnvelope(w, env!, m.env.data);
      break;
    case Op.PUBACK:
      w.u32(m.id);
      w.u64(m.seq);
      w.u8(m.duplicate ? 1 : 0);
      w.u8(SYNC_MODES.indexOf(m.durability));
      w.str(strField(m.stream, "stream"));
      break;
    case Op.CALL:
      w.u32(m.id);
      w.str(strField(m.method, "method"));
      w.bytes(m.body);
      break;
    case Op.RESULT:
      w.u32(m.id);
      w.bytes(m.body);
      break;
    case Op.CONSUME:
      w.u32(m.cid);
      w.u32(m.buffer);
      w.str(strField(m.stream, "stream"));
      w.bytes(m.body);
      break;
    case Op.CONSUMING:
      w.u32(m.cid);
      w.str(strField(m.name, "consumer"));
      break;
    case Op.DELIVER:
      w.u32(m.cid);
      w.u32(m.attempt);
      w.u64(m.env.seq);
      w.u64(m.env.timestamp);
      w.str(strField(m.env.id, "message id"));
      writeEnvelope(w, env!, m.env.data);
      break;
    case Op.SETTLE:
      w.u32(m.id);
      w.u32(m.cid);
      w.u8(SETTLEMENTS.indexOf(m.how));
      w.str(strField(m.arg, "argument"));
      w.u32(m.seqs.length);
      for (const seq of m.seqs) w.u64(seq);
      break;
    case Op.SETTLED:
      w.u32(m.id);
      w.u32(m.failed.length);
      for (const f of m.failed) {
        w.u32(f.at);
        w.str(strField(f.code, "code"));
        w.str(strField(f.message.slice(0, 4096), "message"));
      }
      break;
    case Op.UNCONSUME:
      w.u32(m.cid);
      break;
    case Op.STREAMS:
      w.bytes(m.body);
      break;
  }
  return w.at;
}

/** Encodes a message as one frame's payload. */
export function encodeHub(m: HubWire): Uint8Array {
  if (isControl(m)) return encodeControl(m);
  const env = "env" in m ? encodeEnvelope(m.env) : undefined;
  const buf = new Uint8Array(sizeBound(m, env));
  return buf.subarray(0, writeMessage(m, buf, 0, env));
}

/**
 * The size of a message's payload: exact with an envelope, else at most this, counting 3 bytes
 * for each UTF-16 unit of a string.
 */
function sizeBound(m: HubMessage, env: EncodedEnvelope | undefined): number {
  if ("env" in m) return 1 + fixedSize(m) + env!.size + m.env.data.length;
  switch (m.type) {
    case Op.ERR:
      return 1 + 4 + 2 + 3 * m.code.length + 2 + 3 * Math.min(m.message.length, 4096) + 2 +
        3 * m.remoteCode.length;
    case Op.SUB:
      return 1 + 16 + 1 + 2 + 3 * m.pattern.length + 2 + 3 * (m.queue?.length ?? 0);
    case Op.PUBACK:
      return 1 + 4 + 8 + 2 + 2 + 3 * m.stream.length;
    case Op.CALL:
      return 1 + 4 + 2 + 3 * m.method.length + m.body.length;
    case Op.RESULT:
      return 1 + 4 + m.body.length;
    case Op.CONSUME:
      return 1 + 8 + 2 + 3 * m.stream.length + m.body.length;
    case Op.CONSUMING:
      return 1 + 4 + 2 + 3 * m.name.length;
    case Op.SETTLE:
      return 1 + 8 + 1 + 2 + 3 * m.arg.length + 4 + 8 * m.seqs.length;
    case Op.SETTLED: {
      let size = 1 + 4 + 4;
      for (const f of m.failed) {
        size += 4 + 2 + 3 * f.code.length + 2 + 3 * Math.min(f.message.length, 4096);
      }
      return size;
    }
    case Op.STREAMS:
      return 1 + m.body.length;
    default:
      return 1 + 8;
  }
}

/** Decodes a hub message (type 16 and up); throws `EPROTOCOL`. */
function decodeVocabulary(bytes: Uint8Array, start: number, length: number): HubMessage {
  return decodePlain(bytes, start, start + length) ?? decodeAny(bytes, start, length);
}

/** Decodes one frame's payload; throws `EPROTOCOL` for anything malformed or unknown. */
export const decodeHub: WireDecoder<HubWire> = sessionDecoder("hub", decodeVocabulary);

/**
 * Most traffic, read in a few steps: a PUB or MSG on the topic decoded last, with no key, reply
 * topic or headers. Anything else, well-formed or not, gives undefined, and `decodeAny` reads
 * it (and words what is wrong). This path decodes a message 1.2 to 1.3 times faster: it makes
 * no reader, and compares the topic with the last one where it stands.
 */
function decodePlain(bytes: Uint8Array, start: number, end: number): HubMessage | undefined {
  const op = bytes[start];
  if (op !== Op.MSG && op !== Op.PUB) return undefined;
  const flags = op === Op.MSG ? start + 13 : start + 1; // after MSG's sid and seq
  const n = (bytes[flags + 1]! << 8) | bytes[flags + 2]!;
  const headerCount = flags + 3 + n;
  if (
    headerCount + 2 > end || bytes[flags] !== 0 || !repeats(lastTopic, bytes, flags + 3, n) ||
    bytes[headerCount] !== 0 || bytes[headerCount + 1] !== 0
  ) return undefined;
  const seq = op === Op.MSG ? readUint53(bytes, start + 5) : 0;
  if (seq < 0) return undefined; // 2^53 or more: refused by `decodeAny`
  const data = view(bytes, headerCount + 2, end - headerCount - 2);
  const env: Message = {
    topic: lastTopic.text,
    data,
    headers: NO_HEADERS,
    seq,
    key: undefined,
    reply: undefined,
  };
  return op === Op.MSG ? { type: op, sid: readUint32(bytes, start + 1), env } : { type: op, env };
}

/** Decodes any message, field by field; throws `EPROTOCOL` for anything malformed or unknown. */
function decodeAny(bytes: Uint8Array, start: number, length: number): HubMessage {
  const r = new WireReader(bytes, "hub", start, length);
  const op = r.type();
  let m: HubMessage;
  switch (op) {
    case Op.ERR:
      m = {
        type: Op.ERR,
        id: r.u32("id"),
        code: r.str("code"),
        message: r.text("message"),
        remoteCode: r.str("remote code"),
      };
      break;
    case Op.SUB: {
      const sid = r.u32("sid");
      const buffer = r.u32("buffer");
      const credit = r.u32("credit");
      const maxBytes = r.u32("maxBytes");
      const policy = r.u8("overflow");
      const overflow = OVERFLOW[policy & ~ORDERED];
      if (overflow === undefined) throw r.bad(`its overflow policy ${policy} is unknown`);
      const ordered = (policy & ORDERED) !== 0;
      const pattern = r.str("pattern");
      const queue = r.str("queue");
      m = {
        type: Op.SUB,
        sid,
        buffer,
        credit,
        maxBytes,
        overflow,
        ordered,
        pattern,
        queue: queue || undefined,
      };
      break;
    }
    case Op.UNSUB:
    case Op.DRAIN:
    case Op.END:
      m = { type: op, sid: r.u32("sid") };
      break;
    case Op.CREDIT:
      m = { type: Op.CREDIT, sid: r.u32("sid"), n: r.u32("credit") };
      break;
    case Op.PUB:
      m = { type: Op.PUB, env: readEnvelope(r, 0) };
      break;
    case Op.MSG:
      m = { type: Op.MSG, sid: r.u32("sid"), env: readEnvelope(r, r.u64("seq")) };
      break;
    case Op.OMSG: {
      const sid = r.u32("sid");
      const seq = r.u64("seq");
      const topicSeq = r.u64("topic seq");
      const publisher = r.u32("publisher");
      const pubSeq = r.u64("publisher seq");
      const kind = r.u8("gap");
      if (kind >= GAP_REASONS.length) throw r.bad(`its gap ${kind} is unknown`);
      const reason = GAP_REASONS[kind];
      const count = r.u32("gap count");
      const from = r.u64("gap start");
      const env = readEnvelope(r, seq);
      const numbered = { ...env, topicSeq, publisher, pubSeq };
      m = {
        type: Op.OMSG,
        sid,
        env: reason === undefined ? numbered : {
          ...numbered,
          gap: { reason, count: reason === "reconnect" ? undefined : count, from },
        },
      };
      break;
    }
    case Op.REQ:
      m = { type: Op.REQ, id: r.u32("id"), timeout: r.u32("timeout"), env: readEnvelope(r, 0) };
      break;
    case Op.RES:
      m = { type: Op.RES, id: r.u32("id"), env: readEnvelope(r, r.u64("seq")) };
      break;
    case Op.SPUB:
      m = { type: Op.SPUB, id: r.u32("id"), env: readEnvelope(r, 0) };
      break;
    case Op.PUBACK: {
      const id = r.u32("id");
      const seq = r.u64("seq");
      const duplicate = r.u8("duplicate") === 1;
      const mode = r.u8("durability");
      const durability = SYNC_MODES[mode];
      if (durability === undefined) throw r.bad(`its durability ${mode} is unknown`);
      m = { type: Op.PUBACK, id, seq, duplicate, durability, stream: r.str("stream") };
      break;
    }
    case Op.CALL:
      m = { type: Op.CALL, id: r.u32("id"), method: r.str("method"), body: r.rest() };
      break;
    case Op.RESULT:
      m = { type: Op.RESULT, id: r.u32("id"), body: r.rest() };
      break;
    case Op.CONSUME:
      m = {
        type: Op.CONSUME,
        cid: r.u32("cid"),
        buffer: r.u32("buffer"),
        stream: r.str("stream"),
        body: r.rest(),
      };
      break;
    case Op.CONSUMING:
      m = { type: Op.CONSUMING, cid: r.u32("cid"), name: r.str("consumer") };
      break;
    case Op.DELIVER: {
      const cid = r.u32("cid");
      const attempt = r.u32("attempt");
      const seq = r.u64("seq");
      const timestamp = r.u64("timestamp");
      const id = r.str("message id");
      const env = readEnvelope(r, seq);
      m = { type: Op.DELIVER, cid, attempt, env: { ...env, stream: "", timestamp, id } };
      break;
    }
    case Op.SETTLE: {
      const id = r.u32("id");
      const cid = r.u32("cid");
      const kind = r.u8("settlement");
      const how = SETTLEMENTS[kind];
      if (how === undefined) throw r.bad(`its settlement ${kind} is unknown`);
      const arg = r.text("argument");
      const seqs: number[] = new Array(r.count("sequence list", 8));
      if (seqs.length === 0) throw r.bad("it settles no message");
      for (let i = 0; i < seqs.length; i++) seqs[i] = r.u64("seq");
      m = { type: Op.SETTLE, id, cid, seqs, how, arg };
      break;
    }
    case Op.SETTLED: {
      const id = r.u32("id");
      const failed: SettleFailure[] = new Array(r.count("failure list", 4 + 2 + 2));
      for (let i = 0; i < failed.length; i++) {
        failed[i] = { at: r.u32("position"), code: r.str("code"), message: r.text("message") };
      }
      m = { type: Op.SETTLED, id, failed };
      break;
    }
    case Op.UNCONSUME:
      m = { type: Op.UNCONSUME, cid: r.u32("cid") };
      break;
    case Op.STREAMS:
      m = { type: Op.STREAMS, body: r.rest() };
      break;
    default:
      throw r.bad(`its type ${op} is unknown`);
  }
  r.end();
  return m;
}

/**
 * Encodes messages straight into a connection's write batch, field by field, with no frame of
 * their own allocated; only a payload large enough to write by reference goes apart.
 */
class HubEncoding implements Encoder<HubMessage> {
  readonly #frames: FrameEncoding;

  constructor(maxFrameSize: number) {
    this.#frames = new FrameEncoding(maxFrameSize);
  }

  narrow(max: number): void {
    this.#frames.narrow(max);
  }

  encode(m: HubMessage, buf: Uint8Array, at: number): number {
    // A payload large enough to write by reference takes a frame of its own.
    if ("env" in m && m.env.data.length >= COPY_BELOW) {
      return this.#frames.encode(encodeHub(m), buf, at);
    }
    const env = "env" in m ? encodeEnvelope(m.env) : undefined;
    const bound = sizeBound(m, env);
    if (bound > this.#frames.max) return this.#frames.encode(encodeHub(m), buf, at); // refuses it
    if (at + 4 + bound > buf.length) return -1;
    const end = writeMessage(m, buf, at + 4, env);
    writeUint32(buf, at, end - at - 4);
    return end - at;
  }

  encodeAlone(m: HubMessage): Uint8Array[] {
    return this.#frames.encodeAlone(encodeHub(m));
  }
}

/** `value` as JSON bytes, `Infinity` as `null` (settings use it for "no limit"). */
export function jsonBody(value: unknown): Uint8Array {
  return utf8.encode(JSON.stringify(value, (_, v) => v === Infinity ? null : v) ?? "null");
}

/** A JSON body read back, `null` as `Infinity`; `EPROTOCOL` for bytes that are not JSON. */
export function parseBody(body: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(body), (_, v) => v === null ? Infinity : v);
  } catch (err) {
    throw new IpcError("EPROTOCOL", `Cannot read hub message as its ${what} is not JSON`, {
      op: "decode",
      cause: err,
    });
  }
}

/** The first byte of a message stored in a stream's log: the format of what follows. */
const STORED_FORMAT = 1;

/** A message as a stream stores it: the envelope, when it was stored, and its message id. */
export interface StoredRecord {
  readonly message: Message;
  /** When it was stored, in `Date.now()` milliseconds. */
  readonly timestamp: number;
  /** The id it was published with, for deduplication; `""` for none. */
  readonly id: string;
}

/**
 * A message as one record of a stream's log: the format byte, the time (u64 ms), the id, then
 * the envelope as PUB carries it (topic, key, reply, headers, data).
 */
export function encodeStored(message: Message, timestamp: number, id: string): Uint8Array {
  const env = encodeEnvelope(message);
  const idBytes = strField(id, "message id");
  const out = new Uint8Array(1 + 8 + 2 + idBytes.length + env.size + message.data.length);
  const w = new WireWriter(out, 0);
  w.u8(STORED_FORMAT);
  w.u64(timestamp);
  w.str(idBytes);
  writeEnvelope(w, env, message.data);
  return out;
}

/**
 * Reads a stored record of sequence `seq` with `read`, after its format byte; throws `ECORRUPT`
 * naming `seq` for bytes that are not such a record.
 */
function readStored<T>(bytes: Uint8Array, seq: number, read: (r: WireReader) => T): T {
  try {
    const r = new WireReader(bytes, "stream record");
    if (r.type() !== STORED_FORMAT) throw r.bad(`its format ${bytes[0]} is unknown`);
    return read(r);
  } catch (err) {
    throw new IpcError(
      "ECORRUPT",
      `Cannot read stored message ${seq}: ${(err as Error).message}`,
      { op: "read", cause: err },
    );
  }
}

/** A stored record's time and id: what comes before its message. */
function readHead(r: WireReader): { timestamp: number; id: string } {
  return { timestamp: r.u64("timestamp"), id: r.str("message id") };
}

/** The time and id of a stored record, read without its message: what opening a stream needs. */
export function decodeStoredHead(
  bytes: Uint8Array,
  seq: number,
): { timestamp: number; id: string } {
  return readStored(bytes, seq, readHead);
}

/**
 * A record of a stream's log as the message it stores, numbered `seq`, its data copied out of
 * `bytes`; throws `ECORRUPT` naming `seq` for bytes that are not such a record.
 */
export function decodeStored(bytes: Uint8Array, seq: number): StoredRecord {
  return readStored(bytes, seq, (r) => {
    const { timestamp, id } = readHead(r);
    const message = readEnvelope(r, seq);
    return { message: { ...message, data: message.data.slice() }, timestamp, id };
  });
}

/** The hub's wire format, for the session layer. */
export const HUB: Codec<HubMessage> = sessionCodec(
  "hub",
  decodeHub,
  (maxFrameSize) => new HubEncoding(maxFrameSize),
);
