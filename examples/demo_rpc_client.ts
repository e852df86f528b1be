/**
 * The demo's RPC client, for any runtime: dials the server given as the first argument, sends
 * 20,000 requests with 64 in flight, checks every reply, and prints one JSON line.
 *
 * Run by `examples/demo.ts` under Deno, Bun and Node.
 */
import { dial } from "../src/rpc/mod.ts";
import { scriptArgs } from "../scripts/_runtimes.ts";

const [path] = scriptArgs();
const who = navigator.userAgent;
await using client = await dial(path!, { app: "dockipc-demo" });
const text = new TextDecoder();
const total = 20_000;
let next = 0;
let ok = true;
const start = performance.now();
await Promise.all(Array.from({ length: 64 }, async () => {
  while (next < total) {
    const n = next++;
    const reply = await client.request(`square ${n}`);
    if (text.decode(reply) !== String(n * n)) ok = false;
  }
}));
const ms = performance.now() - start;
console.log(JSON.stringify({ who, requests: total, ok, ms }));
