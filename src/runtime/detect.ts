/**
 * Picks the adapter for the runtime this code runs on, once, by dynamic `import()`, so that no
 * runtime ever loads another's module.
 *
 * @module
 */

import type { Runtime, RuntimeName } from "./types.ts";

interface DenoLike {
  build: { os: string };
  refTimer(id: number): void;
  unrefTimer(id: number): void;
}
interface ProcessLike {
  platform: string;
}
declare const Deno: DenoLike | undefined;
declare const Bun: unknown;
declare const process: ProcessLike | undefined;

/** The runtime this code runs on. Bun and Deno are checked first: both also define `process`. */
export function runtimeName(): RuntimeName {
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

let loading: Promise<Runtime> | undefined;

/** The adapter for this runtime, loaded on first use. */
export function getRuntime(): Promise<Runtime> {
  loading ??= load(runtimeName());
  return loading;
}

async function load(name: RuntimeName): Promise<Runtime> {
  switch (name) {
    case "deno":
      return (await import("./deno.ts")).runtime;
    case "bun":
      return (await import("./bun.ts")).runtime;
    case "node":
      return (await import("./node.ts")).runtime;
  }
}
