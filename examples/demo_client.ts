/**
 * One client of the demo, for any runtime: connects to the unix socket given as the first
 * argument, introduces itself, streams 8 MiB through the echo server and checks every byte.
 *
 * Run by `examples/demo.ts` under Deno, Bun and Node.
 */
import { connect } from "../mod.ts";
import { scriptArgs } from "../scripts/_runtimes.ts";

const [path] = scriptArgs();
const who = navigator.userAgent; // "Deno/2.9.6", "Bun/1.4.5", "Node.js/24"
const payload = new Uint8Array(8 << 20);
for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;

const start = performance.now();
const conn = await connect(path!);
const hello = new TextEncoder().encode(`${who}\n`);

// Read the echo while writing, as a real client would: neither side waits for the other.
const echoed = (async () => {
  let seen = 0;
  let ok = true;
  for await (const chunk of conn.readable) {
    for (let i = 0; i < chunk.length; i++) {
      const at = seen + i;
      const want = at < hello.length ? hello[at] : payload[at - hello.length];
      if (chunk[i] !== want) ok = false;
    }
    seen += chunk.length;
  }
  return { seen, ok };
})();

const writer = conn.writable.getWriter();
await writer.write(hello);
for (let off = 0; off < payload.length; off += 64 * 1024) {
  await writer.write(payload.subarray(off, off + 64 * 1024));
}
await writer.close();
const { seen, ok } = await echoed;
const ms = performance.now() - start;
console.log(
  JSON.stringify({ who, bytes: seen, ok: ok && seen === hello.length + payload.length, ms }),
);
