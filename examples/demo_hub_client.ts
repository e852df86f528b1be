/**
 * The demo's hub client, for any runtime: connects to the hub at the first argument. As
 * `pub`, it publishes the given count of messages on `demo.<runtime>`; as `sub`, it subscribes
 * to `demo.>`, prints "subscribed", and reads until it has the count from each of the three
 * publishers, checking that each publisher's messages come in order. Ends with one JSON line.
 *
 * Run by `examples/demo.ts` under Deno, Bun and Node.
 */
import { connectHub } from "../src/hub/mod.ts";
import { scriptArgs } from "../scripts/_runtimes.ts";

const [path, role, countArg] = scriptArgs();
const count = Number(countArg);
const who = navigator.userAgent;
const name = who.split("/")[0]!.toLowerCase().replace(".js", "");
await using hub = await connectHub(path!, { app: "dockipc-demo" });
const start = performance.now();
if (role === "pub") {
  const data = new Uint8Array(8);
  const view = new DataView(data.buffer);
  for (let i = 0; i < count; i++) {
    view.setUint32(0, i);
    await hub.publish(`demo.${name}`, data.slice());
  }
  await hub.flush();
  console.log(
    JSON.stringify({ who, role, messages: count, ok: true, ms: performance.now() - start }),
  );
} else {
  const sub = hub.subscribe("demo.>", { buffer: 4096 });
  await hub.flush();
  console.log("subscribed");
  const next = new Map<string, number>();
  let received = 0;
  let ok = true;
  for await (const m of sub) {
    const i = new DataView(m.data.buffer, m.data.byteOffset).getUint32(0);
    if (i !== (next.get(m.topic) ?? 0)) ok = false;
    next.set(m.topic, i + 1);
    if (++received === 3 * count) break;
  }
  console.log(JSON.stringify({ who, role, messages: received, ok, ms: performance.now() - start }));
}
