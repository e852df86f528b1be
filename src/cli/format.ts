/**
 * How the `dockipc` program shows payloads and messages: UTF-8 text when the bytes are text,
 * else hex; as JSON, text in `data` or the bytes in `base64`.
 *
 * @module
 */

const strict = new TextDecoder("utf-8", { fatal: true });

/** The bytes as text, or `undefined` when they are not UTF-8 (or hold control characters). */
export function asText(data: Uint8Array): string | undefined {
  try {
    const text = strict.decode(data);
    // deno-lint-ignore no-control-regex
    return /[\x00-\x08\x0b-\x1f\x7f]/.test(text) ? undefined : text;
  } catch {
    return undefined;
  }
}

/** The bytes as lowercase hex, two digits each, spaced. */
export function hex(data: Uint8Array): string {
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** The bytes as text when they are (one trailing line feed dropped), else `<N bytes: hex>`. */
export function showBytes(data: Uint8Array): string {
  return asText(data)?.replace(/\n$/, "") ?? `<${data.length} bytes: ${hex(data)}>`;
}

/** The bytes for JSON: `{ data }` when text, else `{ base64 }`. */
export function jsonBytes(data: Uint8Array): { data: string } | { base64: string } {
  const text = asText(data);
  if (text !== undefined) return { data: text };
  let binary = "";
  for (const b of data) binary += String.fromCharCode(b);
  return { base64: btoa(binary) };
}

/** What a message shows: its topic, sequence, headers and payload. */
export interface Shown {
  readonly topic: string;
  readonly seq: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly data: Uint8Array;
}

/** A message as one line of text: `[#seq] topic {k=v}: data`. */
export function messageText(m: Shown): string {
  const headers = Object.entries(m.headers);
  const h = headers.length === 0 ? "" : ` {${headers.map(([k, v]) => `${k}=${v}`).join(", ")}}`;
  return `[#${m.seq}] ${m.topic}${h}: ${showBytes(m.data)}`;
}

/** A message as a JSON value. */
export function messageJson(m: Shown): Record<string, unknown> {
  return { topic: m.topic, seq: m.seq, headers: m.headers, ...jsonBytes(m.data) };
}

/** Parses `k=v` headers; a header without `=` is an error naming it. */
export function parseHeaders(list: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new TypeError(`A header must be KEY=VALUE: got "${item}"`);
    headers[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return headers;
}

/** A count per second, rounded for people: `12.3 k`. */
export function rate(n: number): string {
  return n >= 1e6
    ? `${(n / 1e6).toFixed(2)} M`
    : n >= 1e3
    ? `${(n / 1e3).toFixed(1)} k`
    : n.toFixed(0);
}

/** A duration in seconds, in the unit that reads best; `undefined` is "n/a". */
export function duration(seconds: number | undefined): string {
  if (seconds === undefined) return "n/a";
  if (!Number.isFinite(seconds)) return "> 10 s";
  if (seconds < 1e-3) return `${(seconds * 1e6).toFixed(0)} µs`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
  return `${seconds.toFixed(2)} s`;
}
