/**
 * The demo: a Deno process listens on a unix socket and echoes; clients in Deno, Bun and Node
 * child processes connect, stream 8 MiB each, and check every byte that comes back.
 *
 * Run it with `npm run demo` (after `npm install`).
 */
import { formatAddress, listen } from "../mod.ts";
import { command, RUNTIMES } from "../scripts/_runtimes.ts";

const dir = await Deno.makeTempDir({ prefix: "dockipc-demo-" });
const path = `${dir}/demo.sock`;
await using listener = await listen(path);
const info = await Deno.lstat(path);
console.log(
  `listening on ${formatAddress(listener.addr)} (mode ${(info.mode! & 0o777).toString(8)})`,
);

// Echo every connection, counting the bytes that pass through it.
const flowing = new Map<number, { name: string; bytes: number }>();
let next = 0;
(async () => {
  for await (const conn of listener) {
    const id = next++;
    const stat = { name: "?", bytes: 0 };
    flowing.set(id, stat);
    const count = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller): void {
        if (stat.name === "?") {
          stat.name = new TextDecoder().decode(chunk.subarray(0, 40)).split("\n")[0]!;
        }
        stat.bytes += chunk.length;
        controller.enqueue(chunk);
      },
    });
    conn.readable.pipeThrough(count).pipeTo(conn.writable).catch((err) => console.error(err));
  }
})();

const progress = setInterval(() => {
  const line = [...flowing.values()].map((s) => `${s.name}: ${(s.bytes / 2 ** 20).toFixed(1)} MiB`);
  if (line.length) console.log(`  flowing  ${line.join("  |  ")}`);
}, 100);

const clients = RUNTIMES.map((name) => {
  const { cmd, args } = command(name, new URL("./demo_client.ts", import.meta.url).pathname, [
    path,
  ]);
  return new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).output();
});
const results = await Promise.all(clients);
clearInterval(progress);

console.log("\nclient            bytes echoed   checked   MB/s (echo and check, one client)");
let allOk = true;
for (const result of results) {
  const report = JSON.parse(new TextDecoder().decode(result.stdout));
  allOk &&= report.ok && result.success;
  const mbps = report.bytes / 1e6 / (report.ms / 1000);
  console.log(
    `${report.who.padEnd(16)}  ${String(report.bytes).padStart(12)}   ${
      report.ok ? "ok  " : "BAD "
    }    ${mbps.toFixed(0).padStart(5)}`,
  );
}
await listener.close();
await Deno.remove(dir, { recursive: true });
console.log(allOk ? "\nall three runtimes spoke to one unix socket, byte-exact" : "\nFAILED");
if (!allOk) Deno.exit(1);
