#!/usr/bin/env node
/**
 * The `dockipc` command: publish and subscribe, requests and replies, stored streams and their
 * consumers, write-ahead logs, RPC and line daemons, benchmarks, and a hub server with metrics
 * and a dashboard. Run it with `deno run -A jsr:@dockipc/dockipc/cli --help`, install it with
 * `deno install -g -A -n dockipc jsr:@dockipc/dockipc/cli`, or from a checkout run
 * `src/cli/mod.ts` with Bun or Node 24. `docs/CLI.md` describes every command.
 *
 * @example Run a command in this process
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "@dockipc/dockipc/cli";
 *
 * assert.equal(await main(["--help"]), 0);
 * ```
 *
 * @module
 */

import { getRuntime } from "../runtime/detect.ts";
import { main } from "./main.ts";

export { main };

if (import.meta.main) {
  const rt = await getRuntime();
  rt.process.exit(await main(rt.process.args));
}
