/**
 * The dashboard: one self-contained page (no framework, no network but its own server) that polls
 * `/api/hub` every second and draws topics, connections, subscriptions, streams and consumers,
 * with the last five minutes' rates as small charts. Light and dark, as the system prefers.
 *
 * Every value from the hub (a topic, a pattern) reaches the page through `textContent`, never
 * as markup, so a topic cannot inject script.
 *
 * @module
 */

/** The page, served at `/`. */
export const DASHBOARD_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>dockipc</title>
<link rel="icon" href="data:,">
<style>
:root { --bg: #fbfbfa; --fg: #1d1d1f; --muted: #6b6b70; --line: #e3e3e6; --accent: #2f6fde; --warn: #c2410c; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #141416; --fg: #ececf0; --muted: #9a9aa2; --line: #2c2c31; --accent: #6ea0ff; --warn: #fb923c; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, sans-serif; }
header { display: flex; gap: 1.5rem; align-items: baseline; padding: 1rem 1.5rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
header h1 { font-size: 1.1rem; margin: 0; }
.kpi { color: var(--muted); } .kpi b { color: var(--fg); font-variant-numeric: tabular-nums; }
#status { margin-left: auto; color: var(--muted); } #status.down { color: var(--warn); }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(32rem, 1fr)); gap: 1rem; padding: 1rem 1.5rem; }
section { border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; overflow-x: auto; }
section h2 { font-size: .95rem; margin: 0 0 .5rem; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: .2rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { color: var(--muted); font-weight: 500; }
td.empty { text-align: left; color: var(--muted); }
.warn { color: var(--warn); }
canvas { display: block; width: 100%; height: 64px; }
canvas.spark { width: 120px; height: 20px; }
</style>
</head>
<body>
<header>
  <h1>dockipc</h1>
  <span class="kpi">published/s <b id="rate">–</b></span>
  <span class="kpi">connections <b id="conns">–</b></span>
  <span class="kpi">subscriptions <b id="subs">–</b></span>
  <span class="kpi">delivery p50 / p99 <b id="lat">–</b></span>
  <span id="status">connecting…</span>
</header>
<main>
  <section><h2>Published per second, last 5 minutes</h2><canvas id="chart" width="600" height="64"></canvas></section>
  <section><h2>Topics</h2><table id="topics"></table></section>
  <section><h2>Connections</h2><table id="connections"></table></section>
  <section><h2>Subscriptions</h2><table id="subscriptions"></table></section>
  <section><h2>Streams</h2><table id="streams"></table></section>
  <section><h2>Consumers</h2><table id="consumers"></table></section>
</main>
<script>
"use strict";
const WINDOW = 300;
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { authorization: "Bearer " + token } : {};
const history = new Map();
let last;

function rate(key, total, now) {
  const prev = last && last.totals.get(key);
  const r = prev === undefined ? 0 : Math.max(0, (total - prev) / ((now - last.at) / 1000));
  let h = history.get(key);
  if (!h) history.set(key, h = []);
  h.push(r);
  if (h.length > WINDOW) h.shift();
  return r;
}

function fmt(n) {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + " M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function quantile(h, q) {
  if (!h || h.count === 0) return undefined;
  const rank = q * h.count;
  for (let i = 0; i < h.counts.length; i++) if (h.counts[i] >= rank) return h.buckets[i];
  return Infinity;
}

function ms(s) {
  return s === undefined ? "–" : s === Infinity ? "> 10 s" : s < 0.001 ? (s * 1e6).toFixed(0) + " µs" : (s * 1e3).toFixed(s < 0.01 ? 1 : 0) + " ms";
}

function draw(canvas, values, color) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (values.length < 2) return;
  const max = Math.max(1, ...values);
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (WINDOW - 1)) * w, y = h - 2 - (v / max) * (h - 4);
    i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function table(id, columns, rows) {
  const t = document.getElementById(id);
  t.replaceChildren();
  const head = t.insertRow();
  for (const c of columns) {
    const th = document.createElement("th");
    th.textContent = c;
    head.appendChild(th);
  }
  if (rows.length === 0) {
    const td = t.insertRow().insertCell();
    td.colSpan = columns.length;
    td.className = "empty";
    td.textContent = "none";
    return;
  }
  for (const row of rows) {
    const tr = t.insertRow();
    for (const cell of row) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.appendChild(cell);
      else if (cell && typeof cell === "object") { td.textContent = cell.text; td.className = cell.cls || ""; }
      else td.textContent = typeof cell === "number" ? fmt(cell) : String(cell ?? "");
    }
  }
}

function spark(key, color) {
  const c = document.createElement("canvas");
  c.className = "spark";
  c.width = 120;
  c.height = 20;
  draw(c, history.get(key) || [], color);
  return c;
}

function render(s, now) {
  const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent");
  const totals = new Map();
  let total = 0;
  const topics = s.topics.map((t) => {
    totals.set("t:" + t.topic, t.published);
    total += t.published;
    const r = rate("t:" + t.topic, t.published, now);
    return [t.topic, r, t.published, t.bytes, spark("t:" + t.topic, accent)];
  });
  totals.set("all", total);
  document.getElementById("rate").textContent = fmt(rate("all", total, now));
  draw(document.getElementById("chart"), history.get("all") || [], accent);
  table("topics", ["topic", "msg/s", "published", "bytes", "last 5 min"], topics);
  const conns = s.connections || [];
  document.getElementById("conns").textContent = String(conns.length);
  table("connections", ["address", "since", "published", "subs", "readers", "requests"], conns.map((c) => [
    c.remoteAddr || "unix:", new Date(c.since).toLocaleTimeString(), c.published, c.subscriptions, c.readers, c.requests,
  ]));
  document.getElementById("subs").textContent = String(s.subscriptions.length);
  table("subscriptions", ["pattern", "queue", "policy", "msg/s", "pending", "dropped"], s.subscriptions.map((x) => {
    totals.set("s:" + x.id, x.delivered);
    return [x.pattern, x.queue || "", x.overflow, rate("s:" + x.id, x.delivered, now), x.pending,
      x.dropped > 0 ? { text: fmt(x.dropped), cls: "warn" } : 0];
  }));
  table("streams", ["stream", "messages", "bytes", "first", "last"], s.streams.map((x) => [
    x.stream, x.messages, x.bytes, x.firstSeq, x.lastSeq,
  ]));
  table("consumers", ["stream / consumer", "lag", "pending", "acked", "redelivered", "dead"], s.consumers.map((c) => [
    c.stream + " / " + c.config.name, c.lag, c.pending, c.acked, c.redelivered,
    c.deadLettered > 0 ? { text: fmt(c.deadLettered), cls: "warn" } : 0,
  ]));
  const d = s.latency.delivery;
  document.getElementById("lat").textContent = ms(quantile(d, 0.5)) + " / " + ms(quantile(d, 0.99));
  last = { at: now, totals };
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("api/hub", { headers, cache: "no-store" });
    if (!res.ok) throw new Error(res.status === 401 ? "unauthorized: add ?token=… to the address" : "HTTP " + res.status);
    render(await res.json(), performance.now());
    status.textContent = "live";
    status.className = "";
  } catch (err) {
    status.textContent = String(err.message || err);
    status.className = "down";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
