/**
 * What is known of the runtime without loading its adapter: its name, the operating system, a
 * timer's hold on the process, the next turn of the event loop, and whether a process is alive.
 * Imports nothing of the library's, so the layers below the adapters (addresses, the helpers)
 * may use it.
 *
 * @module
 */

import { setImmediate } from "node:timers";

interface DenoLike {
  build: { os: string };
  refTimer(id: number): void;
  unrefTimer(id: number): void;
}
interface ProcessLike {
  platform: string;
  kill?(pid: number, signal: number): void;
}
declare const Deno: DenoLike | undefined;
declare const Bun: unknown;
declare const process: ProcessLike | undefined;

/** The runtime this code runs on. Bun and Deno are checked first: both also define `process`. */
export function runtimeName(): "deno" | "bun" | "node" {
  if (typeof Deno !== "undefined") return "deno";
  if (typeof Bun !== "undefined") return "bun";
  if (typeof process !== "undefined") return "node";
  throw new Error("Cannot find a supported runtime: dockipc runs on Deno, Bun and Node");
}

/** The operating system, as `process.platform` spells it; known without loading an adapter. */
export function platform(): string {
  if (typeof Deno !== "undefined") return Deno.build.os;
  if (typeof process !== "undefined") return process.platform;
  return "linux";
}

/**
 * Sets whether `timer` keeps the process alive (a new timer does). Deno's timers are numbers,
 * which `Deno.refTimer` takes; Node's and Bun's are objects with `ref()` and `unref()`.
 */
export function refTimer(timer: ReturnType<typeof setTimeout>, keepAlive: boolean): void {
  if (typeof timer === "number") {
    if (typeof Deno === "undefined") return;
    if (keepAlive) Deno.refTimer(timer);
    else Deno.unrefTimer(timer);
    return;
  }
  const t = timer as { ref?: () => void; unref?: () => void };
  if (keepAlive) t.ref?.();
  else t.unref?.();
}

/**
 * Runs `task` on the event loop's next turn: after every microtask, and after the I/O callbacks
 * of this turn, without a timer's delay. Work gathered while a loop of promises or a socket's
 * frames run (acks, say) is done once for all of them.
 */
export function nextTurn(task: () => void): void {
  setImmediate(task);
}

/**
 * When the process with this pid started, as a string that tells it apart from a later process
 * given the same pid (Linux: the start time in `/proc/<pid>/stat`, in clock ticks since boot);
 * `undefined` when it cannot be had here. `readFile` reads a whole file.
 */
export async function processStartTime(
  pid: number,
  readFile: (path: string) => Promise<Uint8Array>,
): Promise<string | undefined> {
  if (platform() !== "linux") return undefined;
  try {
    const stat = new TextDecoder().decode(await readFile(`/proc/${pid}/stat`));
    // "pid (comm) state ...": comm may hold spaces and parentheses, so count from the last ")".
    // The start time is field 22; the one after ")" is field 3.
    const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[22 - 3];
    return start !== undefined && /^\d+$/.test(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a process with this pid runs on this machine: `"yes"`, `"no"` (a definite "no such
 * process"), or `"unknown"` when the answer cannot be had here. `stat` looks a path up (`/proc`
 * on Linux) and rejects with `ENOENT` in its `code` when there is none.
 */
export async function processAlive(
  pid: number,
  stat: (path: string) => Promise<unknown>,
): Promise<"yes" | "no" | "unknown"> {
  if (platform() === "linux") {
    try {
      await stat(`/proc/${pid}`);
      return "yes";
    } catch (err) {
      if ((err as { code?: unknown })?.code === "ENOENT") return "no";
    }
  }
  const kill = typeof process === "undefined" ? undefined : process.kill;
  if (kill === undefined) return "unknown";
  try {
    kill.call(process, pid, 0);
    return "yes";
  } catch (err) {
    return (err as { code?: unknown })?.code === "ESRCH" ? "no" : "unknown";
  }
}
