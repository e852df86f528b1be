/**
 * An RPC server over mutual TLS with users: the handler learns who asks (the user's name and
 * the client's verified certificate), and a user whose `rpc` is false is refused with `EPERM`
 * (a `RemoteError` whose `remoteCode` says so, as every answer of the server's to a request).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dial, RemoteError, type RpcContext, serve } from "../../src/rpc/mod.ts";
import { rejectsWith, rt } from "../_helpers.ts";
import { availableCerts, noOpenssl } from "../../scripts/_certs.ts";

const certs = availableCerts();
const text = new TextDecoder();

describe(`RPC with users on ${rt.name}`, () => {
  test("the handler sees the user and its certificate; a user without rpc is refused", {
    skip: noOpenssl,
  }, async () => {
    const seen: Pick<RpcContext, "user" | "peerCertificate">[] = [];
    await using server = await serve("tls://127.0.0.1:0", (request, context) => {
      seen.push({ user: context.user, peerCertificate: context.peerCertificate });
      return request;
    }, {
      tls: { ...certs.server, ca: certs.ca },
      users: [
        { name: "alice", cert: { commonName: "alice" } },
        { name: "bob", cert: { commonName: "bob" }, rpc: false },
        { name: "script", token: "t0ken" },
      ],
    });
    const url = `tls://localhost:${(server.addr as { port: number }).port}`;
    await using alice = await dial(url, { tls: { ca: certs.ca, ...certs.alice } });
    assert.equal(text.decode(await alice.request("hi")), "hi");
    assert.equal(seen[0]!.user, "alice");
    assert.deepEqual(seen[0]!.peerCertificate?.subjectAltNames, ["email:alice@example.com"]);
    await using script = await dial(url, { tls: { ca: certs.ca }, token: "t0ken" });
    assert.equal(text.decode(await script.request("yo")), "yo");
    assert.deepEqual(seen[1], { user: "script", peerCertificate: undefined });
    await using bob = await dial(url, { tls: { ca: certs.ca, ...certs.bob } });
    // As every answer of the server's to a request: a RemoteError, here with remoteCode EPERM.
    const denied = await rejectsWith(
      bob.request("let me"),
      "EREMOTE",
      /User "bob" may not make RPC/,
    );
    assert.ok(denied instanceof RemoteError);
    assert.equal(denied.remoteCode, "EPERM");
    assert.equal(seen.length, 2);
    assert.equal(server.stats().denied, 1);
    // Still connected: the refusal is per request.
    await rejectsWith(bob.request("again"), "EREMOTE");
  });
});
