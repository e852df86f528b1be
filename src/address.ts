/**
 * Addresses: the strings users write (`"unix:/run/app.sock"`, `"./app.sock"`,
 * `"tcp://127.0.0.1:4222"`, `"localhost:4222"`, `"tls://localhost:4222"`) and the objects the
 * transport uses.
 *
 * @module
 */

import { IpcError } from "./errors.ts";
import { platform } from "./runtime/platform.ts";

/** A unix-domain stream socket at a file-system path (absolute or relative to the cwd). */
export interface UnixAddress {
  /** Always `"unix"`. */
  readonly transport: "unix";
  /** The socket file's path; `""` for the unnamed end of a connection. */
  readonly path: string;
}

/** A TCP endpoint. `hostname` holds an IPv6 address without its brackets. */
export interface TcpAddress {
  /** Always `"tcp"`. */
  readonly transport: "tcp";
  /** An IPv4 or IPv6 address, or a host name. */
  readonly hostname: string;
  /** 0 to 65535; 0 asks the OS for a free port when listening. */
  readonly port: number;
}

/** A TCP endpoint spoken to over TLS: the transport needs certificates to use it. */
export interface TlsAddress {
  /** Always `"tls"`. */
  readonly transport: "tls";
  /** An IPv4 or IPv6 address, or a host name. */
  readonly hostname: string;
  /** 0 to 65535; 0 asks the OS for a free port when listening. */
  readonly port: number;
}

/** Where to listen or connect. */
export type Address = UnixAddress | TcpAddress | TlsAddress;

/** Options for {@linkcode parseAddress}. */
export interface ParseAddressOptions {
  /**
   * The longest unix socket path in bytes: `sun_path` less its terminating NUL. Node silently
   * cuts a longer path, so dockipc refuses it up front.
   *
   * @default {107 on Linux, 103 on macOS and the BSDs}
   */
  maxUnixPathBytes?: number;
}

const LINUX_MAX_UNIX_PATH = 107;
const BSD_MAX_UNIX_PATH = 103;
const encoder = new TextEncoder();

/** The longest unix socket path, in bytes, on this operating system. */
export function maxUnixPathBytes(): number {
  return platform() === "linux" ? LINUX_MAX_UNIX_PATH : BSD_MAX_UNIX_PATH;
}

const FORMS = 'expected "unix:PATH", a path with "/" or ending in ".sock", ' +
  '"tcp://HOST:PORT", "tls://HOST:PORT" or "HOST:PORT"';

/**
 * Parses an address string, or checks an address object.
 *
 * - `unix:/abs/path`, `unix:./rel.sock`, `unix:///abs/path`: a unix socket;
 * - a bare path that contains `/` or ends in `.sock`: a unix socket;
 * - `tcp://host:port` and `host:port`, where host is an IPv4 address, `[IPv6]`, `localhost` or
 *   a DNS name, and port is 0 to 65535 (0 asks the OS for a free port when listening);
 * - `tls://host:port`: the same, over TLS.
 *
 * @param input The address.
 * @param options Limits.
 * @returns The address as an object.
 * @throws {IpcError} `EADDRINVALID` naming the value and what is wrong with it.
 *
 * @example Parse the forms
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddress } from "@dockipc/dockipc";
 *
 * assert.deepEqual(parseAddress("unix:/run/app.sock"), { transport: "unix", path: "/run/app.sock" });
 * assert.deepEqual(parseAddress("./app.sock"), { transport: "unix", path: "./app.sock" });
 * assert.deepEqual(parseAddress("tcp://[::1]:4222"), { transport: "tcp", hostname: "::1", port: 4222 });
 * assert.deepEqual(parseAddress("tls://localhost:4222"), { transport: "tls", hostname: "localhost", port: 4222 });
 * assert.throws(() => parseAddress("http://x:1"), { code: "EADDRINVALID" });
 * ```
 */
export function parseAddress(input: string | Address, options: ParseAddressOptions = {}): Address {
  if (typeof input === "object" && input !== null) return checkAddress(input, options);
  if (typeof input !== "string") {
    throw new TypeError(
      `Cannot parse address as it is not a string: current type is ${typeof input}`,
    );
  }
  if (input.startsWith("unix:")) {
    let path = input.slice(5);
    if (path.startsWith("//")) {
      path = path.slice(2);
      if (!path.startsWith("/")) {
        throw invalid(
          input,
          'a "unix://" address takes an absolute path: use "unix:///abs" or "unix:./rel"',
        );
      }
    }
    return unixAddress(input, path, options);
  }
  for (const transport of ["tcp", "tls"] as const) {
    if (!input.startsWith(`${transport}:`)) continue;
    if (!input.startsWith(`${transport}://`)) {
      throw invalid(input, `it lacks "//" after "${transport}:"; ${FORMS}`);
    }
    return tcpAddress(input, input.slice(6), transport);
  }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(input);
  if (scheme) {
    throw invalid(input, `its scheme "${scheme[1]}" is not "unix", "tcp" or "tls"`);
  }
  if (input.includes("/") || input.endsWith(".sock")) return unixAddress(input, input, options);
  if (input === "") throw invalid(input, `it is empty; ${FORMS}`);
  if (!input.includes(":")) throw invalid(input, `it has no port and is not a path; ${FORMS}`);
  return tcpAddress(input, input, "tcp");
}

/**
 * Writes an address the way {@linkcode parseAddress} reads it.
 *
 * @param address The address.
 * @returns `"unix:PATH"` (`"unix://PATH"` when PATH starts with `//`), `"tcp://HOST:PORT"` or
 *   `"tls://HOST:PORT"`, with brackets around an IPv6 host.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAddress, parseAddress } from "@dockipc/dockipc";
 *
 * assert.equal(formatAddress({ transport: "tcp", hostname: "::1", port: 80 }), "tcp://[::1]:80");
 * assert.equal(formatAddress(parseAddress("/run/a.sock")), "unix:/run/a.sock");
 * ```
 */
export function formatAddress(address: Address): string {
  if (address.transport === "unix") {
    // "unix://" starts the URL form, so a path that itself starts with "//" is written in it.
    return address.path.startsWith("//") ? `unix://${address.path}` : `unix:${address.path}`;
  }
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `${address.transport}://${host}:${address.port}`;
}

function invalid(input: string, why: string): IpcError {
  return new IpcError("EADDRINVALID", `Cannot parse address ${JSON.stringify(input)} as ${why}`, {
    op: "parse",
    address: input,
  });
}

function unixAddress(input: string, path: string, options: ParseAddressOptions): UnixAddress {
  if (path === "") throw invalid(input, "its unix socket path is empty");
  if (path.includes("\0")) throw invalid(input, "its unix socket path contains a NUL byte");
  const limit = options.maxUnixPathBytes ?? maxUnixPathBytes();
  const bytes = encoder.encode(path).length;
  if (bytes > limit) {
    throw invalid(
      input,
      `its unix socket path is longer than the OS allows (${limit} bytes): current length is ${bytes}; ` +
        "use a shorter or relative path",
    );
  }
  return { transport: "unix", path };
}

function tcpAddress<T extends "tcp" | "tls">(
  input: string,
  hostPort: string,
  transport: T,
): { transport: T; hostname: string; port: number } {
  let host: string;
  let port: string;
  if (hostPort.startsWith("[")) {
    const end = hostPort.indexOf("]");
    if (end < 0) throw invalid(input, 'its IPv6 host lacks the closing "]"');
    host = hostPort.slice(1, end);
    if (hostPort[end + 1] !== ":") throw invalid(input, 'it has no ":PORT" after the IPv6 host');
    port = hostPort.slice(end + 2);
    if (!isIPv6(host)) {
      throw invalid(input, `its host is not an IPv6 address: current value is "${host}"`);
    }
  } else {
    const colon = hostPort.lastIndexOf(":");
    if (colon < 0) throw invalid(input, `it has no port; ${FORMS}`);
    host = hostPort.slice(0, colon);
    port = hostPort.slice(colon + 1);
    if (host.includes(":")) throw invalid(input, 'its IPv6 host must be in brackets: "[::1]:PORT"');
    if (!isIPv4(host) && !isHostname(host)) {
      throw invalid(
        input,
        `its host is not an IPv4 address or a host name: current value is "${host}"`,
      );
    }
  }
  return { transport, hostname: host, port: parsePort(input, port) };
}

function parsePort(input: string, port: string): number {
  const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  if (!(n <= 65535)) {
    throw invalid(input, `its port is not a number from 0 to 65535: current value is "${port}"`);
  }
  return n;
}

function checkAddress(address: Address, options: ParseAddressOptions): Address {
  const shown = JSON.stringify(address);
  if (address.transport === "unix") {
    if (typeof address.path !== "string") throw invalid(shown, "its path is not a string");
    return unixAddress(shown, address.path, options);
  }
  if (address.transport === "tcp" || address.transport === "tls") {
    const { transport, hostname, port } = address;
    if (
      typeof hostname !== "string" ||
      !(isIPv4(hostname) || isIPv6(hostname) || isHostname(hostname))
    ) {
      throw invalid(
        shown,
        `its hostname is not an IP address or a host name: current value is ${
          JSON.stringify(hostname)
        }`,
      );
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw invalid(
        shown,
        `its port is not a number from 0 to 65535: current value is ${String(port)}`,
      );
    }
    return { transport, hostname, port };
  }
  throw invalid(shown, 'its transport is not "unix", "tcp" or "tls"');
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const LABEL = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function isIPv4(host: string): boolean {
  return IPV4.test(host);
}

function isHostname(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  const labels = host.split(".");
  // A name made only of digits and dots is a malformed IPv4 address, not a name.
  if (labels.every((l) => /^\d+$/.test(l))) return false;
  return labels.every((l) => LABEL.test(l));
}

function isIPv6(host: string): boolean {
  const zone = host.indexOf("%");
  const addr = zone < 0 ? host : host.slice(0, zone);
  if (zone >= 0 && !/^[a-zA-Z0-9_.-]+$/.test(host.slice(zone + 1))) return false;
  const halves = addr.split("::");
  if (halves.length > 2) return false;
  const groups = (s: string): string[] => (s === "" ? [] : s.split(":"));
  const head = groups(halves[0] ?? "");
  const tail = halves.length === 2 ? groups(halves[1] ?? "") : [];
  const all = [...head, ...tail];
  let slots = all.length;
  const last = all[all.length - 1];
  if (last !== undefined && last.includes(".")) {
    if (!isIPv4(last)) return false;
    all.pop();
    slots += 1; // an embedded IPv4 address fills two groups
  }
  if (!all.every((g) => HEX_GROUP.test(g))) return false;
  return halves.length === 2 ? slots <= 7 : slots === 8;
}
