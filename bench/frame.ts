/**
 * Framing benchmark. Across two processes over a unix socket, through `framed()` and, as the
 * baseline, the same bytes through the runtime's own socket API without framing:
 *
 * - one-way 64 B and 4 KiB frames: the child writes frames (payload bytes 0..3 a big-endian
 *   sequence number) with Web Streams backpressure (`desiredSize`, `ready`); this process reads
 *   every frame, checks its length and sequence, and times from the end of the warm-up to the
 *   end. The raw child writes the same frames pre-encoded, 64 KiB per write, and nothing parses
 *   them;
 * - ping-pong 64 B: the child sends one frame and waits for it back; this process echoes;
 * - paired ping-pong 64 B: one child makes round trips on a raw connection and on a framed one
 *   in turn (blocks a b b a, see `pairedRatios`), so that drift in the machine's speed, which
 *   moves separate runs by ±10 % or more here, cannot move the ratio.
 *
 * Every measurement across processes follows `WARM_MS` (3 s) of the same workload off the clock,
 * baseline included: the figures are steady state, as in a long-lived connection.
 *
 * In this process alone, over a pre-built 64 MiB buffer of 64 B frames in 64 KiB chunks: the
 * decoder's core (a callback per frame), `FrameDecoderStream` read frame by frame, and the
 * ceiling of Web Streams themselves: a `ReadableStream` that enqueues pre-built 64 B views and a
 * reader that reads them one by one, with no I/O and no parsing.
 *
 * `channel` rows run the same workloads through `frameChannel()`, the batch-level API: a read
 * returns every frame of a socket read, a send encodes into the batch with no stream operation.
 *
 * On Deno the one-way workloads also run raw reads into fresh memory (`RAW_FRESH`): the most any
 * reader can reach that hands out frames it never writes over, where the raw baseline reuses one
 * buffer. 4 KiB one-way also runs `RAW_COPY` on every runtime: the raw child copies each payload
 * into its batch before writing it, the one copy a framing sender makes where the socket API
 * has no vectored write (Deno, Bun), and the most such a sender can reach.
 *
 * Usage: `<runtime> bench/frame.ts [--repeats N] [--only NAME]`; `npm run bench` runs it under
 * all three runtimes. Every loop is bounded by a count and by time.
 *
 * @module
 */

import { type Conn, connect, frameChannel, framed, FrameDecoderStream, listen } from "../mod.ts";
import { FrameParser } from "../src/frame/codec.ts";
import { view } from "../src/internal/wire.ts";
import { copyBytes } from "../src/runtime/bytes.ts";
import { implFor, pingPong, RAW_FRESH, serveOnce } from "./_peers.ts";
import {
  median,
  Meter,
  type Paired,
  pairedRatios,
  pairedRuns,
  printPaired,
  printTable,
  repeatsArg,
  rotated,
  type Row,
  rt,
  scriptArgs,
  spawnSelf,
  stdoutText,
  timedLoop,
  webStreamsCeiling,
} from "./_harness.ts";
import type { RuntimeName } from "../scripts/_runtimes.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const LIMIT_MS = 1000;
const CHUNK = 64 * 1024;

interface Workload {
  name: string;
  kind: "one-way" | "ping-pong";
  size: number;
  count: number;
  unit: "frames/s" | "MB/s" | "rt/s";
}

const WORKLOADS: Workload[] = [
  { name: "one-way 64 B frames", kind: "one-way", size: 64, count: 20_000_000, unit: "frames/s" },
  { name: "one-way 4 KiB frames", kind: "one-way", size: 4096, count: 1_000_000, unit: "MB/s" },
  { name: "ping-pong 64 B frames", kind: "ping-pong", size: 64, count: 200_000, unit: "rt/s" },
];
const PING_PONG = WORKLOADS[2]!;
/** The name of the paired workload; `--only` with a part of it runs just that. */
const PAIRED = "paired ping-pong 64 B frames";

/** The raw child copying each frame's payload into its batch first: see the module doc. */
const RAW_COPY = "raw, a copy per frame";

const args = scriptArgs();
const runtime = rt.name as RuntimeName;

/** A frame of `size` bytes whose first four payload bytes are `seq`, big-endian. */
function stamp(frame: Uint8Array, seq: number): Uint8Array {
  frame[0] = seq >>> 24;
  frame[1] = seq >>> 16;
  frame[2] = seq >>> 8;
  frame[3] = seq;
  return frame;
}

/** As many whole frames of `size` as fit in about 64 KiB, encoded: what the raw child writes. */
function encodedBatch(size: number): Uint8Array {
  const n = Math.max(1, Math.floor(CHUNK / (size + 4)));
  const out = new Uint8Array(n * (size + 4));
  const view = new DataView(out.buffer);
  for (let i = 0; i < n; i++) view.setUint32(i * (size + 4), size);
  return out;
}

/** Frames in and out, through `framed()`'s streams or through a `frameChannel()`. */
interface FrameIo {
  /** Calls `onFrame` for every frame until the peer ends. */
  receive(onFrame: (frame: Uint8Array) => void): Promise<void>;
  /** Sends a frame; a promise means: wait before sending more. */
  send(frame: Uint8Array): Promise<void> | undefined;
  end(): Promise<void>;
  close(): void;
  /** One round trip of `frame`, written the way this API is used; checks the echo's size. */
  trip(frame: Uint8Array): Promise<void>;
  /** Echoes every frame back until the peer ends, then ends: a ping-pong's server, no backpressure. */
  echo(): Promise<void>;
}

/** A write's rejection is its stream's error, which the next read or write reports. */
const ignore = (): void => {};

function framedIo(conn: Conn): FrameIo {
  const f = framed(conn);
  const reader = f.readable.getReader();
  const writer = f.writable.getWriter();
  return {
    receive: async (onFrame) => {
      for (let r; !(r = await reader.read()).done;) onFrame(r.value);
    },
    // The Web Streams way to write without awaiting each write: watch desiredSize.
    send: (frame) => {
      writer.write(frame).catch(ignore);
      return writer.desiredSize! <= 0 ? writer.ready : undefined;
    },
    end: () => writer.close(),
    close: () => f.close(),
    trip: async (frame) => {
      writer.write(frame).catch(ignore);
      const r = await reader.read();
      if (r.value?.length !== frame.length) throw new Error("bad echo");
    },
    echo: async () => {
      for (let r; !(r = await reader.read()).done;) writer.write(r.value).catch(ignore);
      await writer.close();
    },
  };
}

function channelIo(conn: Conn): FrameIo {
  const c = frameChannel(conn);
  return {
    receive: async (onFrame) => {
      for (let batch; (batch = await c.read());) for (const frame of batch) onFrame(frame);
    },
    send: (f) => c.send(f),
    end: () => c.end(),
    close: () => c.close(),
    trip: async (frame) => {
      c.send(frame);
      if ((await c.read())?.[0]?.length !== frame.length) throw new Error("bad echo");
    },
    echo: async () => {
      for (let batch; (batch = await c.read());) for (const frame of batch) c.send(frame);
      await c.end();
    },
  };
}

const ios: Record<string, (conn: Conn) => FrameIo> = { framed: framedIo, channel: channelIo };

/** The child's side of a framed workload. */
async function framedChild(w: Workload, path: string, impl: string): Promise<unknown> {
  const io = ios[impl]!(await connect(path));
  if (w.kind === "ping-pong") {
    const frame = new Uint8Array(w.size);
    const { n: trips, ms } = await timedLoop((i) => io.trip(stamp(frame, i)), {
      count: w.count,
      ms: LIMIT_MS,
    });
    await io.end();
    io.close();
    return { trips, ms };
  }
  // A pool of frames, 64 KiB in all like the raw child's one buffer, so that both senders read
  // their bytes from the cache. A frame is reused once the writer has long taken it (it holds
  // at most a few); one reused too soon would fail the parent's sequence check.
  const mask = Math.max(16, CHUNK / w.size) - 1;
  const pool = Array.from({ length: mask + 1 }, () => new Uint8Array(w.size));
  const { warm, n } = await timedLoop(
    (seq) => io.send(stamp(pool[seq & mask]!, seq)),
    { count: w.count, ms: LIMIT_MS, every: 4096 },
  );
  await io.end();
  io.close();
  return { frames: warm + n };
}

/** This process's side of a framed workload: returns the rate. */
async function framedParent(w: Workload, io: FrameIo): Promise<number> {
  if (w.kind === "ping-pong") {
    await io.echo();
    return NaN;
  }
  let seq = 0;
  const meter = new Meter();
  await io.receive((f) => {
    meter.add(1);
    if (f.length !== w.size || ((f[0]! << 24 | f[1]! << 16 | f[2]! << 8 | f[3]!) >>> 0) !== seq) {
      throw new Error(`frame ${seq} is wrong`);
    }
    seq++;
  });
  const { units: frames, ms } = meter.result();
  return w.unit === "frames/s" ? frames / (ms / 1000) : (frames * (w.size + 4)) / 1e6 / (ms / 1000);
}

/** One measurement over a unix socket between this process and a child. */
async function once(w: Workload, impl: string, path: string): Promise<number> {
  const child = (): ReturnType<typeof spawnSelf> => spawnSelf(SCRIPT, ["peer", w.name, impl, path]);
  const raw = impl === "raw" || impl === RAW_FRESH || impl === RAW_COPY;
  if (!raw) {
    await using listener = await listen(path);
    const proc = child();
    const report = stdoutText(proc);
    const conn = ios[impl]!(await listener.accept());
    let rate = await framedParent(w, conn);
    const out = JSON.parse(await report);
    if (w.kind === "ping-pong") rate = out.trips / (out.ms / 1000);
    await proc.status;
    conn.close();
    return rate;
  }
  const measured = await serveOnce(impl === RAW_COPY ? "raw" : impl, runtime, path, w.kind, child);
  if ("trips" in measured) return measured.trips / (measured.ms / 1000);
  const seconds = measured.ms / 1000;
  return w.unit === "frames/s"
    ? measured.bytes / (w.size + 4) / seconds
    : measured.bytes / 1e6 / seconds;
}

/** The raw child: the same bytes through the runtime's socket API. */
async function rawChild(w: Workload, path: string, impl: string): Promise<unknown> {
  const peer = await (await implFor("raw", runtime)).connect(path);
  let result: unknown;
  if (w.kind === "one-way") {
    const batch = encodedBatch(w.size);
    const framesPerBatch = batch.length / (w.size + 4);
    // As the framed child's, a pool of payloads 64 KiB in all, read from the cache.
    const pool = Array.from({ length: framesPerBatch }, () => new Uint8Array(w.size));
    const copy = (): void => {
      for (let k = 0; k < framesPerBatch; k++) copyBytes(batch, k * (w.size + 4) + 4, pool[k]!);
    };
    const writes = await peer.flood(
      batch,
      Math.ceil(w.count / framesPerBatch),
      LIMIT_MS,
      impl === RAW_COPY ? copy : undefined,
    );
    result = { frames: writes * framesPerBatch };
  } else {
    result = await pingPong(peer, encodedBatch(w.size).subarray(0, w.size + 4), w.count, LIMIT_MS);
  }
  await new Promise((r) => setTimeout(r, 50));
  peer.close();
  return result;
}

// ---------------------------------------------------------------------------------------------
// In-process

const IN_PROCESS_BYTES = 64 * 1024 * 1024;

/** 64 MiB of 64 B frames in 64 KiB chunks, each chunk holding whole frames only. */
function prebuiltChunks(): Uint8Array[] {
  const batch = encodedBatch(64);
  return Array.from({ length: Math.floor(IN_PROCESS_BYTES / batch.length) }, () => batch.slice());
}

/** Passes of the decoder over the input before the one on the clock. */
const WARM_PASSES = 4;

function decodeCore(chunks: readonly Uint8Array[]): number {
  let frames = 0;
  const count = (): void => {
    frames++;
  };
  // Passes over the input off the clock first: steady state, as everywhere here. JSC takes
  // four passes to get there (its top tier, and a heap sized for a view per frame): Bun ran
  // its first passes at about 7, 10 and 13 M/s, then 16–21. V8 is steady after one.
  for (let pass = 0; pass < WARM_PASSES; pass++) {
    const warm = new FrameParser(16 * 1024 * 1024, view);
    for (const chunk of chunks) warm.push(chunk, count);
  }
  frames = 0;
  const parser = new FrameParser(16 * 1024 * 1024, view);
  const start = performance.now();
  for (const chunk of chunks) parser.push(chunk, count);
  parser.end();
  return frames / ((performance.now() - start) / 1000);
}

async function decodeStream(chunks: readonly Uint8Array[]): Promise<number> {
  let i = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(c): void {
      if (i < chunks.length) c.enqueue(chunks[i++]!);
      else c.close();
    },
  });
  const reader = source.pipeThrough(new FrameDecoderStream()).getReader();
  let frames = 0;
  const start = performance.now();
  while (!(await reader.read()).done) frames++;
  return frames / ((performance.now() - start) / 1000);
}

// ---------------------------------------------------------------------------------------------

if (args[0] === "paired") {
  // The child of the paired ping-pong: a raw connection and a framed one, blocks of trips in turn.
  const [, impl, rawPath, framedPath] = args as [string, string, string, string];
  const raw = await (await implFor("raw", runtime)).connect(rawPath);
  const io = ios[impl]!(await connect(framedPath));
  const frame = new Uint8Array(PING_PONG.size);
  const rawMsg = encodedBatch(PING_PONG.size).subarray(0, PING_PONG.size + 4);
  const ratios = await pairedRatios(raw.tripper(rawMsg), () => io.trip(frame), LIMIT_MS * 3);
  console.log(JSON.stringify({ ratios }));
  await raw.shutdown();
  await io.end();
  await new Promise((r) => setTimeout(r, 50));
  raw.close();
  io.close();
} else if (args[0] === "peer") {
  const [, name, impl, path] = args;
  const w = WORKLOADS.find((x) => x.name === name)!;
  const raw = impl === "raw" || impl === RAW_FRESH || impl === RAW_COPY;
  const result = raw ? await rawChild(w, path!, impl!) : await framedChild(w, path!, impl!);
  console.log(JSON.stringify(result));
} else {
  const repeats = repeatsArg(5);
  const only = args.includes("--only") ? args[args.indexOf("--only") + 1]! : "";
  const dir = await rt.fs.makeTempDir("dk-bench-");
  const rows: Row[] = [];
  for (const w of WORKLOADS.filter((w) => w.name.includes(only))) {
    rows.push(
      ...await rotated(
        w,
        [
          "raw",
          ...(runtime === "deno" && w.kind === "one-way" ? [RAW_FRESH] : []),
          ...(w.size === 4096 ? [RAW_COPY] : []),
          "framed",
          "channel",
        ],
        repeats,
        (impl, i) => once(w, impl, `${dir}/f${i}${impl}.sock`),
      ),
    );
  }
  const inProcess = "decode 64 MiB of 64 B frames, in-process";
  if (inProcess.includes(only)) {
    const chunks = prebuiltChunks();
    const rates = {
      ceiling: [] as number[],
      "decoder core": [] as number[],
      "FrameDecoderStream": [] as number[],
    };
    for (let i = 0; i < repeats; i++) {
      rates.ceiling.push(await webStreamsCeiling(chunks.length * Math.floor(CHUNK / 68)));
      rates["decoder core"].push(decodeCore(chunks));
      rates.FrameDecoderStream.push(await decodeStream(chunks));
    }
    for (const [impl, r] of Object.entries(rates)) {
      rows.push({ workload: inProcess, impl, unit: "frames/s", rates: r });
    }
  }
  const paired = PAIRED.includes(only)
    ? await pairedRuns(
      ["framed", "channel"],
      repeats,
      (impl, i) => pairedOnce(impl, `${dir}/p${i}`),
    )
    : [];
  await rt.fs.remove(dir, { recursive: true });
  printTable(rows, ["raw", "ceiling"]);
  printPaired(`${PAIRED}: ÷ raw`, paired);
  printTargets(rows, paired);
}

/**
 * One paired ping-pong: this process echoes on a raw socket and on a framed one; the child makes
 * round trips on both in turn and returns the ratios of their rates.
 */
async function pairedOnce(impl: string, prefix: string): Promise<number[]> {
  const rawServer = await (await implFor("raw", runtime)).listen(`${prefix}raw.sock`);
  await using listener = await listen(`${prefix}framed.sock`);
  const child = spawnSelf(SCRIPT, ["paired", impl, `${prefix}raw.sock`, `${prefix}framed.sock`]);
  const report = stdoutText(child);
  const rawPeer = await rawServer.accept();
  const io = ios[impl]!(await listener.accept());
  await Promise.all([rawPeer.echo(), framedParent(PING_PONG, io)]);
  const { ratios } = JSON.parse(await report) as { ratios: number[] };
  await child.status;
  rawPeer.close();
  io.close();
  await rawServer.close();
  return ratios;
}

/** The targets, each as a ratio of medians from this run. */
function printTargets(
  rows: readonly Row[],
  paired: readonly Paired[],
): void {
  const m = (workload: string, impl: string): number => {
    const row = rows.find((r) => r.workload.startsWith(workload) && r.impl === impl);
    return row ? median(row.rates) : NaN;
  };
  const p = (impl: string): number => {
    const ratios = paired.find((x) => x.impl === impl)?.ratios;
    return ratios ? median(ratios) : NaN;
  };
  const targets = [
    [
      "64 B one-way framed / Web Streams ceiling",
      m("one-way 64 B", "framed") / m("decode", "ceiling"),
      0.6,
    ],
    ["4 KiB one-way framed / raw", m("one-way 4 KiB", "framed") / m("one-way 4 KiB", "raw"), 0.8],
    ["64 B ping-pong framed / raw", m("ping-pong", "framed") / m("ping-pong", "raw"), 0.9],
    ["64 B ping-pong framed / raw, paired", p("framed"), 0.9],
    ["decoder core, M frames/s", m("decode", "decoder core") / 1e6, 15],
    // The batch-level API, for comparison with the same goals.
    [
      "64 B one-way frameChannel / Web Streams ceiling",
      m("one-way 64 B", "channel") / m("decode", "ceiling"),
      0.6,
    ],
    [
      "4 KiB one-way frameChannel / raw",
      m("one-way 4 KiB", "channel") / m("one-way 4 KiB", "raw"),
      0.8,
    ],
    ["64 B ping-pong frameChannel / raw", m("ping-pong", "channel") / m("ping-pong", "raw"), 0.9],
    ["64 B ping-pong frameChannel / raw, paired", p("channel"), 0.9],
    // Deno only: the most a reader of frames it hands out can reach.
    [
      "ceiling: 4 KiB one-way raw into fresh memory / raw",
      m("one-way 4 KiB", RAW_FRESH) / m("one-way 4 KiB", "raw"),
      0.8,
    ],
    // The most a sender that copies each payload once can reach.
    [
      "ceiling: 4 KiB one-way raw with a copy per frame / raw",
      m("one-way 4 KiB", RAW_COPY) / m("one-way 4 KiB", "raw"),
      0.8,
    ],
  ] as const;
  console.log("\n| target | this run | goal | |\n|---|---|---|---|");
  for (const [name, value, goal] of targets) {
    if (Number.isNaN(value)) continue;
    console.log(
      `| ${name} | ${value.toFixed(2)} | ≥ ${goal} | ${value >= goal ? "met" : "NOT MET"} |`,
    );
  }
}
