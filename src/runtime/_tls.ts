/**
 * TLS on TCP for every adapter, through the runtime's own `node:tls`: Node's, Bun's and Deno's.
 * `Deno.listenTls` cannot ask for a client certificate (denoland/deno#26825), Deno's `node:tls`
 * can and verifies it, so one implementation serves all three. `node:tls` loads on first use.
 *
 * A server asks for a client certificate whenever it has a `ca`, and lets the handshake finish
 * whatever the client sent; it then judges the certificate itself (`authorized`, which the
 * runtime sets from its own verification), so that a refused client can be told why over the
 * connection (`onRefused`) instead of meeting a bare TLS alert that every runtime words
 * differently.
 *
 * @module
 */

import type { Socket } from "node:net";
import type * as Tls from "node:tls";
import type { TlsAddress } from "../address.ts";
import { formatAddress } from "../address.ts";
import { IpcError, type IpcErrorCode, systemCode, systemError } from "../errors.ts";
import { type ReadSwitch, tcpPeer, wrapSocket } from "./_node_socket.ts";
import type {
  Conn,
  ListenHandlers,
  PeerCertificate,
  RawListener,
  TlsClientConfig,
  TlsInfo,
  TlsServerConfig,
} from "./types.ts";

let loading: Promise<typeof Tls> | undefined;
const nodeTls = (): Promise<typeof Tls> => loading ??= import("node:tls");

/**
 * Checks that each certificate parses and that `key` is the private key of the first, before
 * a server listens or a client connects: Deno's `node:tls` would only find out at a handshake.
 */
async function checkPems(
  label: string,
  op: string,
  pair: { cert: string; key: string } | undefined,
  ca: string | undefined,
): Promise<void> {
  const { X509Certificate, createPrivateKey } = await import("node:crypto");
  const blocks = (pem: string): string[] =>
    pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  try {
    for (const pem of blocks(ca ?? "")) new X509Certificate(pem);
    if (pair === undefined) return;
    const [first] = blocks(pair.cert);
    if (first === undefined) throw new Error("tls.cert holds no CERTIFICATE block");
    const cert = new X509Certificate(first);
    if (!cert.checkPrivateKey(createPrivateKey(pair.key))) {
      throw new Error("tls.key is not the private key of tls.cert");
    }
  } catch (err) {
    throw configError(err, label, op);
  }
}

/** Verification failures, as OpenSSL (and the runtimes after it) name them, by our code. */
const CERT_CODES: Readonly<Record<string, IpcErrorCode>> = {
  CERT_HAS_EXPIRED: "ECERTEXPIRED",
  CERT_NOT_YET_VALID: "ECERTEXPIRED",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: "ECERTEXPIRED",
  ERR_TLS_CERT_ALTNAME_INVALID: "ECERTNAME",
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: "ECERTREQUIRED",
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: "ECERTREQUIRED",
  ERR_SSL_TLSV1_ALERT_CERTIFICATE_REQUIRED: "ECERTREQUIRED",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "ECERTUNTRUSTED",
  UNABLE_TO_GET_ISSUER_CERT: "ECERTUNTRUSTED",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "ECERTUNTRUSTED",
  SELF_SIGNED_CERT_IN_CHAIN: "ECERTUNTRUSTED",
  DEPTH_ZERO_SELF_SIGNED_CERT: "ECERTUNTRUSTED",
  CERT_SIGNATURE_FAILURE: "ECERTUNTRUSTED",
  CERT_UNTRUSTED: "ECERTUNTRUSTED",
  CERT_REVOKED: "ECERTUNTRUSTED",
  INVALID_CA: "ECERTUNTRUSTED",
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: "ECERTUNTRUSTED",
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: "ECERTUNTRUSTED",
};

/** What each code means for a client, and what to do about it. */
const CLIENT_REASONS: Readonly<Partial<Record<IpcErrorCode, string>>> = {
  ECERTUNTRUSTED:
    "the server's certificate is not signed by an authority this client trusts: pass the server's CA as tls.ca",
  ECERTEXPIRED: "the server's certificate has expired or is not valid yet",
  ECERTNAME:
    "the server's certificate is not for the name connected to: connect by a name it holds, or set tls.serverName",
  ECERTREQUIRED: "the server requires a client certificate: pass tls.cert and tls.key",
  ETLS: "the TLS handshake failed; is the server a plaintext one? Then connect with tcp://",
};

/**
 * A failed TLS connect as an `IpcError`: a certificate's fault by its own code, a handshake
 * that went wrong otherwise as `ETLS`, a socket failure (refused, reset) as usual. `known` is
 * the failure's OpenSSL name where the runtime's was less precise.
 */
function clientError(err: unknown, label: string, known?: string): IpcError {
  if (err instanceof IpcError) return err;
  const raw = known ?? systemCode(err) ?? "";
  const code = CERT_CODES[raw] ?? (/^ERR_(SSL|TLS)_/.test(raw) ? "ETLS" : undefined);
  if (code === undefined) return systemError(err, "connect to", label);
  const detail = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return new IpcError(
    code,
    `Cannot connect to "${label}" as ${CLIENT_REASONS[code]} (${raw}: ${detail})`,
    {
      op: "connect",
      address: label,
      cause: err,
    },
  );
}

/** A distinguished name as one line, `"CN=alice,O=Example"`. */
function distinguishedName(name: Record<string, string | string[]> | undefined): string {
  if (name === undefined) return "";
  return Object.entries(name)
    .flatMap(([key, values]) =>
      (Array.isArray(values) ? values : [values]).map((v) => `${key}=${v}`)
    )
    .join(",");
}

/** The peer's certificate as `PeerCertificate`, or undefined when it sent none. */
function peerCertificate(socket: Tls.TLSSocket): PeerCertificate | undefined {
  const cert = socket.getPeerCertificate();
  if (cert === null || typeof cert !== "object" || !cert.fingerprint256) return undefined;
  const cn = cert.subject?.CN as string | string[] | undefined;
  return {
    subject: distinguishedName(cert.subject as Record<string, string | string[]> | undefined),
    commonName: Array.isArray(cn) ? cn[0] : cn,
    subjectAltNames: cert.subjectaltname ? cert.subjectaltname.split(", ") : [],
    issuer: distinguishedName(cert.issuer as Record<string, string | string[]> | undefined),
    fingerprint: cert.fingerprint256,
    validFrom: new Date(cert.valid_from),
    validTo: new Date(cert.valid_to),
  };
}

/** Deno's TCP handle under a `node:tls` socket (see `ReadSwitch`); undefined elsewhere. */
function readSwitch(socket: Tls.TLSSocket): ReadSwitch | undefined {
  const handle = (socket as unknown as { _handle?: { _nativeTcpHandle?: Partial<ReadSwitch> } })
    ._handle?._nativeTcpHandle;
  return typeof handle?.readStop === "function" && typeof handle.readStart === "function"
    ? handle as ReadSwitch
    : undefined;
}

function tlsInfo(socket: Tls.TLSSocket, peer: PeerCertificate | undefined): TlsInfo {
  return { protocol: socket.getProtocol() ?? "", peerCertificate: peer };
}

/**
 * Why a server refuses a client that completed the handshake, or undefined if it does not:
 * no certificate where one is required, or one the runtime's verification did not accept.
 */
function clientRefusal(
  socket: Tls.TLSSocket,
  peer: PeerCertificate | undefined,
  config: TlsServerConfig,
): IpcError | undefined {
  if (peer === undefined) {
    if (!config.requireClientCert) return undefined;
    return new IpcError(
      "ECERTREQUIRED",
      "The server requires a client certificate: pass tls.cert and tls.key",
      { op: "handshake" },
    );
  }
  if (socket.authorized === true) return undefined;
  const raw = String(socket.authorizationError ?? "");
  const now = Date.now();
  // Deno names every failure UNABLE_TO_VERIFY_LEAF_SIGNATURE: the dates tell an expired one.
  const expired = CERT_CODES[raw] === "ECERTEXPIRED" || !(peer.validFrom.getTime() <= now) ||
    !(now <= peer.validTo.getTime());
  const who = peer.subject || peer.fingerprint;
  return expired
    ? new IpcError(
      "ECERTEXPIRED",
      `The client certificate "${who}" is valid only from ${peer.validFrom.toISOString()} to ${peer.validTo.toISOString()}: renew it`,
      { op: "handshake" },
    )
    : new IpcError(
      "ECERTUNTRUSTED",
      `The client certificate "${who}" is not signed by an authority this server trusts (${
        raw || "not verified"
      })`,
      { op: "handshake" },
    );
}

/** A certificate or key the runtime could not load, as `EINVAL`. */
function configError(err: unknown, label: string, op: string): IpcError {
  const detail = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return new IpcError(
    "EINVAL",
    `Cannot ${op} "${label}" as the TLS certificate, key or ca could not be loaded: ${detail}`,
    { op, address: label, cause: err },
  );
}

/** Listens for TLS connections; see `Runtime.listenTls`. */
export async function listenTls(
  address: TlsAddress,
  config: TlsServerConfig,
  handlers: ListenHandlers,
): Promise<RawListener> {
  const tls = await nodeTls();
  const label = formatAddress(address);
  await checkPems(label, "listen on", config, config.ca);
  let server: Tls.Server;
  try {
    server = tls.createServer({
      cert: config.cert,
      key: config.key,
      ...(config.ca === undefined ? {} : { ca: config.ca }),
      requestCert: config.ca !== undefined || config.requireClientCert,
      // Judged after the handshake (clientRefusal), to tell the client why.
      rejectUnauthorized: false,
      allowHalfOpen: true,
    });
  } catch (err) {
    throw configError(err, label, "listen on");
  }
  const keepAlive = handlers.keepAlive ?? true;
  // Sockets in their handshake, by peer address, oldest first: the server's own handshake
  // timeout reports a stalled one but leaves its socket open, so this closes them.
  const handshaking = new Map<string, { socket: Socket; timer: ReturnType<typeof setTimeout> }>();
  const peerKey = (s: Socket): string => `${s.remoteAddress}:${s.remotePort}`;
  const settle = (key: string, socket?: Socket): void => {
    const entry = handshaking.get(key);
    if (entry === undefined || (socket !== undefined && entry.socket !== socket)) return;
    clearTimeout(entry.timer);
    handshaking.delete(key);
  };
  server.on("connection", (socket: Socket) => {
    const key = peerKey(socket);
    if (handshaking.size >= config.maxHandshakes) {
      const [oldest, entry] = handshaking.entries().next().value!;
      settle(oldest);
      entry.socket.destroy();
    }
    const timer = setTimeout(() => {
      settle(key, socket);
      socket.destroy();
    }, config.handshakeTimeout);
    handshaking.set(key, { socket, timer });
    socket.once("close", () => settle(key, socket));
  });
  server.on("secureConnection", (socket: Tls.TLSSocket) => {
    settle(peerKey(socket));
    const peer = peerCertificate(socket);
    const conn = wrapSocket(
      socket,
      tcpPeer(socket, "local", "tls"),
      tcpPeer(socket, "remote", "tls"),
      label,
      keepAlive,
      tlsInfo(socket, peer),
      readSwitch(socket),
    );
    const refusal = clientRefusal(socket, peer, config);
    if (refusal === undefined) handlers.onConn(conn);
    else if (handlers.onRefused) handlers.onRefused(conn, refusal);
    else conn.close();
  });
  // A failed handshake: the runtime has closed the socket, and the client knows.
  server.on("tlsClientError", () => {});
  return await new Promise((resolve, reject) => {
    server.once("error", (err) => reject(systemError(err, "listen on", label)));
    server.listen({ host: address.hostname, port: address.port, backlog: 4096 }, () => {
      server.removeAllListeners("error");
      server.on("error", (err) => handlers.onError(err));
      const bound = server.address();
      const addr: TlsAddress = bound && typeof bound === "object"
        ? { transport: "tls", hostname: bound.address, port: bound.port }
        : address;
      resolve({
        addr,
        close: () => {
          server.close();
          for (const key of [...handshaking.keys()]) {
            const { socket } = handshaking.get(key)!;
            settle(key);
            socket.destroy();
          }
          return Promise.resolve();
        },
      });
    });
  });
}

const IP = /^[\d.]+$|:/;

/**
 * Whether the server's certificate is out of its validity window: a second handshake that
 * only reads the certificate (it verifies nothing and sends nothing), made after a connect
 * failed verification, to say why. False when it cannot tell within a second.
 */
function expiredCert(
  tls: typeof Tls,
  address: TlsAddress,
  servername: string | undefined,
): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = tls.connect({
      host: address.hostname,
      port: address.port,
      ...(servername === undefined ? {} : { servername }),
      rejectUnauthorized: false,
    });
    const done = (expired: boolean): void => {
      clearTimeout(timer);
      probe.destroy();
      resolve(expired);
    };
    const timer = setTimeout(() => done(false), 1000);
    probe.once("error", () => done(false));
    probe.once("secureConnect", () => {
      const cert = peerCertificate(probe);
      const now = Date.now();
      done(
        cert !== undefined && !(cert.validFrom.getTime() <= now && now <= cert.validTo.getTime()),
      );
    });
  });
}

/** Connects over TLS and verifies the server; see `Runtime.connectTls`. */
export async function connectTls(
  address: TlsAddress,
  config: TlsClientConfig,
  options: { keepAlive?: boolean } = {},
): Promise<Conn> {
  const tls = await nodeTls();
  const label = formatAddress(address);
  const pair = config.cert !== undefined && config.key !== undefined
    ? { cert: config.cert, key: config.key }
    : undefined;
  await checkPems(label, "connect to", pair, config.ca);
  // SNI takes a name, never an address; the certificate is checked against the host either way.
  const servername = config.serverName ??
    (IP.test(address.hostname) ? undefined : address.hostname);
  let socket: Tls.TLSSocket;
  try {
    socket = tls.connect({
      host: address.hostname,
      port: address.port,
      ...(servername === undefined ? {} : { servername }),
      ...(config.ca === undefined ? {} : { ca: config.ca }),
      ...(config.cert === undefined ? {} : { cert: config.cert }),
      ...(config.key === undefined ? {} : { key: config.key }),
      rejectUnauthorized: true,
      // Not in the option types, but taken: writable.close() then ends only this direction.
      allowHalfOpen: true,
    } as Tls.ConnectionOptions);
  } catch (err) {
    throw configError(err, label, "connect to");
  }
  return await new Promise((resolve, reject) => {
    socket.once("error", (err) => {
      if (systemCode(err) !== "UNABLE_TO_VERIFY_LEAF_SIGNATURE") {
        return reject(clientError(err, label));
      }
      // Deno's runtime names an expired certificate so too: a look at its dates tells.
      void expiredCert(tls, address, servername).then((expired) =>
        reject(clientError(err, label, expired ? "CERT_HAS_EXPIRED" : undefined))
      );
    });
    socket.once("secureConnect", () => {
      socket.removeAllListeners("error");
      const info = tlsInfo(socket, peerCertificate(socket));
      const [local, remote] = [tcpPeer(socket, "local", "tls"), tcpPeer(socket, "remote", "tls")];
      const keepAlive = options.keepAlive ?? true;
      resolve(wrapSocket(socket, local, remote, label, keepAlive, info, readSwitch(socket)));
    });
  });
}
