/**
 * A/B of a change to the transport: ping-pong through this checkout's `Conn` against another
 * checkout's (a `git worktree` of the commit before the change, say), in one run of one runtime.
 *
 * Whole runs of each side, one after the other, cannot show a change of a few percent on this
 * machine: the host's drift moves them by ±10 %, and whichever side runs first tends to read
 * lower. Here one child makes round trips on both, in blocks of the paired measurement
 * (`pairedRatios`: a b b a), against one server process that echoes both; so drift and order fall
 * on both alike. Two copies of the same code read 1.00 ± 0.01 over 8 runs of 3 s. An earlier
 * change that four alternating-run comparisons could not tell from noise read 1.025–1.033 here.
 *
 * Usage: `<runtime> bench/ab.ts DIR [--repeats N] [--ms MS] [--impl NAME]`, where DIR is the
 * other checkout (A); it prints this checkout's rate ÷ A's. `--impl` picks what both sides run
 * (`implFor`), `conn` by default; `--impl raw` is an A/A check of the method itself.
 *
 * @module
 */

import { type Impl, implFor, pairedServe, pairedTrips } from "./_peers.ts";
import { median, rt, scriptArgs, spawnSelf } from "./_harness.ts";
import type { RuntimeName } from "../scripts/_runtimes.ts";

const SCRIPT = new URL(import.meta.url).pathname;
const runtime = rt.name as RuntimeName;
const args = scriptArgs();

/** An option's value, or `fallback`. */
function option(name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args[i + 1] ?? fallback;
}

/** The two sides: the other checkout's implementation (A), then this one's (B). */
async function sides(dir: string, impl: string): Promise<[Impl, Impl]> {
  const other = await import(`${dir.replace(/\/$/, "")}/bench/_peers.ts`) as {
    implFor: typeof implFor;
  };
  return [await other.implFor(impl, runtime), await implFor(impl, runtime)];
}

if (args[0] === "child") {
  // Connects to A's server and B's, and makes round trips on both in paired blocks.
  const [, dir, impl, pathA, pathB, ms] = args as [string, string, string, string, string, string];
  const [implA, implB] = await sides(dir, impl);
  await pairedTrips(implA, implB, pathA, pathB, Number(ms));
} else {
  const dir = args[0];
  if (dir === undefined || dir.startsWith("--")) {
    throw new Error("Usage: bench/ab.ts DIR [--repeats N] [--ms MS] [--impl NAME]");
  }
  const repeats = Number(option("--repeats", "8"));
  const ms = option("--ms", "3000");
  const impl = option("--impl", "conn");
  const [implA, implB] = await sides(dir, impl);
  const tmp = await rt.fs.makeTempDir("dk-ab-");
  const all: number[] = [];
  const runs: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const [pathA, pathB] = [`${tmp}/a${i}.sock`, `${tmp}/b${i}.sock`];
    const ratios = await pairedServe(
      implA,
      implB,
      pathA,
      pathB,
      () => spawnSelf(SCRIPT, ["child", dir, impl, pathA, pathB, ms]),
    );
    all.push(...ratios);
    runs.push(median(ratios));
  }
  await rt.fs.remove(tmp, { recursive: true });
  const sorted = [...all].sort((x, y) => x - y);
  const q = (f: number): string => sorted[Math.floor(f * (sorted.length - 1))]!.toFixed(3);
  console.log(
    `${runtime} ${rt.version}, ping-pong 64 B through ${impl}, this checkout ÷ ${dir}: ` +
      `median ${median(all).toFixed(3)} (middle half ${q(0.25)}–${q(0.75)}, ${all.length} ` +
      `blocks); per run ${runs.map((r) => r.toFixed(3)).join(" ")}`,
  );
}
