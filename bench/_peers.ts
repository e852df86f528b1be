/**
 * The two sides of the transport benchmark, written twice: through dockipc's `Conn`, and
 * through the runtime's own socket API by the simplest correct code (the baseline).
 *
 * @module
 */

import { type Conn, connect, listen } from "../mod.ts";
import type { RuntimeName } from "../scripts/_runtimes.ts";
import type { ChildProcess } from "../src/runtime/types.ts";
import { Arrivals, Meter, pairedRatios, stdoutText, timedLoop } from "./_harness.ts";

/** One end of a connection, as the workloads drive it. */
export interface Peer {
  /** Counts bytes until the peer ends; timed from the end of the sender's warm-up (`Meter`). */
  drain(): Promise<{ bytes: number; ms: number }>;
  /**
   * Writes `chunk` for the warm-up, then `count` times or until `ms` pass, then ends; returns
   * the writes made. `prepare(i)` runs before write `i`, to refill `chunk`.
   */
  flood(chunk: Uint8Array, ...how: Flood): Promise<number>;
  /**
   * Sends whatever arrives on to `to`, until the peer ends, then ends `to`'s sending direction:
   * back to the peer by default, or to another peer of the same kind (a relay).
   */
  echo(to?: Peer): Promise<void>;
  /**
   * Answers each chunk that arrives with the same bytes once `keep(chunk)` has resolved (an
   * echo behind a store: the least a stored publish from another process can take), until the
   * peer ends. For one message in flight at a time.
   */
  keepThenEcho(keep: (chunk: Uint8Array) => Promise<unknown>): Promise<void>;
  /**
   * A round trip: sends `msg` and waits for as many bytes back. One per peer, made before the
   * first trip.
   */
  tripper(msg: Uint8Array): () => Promise<void> | undefined;
  /** Ends the sending direction after the trips. */
  shutdown(): Promise<void> | undefined;
  close(): void;
}

/**
 * Round trips of `msg` over `peer`: the warm-up, then `count` or until `ms` pass, which are
 * timed; then the sending direction ends.
 */
export async function pingPong(
  peer: Peer,
  msg: Uint8Array,
  count: number,
  ms: number,
): Promise<{ trips: number; ms: number }> {
  const t = await timedLoop(peer.tripper(msg), { count, ms });
  await peer.shutdown();
  return { trips: t.n, ms: t.ms };
}

/** A listening socket of the benchmark. */
export interface Server {
  accept(): Promise<Peer>;
  close(): Promise<void>;
}

/** A way to listen and connect. */
export interface Impl {
  listen(path: string): Promise<Server>;
  connect(path: string): Promise<Peer>;
}

/** The runtime's API reading into fresh memory: see `implFor`. */
export const RAW_FRESH = "raw, fresh memory";

/** The runtime's API inside the thinnest Web Streams pair: see `thinStreams`, `eventStreams`. */
export const RAW_STREAMS = "raw in bare streams";

/** How long a flood runs, and what refills its chunk before each write: see `Peer.flood`. */
type Flood = [count: number, ms: number, prepare?: (i: number) => void];

/** A flood's loop around `write`; returns the writes made, warm-up included. */
async function flooding(
  write: () => Promise<unknown> | undefined,
  ...[count, ms, prepare]: Flood
): Promise<number> {
  const t = await timedLoop((i) => {
    prepare?.(i);
    return write();
  }, { count, ms, every: 1024 });
  return t.warm + t.n;
}

/** A drain's figures from its meter. */
const drained = (m: Meter): { bytes: number; ms: number } => {
  const { units, ms } = m.result();
  return { bytes: units, ms };
};

// ---------------------------------------------------------------------------------------------
// dockipc Conn

/** What `ConnPeer` uses of a connection: a `Conn`, or the thinnest stream pair (`RAW_STREAMS`). */
type StreamPair = Pick<Conn, "readable" | "writable" | "close">;

class ConnPeer implements Peer {
  #conn: StreamPair;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  constructor(conn: StreamPair) {
    this.#conn = conn;
  }

  async drain(): Promise<{ bytes: number; ms: number }> {
    const meter = new Meter();
    const reader = this.#conn.readable.getReader();
    for (let r; !(r = await reader.read()).done;) meter.add(r.value.byteLength);
    return drained(meter);
  }

  async flood(chunk: Uint8Array, ...how: Flood): Promise<number> {
    const writer = this.#conn.writable.getWriter();
    const n = await flooding(() => writer.write(chunk), ...how);
    await writer.close();
    return n;
  }

  async echo(to: Peer = this): Promise<void> {
    const reader = this.#conn.readable.getReader();
    const writer = (to as ConnPeer).#conn.writable.getWriter();
    for (let r; !(r = await reader.read()).done;) await writer.write(r.value);
    await writer.close();
  }

  async keepThenEcho(keep: (chunk: Uint8Array) => Promise<unknown>): Promise<void> {
    const reader = this.#conn.readable.getReader();
    const writer = this.#conn.writable.getWriter();
    for (let r; !(r = await reader.read()).done;) {
      await keep(r.value);
      await writer.write(r.value);
    }
    await writer.close();
  }

  tripper(msg: Uint8Array): () => Promise<void> {
    const reader = this.#conn.readable.getReader();
    const writer = this.#writer = this.#conn.writable.getWriter();
    return async () => {
      await writer.write(msg);
      for (let got = 0; got < msg.byteLength;) {
        const { value } = await reader.read();
        if (!value) throw new Error("peer ended mid ping-pong");
        got += value.byteLength;
      }
    };
  }

  shutdown(): Promise<void> | undefined {
    return this.#writer?.close();
  }

  close(): void {
    this.#conn.close();
  }
}

function connImpl(): Impl {
  return {
    async listen(path): Promise<Server> {
      const listener = await listen(path);
      return {
        accept: async () => new ConnPeer(await listener.accept()),
        close: () => listener.close(),
      };
    },
    connect: async (path) => new ConnPeer(await connect(path)),
  };
}

// ---------------------------------------------------------------------------------------------
// Deno: conn.read / conn.write

interface DenoConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}
interface DenoApi {
  listen(o: { transport: "unix"; path: string }): { accept(): Promise<DenoConn>; close(): void };
  connect(o: { transport: "unix"; path: string }): Promise<DenoConn>;
}

async function denoWriteAll(conn: DenoConn, chunk: Uint8Array): Promise<void> {
  let off = await conn.write(chunk);
  while (off < chunk.byteLength) off += await conn.write(chunk.subarray(off));
}

class DenoPeer implements Peer {
  #conn: DenoConn;
  #fresh: boolean;
  constructor(conn: DenoConn, fresh: boolean) {
    this.#conn = conn;
    this.#fresh = fresh;
  }

  async drain(): Promise<{ bytes: number; ms: number }> {
    const meter = new Meter();
    if (!this.#fresh) {
      const buf = new Uint8Array(64 * 1024);
      for (let n; (n = await this.#conn.read(buf)) !== null;) meter.add(n);
      return drained(meter);
    }
    // Into memory nobody writes again, as a reader that hands out what it read must: reads of
    // up to 64 KiB into 256 KiB arenas, as dockipc's own reader does on Deno.
    let arena = new Uint8Array(256 * 1024);
    let at = 0;
    for (;;) {
      if (arena.length - at < 64 * 1024) {
        arena = new Uint8Array(256 * 1024);
        at = 0;
      }
      const n = await this.#conn.read(arena.subarray(at, at + 64 * 1024));
      if (n === null) break;
      at += n;
      meter.add(n);
    }
    return drained(meter);
  }

  async flood(chunk: Uint8Array, ...how: Flood): Promise<number> {
    const n = await flooding(() => denoWriteAll(this.#conn, chunk), ...how);
    await this.#conn.closeWrite();
    return n;
  }

  async echo(to: Peer = this): Promise<void> {
    const out = (to as DenoPeer).#conn;
    const buf = new Uint8Array(64 * 1024);
    for (let n; (n = await this.#conn.read(buf)) !== null;) {
      await denoWriteAll(out, buf.subarray(0, n));
    }
    await out.closeWrite();
  }

  async keepThenEcho(keep: (chunk: Uint8Array) => Promise<unknown>): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    for (let n; (n = await this.#conn.read(buf)) !== null;) {
      await keep(buf.subarray(0, n));
      await denoWriteAll(this.#conn, buf.subarray(0, n));
    }
    await this.#conn.closeWrite();
  }

  tripper(msg: Uint8Array): () => Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    return async () => {
      await denoWriteAll(this.#conn, msg);
      for (let got = 0; got < msg.byteLength;) {
        const n = await this.#conn.read(buf);
        if (n === null) throw new Error("peer ended mid ping-pong");
        got += n;
      }
    };
  }

  shutdown(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/**
 * The thinnest Web Streams pair around a raw Deno connection: each pull is one read into the
 * same buffer, each write one `write`, with no copy, no batching and no partial-write loop. It
 * is unsafe to keep a chunk, so it is no design; it is the floor of what streams themselves
 * cost any `Conn` on Deno, for ping-pong.
 */
function thinStreams(conn: DenoConn): StreamPair {
  const buf = new Uint8Array(64 * 1024);
  return {
    readable: new ReadableStream<Uint8Array>({
      pull: (c) =>
        conn.read(buf).then((n) => n === null ? c.close() : c.enqueue(buf.subarray(0, n))),
    }, { highWaterMark: 0 }),
    writable: new WritableStream<Uint8Array>({
      write: (chunk) => denoWriteAll(conn, chunk),
      close: () => conn.closeWrite(),
    }),
    close: () => conn.close(),
  };
}

/** Deno's `listen`/`connect` over a unix socket, each connection made a peer by `peer`. */
function denoImpl(peer: (conn: DenoConn) => Peer): Impl {
  const D = (globalThis as unknown as { Deno: DenoApi }).Deno;
  return {
    listen(path): Promise<Server> {
      const l = D.listen({ transport: "unix", path });
      return Promise.resolve({
        accept: async () => peer(await l.accept()),
        close: () => Promise.resolve(l.close()),
      });
    },
    connect: async (path) => peer(await D.connect({ transport: "unix", path })),
  };
}

// ---------------------------------------------------------------------------------------------
// Node: node:net, events

interface NodeSocket {
  write(b: Uint8Array): boolean;
  end(): void;
  destroy(): void;
  pipe(s: NodeSocket): void;
  on(e: string, f: (x?: unknown) => void): void;
  once(e: string, f: (x?: unknown) => void): void;
  removeListener(e: string, f: (x?: unknown) => void): void;
}

/** Writes `chunk` to a `node:net` socket: undefined, or a promise of `drain` once Node's buffer is full. */
function nodeWrite(s: NodeSocket, chunk: Uint8Array): Promise<void> | undefined {
  return s.write(chunk) ? undefined : new Promise((r) => s.once("drain", () => r()));
}

class NodePeer implements Peer {
  #s: NodeSocket;
  constructor(s: NodeSocket) {
    this.#s = s;
  }

  drain(): Promise<{ bytes: number; ms: number }> {
    const a = new Arrivals();
    this.#s.on("data", (c) => a.add((c as Uint8Array).byteLength));
    return new Promise((resolve) => this.#s.once("end", () => resolve(drained(a.meter))));
  }

  async flood(chunk: Uint8Array, ...how: Flood): Promise<number> {
    const n = await flooding(
      () => nodeWrite(this.#s, chunk),
      ...how,
    );
    this.#s.end();
    return n;
  }

  echo(to: Peer = this): Promise<void> {
    this.#s.pipe((to as NodePeer).#s);
    return new Promise((resolve) => this.#s.once("end", () => resolve()));
  }

  keepThenEcho(keep: (chunk: Uint8Array) => Promise<unknown>): Promise<void> {
    let answered: Promise<unknown> = Promise.resolve();
    this.#s.on("data", (c) => {
      const chunk = c as Uint8Array;
      answered = answered.then(() => keep(chunk)).then(() => nodeWrite(this.#s, chunk));
    });
    return new Promise((resolve) =>
      this.#s.once("end", () => void answered.then(() => this.#s.end()).then(() => resolve()))
    );
  }

  tripper(msg: Uint8Array): () => Promise<void> | undefined {
    const a = new Arrivals();
    this.#s.on("data", (c) => a.add((c as Uint8Array).byteLength));
    let sent = 0;
    return () => {
      this.#s.write(msg);
      return a.until(sent += msg.byteLength);
    };
  }

  shutdown(): undefined {
    this.#s.end();
  }

  close(): void {
    this.#s.destroy();
  }
}

/** A `node:net` socket inside the thinnest stream pair (`eventStreams`). */
function nodeStreams(s: NodeSocket): StreamPair {
  return eventStreams(
    (onData, onEnd) => {
      s.on("data", (chunk) => onData(chunk as Uint8Array));
      s.once("end", onEnd);
    },
    (chunk) => nodeWrite(s, chunk),
    () => s.end(),
    () => s.destroy(),
  );
}

/**
 * The thinnest Web Streams pair over a socket whose reads are events (Bun, Node): `listen`
 * registers the handlers; each chunk is enqueued as it comes, with no backpressure, and each
 * write is `write`. Like `thinStreams`, no design: the floor of what streams cost, for ping-pong.
 */
function eventStreams(
  listen: (onData: (chunk: Uint8Array) => void, onEnd: () => void) => void,
  write: (chunk: Uint8Array) => Promise<void> | undefined,
  end: () => void,
  close: () => void,
): StreamPair {
  return {
    readable: new ReadableStream<Uint8Array>({
      start: (c) => listen((chunk) => c.enqueue(chunk), () => c.close()),
    }),
    writable: new WritableStream<Uint8Array>({ write, close: end }),
    close,
  };
}

/** `node:net` over a unix socket, each connection made a peer by `peer`. */
async function nodeImpl(peer: (s: NodeSocket) => Peer): Promise<Impl> {
  const net = await import("node:net");
  return {
    listen(path): Promise<Server> {
      const waiting: ((p: Peer) => void)[] = [];
      const ready: Peer[] = [];
      const server = net.createServer({ allowHalfOpen: true }, (s) => {
        const p = peer(s as unknown as NodeSocket);
        const w = waiting.shift();
        if (w) w(p);
        else ready.push(p);
      });
      return new Promise((resolve) =>
        server.listen(path, () =>
          resolve({
            accept: () => {
              const p = ready.shift();
              return p ? Promise.resolve(p) : new Promise((r) => waiting.push(r));
            },
            close: () => Promise.resolve(void server.close()),
          }))
      );
    },
    connect: (path) =>
      new Promise((resolve, reject) => {
        const s = net.createConnection({ path, allowHalfOpen: true });
        s.once("connect", () => resolve(peer(s as unknown as NodeSocket)));
        s.once("error", reject);
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Bun: Bun.listen / Bun.connect with socket handlers

interface BunSocket {
  data: BunPeer;
  write(b: Uint8Array): number;
  shutdown(): void;
  end(): void;
}
interface BunApi {
  listen(o: object): { stop(b?: boolean): void };
  connect(o: object): Promise<BunSocket>;
}

class BunPeer implements Peer {
  socket!: BunSocket;
  arrivals: Arrivals = new Arrivals();
  onData: ((chunk: Uint8Array) => void) | undefined;
  #ended: (() => void) | undefined;
  #endedYet = false;
  #drained: (() => void) | undefined;
  /** Bytes Bun did not take yet, for echo. */
  #queue: Uint8Array[] = [];

  data(chunk: Uint8Array): void {
    this.arrivals.add(chunk.byteLength);
    this.onData?.(chunk);
  }
  end(): void {
    this.#endedYet = true;
    this.#ended?.();
  }
  /** Bun's drain event: the socket takes bytes again. */
  writable(): void {
    while (this.#queue.length) {
      const head = this.#queue[0]!;
      const n = this.socket.write(head);
      if (n < head.byteLength) {
        this.#queue[0] = head.subarray(Math.max(n, 0));
        return;
      }
      this.#queue.shift();
    }
    const d = this.#drained;
    this.#drained = undefined;
    d?.();
  }

  async drain(): Promise<{ bytes: number; ms: number }> {
    await this.untilEnd();
    return drained(this.arrivals.meter);
  }

  /** Resolves once the peer has ended. */
  untilEnd(): Promise<void> {
    return this.#endedYet ? Promise.resolve() : new Promise((r) => (this.#ended = r));
  }

  /** Writes all of `chunk`, waiting for drain when Bun takes only part. */
  send(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#queue.length === 0) {
      const n = this.socket.write(chunk);
      if (n === chunk.byteLength) return undefined;
      chunk = chunk.subarray(Math.max(n, 0));
    }
    this.#queue.push(chunk);
    return new Promise((r) => (this.#drained = r));
  }

  async flood(chunk: Uint8Array, ...how: Flood): Promise<number> {
    const n = await flooding(() => this.send(chunk), ...how);
    this.socket.shutdown();
    return n;
  }

  async echo(to: Peer = this): Promise<void> {
    const out = to as BunPeer;
    this.onData = (chunk) => void out.send(chunk);
    await this.untilEnd();
    out.socket.shutdown();
  }

  async keepThenEcho(keep: (chunk: Uint8Array) => Promise<unknown>): Promise<void> {
    let answered: Promise<unknown> = Promise.resolve();
    this.onData = (chunk) => {
      answered = answered.then(() => keep(chunk)).then(() => this.send(chunk));
    };
    await this.untilEnd();
    await answered;
    this.socket.shutdown();
  }

  tripper(msg: Uint8Array): () => Promise<void> {
    let sent = 0;
    return async () => {
      const wait = this.send(msg);
      if (wait) await wait;
      await this.arrivals.until(sent += msg.byteLength);
    };
  }

  shutdown(): undefined {
    this.socket.shutdown();
  }

  close(): void {
    this.socket.end();
  }
}

/** A Bun socket inside the thinnest stream pair (`eventStreams`). */
function bunStreams(p: BunPeer): StreamPair {
  return eventStreams(
    (onData, onEnd) => {
      p.onData = onData;
      void p.untilEnd().then(onEnd);
    },
    (chunk) => p.send(chunk),
    () => p.shutdown(),
    () => p.close(),
  );
}

/** `Bun.listen`/`Bun.connect` over a unix socket, each connection made a peer by `peer`. */
function bunImpl(peer: (p: BunPeer) => Peer): Impl {
  const B = (globalThis as unknown as { Bun: BunApi }).Bun;
  const handlers = (onOpen: (p: BunPeer) => void): object => ({
    open(s: BunSocket): void {
      const p = new BunPeer();
      p.socket = s;
      s.data = p;
      onOpen(p);
    },
    data: (s: BunSocket, d: Uint8Array) => s.data.data(d),
    drain: (s: BunSocket) => s.data.writable(),
    end: (s: BunSocket) => s.data.end(),
    close: (s: BunSocket) => s.data?.end(),
  });
  return {
    listen(path): Promise<Server> {
      const waiting: ((p: Peer) => void)[] = [];
      const ready: Peer[] = [];
      const l = B.listen({
        unix: path,
        allowHalfOpen: true,
        socket: handlers((p) => {
          const w = waiting.shift();
          if (w) w(peer(p));
          else ready.push(peer(p));
        }),
      });
      return Promise.resolve({
        accept: () => {
          const p = ready.shift();
          return p ? Promise.resolve(p) : new Promise<Peer>((r) => waiting.push(r));
        },
        close: () => Promise.resolve(l.stop(false)),
      });
    },
    async connect(path): Promise<Peer> {
      let opened: BunPeer | undefined;
      const s = await B.connect({
        unix: path,
        allowHalfOpen: true,
        socket: handlers((p) => (opened = p)),
      });
      return peer(opened ?? s.data);
    },
  };
}

/**
 * The implementation named `impl` for this runtime: "raw" (the runtime's API), `RAW_FRESH` (the
 * same, reading into fresh memory: differs on Deno only, where raw reads reuse one buffer, while
 * Bun's and Node's reads always arrive in memory of their own), `RAW_STREAMS` (the thinnest
 * stream pair around it) or "conn" (dockipc's `Conn`, read with a default reader and
 * written with a writer).
 */
export async function implFor(impl: string, runtime: RuntimeName): Promise<Impl> {
  if (impl === "conn") return connImpl();
  const bare = impl === RAW_STREAMS;
  if (runtime === "deno") {
    return denoImpl((conn) =>
      bare ? new ConnPeer(thinStreams(conn)) : new DenoPeer(conn, impl === RAW_FRESH)
    );
  }
  if (runtime === "bun") return bunImpl((p) => bare ? new ConnPeer(bunStreams(p)) : p);
  return await nodeImpl((s) => bare ? new ConnPeer(nodeStreams(s)) : new NodePeer(s));
}

/** What one side of a two-process run measured. */
export type Measured = { bytes: number; ms: number } | { trips: number; ms: number };

/**
 * One two-process run: listens at `path` with `impl`, starts the child (which connects), then
 * drains what a one-way child writes, or echoes for a ping-pong child and takes the round
 * trips it reports. Cleans up both ends.
 */
export async function serveOnce(
  impl: string,
  runtime: RuntimeName,
  path: string,
  kind: "one-way" | "ping-pong",
  startChild: () => ChildProcess,
): Promise<Measured> {
  const server = await (await implFor(impl, runtime)).listen(path);
  const child = startChild();
  const report = stdoutText(child);
  const peer = await server.accept();
  let measured: Measured;
  if (kind === "one-way") {
    measured = await peer.drain();
  } else {
    await peer.echo();
    measured = JSON.parse(await report);
  }
  await report;
  await child.status;
  peer.close();
  await server.close();
  return measured;
}

/**
 * The child's side of a paired ping-pong: connects to `a`'s server at `pathA` and `b`'s at
 * `pathB`, makes 64 B round trips on both in the blocks of `pairedRatios` for `ms`, prints the
 * ratios of `b`'s rate to `a`'s for `pairedServe`, and disconnects.
 */
export async function pairedTrips(
  a: Impl,
  b: Impl,
  pathA: string,
  pathB: string,
  ms: number,
): Promise<void> {
  const peerA = await a.connect(pathA);
  const peerB = await b.connect(pathB);
  const msg = new Uint8Array(64).fill(1);
  const ratios = await pairedRatios(peerA.tripper(msg), peerB.tripper(msg), ms);
  console.log(JSON.stringify({ ratios }));
  await peerA.shutdown();
  await peerB.shutdown();
  // Let the stream ends reach the other side before closing.
  await new Promise((r) => setTimeout(r, 50));
  peerA.close();
  peerB.close();
}

/**
 * This process's side of a paired ping-pong: listens with `a` at `pathA` and `b` at `pathB`,
 * starts the child (which runs `pairedTrips`), echoes on both until it is done, and returns the
 * ratios it printed.
 */
export async function pairedServe(
  a: Impl,
  b: Impl,
  pathA: string,
  pathB: string,
  startChild: () => ChildProcess,
): Promise<number[]> {
  const serverA = await a.listen(pathA);
  const serverB = await b.listen(pathB);
  const child = startChild();
  const report = stdoutText(child);
  const peers = [await serverA.accept(), await serverB.accept()];
  await Promise.all(peers.map((p) => p.echo()));
  const { ratios } = JSON.parse(await report) as { ratios: number[] };
  await child.status;
  for (const p of peers) p.close();
  await serverA.close();
  await serverB.close();
  return ratios;
}
