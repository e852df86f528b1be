/**
 * TLS options for `listen()` and `connect()` on `tls://` addresses, and their checks: every
 * certificate, key and authority is PEM text, a client certificate needs the authority that
 * verifies it, and an option that would not be enforced is refused rather than ignored.
 *
 * @module
 */

import { type Address, formatAddress } from "./address.ts";
import { IpcError } from "./errors.ts";
import type { TlsClientConfig, TlsServerConfig } from "./runtime/types.ts";

/** PEM text, or its bytes (as a file read gives them). */
export type Pem = string | Uint8Array;

/**
 * TLS for a `tls://` listener.
 *
 * @example Serve TLS with mutual authentication
 * ```ts ignore
 * import { listen } from "@dockipc/dockipc";
 *
 * const read = (name: string) => Deno.readTextFileSync(`/etc/app/${name}`);
 * await using listener = await listen("tls://0.0.0.0:4433", {
 *   tls: { cert: read("server.pem"), key: read("server.key"), ca: read("ca.pem"), requireClientCert: true },
 * });
 * for await (const conn of listener) console.log(conn.tls?.peerCertificate?.commonName);
 * ```
 */
export interface ListenTlsOptions {
  /** The server's certificate, then any intermediates: PEM. */
  cert: Pem;
  /** The server's private key: PEM, unencrypted. */
  key: Pem;
  /**
   * The authorities that sign client certificates: PEM, one or more. With it, clients are asked
   * for a certificate; one that is sent is verified, and a client whose certificate fails is
   * refused (`ECERTUNTRUSTED`, `ECERTEXPIRED`). Without `requireClientCert`, a client may send
   * none.
   */
  ca?: Pem;
  /** Refuse a client without a valid certificate (`ECERTREQUIRED`). Needs `ca`. @default {false} */
  requireClientCert?: boolean;
  /**
   * Milliseconds a connection has to complete its TLS handshake; one that stalls is closed.
   * @default {5000}
   */
  handshakeTimeout?: number;
  /** Connections in their TLS handshake at once: one more closes the oldest. @default {256} */
  maxHandshakes?: number;
}

/** TLS for connecting to a `tls://` address. */
export interface ConnectTlsOptions {
  /** The authorities to trust, PEM; the system's own when absent. */
  ca?: Pem;
  /** A client certificate (PEM), for a server that asks for one; needs `key`. */
  cert?: Pem;
  /** The client certificate's private key, PEM. */
  key?: Pem;
  /** The name the server's certificate must hold. @default {the address's host name} */
  serverName?: string;
}

const decoder = new TextDecoder();

function invalid(op: string, address: Address, why: string): IpcError {
  const label = formatAddress(address);
  return new IpcError("EINVAL", `Cannot ${op} "${label}" as ${why}`, { op, address: label });
}

/** Reads one PEM option: text that holds at least one PEM block. */
function pem(op: string, address: Address, name: string, value: unknown): string {
  const text = typeof value === "string"
    ? value
    : value instanceof Uint8Array
    ? decoder.decode(value)
    : undefined;
  if (text === undefined || !/-----BEGIN [A-Z0-9 ]+-----/.test(text)) {
    throw invalid(
      op,
      address,
      `tls.${name} is not PEM text (it must hold "-----BEGIN …-----"): read the file and pass its contents`,
    );
  }
  return text;
}

/** Checks the TLS options against the address: both TLS, or neither. */
function matches(
  op: string,
  address: Address,
  tls: object | undefined,
  needed: boolean,
): tls is object {
  if (address.transport !== "tls") {
    if (tls !== undefined) {
      throw invalid(
        op,
        address,
        'it is not a TLS address, yet tls options were given: use "tls://"',
      );
    }
    return false;
  }
  if (tls === undefined && needed) {
    throw invalid(op, address, "a TLS listener needs options.tls with its cert and key");
  }
  if (tls !== undefined && (typeof tls !== "object" || tls === null)) {
    throw invalid(op, address, "options.tls is not an object");
  }
  return tls !== undefined;
}

function whole(
  op: string,
  address: Address,
  name: string,
  value: unknown,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw invalid(
      op,
      address,
      `tls.${name} must be a whole number >= 1: current value is ${String(value)}`,
    );
  }
  return value;
}

/** A listener's TLS configuration, or undefined for a plaintext address. */
export function serverTlsConfig(
  address: Address,
  tls: ListenTlsOptions | undefined,
): TlsServerConfig | undefined {
  const op = "listen on";
  if (!matches(op, address, tls, true)) return undefined;
  const t = tls as ListenTlsOptions;
  const requireClientCert = t.requireClientCert ?? false;
  if (typeof requireClientCert !== "boolean") {
    throw invalid(
      op,
      address,
      `tls.requireClientCert must be true or false: current value is ${String(requireClientCert)}`,
    );
  }
  const ca = t.ca === undefined ? undefined : pem(op, address, "ca", t.ca);
  if (requireClientCert && ca === undefined) {
    throw invalid(
      op,
      address,
      "tls.requireClientCert needs tls.ca, the authority that signs client certificates",
    );
  }
  return {
    cert: pem(op, address, "cert", t.cert),
    key: pem(op, address, "key", t.key),
    ca,
    requireClientCert,
    handshakeTimeout: whole(op, address, "handshakeTimeout", t.handshakeTimeout, 5000),
    maxHandshakes: whole(op, address, "maxHandshakes", t.maxHandshakes, 256),
  };
}

/** A connection's TLS configuration (the system's trust when none is given), or undefined. */
export function clientTlsConfig(
  address: Address,
  tls: ConnectTlsOptions | undefined,
): TlsClientConfig | undefined {
  const op = "connect to";
  const given = matches(op, address, tls, false);
  if (address.transport !== "tls") return undefined;
  const t: ConnectTlsOptions = given ? tls! : {};
  if ((t.cert === undefined) !== (t.key === undefined)) {
    throw invalid(op, address, "tls.cert and tls.key go together: pass both or neither");
  }
  if (t.serverName !== undefined && (typeof t.serverName !== "string" || t.serverName === "")) {
    throw invalid(
      op,
      address,
      `tls.serverName must be a host name: current value is ${JSON.stringify(t.serverName)}`,
    );
  }
  return {
    ca: t.ca === undefined ? undefined : pem(op, address, "ca", t.ca),
    cert: t.cert === undefined ? undefined : pem(op, address, "cert", t.cert),
    key: t.key === undefined ? undefined : pem(op, address, "key", t.key),
    serverName: t.serverName,
  };
}
