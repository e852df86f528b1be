/**
 * The demo: a Deno process listens on a unix socket and echoes; clients in Deno, Bun and Node
 * child processes connect, stream 8 MiB each, and check every byte that comes back. Then it
 * serves RPC, and a client of each runtime sends 20,000 requests with 64 in flight. Last, a
 * child of each runtime in turn appends 10,000 durable records to one write-ahead log, and this
 * process reads the log back and checks every record. Then it serves a pub/sub hub: a subscriber
 * and a publisher in each runtime share its topics, with live counts.
 *
 * Run it with `npm run demo` (after `npm install`).
 */
import { formatAddress, listen } from "../mod.ts";
import { Hub, serveHub } from "../src/hub/mod.ts";
import { serve } from "../src/rpc/mod.ts";
import { Wal } from "../src/wal/mod.ts";
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
  // A connection is named by the first line it sends; one that has sent nothing yet is not shown.
  const line = [...flowing.values()].filter((s) => s.bytes > 0).map((s) =>
    `${s.name}: ${(s.bytes / 2 ** 20).toFixed(1)} MiB`
  );
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
console.log(allOk ? "\nall three runtimes spoke to one unix socket, byte-exact" : "\nFAILED");

// Round two: request/response. This process serves RPC; each runtime's child sends requests
// with 64 in flight over one connection, and checks every reply.
const rpcPath = `${dir}/rpc.sock`;
const text = new TextDecoder();
await using server = await serve(rpcPath, (request) => {
  const [verb, arg] = text.decode(request).split(" ");
  if (verb !== "square") throw new Error(`unknown verb ${verb}`);
  return String(Number(arg) ** 2);
}, { app: "dockipc-demo" });
console.log(`\nserving RPC on ${formatAddress(server.addr)}`);
const rpcResults = await Promise.all(RUNTIMES.map((name) => {
  const script = new URL("./demo_rpc_client.ts", import.meta.url).pathname;
  const { cmd, args } = command(name, script, [rpcPath]);
  return new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).output();
}));
console.log(
  "client            requests   replies   round trips/s (64 in flight, three clients at once)",
);
for (const result of rpcResults) {
  const report = JSON.parse(new TextDecoder().decode(result.stdout));
  allOk &&= report.ok && result.success;
  const rate = report.requests / (report.ms / 1000);
  console.log(
    `${report.who.padEnd(16)}  ${String(report.requests).padStart(8)}   ${
      report.ok ? "ok  " : "BAD "
    }    ${rate.toFixed(0).padStart(7)}`,
  );
}
await server.shutdown();
console.log(allOk ? "\nand all three made RPC requests to it, every reply checked" : "\nFAILED");

// Round three: a write-ahead log. One writer at a time: each runtime's child in turn opens the
// log, appends durably (64 appenders sharing syncs), and closes it; then this process checks it.
const walDir = `${dir}/wal`;
console.log("\nwriter            records   seqs            durable appends/s (group commit)");
const expected: string[] = [];
for (const name of RUNTIMES) {
  const script = new URL("./demo_wal_writer.ts", import.meta.url).pathname;
  const { cmd, args } = command(name, script, [walDir]);
  const result = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" })
    .output();
  const report = JSON.parse(text.decode(result.stdout));
  allOk &&= result.success;
  for (let i = 0; i < report.records; i++) expected.push(`${report.who} ${i}`);
  console.log(
    `${report.who.padEnd(16)}  ${String(report.records).padStart(7)}   ${
      `${report.first}–${report.last}`.padEnd(14)
    }  ${(report.records / (report.ms / 1000)).toFixed(0).padStart(7)}`,
  );
}
{
  await using wal = await Wal.open(walDir);
  // Order between concurrent appenders is the order of their calls, so compare as sets per writer.
  const got: string[] = [];
  for await (const rec of wal.read()) got.push(text.decode(rec.data));
  const same = got.length === expected.length &&
    got.sort().join("\n") === expected.sort().join("\n");
  allOk &&= same && wal.recovery.truncatedBytes === 0;
  console.log(
    same
      ? `\nread back ${got.length} records, seqs 1–${wal.lastSeq}, every checksum and byte checked`
      : "\nFAILED: the log does not hold what was appended",
  );
}
// Round four: a pub/sub hub across processes. This process serves a hub; a subscriber in each
// runtime takes everything on demo.>, then a publisher in each runtime sends on demo.<runtime>.
const hubPath = `${dir}/hub.sock`;
const hub = new Hub();
await using hubServer = await serveHub(hub, hubPath, { app: "dockipc-demo" });
const perPublisher = 50_000;
const live = new Map<string, number>();
const watch = hub.subscribe("demo.>", { buffer: 65_536, overflow: "drop-oldest" });
void (async () => {
  for await (const m of watch) live.set(m.topic, (live.get(m.topic) ?? 0) + 1);
})();
const run = (name: string, role: string) => {
  const script = new URL("./demo_hub_client.ts", import.meta.url).pathname;
  const { cmd, args } = command(name as "deno", script, [hubPath, role, String(perPublisher)]);
  return new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).spawn();
};
console.log(`\nserving a hub on ${hubPath}: a subscriber and a publisher in each runtime`);
const subscribers = RUNTIMES.map((name) => run(name, "sub"));
// Each subscriber prints "subscribed" once its subscription is in place, then its report.
const subscriberLines = subscribers.map((child) =>
  child.stdout.pipeThrough(new TextDecoderStream()).getReader()
);
const readAll = async (reader: ReadableStreamDefaultReader<string>): Promise<string> => {
  let all = "";
  for (let r = await reader.read(); !r.done; r = await reader.read()) all += r.value;
  return all;
};
const firstLines = await Promise.all(subscriberLines.map((reader) => reader.read()));
allOk &&= firstLines.every((r) => r.value?.startsWith("subscribed"));
const reports = subscriberLines.map(async (reader, i) => {
  const rest = firstLines[i]!.value!.replace(/^subscribed\n?/, "") + await readAll(reader);
  return JSON.parse(rest.trim());
});
const publishers = RUNTIMES.map((name) => run(name, "pub"));
const ticker = setInterval(() => {
  const counts = [...live].map(([topic, n]) => `${topic} ${n}`).join("   ");
  if (counts !== "") console.log(`  delivered to this process so far: ${counts}`);
}, 250);
const pubReports = await Promise.all(
  publishers.map(async (child) => JSON.parse(await new Response(child.stdout).text())),
);
const subReports = await Promise.all(reports);
clearInterval(ticker);
console.log("client            role   messages   in order   msgs/s");
for (const report of [...pubReports, ...subReports]) {
  allOk &&= report?.ok === true;
  console.log(
    `${report.who.padEnd(16)}  ${report.role.padEnd(5)}  ${String(report.messages).padStart(8)}   ${
      report.ok ? "ok  " : "BAD "
    }       ${(report.messages / (report.ms / 1000)).toFixed(0).padStart(7)}`,
  );
}
watch.unsubscribe();
await hubServer.shutdown();
hub.close();
console.log(
  allOk ? "\nevery subscriber got all 150,000 messages, each publisher's in order" : "\nFAILED",
);
await Deno.remove(dir, { recursive: true });
if (!allOk) Deno.exit(1);
