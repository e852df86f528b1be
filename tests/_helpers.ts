/**
 * Test helpers: temporary directories, child processes of any runtime, stream plumbing, a seeded
 * random source. Everything goes through the runtime adapter, as the library itself does.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import v8 from "node:v8";
import vm from "node:vm";
import { IpcError } from "../src/errors.ts";
import { getRuntime } from "../src/runtime/detect.ts";
import type { ChildProcess, Conn, Runtime } from "../src/runtime/types.ts";
import { command, ROOT, type RuntimeName } from "../scripts/_runtimes.ts";

export { ROOT, type RuntimeName, RUNTIMES, scriptArgs } from "../scripts/_runtimes.ts";

/** The adapter for the runtime running the tests. */
export const rt: Runtime = await getRuntime();

/** A fresh temp directory, removed with everything in it on dispose. Short, for socket paths. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await rt.fs.makeTempDir("dk-");
  return {
    path,
    [Symbol.asyncDispose]: () => rt.fs.remove(path, { recursive: true }).catch(() => {}),
  };
}

/** A child process running a fixture script under a runtime, with its stdout as lines. */
export interface Child extends AsyncDisposable {
  readonly process: ChildProcess;
  /** The next line the child prints; rejects if it exits first or `ms` pass. */
  line(ms?: number): Promise<string>;
  /** Resolves with the status once the child ends. */
  readonly status: ChildProcess["status"];
}

/**
 * Starts `tests/fixtures/<fixture>` under `runtime`, through the command `options.via` when
 * given (its arguments, then the runtime's command line). Dispose kills it if still running.
 */
export function spawnFixture(
  runtime: RuntimeName,
  fixture: string,
  args: readonly string[] = [],
  options: { stdin?: "pipe" | "null"; via?: readonly string[] } = {},
): Child {
  return spawnScript(runtime, `${ROOT}tests/fixtures/${fixture}`, args, options);
}

/** Starts the script at `path` under `runtime`, as {@linkcode spawnFixture} does a fixture. */
export function spawnScript(
  runtime: RuntimeName,
  path: string,
  args: readonly string[] = [],
  options: { stdin?: "pipe" | "null"; via?: readonly string[]; env?: Record<string, string> } = {},
): Child {
  const fixture = path.slice(path.lastIndexOf("/") + 1);
  const run = command(runtime, path, args);
  const [cmd, ...argv] = [...(options.via ?? []), run.cmd, ...run.args];
  const child = rt.spawn(cmd!, argv, {
    cwd: ROOT,
    stdin: options.stdin ?? "null",
    stdout: "pipe",
    stderr: "inherit",
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const reader = child.stdout!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let ended = false;
  const line = async (ms = 30_000): Promise<string> => {
    const limit = AbortSignal.timeout(ms);
    while (true) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const out = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return out;
      }
      if (ended) throw new Error(`${runtime} ${fixture} ended before printing a line`);
      const next = await Promise.race([
        reader.read(),
        new Promise<never>((_, reject) => {
          limit.addEventListener(
            "abort",
            () => reject(new Error(`${runtime} ${fixture}: no line in ${ms} ms`)),
            {
              once: true,
            },
          );
        }),
      ]);
      if (next.done) ended = true;
      else buffered += next.value;
    }
  };
  return {
    process: child,
    line,
    status: child.status,
    [Symbol.asyncDispose]: async () => {
      child.kill("SIGKILL");
      await child.status.catch(() => {});
      await reader.cancel().catch(() => {});
    },
  };
}

/**
 * Starts `tests/fixtures/<fixture>` under this runtime on a 2 MiB file system of its own,
 * mounted at `mount` (its one argument) in a mount namespace: root, or a user namespace. For
 * what a full disk does.
 */
export function onSmallDisk(fixture: string, mount: string): Child {
  return spawnFixture(rt.name, fixture, [mount], {
    via: ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=2m tmpfs "$0" && exec "$@"', mount],
  });
}

/** A full garbage collection now, in any of the three runtimes. */
export function collectGarbage(): void {
  const bun = (globalThis as { Bun?: { gc(full: boolean): void } }).Bun;
  if (bun !== undefined) return bun.gc(true);
  v8.setFlagsFromString("--expose-gc");
  (vm.runInNewContext("gc") as () => void)();
}

/** Writes `data` in random-sized chunks (1 to `max` bytes, from `seed`), then half-closes. */
export async function writeChunked(
  conn: Conn,
  data: Uint8Array,
  seed: number,
  max = 100_000,
): Promise<void> {
  const random = seeded(seed);
  const writer = conn.writable.getWriter();
  for (let off = 0; off < data.byteLength;) {
    const n = Math.min(data.byteLength - off, 1 + Math.floor(random() * max));
    await writer.write(data.subarray(off, off + n));
    off += n;
  }
  await writer.close();
}

/**
 * Sends `data` to an echo server over `conn` in random chunks while reading the echo, and says
 * where the echo differs (undefined when it is byte-exact).
 */
export async function echoMismatch(
  conn: Conn,
  data: Uint8Array,
  seed = 1,
  max = 100_000,
): Promise<string | undefined> {
  const [, back] = await Promise.all([writeChunked(conn, data, seed, max), readAll(conn.readable)]);
  return sameBytes(back, data);
}

/** Reads a stream to its end and joins the chunks. */
export async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of readable) {
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  return concat(chunks, total);
}

/** Joins byte arrays. */
export function concat(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  const out = new Uint8Array(total ?? chunks.reduce((n, c) => n + c.byteLength, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** Compares bytes; on a mismatch says where, instead of printing megabytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): string | undefined {
  if (a.byteLength !== b.byteLength) return `lengths differ: ${a.byteLength} vs ${b.byteLength}`;
  for (let i = 0; i < a.byteLength; i++) {
    if (a[i] !== b[i]) return `byte ${i} differs: ${a[i]} vs ${b[i]}`;
  }
  return undefined;
}

/** A small seeded random source (mulberry32), so a failing case can be replayed. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` pseudo-random bytes from `seed`: the same on every runtime, for cross-process checks. */
export function pattern(n: number, seed: number): Uint8Array {
  const random = seeded(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (random() * 256) | 0;
  return out;
}

/** Resolves once `check()` is true; polls every few ms and gives up after `ms`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * A TCP port on 127.0.0.1 whose listener never accepts and has room for one queued connection:
 * after `fill()`, a further connect hangs in SYN retries, which is how a connect timeout is
 * tested against a real socket. A Python child holds it, since no runtime here exposes the
 * listen backlog.
 */
export async function unresponsivePort(): Promise<
  { port: number; fill(): Promise<void> } & AsyncDisposable
> {
  const child = rt.spawn("python3", [
    "-c",
    "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\n" +
    "print(s.getsockname()[1],flush=True)\ntime.sleep(600)",
  ], { stdout: "pipe" });
  const reader = child.stdout!.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  const port = Number(first.value?.trim());
  if (!(port > 0)) throw new Error(`python3 did not print a port: ${JSON.stringify(first.value)}`);
  const held: { close(): void }[] = [];
  const { connect } = await import("../mod.ts");
  return {
    port,
    fill: async () => {
      held.push(
        await connect({ transport: "tcp", hostname: "127.0.0.1", port }, { timeout: 5000 }),
      );
    },
    [Symbol.asyncDispose]: async () => {
      for (const c of held) c.close();
      child.kill("SIGKILL");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

/**
 * Frames `payloads` the way the spec in docs/PROTOCOL.md says, without the library: the
 * reference the codec is checked against.
 */
export function encodeFramesRaw(payloads: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.byteLength, 0));
  const view = new DataView(out.buffer);
  let off = 0;
  for (const p of payloads) {
    view.setUint32(off, p.byteLength);
    out.set(p, off + 4);
    off += 4 + p.byteLength;
  }
  return out;
}

/** Splits `bytes` at the given offsets (sorted, within bounds) into views. */
export function splitAt(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (const cut of cuts) {
    out.push(bytes.subarray(from, cut));
    from = cut;
  }
  out.push(bytes.subarray(from));
  return out;
}

/** Runs `chunks` through a transform stream and collects what comes out, or the error. */
export async function transformAll<I, O>(
  stream: TransformStream<I, O>,
  chunks: readonly I[],
): Promise<O[]> {
  const out: O[] = [];
  const writer = stream.writable.getWriter();
  const reading = (async () => {
    for await (const value of stream.readable) out.push(value);
  })();
  const writing = (async () => {
    for (const chunk of chunks) await writer.write(chunk);
    await writer.close();
  })();
  const [read, wrote] = await Promise.allSettled([reading, writing]);
  if (read.status === "rejected") throw read.reason;
  if (wrote.status === "rejected") throw wrote.reason;
  return out;
}

/**
 * `count` frames from `seed`, the same on every runtime: mostly small, some empty, a few over
 * 16 KiB (which encoders write by reference) — for cross-process frame checks.
 */
export function seededFrames(count: number, seed: number): Uint8Array[] {
  const random = seeded(seed);
  return Array.from({ length: count }, (_, i) => {
    const r = random();
    const size = r < 0.1
      ? 0
      : r < 0.95
      ? Math.floor(random() * 300)
      : 16_384 + Math.floor(random() * 60_000);
    return pattern(size, seed * 100_003 + i);
  });
}

/** Asserts that `promise` rejects with an `IpcError` of `code` whose message matches; returns it. */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<IpcError> {
  const err = await promise.then(
    () => assert.fail(`expected ${code}, but it succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof IpcError, `expected an IpcError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

/**
 * Writes `chunk` `count` times to `writable`, awaiting each write, while nobody reads the other
 * end. Resolves once writes stop making progress (quiescence, not a duration) with how many
 * were accepted, and a promise of the rest of the writing, which finishes once the reader reads.
 */
export async function acceptedWhileStalled<T>(
  writable: WritableStream<T>,
  chunk: T,
  count: number,
): Promise<{ accepted: number; writing: Promise<void> }> {
  let accepted = 0;
  let lastProgress = Date.now();
  const writing = (async () => {
    const writer = writable.getWriter();
    while (accepted < count) {
      await writer.write(chunk);
      accepted++;
      lastProgress = Date.now();
    }
    await writer.close();
  })();
  await until(
    () => Date.now() - lastProgress > 300 || accepted >= count,
    30_000,
    "writes to stall",
  );
  return { accepted, writing };
}

/** The data of record `seq` in the write-ahead log tests: 0 to 299 bytes that depend on it. */
export function walRecord(seq: number): Uint8Array {
  return pattern((seq * 7919) % 300, seq);
}

/**
 * Runs `parse` on fuzzed `input`: returns `{ value }` when it accepts the input, `undefined`
 * when it refuses it with an `IpcError` of `code` whose message says why; anything else it
 * throws fails the test.
 */
export function acceptedOrRefused<T>(
  code: string,
  input: unknown,
  parse: () => T,
): { value: T } | undefined {
  try {
    return { value: parse() };
  } catch (err) {
    const shown = input instanceof Uint8Array ? `[${input.join(",")}]` : JSON.stringify(input);
    assert.ok(err instanceof IpcError, `${shown} threw ${String(err)}`);
    assert.equal(err.code, code, `${shown}: ${err.message}`);
    assert.match(err.message, /^Cannot /);
    return undefined;
  }
}

/** Fuzzing text: any string, or one made of `pieces`, the parts a parser cares about. */
export function fuzzText(pieces: readonly string[], maxLength: number): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ maxLength }),
    fc.array(fc.constantFrom(...pieces), { maxLength: 8 }).map((p) => p.join("")),
  );
}

/**
 * Serves a hub in a child process of this runtime and runs `attack(path)` against it (bound
 * it in time), sampling the server's resident set size: resolves with it before the attack and
 * at its peak during it, in MiB. For tests of bounded memory against a misbehaving peer.
 */
export async function serverRssUnder(
  attack: (path: string) => Promise<void>,
): Promise<{ before: number; peak: number }> {
  await using dir = await tempDir();
  const path = `${dir.path}/hub.sock`;
  await using server = spawnFixture(rt.name, "flood_target.ts", [path]);
  assert.equal(await server.line(), "ready");
  const sample = async (): Promise<number> => {
    const line = await server.line();
    return Number(line.slice("rss ".length)) / 2 ** 20;
  };
  let before = Infinity;
  for (let i = 0; i < 5; i++) before = Math.min(before, await sample());
  let peak = before;
  let samplesLeft = Infinity; // once the attack is over, a few more: what it left settles
  const sampling = (async () => {
    for (; samplesLeft > 0; samplesLeft--) peak = Math.max(peak, await sample());
  })();
  try {
    await attack(path);
  } finally {
    samplesLeft = 4;
    await sampling;
  }
  return { before, peak };
}

/** Writes `chunk` to `conn` again and again until `ms` pass (or the connection fails). */
export async function writeFor(conn: Conn, chunk: Uint8Array, ms: number): Promise<void> {
  const writer = conn.writable.getWriter();
  const end = Date.now() + ms;
  const timeUp = new Promise<void>((resolve) => setTimeout(resolve, ms));
  try {
    while (Date.now() < end) {
      if (await Promise.race([writer.write(chunk).then(() => false), timeUp.then(() => true)])) {
        break;
      }
    }
  } catch {
    // The server closed it: the attack is over for this connection.
  } finally {
    writer.releaseLock();
  }
}

/**
 * Why a test that runs `command` (socat, nc: Debian packages `.ci/run` installs) is skipped
 * here, or `false` when the command is on PATH. For the `skip` option of `test()`.
 */
export async function skipWithout(command: string): Promise<string | false> {
  const child = rt.spawn("sh", ["-c", `command -v ${command}`], {
    stdin: "null",
    stdout: "null",
    stderr: "null",
  });
  const { code } = await child.status;
  return code === 0 ? false : `${command} is not installed (.ci/run installs it)`;
}
