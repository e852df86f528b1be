/**
 * Picks the adapter for the runtime this code runs on, once, by dynamic `import()`, so that no
 * runtime ever loads another's module.
 *
 * @module
 */

import { runtimeName } from "./platform.ts";
import type { Runtime, RuntimeName } from "./types.ts";

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
