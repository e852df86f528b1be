import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { IpcError } from "../../src/errors.ts";
import { connectHub, Hub, serveHub } from "../../src/hub/mod.ts";
import { type MetricsServer, serveMetrics } from "../../src/metrics/mod.ts";
import { dial, serve } from "../../src/rpc/mod.ts";
import { Wal } from "../../src/wal/mod.ts";
import { ROOT, rt, skipWithout, spawnFixture, tempDir } from "../_helpers.ts";

const T = { timeout: 120_000 };
const noPromtool = await skipWithout("promtool");
const noChromium = await skipWithout("chromium");

/** A hub with known traffic, its server, an RPC server and a log, all served for metrics. */
async function scene(
  dir: string,
): Promise<{ hub: Hub; metrics: MetricsServer } & AsyncDisposable> {
  const hub = new Hub();
  const hubServer = await serveHub(hub, `${dir}/hub.sock`);
  const client = await connectHub(hubServer.addr);
  const sub = client.subscribe("orders.*");
  await client.flush();
  for (let i = 0; i < 130; i++) await client.publish("orders.new", "12345");
  for (let i = 0; i < 130; i++) await sub.next();
  hub.handle("math.double", (m) => String(Number(new TextDecoder().decode(m.data)) * 2));
  for (let i = 0; i < 3; i++) await hub.request("math.double", "21");
  const rpc = await serve(`${dir}/rpc.sock`, (r) => r);
  const rpcClient = await dial(rpc.addr);
  for (let i = 0; i < 4; i++) await rpcClient.request("x");
  const wal = await Wal.open(`${dir}/wal`, { sync: "always" });
  for (let i = 0; i < 5; i++) await wal.append("record");
  const metrics = await serveMetrics({ hub, hubServer, rpc: [rpc], wal: [wal] });
  return {
    hub,
    metrics,
    [Symbol.asyncDispose]: async () => {
      await metrics.close();
      await rpcClient.close();
      await rpc.close();
      await client.close();
      await hubServer.close();
      await hub.close();
      await wal.close();
    },
  };
}

/** The value of the one sample named `line` (metric name and labels) in an exposition. */
function sample(text: string, line: string): number {
  const found = text.split("\n").find((l) => l.startsWith(`${line} `));
  assert.ok(found, `no sample ${line}`);
  return Number(found.slice(line.length + 1));
}

describe(`serveMetrics() on ${rt.name}`, () => {
  test("/metrics counts the traffic of the hub, its connections, RPC and the log", T, async () => {
    await using dir = await tempDir();
    await using s = await scene(dir.path);
    const res = await fetch(`${s.metrics.url}metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.equal(sample(text, 'dockipc_hub_published_total{topic="orders.new"}'), 130);
    assert.equal(sample(text, 'dockipc_hub_published_bytes_total{topic="orders.new"}'), 650);
    assert.equal(sample(text, "dockipc_hub_connections"), 1);
    assert.equal(sample(text, "dockipc_hub_denied_total"), 0); // no users: nothing is denied
    // One message in 64 is timed, one at a time: of 130, the 64th, and the 128th unless the
    // 64th was still on its way.
    const timed = sample(text, "dockipc_hub_delivery_seconds_count");
    assert.ok(timed === 1 || timed === 2, String(timed));
    assert.equal(sample(text, 'dockipc_hub_delivery_seconds_bucket{le="+Inf"}'), timed);
    assert.equal(sample(text, "dockipc_hub_request_seconds_count"), 3);
    const server = `server="unix:${dir.path}/rpc.sock"`;
    assert.equal(sample(text, `dockipc_rpc_requests_total{${server}}`), 4);
    assert.equal(sample(text, `dockipc_rpc_failed_total{${server}}`), 0);
    assert.equal(sample(text, `dockipc_rpc_denied_total{${server}}`), 0);
    assert.equal(sample(text, `dockipc_rpc_request_seconds_count{${server}}`), 4);
    const log = `dir="${dir.path}/wal"`;
    assert.equal(sample(text, `dockipc_wal_last_seq{${log}}`), 5);
    assert.ok(sample(text, `dockipc_wal_fsync_seconds_count{${log}}`) >= 5);
    // Buckets are cumulative: never fewer below a larger bound.
    const buckets = text.split("\n").filter((l) =>
      l.startsWith("dockipc_rpc_request_seconds_bucket")
    )
      .map((l) => Number(l.slice(l.lastIndexOf(" ") + 1)));
    assert.deepEqual(buckets, [...buckets].sort((a, b) => a - b));
  });

  test("promtool check metrics accepts the exposition", {
    ...T,
    skip: noPromtool,
  }, async () => {
    await using dir = await tempDir();
    await using s = await scene(dir.path);
    const text = await (await fetch(`${s.metrics.url}metrics`)).text();
    const child = rt.spawn("promtool", ["check", "metrics"], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const writer = child.stdin!.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    const [out, err, status] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.status,
    ]);
    assert.equal(status.code, 0, `${out}${err}`);
    assert.equal(`${out}${err}`.trim(), "");
  });

  test("the JSON endpoints give the parts of one snapshot", T, async () => {
    await using dir = await tempDir();
    await using s = await scene(dir.path);
    // deno-lint-ignore no-explicit-any
    const get = async (path: string): Promise<any> =>
      await (await fetch(`${s.metrics.url}${path}`)).json();
    const all = await get("api/hub");
    assert.deepEqual(Object.keys(all).sort(), [
      "connections",
      "consumers",
      "denied",
      "latency",
      "limits",
      "requests",
      "rpc",
      "scheduled",
      "streams",
      "subscriptions",
      "time",
      "topics",
      "wal",
    ]);
    const connections = await get("api/connections");
    assert.equal(connections.length, 1);
    assert.equal(connections[0].published, 130);
    assert.equal(connections[0].subscriptions, 1);
    const subs = await get("api/subscriptions");
    assert.ok(
      subs.some((x: { pattern: string; delivered: number }) =>
        x.pattern === "orders.*" && x.delivered === 130
      ),
    );
    assert.deepEqual(await get("api/streams"), { streams: [], consumers: [] });
    assert.equal((await get("api/rpc"))[0].requests, 4);
    assert.equal((await get("api/wal"))[0].lastSeq, 5);
    const missing = await fetch(`${s.metrics.url}api/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${s.metrics.url}metrics`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
  });

  test("a token guards every path; without one, only loopback is served", T, async () => {
    await using hub = new Hub();
    await using m = await serveMetrics({ hub }, { token: "s3cret" });
    for (const path of ["", "metrics", "api/hub"]) {
      const res = await fetch(`${m.url}${path}`);
      assert.equal(res.status, 401, path);
      await res.body?.cancel();
    }
    const wrong = await fetch(`${m.url}metrics`, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const bearer = await fetch(`${m.url}metrics`, { headers: { authorization: "Bearer s3cret" } });
    assert.equal(bearer.status, 200);
    await bearer.body?.cancel();
    const query = await fetch(`${m.url}?token=s3cret`);
    assert.equal(query.status, 200);
    await query.body?.cancel();
    await assert.rejects(
      serveMetrics({ hub }, { listen: "0.0.0.0:0" }),
      (e) => e instanceof IpcError && e.code === "EAUTH" && /without a token/.test(e.message),
    );
    await assert.rejects(
      serveMetrics({ hub }, { listen: "nonsense" }),
      (e) => e instanceof IpcError && e.code === "EADDRINVALID",
    );
  });

  test(
    "the dashboard renders in Chromium without console errors and its rate moves",
    { ...T, skip: noChromium },
    async () => {
      await using dir = await tempDir();
      await using hub = new Hub();
      await using m = await serveMetrics({ hub });
      // Markup that would run script if the page took it as markup: it must show as text.
      const TOPIC = "dash.<img/src=x/onerror=boom()";
      const sub = hub.subscribe("dash.>", { overflow: "drop-oldest" });
      const stop = new AbortController();
      const publishing = (async () => {
        while (!stop.signal.aborted) {
          await hub.publish(TOPIC, "x");
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      await rt.fs.mkdir(`${ROOT}test-artifacts`, { recursive: true });
      const png = `${ROOT}test-artifacts/dashboard-${rt.name}.png`;
      await using browser = spawnFixture("node", "dashboard_check.ts", [
        m.url,
        TOPIC,
        png,
      ]);
      try {
        const seen = JSON.parse(await browser.line(60_000)) as {
          errors: string[];
          rates: string[];
          status: string;
          background: string;
          title: string;
        };
        assert.deepEqual(seen.errors, []);
        assert.equal(seen.title, "dockipc");
        assert.equal(seen.status, "live");
        // The topic was shown as text (its markup not taken as markup), and its rate rose.
        assert.ok(seen.rates.some((r) => Number.parseFloat(r) > 0), seen.rates.join(", "));
        assert.ok((await rt.fs.stat(png)).size > 1000);
        // Dark mode: a dark background (the page's --bg, #141416).
        assert.equal(seen.background, "rgb(20, 20, 22)");
        assert.ok((await rt.fs.stat(png.replace(/\.png$/, "-dark.png"))).size > 1000);
      } finally {
        stop.abort();
        await publishing;
        sub.unsubscribe();
      }
      assert.equal((await browser.status).code, 0);
      void dir;
    },
  );
});
