import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Wal } from "../../src/wal/mod.ts";
import { serve, serveLines } from "../../src/rpc/mod.ts";
import { rt, RUNTIMES, skipWithout, tempDir, until } from "../_helpers.ts";
import { CLI, type CliRun, jsonLines, runCli, startCli } from "./_cli.ts";
import { noOpenssl, testCerts } from "../../scripts/_certs.ts";
import { writeFileSync } from "node:fs";
import { command } from "../../scripts/_runtimes.ts";

const T = { timeout: 120_000 };
const ESC = String.fromCharCode(27);
/** The other two runtimes, for commands that meet across runtimes. */
const [OTHER, THIRD] = RUNTIMES.filter((r) => r !== rt.name) as [typeof rt.name, typeof rt.name];

/** The served hub's subscriptions, from its metrics server. */
async function subscriptions(http: string): Promise<{ pattern: string }[]> {
  return await (await fetch(`${http}api/subscriptions`)).json();
}

describe(`dockipc on ${rt.name}: help and usage`, () => {
  test("--help lists every command and exits 0", T, async () => {
    const r = await runCli(rt.name, ["--help"]);
    assert.equal(r.code, 0);
    for (const c of ["hub serve", "pub", "sub", "wal verify", "bench stream", "consumer next"]) {
      assert.match(r.stdout, new RegExp(`^  ${c} `, "m"));
    }
  });

  test("a command's --help shows its options and examples", T, async () => {
    const r = await runCli(rt.name, ["wal", "repair", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: dockipc wal repair DIR \[options\]/);
    assert.match(r.stdout, /--yes/);
    assert.match(r.stdout, /Examples:\n {2}# .+\n {2}dockipc wal repair/);
  });

  test("every command has --help with examples, and exits 0", T, async () => {
    const overview = await runCli(rt.name, ["--help"]);
    const names = [...overview.stdout.matchAll(/^ {2}(\S+(?: [a-z]+)?) {2,}/gm)].map((m) => m[1]!);
    assert.ok(names.length >= 25, names.join(", "));
    for (let i = 0; i < names.length; i += 6) {
      await Promise.all(
        names.slice(i, i + 6).map(async (name) => {
          const r = await runCli(rt.name, [...name.split(" "), "--help"]);
          assert.equal(r.code, 0, name);
          assert.match(r.stdout, new RegExp(`^Usage: dockipc ${name}\\b`, "m"), name);
          assert.match(r.stdout, /^Examples:$/m, name);
        }),
      );
    }
  });

  test("deno install -g makes a dockipc command that runs", T, async () => {
    await using dir = await tempDir();
    const deno = command("deno", CLI).cmd;
    const install = rt.spawn(deno, [
      "install",
      "-g",
      "-A",
      "--root",
      dir.path,
      "-n",
      "dockipc",
      CLI,
    ], { stdout: "pipe", stderr: "pipe" });
    const [, err, status] = await Promise.all([
      new Response(install.stdout).text(),
      new Response(install.stderr).text(),
      install.status,
    ]);
    assert.equal(status.code, 0, err);
    // The installed script runs `deno` from PATH: the pinned one here.
    const path = `${deno.slice(0, deno.lastIndexOf("/"))}:${rt.env("PATH") ?? ""}`;
    const run = rt.spawn(`${dir.path}/bin/dockipc`, ["wal", "--help"], {
      stdout: "pipe",
      env: { PATH: path },
    });
    const [out, ran] = await Promise.all([new Response(run.stdout).text(), run.status]);
    assert.equal(ran.code, 0);
    assert.match(out, /^dockipc wal: its commands\./);
  });

  test("a command line that does not fit exits 2 and says why on stderr", T, async () => {
    for (
      const args of [
        ["no-such"],
        ["pub"],
        ["sub", "a", "b"],
        ["pub", "t", "x", "--count", "z"],
        [
          "wal",
          "nope",
        ],
        ["sub", "x", "--bogus"],
        ["pub", "t", "x", "--delay", "-5"],
        ["pub", "t", "x", "--priority", "10"],
      ]
    ) {
      const r = await runCli(rt.name, args);
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^dockipc: /, args.join(" "));
    }
  });

  test("an error exits 1 with one line: the code, the message, what to do", T, async () => {
    await using dir = await tempDir();
    const r = await runCli(rt.name, ["pub", "t", "x", "--server", `${dir.path}/none.sock`]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.match(r.stderr, /^dockipc: ENOENT: Cannot connect to .*none\.sock.* \(check the path/);
    const j = await runCli(rt.name, ["req", "t", "x", "--json", "-s", `${dir.path}/none.sock`]);
    assert.equal(j.code, 1);
    assert.equal((JSON.parse(j.stderr) as { error: { code: string } }).error.code, "ENOENT");
  });
});

describe(`dockipc on ${rt.name}: a hub server and its clients`, () => {
  test(
    `hub serve on ${rt.name}; sub on ${OTHER}, pub on ${THIRD}; req, reply, streams, stats`,
    T,
    async () => {
      await using dir = await tempDir();
      const sock = `${dir.path}/hub.sock`;
      const env = { DOCKIPC_HUB: sock };
      await using server = startCli(rt.name, [
        "hub",
        "serve",
        sock,
        "--store",
        `${dir.path}/store`,
        "--http",
        "127.0.0.1:0",
        "--json",
      ]);
      const started = JSON.parse(await server.line()) as { addr: string; http: string };
      assert.equal(started.addr, `unix:${sock}`);
      const http = started.http;

      // pub → sub across runtimes, as JSON lines.
      await using sub = startCli(OTHER, ["sub", "jobs.>", "-n", "2", "--json"], { env });
      await until(async () => (await subscriptions(http)).some((s) => s.pattern === "jobs.>"));
      const sent = Date.now();
      const pub = await runCli(THIRD, [
        "pub",
        "jobs.a",
        "job {{n}}",
        "-n",
        "2",
        "-H",
        "k=v",
        "--delay",
        "100",
        "--priority",
        "3",
      ], { env });
      assert.equal(pub.code, 0, pub.stderr);
      assert.equal(pub.stdout, "published 2 messages to jobs.a\n");
      const got = [JSON.parse(await sub.line()), JSON.parse(await sub.line())];
      assert.deepEqual(
        got.map((m) => [m.topic, m.data, m.headers.k, m.headers["dockipc-priority"]]),
        [
          ["jobs.a", "job 1", "v", "3"],
          ["jobs.a", "job 2", "v", "3"],
        ],
      );
      // Held in the hub until due: at least 100 ms after it was sent.
      for (const m of got) assert.ok(Number(m.headers["dockipc-not-before"]) >= sent + 100);
      assert.equal((await sub.status).code, 0);

      // Lines of standard input, one message each.
      await using lines = startCli(rt.name, ["sub", "logs.*", "-n", "2", "--raw"], { env });
      await until(async () => (await subscriptions(http)).some((s) => s.pattern === "logs.*"));
      const piped = await runCli(rt.name, ["pub", "logs.app"], { env, stdin: "one\ntwo\n" });
      assert.equal(piped.code, 0, piped.stderr);
      assert.deepEqual([await lines.line(), await lines.line()], ["one", "two"]);

      // reply --command answers req; with no responder, req fails with ENORESPONDERS.
      await using reply = startCli(OTHER, [
        "reply",
        "math.double",
        "--command",
        "read n; echo $((n * 2))",
        "-n",
        "1",
      ], { env });
      await until(async () => (await subscriptions(http)).some((s) => s.pattern === "math.double"));
      const answer = await runCli(rt.name, ["req", "math.double", "21"], { env });
      assert.equal(answer.code, 0, answer.stderr);
      assert.equal(answer.stdout, "42\n");
      assert.equal((await reply.status).code, 0);
      const none = await runCli(rt.name, ["req", "math.triple", "1"], { env });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /^dockipc: ENORESPONDERS: /);

      // Stored streams and a durable consumer.
      const add = await runCli(rt.name, [
        "stream",
        "add",
        "orders",
        "--subjects",
        "orders.>",
        "--json",
      ], { env });
      assert.equal(add.code, 0, add.stderr);
      assert.deepEqual(
        (JSON.parse(add.stdout) as { config: { subjects: string[] } }).config.subjects,
        ["orders.>"],
      );
      const stored = await runCli(rt.name, ["pub", "orders.new", "o-1", "--json"], { env });
      assert.deepEqual(JSON.parse(stored.stdout), {
        topic: "orders.new",
        published: 1,
        stored: [{ seq: 1, stream: "orders", duplicate: false }],
      });
      const ls = await runCli(rt.name, ["stream", "ls"], { env });
      assert.match(ls.stdout, /^STREAM +SUBJECTS +MESSAGES +BYTES +LAST\norders +orders\.> +1 /);
      const next = await runCli(rt.name, ["consumer", "next", "orders", "billing", "--json"], {
        env,
      });
      assert.equal(next.code, 0, next.stderr);
      assert.deepEqual(
        (({ topic, data, attempt }) => ({ topic, data, attempt }))(JSON.parse(next.stdout)),
        { topic: "orders.new", data: "o-1", attempt: 1 },
      );
      const info = await runCli(rt.name, ["consumer", "info", "orders", "billing", "--json"], {
        env,
      });
      assert.equal((JSON.parse(info.stdout) as { acked: number }).acked, 1);
      const consumers = await runCli(rt.name, ["consumer", "ls", "orders"], { env });
      assert.match(consumers.stdout, /^CONSUMER .+\nbilling +0 +0 +0 +1 /);
      const streamInfo = await runCli(rt.name, ["stream", "info", "orders"], { env });
      assert.match(streamInfo.stdout, /^stream +orders$/m);
      assert.match(streamInfo.stdout, /^messages +1$/m);
      const purged = await runCli(rt.name, ["stream", "purge", "orders", "--yes", "--json"], {
        env,
      });
      assert.equal((JSON.parse(purged.stdout) as { messages: number }).messages, 0);
      const refused = await runCli(rt.name, ["stream", "rm", "orders"], { env });
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /--yes/);
      assert.equal((await runCli(rt.name, ["stream", "rm", "orders", "--yes"], { env })).code, 0);
      const gone = await runCli(rt.name, ["stream", "info", "orders"], { env });
      assert.equal(gone.code, 1);

      // stats: text and JSON.
      const stats = await runCli(rt.name, ["stats", sock, "--json"]);
      assert.equal(stats.code, 0, stats.stderr);
      const s = JSON.parse(stats.stdout) as {
        topics: { topic: string; published: number }[];
        connections: { remoteAddr: string }[];
      };
      assert.equal(s.topics.find((t) => t.topic === "jobs.a")?.published, 2);
      assert.ok(s.connections.length >= 1);
      const text = await runCli(rt.name, ["stats"], { env });
      assert.match(text.stdout, /^TOPIC +PUBLISHED +BYTES +ROUTED +MSG\/S$/m);
      assert.ok(!text.stdout.includes(ESC), "no escape codes in a pipe");

      // stats --watch in a pipe: one whole table after another, no escape codes; SIGINT ends it.
      await using watch = startCli(rt.name, ["stats", "--watch", "--interval", "100"], { env });
      for (let tables = 0; tables < 2;) {
        const line = await watch.line();
        assert.ok(!line.includes(ESC), line);
        if (/^TOPIC /.test(line)) tables++;
      }
      watch.process.kill("SIGINT");
      assert.equal((await watch.status).code, 0);

      // Queue groups: two members share two messages.
      await using q1 = startCli(rt.name, ["sub", "work.*", "-q", "pool", "-n", "1", "--raw"], {
        env,
      });
      await using q2 = startCli(OTHER, ["sub", "work.*", "-q", "pool", "-n", "1", "--raw"], {
        env,
      });
      await until(async () =>
        (await subscriptions(http)).filter((s) => s.pattern === "work.*").length === 2
      );
      assert.equal((await runCli(THIRD, ["pub", "work.x", "w{{n}}", "-n", "2"], { env })).code, 0);
      assert.deepEqual([await q1.line(), await q2.line()].sort(), ["w1", "w2"]);

      // The metrics it serves count the same traffic.
      const metrics = await (await fetch(`${http}metrics`)).text();
      assert.match(metrics, /^dockipc_hub_published_total\{topic="jobs\.a"\} 2$/m);

      // SIGTERM ends the server cleanly.
      server.process.kill("SIGTERM");
      assert.equal((await server.status).code, 0);
    },
  );

  test("a token file readable by others is refused; a private one is used", T, async () => {
    await using dir = await tempDir();
    const sock = `${dir.path}/hub.sock`;
    const file = `${dir.path}/token`;
    const handle = await rt.fs.open(file, { write: true, create: true, mode: 0o600 });
    await handle.write(new TextEncoder().encode("s3cret\n"));
    await handle.close();
    await using server = startCli(rt.name, ["hub", "serve", sock, "--token-file", file]);
    assert.match(await server.line(), /^hub serving at unix:/);
    const ok = await runCli(rt.name, ["pub", "a", "b", "-s", sock, "--token-file", file]);
    assert.equal(ok.code, 0, ok.stderr);
    const without = await runCli(rt.name, ["pub", "a", "b", "-s", sock]);
    assert.equal(without.code, 1);
    assert.match(without.stderr, /^dockipc: EAUTH: .*--token-file/);
    await rt.fs.chmod(file, 0o644);
    const open = await runCli(rt.name, ["pub", "a", "b", "-s", sock, "--token-file", file]);
    assert.equal(open.code, 1);
    assert.match(open.stderr, /^dockipc: EACCES: .*mode 0644.*chmod 600/);
  });
});

/** Writes a log of `n` records "record 1", "record 2", … and closes it. */
async function writeLog(dir: string, n: number): Promise<void> {
  await using wal = await Wal.open(dir, { sync: "none", segmentSize: 4096 });
  for (let i = 1; i <= n; i++) void wal.append(`record ${i}`);
  await wal.sync();
}

/** The log's segment files, in order. */
async function segments(dir: string): Promise<string[]> {
  return (await rt.fs.readDir(dir)).filter((n) => n.endsWith(".wal")).sort().map((n) =>
    `${dir}/${n}`
  );
}

describe(`dockipc wal on ${rt.name}`, () => {
  test("info, dump and verify read a good log", T, async () => {
    await using dir = await tempDir();
    await writeLog(dir.path, 300);
    const info = await runCli(rt.name, ["wal", "info", dir.path, "--json"]);
    assert.equal(info.code, 0, info.stderr);
    const i = JSON.parse(info.stdout) as { firstSeq: number; lastSeq: number; segments: unknown[] };
    assert.deepEqual([i.firstSeq, i.lastSeq], [1, 300]);
    assert.ok(i.segments.length > 1);
    const dump = await runCli(rt.name, ["wal", "dump", dir.path, "--from", "2", "--to", "3"]);
    assert.equal(dump.stdout, "2\trecord 2\n3\trecord 3\n");
    const hex = await runCli(rt.name, ["wal", "dump", dir.path, "--to", "1", "--format", "hex"]);
    assert.equal(hex.stdout, "1\t72 65 63 6f 72 64 20 31\n");
    const json = jsonLines(
      (await runCli(rt.name, ["wal", "dump", dir.path, "--to", "1", "--json"])).stdout,
    );
    assert.deepEqual(json, [{ seq: 1, size: 8, data: "record 1" }]);
    const verify = await runCli(rt.name, ["wal", "verify", dir.path]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(verify.stdout, "ok: 300 records, #1–#300\n");
    assert.ok(!verify.stderr.includes(ESC), "no progress bar in a pipe");
  });

  test(
    "verify reports a torn tail, and fails on a corrupt middle naming file and offset",
    T,
    async () => {
      await using dir = await tempDir();
      await writeLog(dir.path, 300);
      const files = await segments(dir.path);
      const last = files.at(-1)!;
      // A torn append: a record header promising more bytes than follow.
      const tail = await rt.fs.open(last, { write: true });
      const size = (await tail.stat()).size;
      await tail.write(new Uint8Array([200, 0, 0, 0, 1, 2, 3, 4, 9]), size);
      await tail.close();
      const torn = await runCli(rt.name, ["wal", "verify", dir.path, "--json"]);
      assert.equal(torn.code, 0, torn.stderr);
      const t = JSON.parse(torn.stdout) as { ok: boolean; lastSeq: number; tornBytes: number };
      assert.deepEqual([t.ok, t.lastSeq, t.tornBytes], [true, 300, 9]);

      // Damage in the first segment, with records after it.
      const first = await rt.fs.open(files[0]!, { read: true, write: true });
      await first.write(new Uint8Array([0xff]), 64);
      await first.close();
      const bad = await runCli(rt.name, ["wal", "verify", dir.path]);
      assert.equal(bad.code, 1);
      assert.match(
        bad.stderr,
        /^dockipc: ECORRUPT: .*0{19}1\.wal" is damaged at byte 56: .*"dockipc wal repair DIR --yes"/,
      );
      const refused = await runCli(rt.name, ["wal", "repair", dir.path]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /--yes/);
      const repaired = await runCli(rt.name, ["wal", "repair", dir.path, "--yes", "--json"]);
      assert.equal(repaired.code, 0, repaired.stderr);
      assert.equal((JSON.parse(repaired.stdout) as { repaired: boolean }).repaired, true);
      const after = await runCli(rt.name, ["wal", "verify", dir.path]);
      assert.equal(after.code, 0, after.stderr);
    },
  );

  test("tail prints records as another process appends them", T, async () => {
    await using dir = await tempDir();
    await writeLog(dir.path, 2);
    await using tail = startCli(rt.name, ["wal", "tail", dir.path, "-n", "2", "--json"]);
    // The tail starts after record 2; append until it has printed two.
    await using wal = await Wal.open(dir.path, { sync: "always" });
    let ended = false;
    void tail.status.then(() => ended = true);
    const appending = (async () => {
      for (let i = 3; i < 1000 && !ended; i++) {
        await wal.append(`record ${i}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const a = JSON.parse(await tail.line()) as { seq: number };
    const b = JSON.parse(await tail.line()) as { seq: number };
    assert.equal(b.seq, a.seq + 1);
    assert.ok(a.seq >= 3);
    assert.equal((await tail.status).code, 0);
    await appending;
  });
});

describe(`dockipc call, lines and bench on ${rt.name}`, () => {
  test("call sends one request to an RPC server; lines talks to a line server", T, async () => {
    await using dir = await tempDir();
    await using _rpc = await serve(
      `${dir.path}/rpc.sock`,
      (req) => new TextDecoder().decode(req).toUpperCase(),
    );
    const call = await runCli(rt.name, ["call", `${dir.path}/rpc.sock`, "hello"]);
    assert.equal(call.code, 0, call.stderr);
    assert.equal(call.stdout, "HELLO\n");
    await using _stream = await serve(
      `${dir.path}/stream.sock`,
      () => ReadableStream.from(["one", "two", "three"]),
    );
    const chunks = await runCli(rt.name, ["call", `${dir.path}/stream.sock`, "x", "--stream"]);
    assert.equal(chunks.code, 0, chunks.stderr);
    assert.equal(chunks.stdout, "one\ntwo\nthree\n");
    await using _lines = await serveLines(`${dir.path}/lines.sock`, (line) => `echo: ${line}`);
    const talk = await runCli(rt.name, ["lines", `${dir.path}/lines.sock`], {
      stdin: "one\ntwo\n",
    });
    assert.equal(talk.code, 0, talk.stderr);
    assert.equal(talk.stdout, "echo: one\necho: two\n");
  });

  test(
    "bench pub, sub, req and stream report rates, in a pipe without escape codes",
    T,
    async () => {
      await using dir = await tempDir();
      const sock = `${dir.path}/hub.sock`;
      await using server = startCli(rt.name, ["hub", "serve", sock, "--store", `${dir.path}/s`]);
      await server.line();
      for (const kind of ["pub", "sub", "req", "stream"]) {
        const r = await runCli(rt.name, [
          "bench",
          kind,
          "-n",
          "300",
          "--size",
          "16",
          "-s",
          sock,
          "--json",
        ]);
        assert.equal(r.code, 0, `${kind}: ${r.stderr}`);
        assert.ok(!r.stdout.includes(ESC) && !r.stderr.includes(ESC), kind);
        for (
          const result of jsonLines(r.stdout) as {
            msgs: number;
            msgsPerSec: number;
            latency?: { p99: number };
          }[]
        ) {
          assert.equal(result.msgs, 300, kind);
          assert.ok(result.msgsPerSec > 0, kind);
          if (kind === "sub" || kind === "req") assert.ok(result.latency!.p99 > 0, kind);
        }
      }
      const text = await runCli(rt.name, ["bench", "req", "-n", "100", "-s", sock]);
      assert.match(text.stdout, /^throughput +[\d.]+ k? ?msgs\/s, [\d.]+ MB\/s$/m);
      assert.match(text.stdout, /^latency +p50 .+ p90 .+ p99 .+ max .+$/m);
    },
  );
});

/** `dockipc ARGS` under a pseudo-terminal (util-linux `script`): what a person sees. */
async function onTerminal(
  args: readonly string[],
  stopAfter?: number,
): Promise<{ code: number | null; out: string }> {
  const run = command(rt.name, CLI, args);
  // SIGINT after `stopAfter` seconds, as Ctrl-C would; the exit code stays the program's.
  const stop = stopAfter === undefined
    ? []
    : ["timeout", "--preserve-status", "-s", "INT", `${stopAfter}`];
  const line = [...stop, run.cmd, ...run.args].map((a) => `'${a.replaceAll("'", "'\\''")}'`)
    .join(" ");
  const child = rt.spawn("script", ["-qefc", line, "/dev/null"], {
    stdin: "null",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.status,
  ]);
  return { code: status.code, out: out + err };
}

const noScript = await skipWithout("script");

describe(`dockipc on ${rt.name} on a terminal`, () => {
  test("wal verify draws a progress bar; stats --watch redraws in place", {
    ...T,
    skip: noScript,
  }, async () => {
    await using dir = await tempDir();
    await writeLog(`${dir.path}/wal`, 20_000);
    const verify = await onTerminal(["wal", "verify", `${dir.path}/wal`]);
    assert.equal(verify.code, 0, verify.out);
    assert.ok(
      verify.out.includes(`${ESC}[2Kverifying █`),
      JSON.stringify(verify.out.slice(0, 200)),
    );
    assert.match(verify.out, /ok: 20000 records/);

    const sock = `${dir.path}/hub.sock`;
    await using server = startCli(rt.name, ["hub", "serve", sock]);
    await server.line();
    // Refreshes every 100 ms until the signal a person's Ctrl-C sends.
    const watch = await onTerminal(["stats", sock, "--watch", "--interval", "100"], 3);
    assert.equal(watch.code, 0, watch.out);
    assert.match(watch.out, /TOPIC +PUBLISHED/);
    assert.match(watch.out, new RegExp(`${ESC}\\[\\d+A`), "the cursor goes back up to redraw");
  });
});

describe(`dockipc over mutual TLS with users on ${rt.name}`, () => {
  test(
    `hub serve with --users on ${rt.name}; pub from ${OTHER}; SIGHUP reloads the users`,
    { ...T, skip: noOpenssl },
    async () => {
      const certs = testCerts();
      await using dir = await tempDir();
      const users = `${dir.path}/users.json`;
      const write = (allow: string[]): void =>
        writeFileSync(
          users,
          JSON.stringify([{ name: "alice", cert: { commonName: "alice" }, publish: { allow } }]),
        );
      write(["orders.*"]);
      const tlsArgs = ["--tls-ca", `${certs.dir}/ca.pem`];
      await using server = startCli(rt.name, [
        "hub",
        "serve",
        "tls://127.0.0.1:0",
        "--tls-cert",
        `${certs.dir}/server.pem`,
        "--tls-key",
        `${certs.dir}/server.key`,
        ...tlsArgs,
        "--require-client-cert",
        "--users",
        users,
        "--json",
      ]);
      const { addr } = JSON.parse(await server.line()) as { addr: string };
      const url = addr.replace("127.0.0.1", "localhost");
      const alice = [
        ...tlsArgs,
        "--tls-cert",
        `${certs.dir}/alice.pem`,
        "--tls-key",
        `${certs.dir}/alice.key`,
      ];
      const pub = (topic: string, args = alice): Promise<CliRun> =>
        runCli(OTHER, ["pub", topic, "x", ...args], { env: { DOCKIPC_HUB: url } });
      assert.equal((await pub("orders.new")).code, 0);
      const denied = await pub("billing.x");
      assert.equal(denied.code, 1, denied.stderr);
      assert.match(denied.stderr, /EPERM.*User "alice" may not publish to "billing\.x"/);
      const noCert = await pub("orders.new", tlsArgs);
      assert.equal(noCert.code, 1);
      assert.match(noCert.stderr, /ECERTREQUIRED/);
      write(["billing.*"]);
      server.process.kill("SIGHUP");
      await until(async () => (await pub("billing.x")).code === 0, 20_000, "the reloaded users");
      assert.match((await pub("orders.new")).stderr, /EPERM/);
    },
  );
});
