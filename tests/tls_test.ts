import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { type Conn, connect, listen, type Listener, type ListenTlsOptions } from "../mod.ts";
import {
  acceptedWhileStalled,
  echoMismatch,
  pattern,
  readAll,
  rejectsWith,
  rt,
  sameBytes,
  seeded,
  until,
} from "./_helpers.ts";
import { availableCerts, noOpenssl } from "../scripts/_certs.ts";

const T = { timeout: 60_000, skip: noOpenssl };
const certs = availableCerts();
const server = (extra: Partial<ListenTlsOptions> = {}): ListenTlsOptions => ({
  cert: certs.server.cert,
  key: certs.server.key,
  ...extra,
});
const mutual = (extra: Partial<ListenTlsOptions> = {}): ListenTlsOptions =>
  server({ ca: certs.ca, requireClientCert: true, ...extra });

/** Echoes every accepted connection until the listener closes; counts what it accepted. */
function echo(listener: Listener): { accepted: Conn[]; done: Promise<void> } {
  const accepted: Conn[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      accepted.push(conn);
      conn.readable.pipeTo(conn.writable).catch(() => conn.close());
    }
  })();
  return { accepted, done };
}

const urlOf = (listener: Listener, host = "localhost"): string =>
  `tls://${host}:${(listener.addr as { port: number }).port}`;

/** What a raw TCP socket to `port` reads before the server closes it, after writing `bytes`. */
function rawExchange(port: number, bytes: Uint8Array | undefined): Promise<number> {
  return new Promise((resolve) => {
    let read = 0;
    const socket = netConnect(port, "127.0.0.1", () => {
      if (bytes !== undefined) socket.write(bytes);
    });
    socket.on("data", (b) => (read += b.length));
    socket.on("error", () => {});
    socket.on("close", () => resolve(read));
  });
}

describe(`TLS on ${rt.name}`, () => {
  test(
    "mutual TLS: bytes echo both ways, half-close works, and each side sees who the other is",
    T,
    async () => {
      await using listener = await listen("tls://127.0.0.1:0", { tls: mutual() });
      assert.equal(listener.addr.transport, "tls");
      const served = echo(listener);
      const client = await connect(urlOf(listener), { tls: { ca: certs.ca, ...certs.alice } });
      assert.equal(client.tls?.protocol, "TLSv1.3");
      assert.equal(client.tls?.peerCertificate?.commonName, "localhost");
      assert.ok(client.tls?.peerCertificate?.subjectAltNames.includes("IP Address:127.0.0.1"));
      assert.equal(client.remoteAddr.transport, "tls");
      // 1 MiB in random chunks, then the client ends its side and still reads the echo.
      assert.equal(await echoMismatch(client, pattern(1 << 20, 5), 5), undefined);
      await until(() => served.accepted.length === 1, 10_000, "the server to accept");
      const peer = served.accepted[0]!.tls?.peerCertificate;
      assert.ok(peer !== undefined);
      assert.equal(peer.commonName, "alice");
      assert.equal(peer.subject, "CN=alice");
      assert.deepEqual(peer.subjectAltNames, ["email:alice@example.com"]);
      assert.match(peer.issuer, /CN=test-ca/);
      assert.match(peer.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      assert.ok(peer.validFrom.getTime() < Date.now() && Date.now() < peer.validTo.getTime());
      await listener.close();
      await served.done;
    },
  );

  test(
    "a reader that stops holds the writer back, and then gets every byte and the end",
    T,
    async () => {
      await using listener = await listen("tls://127.0.0.1:0", { tls: mutual() });
      const client = await connect(urlOf(listener), { tls: { ca: certs.ca, ...certs.alice } });
      const accepted = await listener.accept();
      const chunk = pattern(64 * 1024, 6);
      const count = 1024; // 64 MiB, far more than the kernel's and the runtimes' buffers hold
      const stalled = await acceptedWhileStalled(client.writable, chunk, count);
      assert.ok(stalled.accepted < count, `the writer was held back (${stalled.accepted} taken)`);
      const got = await readAll(accepted.readable); // to the end, which follows the half-close
      await stalled.writing;
      assert.equal(got.length, chunk.length * count);
      assert.equal(sameBytes(got.subarray(0, chunk.length), chunk), undefined);
      accepted.close();
      client.close();
    },
  );

  test(
    "plain TLS: a client with no certificate of its own; system trust refuses a private CA",
    T,
    async () => {
      await using listener = await listen("tls://127.0.0.1:0", { tls: server() });
      const served = echo(listener);
      const client = await connect(urlOf(listener), { tls: { ca: certs.ca } });
      assert.equal(await echoMismatch(client, pattern(4096, 1), 1), undefined);
      assert.equal(served.accepted[0]?.tls?.peerCertificate, undefined);
      // Without `ca` the system's authorities are trusted, which do not know the test CA.
      await rejectsWith(connect(urlOf(listener)), "ECERTUNTRUSTED", /tls\.ca/);
    },
  );

  test(
    "the client refuses the server's certificate with a distinct code for each fault",
    T,
    async () => {
      for (
        const [pair, code] of [
          [certs.expired, "ECERTEXPIRED"],
          [certs.stranger, "ECERTUNTRUSTED"],
        ] as const
      ) {
        await using listener = await listen("tls://127.0.0.1:0", { tls: pair });
        const served = echo(listener);
        await rejectsWith(connect(urlOf(listener), { tls: { ca: certs.ca } }), code);
        assert.equal(served.accepted.length, 0);
      }
      await using good = await listen("tls://127.0.0.1:0", { tls: server() });
      await rejectsWith(
        connect(urlOf(good, "127.0.0.1"), { tls: { ca: certs.ca, serverName: "example.com" } }),
        "ECERTNAME",
        /serverName/,
      );
      // By address, the certificate's IP entry is what matches.
      (await connect(urlOf(good, "127.0.0.1"), { tls: { ca: certs.ca } })).close();
    },
  );

  test(
    "requireClientCert is enforced: no certificate, an expired one or another CA's never get through",
    T,
    async () => {
      await using listener = await listen("tls://127.0.0.1:0", { tls: mutual() });
      const served = echo(listener);
      for (const client of [{}, certs.expired, certs.stranger]) {
        let conn: Conn;
        try {
          conn = await connect(urlOf(listener), { tls: { ca: certs.ca, ...client } });
        } catch (err) {
          // TLS 1.3 may tell a client without a certificate during the handshake.
          assert.equal((err as { code?: string }).code, "ECERTREQUIRED");
          continue;
        }
        // Refused after the handshake: closed unread, never accepted.
        const writer = conn.writable.getWriter();
        await writer.write(new Uint8Array([1, 2, 3])).catch(() => {});
        const back = await readAll(conn.readable).catch(() => new Uint8Array(0));
        assert.equal(back.length, 0);
        conn.close();
      }
      const bob = await connect(urlOf(listener), { tls: { ca: certs.ca, ...certs.bob } });
      assert.equal(await echoMismatch(bob, pattern(100, 4), 4), undefined);
      assert.equal(served.accepted.length, 1);
      assert.equal(served.accepted[0]!.tls?.peerCertificate?.commonName, "bob");
      // With a ca but without requireClientCert, no certificate is fine and a bad one is not.
      await using optional = await listen("tls://127.0.0.1:0", { tls: server({ ca: certs.ca }) });
      const optionalServed = echo(optional);
      const certless = await connect(urlOf(optional), { tls: { ca: certs.ca } });
      assert.equal(await echoMismatch(certless, pattern(100, 5), 5), undefined);
      const bad = await connect(urlOf(optional), { tls: { ca: certs.ca, ...certs.stranger } });
      assert.equal((await readAll(bad.readable).catch(() => new Uint8Array(0))).length, 0);
      await until(() => optionalServed.accepted.length === 1, 10_000, "the certless client");
      assert.equal(optionalServed.accepted.length, 1);
    },
  );

  test("a plaintext peer fails cleanly either way round", T, async () => {
    await using tlsListener = await listen("tls://127.0.0.1:0", { tls: server() });
    const served = echo(tlsListener);
    const port = (tlsListener.addr as { port: number }).port;
    const plain = await connect(`tcp://127.0.0.1:${port}`);
    const writer = plain.writable.getWriter();
    await writer.write(new TextEncoder().encode("HELLO dockipc\n")).catch(() => {});
    await readAll(plain.readable).catch(() => undefined); // the server ends it
    plain.close();
    await using plainListener = await listen("tcp://127.0.0.1:0");
    const plainServed = echo(plainListener);
    await rejectsWith(
      connect(`tls://127.0.0.1:${(plainListener.addr as { port: number }).port}`, {
        tls: { ca: certs.ca },
        timeout: 10_000,
      }),
      "ETLS",
      /tcp:\/\//,
    );
    assert.equal(served.accepted.length, 0);
    void plainServed;
  });

  test(
    "garbage, truncated handshakes and stalled peers are dropped; the server stays responsive",
    T,
    async () => {
      // Long enough for a real handshake on a loaded machine, short for a test.
      await using listener = await listen("tls://127.0.0.1:0", {
        tls: server({ handshakeTimeout: 1500, maxHandshakes: 4 }),
      });
      const served = echo(listener);
      const port = (listener.addr as { port: number }).port;
      const random = seeded(9);
      const garbage = Uint8Array.from({ length: 2000 }, () => Math.floor(random() * 256));
      // A ClientHello's record header that promises more than comes, random bytes, nothing.
      const stalls = [
        rawExchange(port, new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])),
        rawExchange(port, garbage),
        rawExchange(port, undefined),
      ];
      // Meanwhile a real client is served at once.
      const client = await connect(urlOf(listener), { tls: { ca: certs.ca } });
      assert.equal(await echoMismatch(client, pattern(1000, 2), 2), undefined);
      // Each stalled socket is closed by the server (after the handshake timeout at most).
      await Promise.all(stalls);
      // More silent peers than maxHandshakes: the oldest make room. Once four are closed, all
      // eight were seen; a client that comes then is the newest, and gets in.
      let closed = 0;
      const silent = Array.from(
        { length: 8 },
        () => rawExchange(port, undefined).then(() => closed++),
      );
      await until(() => closed >= 4, 10_000, "the oldest silent peers to be closed");
      const late = await connect(urlOf(listener), { tls: { ca: certs.ca } });
      assert.equal(await echoMismatch(late, pattern(1000, 3), 3), undefined);
      await Promise.all(silent);
      assert.equal(served.accepted.length, 2);
    },
  );

  test("bad TLS options are refused with EINVAL naming the option", T, async () => {
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => listen("tls://127.0.0.1:0"), /needs options\.tls/],
      [() => listen("tcp://127.0.0.1:0", { tls: server() }), /not a TLS address/],
      [
        () => listen("tls://127.0.0.1:0", { tls: server({ cert: "/etc/server.pem" }) }),
        /tls\.cert is not PEM/,
      ],
      [
        () => listen("tls://127.0.0.1:0", { tls: server({ key: 42 as unknown as string }) }),
        /tls\.key is not PEM/,
      ],
      [
        () => listen("tls://127.0.0.1:0", { tls: server({ requireClientCert: true }) }),
        /needs tls\.ca/,
      ],
      [
        () =>
          listen("tls://127.0.0.1:0", {
            tls: mutual({ requireClientCert: "yes" as unknown as boolean }),
          }),
        /requireClientCert must be true or false/,
      ],
      [
        () => listen("tls://127.0.0.1:0", { tls: server({ handshakeTimeout: -1 }) }),
        /handshakeTimeout/,
      ],
      [
        () =>
          listen("tls://127.0.0.1:0", {
            tls: server({
              cert: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            }),
          }),
        /could not be loaded/,
      ],
      [
        () => listen("tls://127.0.0.1:0", { tls: server({ key: certs.alice.key }) }),
        /could not be loaded/,
      ],
      [() => connect("tcp://127.0.0.1:1", { tls: { ca: certs.ca } }), /not a TLS address/],
      [() => connect("tls://127.0.0.1:1", { tls: { cert: certs.alice.cert } }), /go together/],
      [() => connect("tls://127.0.0.1:1", { tls: { ca: "trust me" } }), /tls\.ca is not PEM/],
      [() => connect("tls://127.0.0.1:1", { tls: { serverName: "" } }), /serverName/],
    ];
    for (const [start, message] of cases) await rejectsWith(start(), "EINVAL", message);
    await rejectsWith(
      connect("tls://127.0.0.1:1", { tls: { cert: certs.bob.cert, key: certs.alice.key } }),
      "EINVAL",
      /not the private key/,
    );
  });
});
