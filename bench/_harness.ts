/**
 * The benchmark harness, the same under Deno, Bun and Node: repeats, medians and spreads,
 * ratios to a baseline measured in the same run, the table, and child processes of this runtime.
 *
 * @module
 */

import { getRuntime } from "../src/runtime/detect.ts";
import type { ChildProcess, Runtime, SpawnOptions } from "../src/runtime/types.ts";
import { command, type RuntimeName, scriptArgs } from "../scripts/_runtimes.ts";

export { scriptArgs };

/** The adapter for this runtime. */
export const rt: Runtime = await getRuntime();

/**
 * The CPU for child processes, when `npm run bench` pinned this process to CPU 0 with taskset:
 * the two ends of a socket then each have a CPU of their own and the scheduler does not move
 * them around mid-measurement. Unset, children run wherever the OS puts them.
 */
const CHILD_CPU = rt.env("DOCKIPC_BENCH_CHILD_CPU");

/**
 * Starts a child process on the children's CPU: the other end of every measurement, ours or a
 * peer's server, gets the CPU this process does not use.
 */
export function spawnChild(
  cmd: string,
  args: readonly string[],
  options: SpawnOptions,
): ChildProcess {
  return CHILD_CPU
    ? rt.spawn("taskset", ["-c", CHILD_CPU, cmd, ...args], options)
    : rt.spawn(cmd, args, options);
}

/**
 * Starts `script` under this same runtime, with stdout piped: on the children's CPU, or with
 * `here` on this process's own, for a measuring side that needs a fresh process of its own.
 */
export function spawnSelf(
  script: string,
  args: readonly string[],
  { here = false }: { here?: boolean } = {},
): ChildProcess {
  const { cmd, args: argv } = command(rt.name as RuntimeName, script, args);
  const options: SpawnOptions = { stdout: "pipe", stderr: "inherit" };
  return here ? rt.spawn(cmd, argv, options) : spawnChild(cmd, argv, options);
}

/** Waits for a server child's first line, "ready"; fails, naming it `name`, on anything else. */
export async function untilReady(child: ChildProcess, name: string): Promise<void> {
  const lines = child.stdout!.pipeThrough(new TextDecoderStream()).getReader();
  if (!(await lines.read()).value?.startsWith("ready")) throw new Error(`${name} did not start`);
}

/** Runs `script` here (see `spawnSelf`) and returns the JSON it prints; fails if it fails. */
export async function runSelf(script: string, args: readonly string[]): Promise<unknown> {
  const child = spawnSelf(script, args, { here: true });
  const out = await stdoutText(child);
  const status = await child.status;
  if (!status.success) throw new Error(`${script} ${args.join(" ")} failed: ${status.code}`);
  return JSON.parse(out);
}

/** Reads a child's whole stdout as text. */
export async function stdoutText(child: ChildProcess): Promise<string> {
  let text = "";
  for await (const chunk of child.stdout!.pipeThrough(new TextDecoderStream())) text += chunk;
  return text;
}

/** One row of results: a rate per repeat. */
export interface Row {
  workload: string;
  impl: string;
  unit: string;
  rates: number[];
}

/** The median of some numbers. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Formats a rate compactly: 1.23 M, 456 k, 789. */
export function human(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)} k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(0);
}

/**
 * Prints a table: per workload, its rows, each with its median, its spread (min–max over
 * repeats) and its ratio to the median of the workload's baseline row (the first row whose impl
 * is one of `baseline`).
 */
export function printTable(rows: readonly Row[], baseline: string | readonly string[]): void {
  if (rows.length === 0) return;
  const baselines: readonly string[] = typeof baseline === "string" ? [baseline] : baseline;
  console.log(
    `\n${rt.name} ${rt.version} on ${rt.platform}; median of ${
      rows[0]?.rates.length ?? 0
    } repeats\n`,
  );
  console.log("| workload | impl | median | spread | ratio |");
  console.log("|---|---|---|---|---|");
  for (const workload of new Set(rows.map((r) => r.workload))) {
    const group = rows.filter((r) => r.workload === workload);
    const base = group.find((r) => baselines.includes(r.impl));
    for (const r of group) {
      const m = median(r.rates);
      const ratio = base ? (m / median(base.rates)).toFixed(2) : "—";
      const spread = `${human(Math.min(...r.rates))}–${human(Math.max(...r.rates))}`;
      console.log(`| ${workload} | ${r.impl} | ${human(m)} ${r.unit} | ${spread} | ${ratio} |`);
    }
  }
}

/**
 * The ceiling of Web Streams themselves, in messages/s: a `ReadableStream` whose `pull`
 * enqueues pre-built 64 B views, a 64 KiB chunk's worth at a time, and a reader that reads them
 * one by one. No I/O, no parsing: what one enqueue and one read per message cost.
 */
export async function webStreamsCeiling(messages: number): Promise<number> {
  const backing = new Uint8Array(64 * 1024);
  const views = Array.from({ length: 960 }, (_, k) => backing.subarray(k * 68 + 4, k * 68 + 68));
  let left = Math.ceil(messages / views.length);
  const source = new ReadableStream<Uint8Array>({
    pull(c): void {
      if (left-- === 0) return c.close();
      for (const view of views) c.enqueue(view);
    },
  }, { highWaterMark: 0 });
  const reader = source.getReader();
  let read = 0;
  const start = performance.now();
  while (!(await reader.read()).done) read++;
  return read / ((performance.now() - start) / 1000);
}

/** `--repeats N` from the script's arguments, else `fallback`; refuses anything but N ≥ 1. */
export function repeatsArg(fallback: number): number {
  const args = scriptArgs();
  const i = args.indexOf("--repeats");
  if (i < 0) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new RangeError("--repeats must be a whole number ≥ 1");
  return n;
}

/** `--only TEXT`: run just the workloads whose name contains TEXT (for working on one figure). */
const ONLY: string | undefined = ((args) => {
  const i = args.indexOf("--only");
  return i < 0 ? undefined : args[i + 1];
})(scriptArgs());

/**
 * Measures every impl `repeats` times with `measure`, rotating their order from one repeat to
 * the next so that drift in the machine's load does not favour one of them. Returns a row per
 * impl.
 */
export async function rotated(
  workload: { name: string; unit: string },
  impls: readonly string[],
  repeats: number,
  measure: (impl: string, repeat: number) => Promise<number>,
): Promise<Row[]> {
  if (ONLY !== undefined && !workload.name.includes(ONLY)) return [];
  const byImpl = new Map<string, number[]>(impls.map((impl) => [impl, []]));
  for (let i = 0; i < repeats; i++) {
    for (let j = 0; j < impls.length; j++) {
      const impl = impls[(i + j) % impls.length]!;
      byImpl.get(impl)!.push(await measure(impl, i));
    }
  }
  return [...byImpl].map(([impl, rates]) => ({
    workload: workload.name,
    impl,
    unit: workload.unit,
    rates,
  }));
}

/**
 * The untimed lead-in of every timed loop, on both sides of every comparison. V8 compiles hot
 * code in tiers as it runs, and code with more layers (Web Streams) gets there later: measured
 * here on Deno, framed ping-pong reached 0.56 of raw after a 1 s lead-in and 0.81 after 3 s,
 * while raw alone hardly moves. The connections this library serves live far longer than that,
 * so the figures are steady state. `DOCKIPC_BENCH_WARM_MS` overrides it (0: from a cold start).
 */
export const WARM_MS: number = Number(rt.env("DOCKIPC_BENCH_WARM_MS") ?? 3000);

/** What a timed loop did: `n` steps in `ms`, after `warm` untimed ones. */
export interface Timed {
  n: number;
  ms: number;
  warm: number;
}

/**
 * Runs `step` for `WARM_MS` untimed, then for `count` more steps or until `ms` pass, and times
 * those. `step` gets the index of the step, warm-up included; a promise it returns is awaited
 * before that lane's next step. `lanes` loops share the steps (steps in flight at once); the
 * clock is read every `every` steps (a power of two).
 */
export async function timedLoop(
  step: (i: number) => Promise<unknown> | undefined,
  { count, ms, lanes = 1, every = 256 }: {
    count: number;
    ms: number;
    lanes?: number;
    every?: number;
  },
): Promise<Timed> {
  const warmEnd = performance.now() + WARM_MS;
  let i = 0;
  let warm = -1;
  let start = 0;
  const lane = async (): Promise<void> => {
    for (;;) {
      if ((i & (every - 1)) === 0) {
        const t = performance.now();
        if (warm < 0 && t >= warmEnd) {
          warm = i;
          start = t;
        } else if (warm >= 0 && t >= start + ms) return;
      }
      if (warm >= 0 && i - warm >= count) return;
      const wait = step(i++);
      if (wait) await wait;
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return { n: i - warm, ms: performance.now() - start, warm };
}

/** Round trips per block of a paired measurement. */
const PAIRED_BLOCK = 250;

/**
 * A paired measurement, for ratios that drift cannot move: blocks of `PAIRED_BLOCK` round trips
 * on the baseline (`a`) and on the implementation measured (`b`) in the order a b b a, each
 * quartet giving one ratio of `b`'s rate to `a`'s. Drift in the machine's speed, which moves
 * whole runs by ±10 % here, then falls on both alike. After `WARM_MS` of the same off the clock;
 * for `ms` and at least 16 quartets.
 */
export async function pairedRatios(
  a: () => Promise<unknown> | undefined,
  b: () => Promise<unknown> | undefined,
  ms: number,
): Promise<number[]> {
  const block = async (trip: () => Promise<unknown> | undefined): Promise<number> => {
    const start = performance.now();
    for (let k = 0; k < PAIRED_BLOCK; k++) {
      const wait = trip();
      if (wait) await wait;
    }
    return performance.now() - start;
  };
  for (const warmEnd = performance.now() + WARM_MS; performance.now() < warmEnd;) {
    await block(a);
    await block(b);
  }
  const ratios: number[] = [];
  const end = performance.now() + ms;
  while (ratios.length < 16 || (performance.now() < end && ratios.length < 10_000)) {
    const a1 = await block(a);
    const b1 = await block(b);
    const b2 = await block(b);
    const a2 = await block(a);
    ratios.push((a1 + a2) / (b1 + b2));
  }
  return ratios;
}

/**
 * A client that makes one round trip per `call()`: for `timedLoop` and `pairedRatios`. A call
 * that finished at once may return undefined, as those do.
 */
export interface Caller {
  call(): Promise<unknown> | undefined;
  close(): Promise<unknown>;
}

/** Paired ratios of one implementation against its baseline. */
export interface Paired {
  impl: string;
  ratios: number[];
}

/** Paired measurements of each of `impls`, `repeats` times each: `once` makes one. */
export async function pairedRuns(
  impls: readonly string[],
  repeats: number,
  once: (impl: string, i: number) => Promise<number[]>,
): Promise<Paired[]> {
  // In turn, repeat by repeat, so that a change in the host's load reaches every impl alike.
  const paired: Paired[] = impls.map((impl) => ({ impl, ratios: [] }));
  for (let i = 0; i < repeats; i++) {
    for (const p of paired) p.ratios.push(...await once(p.impl, i));
  }
  return paired;
}

/** Prints paired ratios per implementation: the median, the middle half and the count. */
export function printPaired(title: string, paired: readonly Paired[]): void {
  if (paired.length === 0) return;
  console.log(`\n| ${title} | median | middle half | blocks |`);
  console.log("|---|---|---|---|");
  for (const { impl, ratios } of paired) {
    const s = [...ratios].sort((a, b) => a - b);
    const q = (f: number): string => s[Math.floor(f * (s.length - 1))]!.toFixed(2);
    console.log(`| ${impl} | ${median(s).toFixed(2)} | ${q(0.25)}–${q(0.75)} | ${s.length} |`);
  }
}

/**
 * The receiving end of a timed loop: counts what arrives and times only what comes after the
 * sender's `WARM_MS` lead-in (from the first arrival). A stream shorter than that is timed whole.
 */
export class Meter {
  /** Everything counted, warm-up included. */
  total = 0;
  #first = -1;
  #markAt = -1;
  #markTotal = 0;
  #calls = 0;

  /** Counts `n` more units (bytes, frames) arrived now. */
  add(n: number): void {
    if (this.#markAt < 0 && (this.#calls++ & 63) === 0) {
      const t = performance.now();
      if (this.#first < 0) this.#first = t;
      else if (t - this.#first >= WARM_MS) {
        this.#markAt = t;
        this.#markTotal = this.total;
      }
    }
    this.total += n;
  }

  /** The units counted after the lead-in, and the ms from its end until now. */
  result(): { units: number; ms: number } {
    const now = performance.now();
    return this.#markAt < 0
      ? { units: this.total, ms: now - this.#first }
      : { units: this.total - this.#markTotal, ms: now - this.#markAt };
  }
}

/** Counts what arrives (bytes, messages), fed by events; `until()` waits for a total. */
export class Arrivals {
  /** Times what arrives after the sender's warm-up. */
  meter: Meter = new Meter();
  #want = 0;
  #resolve: (() => void) | undefined;

  /** Counts `n` more arrived. */
  add(n: number): void {
    this.meter.add(n);
    if (this.#resolve && this.meter.total >= this.#want) {
      const r = this.#resolve;
      this.#resolve = undefined;
      r();
    }
  }

  /** Undefined once `total` have arrived, else a promise that resolves then. */
  until(total: number): Promise<void> | undefined {
    if (this.meter.total >= total) return undefined;
    this.#want = total;
    return new Promise((resolve) => (this.#resolve = resolve));
  }
}
