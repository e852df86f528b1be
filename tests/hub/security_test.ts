/**
 * A served hub's users: who a client is (a token, a client certificate over mutual TLS, or
 * both), what it may publish and subscribe to and which stream operations it may use, its
 * bounds, the reload that re-checks open connections, token files, and the distinct refusals
 * of a bad certificate. Also across runtimes: clients in Deno, Bun and Node children.
 */
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { connectHub, Hub, type HubServer, serveHub, type User } from "../../src/hub/mod.ts";
import { Permissions } from "../../src/hub/permissions.ts";
import { exposition, snapshot } from "../../src/metrics/exposition.ts";
import { rejectsWith, rt, RUNTIMES, spawnFixture, tempDir, until } from "../_helpers.ts";
import type { IpcError } from "../../mod.ts";
import { availableCerts, noOpenssl } from "../../scripts/_certs.ts";
import { served } from "./_served.ts";

const T = { timeout: 60_000 };
/** The tests over TLS: skipped where openssl cannot make their certificates. */
const TLS = { ...T, skip: noOpenssl };
const text = new TextDecoder();
const certs = availableCerts();

const ORDERS: User = {
  name: "orders-app",
  token: "orders-secret",
  publish: { allow: ["orders.*"] },
  subscribe: { allow: ["orders.*", "replies.>"] },
};

/** A hub served over mutual TLS (client certificates optional) with `users`. */
async function servedTls(
  users: readonly User[],
  requireClientCert = false,
): Promise<{ hub: Hub; server: HubServer; url: string } & AsyncDisposable> {
  const hub = new Hub();
  const server = await serveHub(hub, "tls://127.0.0.1:0", {
    tls: { ...certs.server, ca: certs.ca, requireClientCert },
    users,
  });
  const port = (server.addr as { port: number }).port;
  return {
    hub,
    server,
    url: `tls://localhost:${port}`,
    [Symbol.asyncDispose]: async () => {
      await server.close();
      await hub.close();
    },
  };
}

describe("permission rules", () => {
  test("publish: an allow pattern matches, a deny pattern wins; subscribe: allow must cover", () => {
    const p = new Permissions({
      name: "u",
      token: "t",
      publish: { allow: ["orders.*", "audit.>"], deny: ["orders.secret"] },
      subscribe: { allow: ["orders.*", "metrics.>"], deny: ["metrics.internal.>"] },
    });
    const pub = (topic: string): boolean => p.publish(topic) === undefined;
    const sub = (pattern: string): boolean => p.subscribe(pattern) === undefined;
    assert.deepEqual(
      ["orders.x", "orders.secret", "orders.x.y", "audit.a.b", "audit", "billing.x"].map(pub),
      [true, false, false, true, false, false],
    );
    assert.deepEqual(
      [
        "orders.x",
        "orders.*",
        "orders.>",
        ">",
        "*.x",
        "metrics.cpu",
        "metrics.>",
        "metrics.*.x",
        "metrics.internal.cpu",
        "metrics.public.>",
      ].map(sub),
      [true, true, false, false, false, true, false, false, false, true],
    );
    const denied = p.publish("orders.secret")!;
    assert.equal(denied.code, "EPERM");
    assert.match(denied.message, /"orders\.secret".*publish\.deny "orders\.secret"/);
    assert.match(p.subscribe(">")!.message, /subscribe\.deny "metrics\.internal\.>" denies it/);
    assert.match(p.subscribe("orders.>")!.message, /no subscribe\.allow rule covers it/);
    // Without rules everything is allowed; an empty allow list allows nothing.
    const open = new Permissions({ name: "open", token: "t" });
    assert.equal(open.publish("any.thing"), undefined);
    assert.equal(open.subscribe(">"), undefined);
    const closed = new Permissions({ name: "closed", token: "t", publish: { allow: [] } });
    assert.equal(closed.publish("any")?.code, "EPERM");
  });

  test("a hundred rules answer as one: each topic is judged once", () => {
    const rules = Array.from({ length: 100 }, (_, i) => `team${i}.*.events`);
    const p = new Permissions({ name: "u", token: "t", publish: { allow: rules } });
    for (let round = 0; round < 3; round++) {
      assert.equal(p.publish("team99.eu.events"), undefined);
      assert.equal(p.publish("team100.eu.events")?.code, "EPERM");
    }
  });
});

describe(`users of a served hub on ${rt.name}`, () => {
  test(
    "a user allowed orders.* cannot publish billing.x or subscribe to >; it stays connected",
    T,
    async () => {
      await using s = await served({ users: [ORDERS] });
      await using client = await connectHub(s.path, { token: "orders-secret" });
      const watcher = s.hub.subscribe(">");
      // A plain publish is refused after the fact: the next flush says so.
      await client.publish("billing.x", "no");
      await rejectsWith(
        client.flush(),
        "EPERM",
        /User "orders-app" may not publish to "billing\.x": no publish\.allow rule covers it/,
      );
      // Stored and requested publishes are refused at once.
      await rejectsWith(client.request("billing.quote", "?", { timeout: 5000 }), "EPERM");
      const all = client.subscribe(">");
      await rejectsWith(all.next(), "EPERM", /may not subscribe to ">"/);
      // Still connected, and what is allowed works.
      const mine = client.subscribe("orders.*");
      await client.flush();
      await client.publish("orders.created", "yes");
      assert.equal(text.decode((await mine.next()).value!.data), "yes");
      assert.equal((await watcher.next()).value!.topic, "orders.created"); // nothing denied got in
      assert.equal(s.server.denied, 3);
      const sources = { hub: s.hub, hubServer: s.server };
      assert.match(exposition(snapshot(sources), sources), /^dockipc_hub_denied_total 3$/m);
      const [stats] = s.server.connectionStats();
      assert.equal(stats!.user, "orders-app");
      assert.equal(stats!.denied, 3);
    },
  );

  test(
    "credentials: each user by its token, the shared token for everything, else EAUTH",
    T,
    async () => {
      await using s = await served({
        token: "admin-secret",
        users: [ORDERS, { name: "reader", token: "reader-secret", publish: { allow: [] } }],
      });
      await using admin = await connectHub(s.path, { token: "admin-secret" });
      await admin.publish("billing.x", "fine");
      await admin.flush();
      await using reader = await connectHub(s.path, { token: "reader-secret" });
      await reader.publish("orders.x", "no");
      await rejectsWith(reader.flush(), "EPERM", /User "reader"/);
      for (const token of [undefined, "wrong", "orders-secre"]) {
        await rejectsWith(
          connectHub(s.path, { reconnect: false, ...(token ? { token } : {}) }),
          "EAUTH",
        );
      }
    },
  );

  test("stream operations and RPC-like calls follow the user's streams list", T, async () => {
    await using dir = await tempDir();
    await using hub = new Hub({ store: `${dir.path}/store` });
    await using server = await serveHub(hub, `${dir.path}/hub.sock`, {
      users: [
        { name: "admin", token: "a" },
        { name: "viewer", token: "v", streams: ["streams", "streamInfo"] },
      ],
    });
    const s = { path: `${dir.path}/hub.sock`, server };
    await using admin = await connectHub(s.path, { token: "a" });
    await admin.addStream({ name: "ORDERS", subjects: ["orders.>"] });
    await using viewer = await connectHub(s.path, { token: "v" });
    assert.equal((await viewer.streamInfo("ORDERS")).config.name, "ORDERS");
    await rejectsWith(viewer.deleteStream("ORDERS"), "EPERM", /stream operation "deleteStream"/);
    await rejectsWith(viewer.addStream({ name: "X", subjects: ["x.>"] }), "EPERM");
    await rejectsWith(viewer.consume("ORDERS"), "EPERM", /"consume"/);
    assert.equal(s.server.denied, 3);
    // A reload that takes "consume" away ends the readers the user has.
    const reader = await admin.consume("ORDERS", { durable: "w" });
    await admin.publish("orders.1", "one");
    assert.equal(text.decode((await reader.next()).value!.data), "one");
    await s.server.setUsers([
      { name: "admin", token: "a", streams: ["streams"] },
      { name: "viewer", token: "v", streams: ["streams", "streamInfo"] },
    ]);
    await rejectsWith(
      reader.next(),
      "EPERM",
      /User "admin" may not use the stream operation "consume"/,
    );
    assert.equal(s.server.denied, 4);
  });

  test(
    "per-user bounds: connections, subscriptions, and one rate over all its connections",
    T,
    async () => {
      await using s = await served({
        users: [{
          name: "small",
          token: "s",
          maxConnections: 2,
          maxSubscriptions: 3,
          rate: { rate: 1, burst: 2, policy: "reject" },
        }],
      });
      await using a = await connectHub(s.path, { token: "s" });
      await using b = await connectHub(s.path, { token: "s" });
      await rejectsWith(
        connectHub(s.path, { token: "s", reconnect: false }),
        "ELIMIT",
        /User "small" has reached its maxConnections \(2\)/,
      );
      const subs = [a.subscribe("x.1"), a.subscribe("x.2"), b.subscribe("x.3")];
      const fourth = b.subscribe("x.4");
      await rejectsWith(fourth.next(), "ELIMIT", /maxSubscriptions \(3\)/);
      // The burst of 2 is shared: a and b together get 2, the third is refused.
      await a.publish("x.1", "1");
      await b.publish("x.2", "2");
      await a.flush();
      await b.publish("x.3", "3");
      await rejectsWith(b.flush(), "ERATELIMIT", /user "small"/);
      assert.equal(text.decode((await subs[0]!.next()).value!.data), "1");
      // A connection that closes makes room for another.
      await a.close();
      await until(() => s.server.connectionStats().length === 1, 10_000, "a to be gone");
      await using c = await connectHub(s.path, { token: "s" });
      await c.flush();
    },
  );

  test("a reload cuts what it no longer allows and refuses users it removed", T, async () => {
    await using s = await served({
      users: [ORDERS, { name: "temp", token: "temp-secret" }],
    });
    await using client = await connectHub(s.path, { token: "orders-secret" });
    await using temp = await connectHub(s.path, { token: "temp-secret" });
    const created = client.subscribe("orders.created");
    const any = client.subscribe("orders.*");
    await client.flush();
    const events: string[] = [];
    void (async () => {
      for await (const e of temp.status()) events.push(e.type);
    })();
    await s.server.setUsers([{ ...ORDERS, subscribe: { allow: ["orders.created"] } }]);
    await rejectsWith(any.next(), "EPERM", /may not subscribe to "orders\.\*"/);
    await s.hub.publish("orders.created", "still");
    assert.equal(text.decode((await created.next()).value!.data), "still");
    // The removed user is refused, and its client gives up rather than retry forever.
    await until(() => events.includes("error"), 10_000, "the removed user's client to give up");
    await rejectsWith(temp.publish("x", "y"), "EAUTH", /refused/);
    // A bad list changes nothing.
    await rejectsWith(
      s.server.setUsers([{ name: "x", token: "t", subscribe: { allow: ["a..b"] } }]),
      "EINVAL",
      /subscribe\.allow/,
    );
    await s.hub.publish("orders.created", "kept");
    assert.equal(text.decode((await created.next()).value!.data), "kept");
  });

  test("a token file must be the owner's alone, and a reload reads it again", T, async () => {
    await using dir = await tempDir();
    const file = `${dir.path}/token`;
    writeFileSync(file, "from-file\n", { mode: 0o644 });
    chmodSync(file, 0o644);
    const hub = new Hub();
    await rejectsWith(
      serveHub(hub, `${dir.path}/hub.sock`, { users: [{ name: "f", tokenFile: file }] }),
      "EACCES",
      /token file .* as its mode 0644 lets its group or others read or write it: run chmod 600/,
    );
    chmodSync(file, 0o600);
    await using server = await serveHub(hub, `${dir.path}/hub.sock`, {
      users: [{ name: "f", tokenFile: file }],
    });
    await using client = await connectHub(`${dir.path}/hub.sock`, { token: "from-file" });
    await client.flush();
    writeFileSync(file, "rotated\n");
    await server.setUsers([{ name: "f", tokenFile: file }]);
    await using rotated = await connectHub(`${dir.path}/hub.sock`, { token: "rotated" });
    await rotated.flush();
    await rejectsWith(
      connectHub(`${dir.path}/hub.sock`, { token: "from-file", reconnect: false }),
      "EAUTH",
    );
    await hub.close();
  });

  test(
    "a list of users that cannot be used is refused with EINVAL naming the user",
    T,
    async () => {
      const hub = new Hub();
      const cases: [readonly User[], RegExp][] = [
        [[{ name: "a" }], /user "a" has no credential/],
        [[{ name: "a", token: "t" }, { name: "a", token: "u" }], /two users are named "a"/],
        [[{ name: "a", token: "t" }, { name: "b", token: "t" }], /"a" and "b" have the same token/],
        [[{ name: "a", token: "t", publish: { allow: ["x..y"] } }], /user "a"'s publish\.allow/],
        [[{ name: "a", token: "t", maxConnections: -1 }], /maxConnections must be a whole number/],
        [[{ name: "a", token: "t", rate: { rate: 0 } }], /user "a"'s rate/],
        [[{ name: "a", token: "t", streams: ["drop" as "purge"] }], /not one of/],
        [[{ name: "a", cert: {} }], /cert names nothing/],
        [[{ name: "a", token: "t", tokenFile: "/x" }], /both token and tokenFile/],
      ];
      for (const [users, message] of cases) {
        await rejectsWith(serveHub(hub, "tcp://127.0.0.1:0", { users }), "EINVAL", message);
      }
      await hub.close();
    },
  );
});

describe(`users by client certificate on ${rt.name}`, () => {
  test(
    "a certificate identifies its user; refusals say what is wrong with distinct codes",
    TLS,
    async () => {
      await using s = await servedTls([
        {
          name: "alice",
          cert: { subjectAltName: "email:alice@example.com" },
          publish: { allow: ["a.>"] },
        },
        { name: "bob+token", cert: { commonName: "bob" }, token: "bob-secret" },
      ], true);
      await using alice = await connectHub(s.url, { tls: { ca: certs.ca, ...certs.alice } });
      await alice.publish("b.x", "no");
      await rejectsWith(alice.flush(), "EPERM", /User "alice"/);
      await using bob = await connectHub(s.url, {
        tls: { ca: certs.ca, ...certs.bob },
        token: "bob-secret",
      });
      await bob.flush();
      assert.deepEqual(s.server.connectionStats().map((c) => c.user).sort(), [
        "alice",
        "bob+token",
      ]);
      const refusals: [{ cert?: string; key?: string }, string, RegExp][] = [
        [{}, "ECERTREQUIRED", /requires a client certificate/],
        [certs.expired, "ECERTEXPIRED", /"CN=expired" is valid only from 2020/],
        [certs.stranger, "ECERTUNTRUSTED", /not signed by an authority this server trusts/],
        [certs.bob, "EAUTH", /No user/], // bob's certificate without bob's token
      ];
      for (const [pair, code, message] of refusals) {
        await rejectsWith(
          connectHub(s.url, { tls: { ca: certs.ca, ...pair }, reconnect: false }),
          code,
          message,
        );
      }
    },
  );

  test("a plaintext client of a TLS server fails cleanly, told to use tls://", TLS, async () => {
    await using s = await servedTls([{ name: "t", token: "t" }]);
    // Node's TLS server closes on the plaintext, Deno's and Bun's answer with an alert.
    const err = await connectHub(s.url.replace("tls://localhost", "tcp://127.0.0.1"), {
      token: "t",
      reconnect: false,
    }).then(() => assert.fail("connected"), (e: IpcError) => e);
    assert.ok(["ECONNRESET", "EPROTOCOL"].includes(err.code), err.message);
    assert.match(err.message, /if it is a TLS server, connect with tls:\/\//);
    assert.equal(s.server.connectionStats().length, 0);
  });

  test(`clients in ${RUNTIMES.join(", ")} children authenticate by certificate`, TLS, async () => {
    await using s = await servedTls([
      { name: "alice", cert: { commonName: "alice" }, publish: { allow: ["orders.*"] } },
    ], true);
    const sub = s.hub.subscribe("orders.*");
    const children = RUNTIMES.map((name) =>
      spawnFixture(name, "tls_hub_client.ts", [s.url, certs.dir, "alice", `orders.${name}`])
    );
    try {
      const reports = await Promise.all(children.map((c) => c.line(60_000).then(JSON.parse)));
      assert.deepEqual(
        reports.map((r) => [r.runtime, r.published, r.denied]),
        RUNTIMES.map((name) => [name, `orders.${name}`, "EPERM"]),
      );
      const topics = new Set<string>();
      for (let i = 0; i < RUNTIMES.length; i++) topics.add((await sub.next()).value!.topic);
      assert.deepEqual([...topics].sort(), RUNTIMES.map((n) => `orders.${n}`).sort());
    } finally {
      for (const c of children) await c[Symbol.asyncDispose]();
    }
  });
});
