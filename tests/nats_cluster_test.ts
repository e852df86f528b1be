/**
 * The NATS cluster the bridge's tests stand on (`scripts/_nats.ts`): three `nats-server`
 * processes routed together, a message crossing from one node to another, a node killed with
 * SIGKILL while the other two go on, and the node started again on its ports. Spoken to in the
 * NATS text protocol over dockipc's own `connect()`, so no NATS client is needed here.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Conn, connect } from "../mod.ts";
import { rt, skipWithout, tempDir, until } from "./_helpers.ts";
import { startNatsCluster } from "../scripts/_nats.ts";

const T = { timeout: 60_000, skip: await skipWithout("nats-server") };
const utf8 = new TextEncoder();

/** A NATS connection in the text protocol: sends lines, collects the MSGs that arrive. */
class RawNats {
  readonly messages: string[] = [];
  readonly conn: Conn;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #pongs = 0;

  constructor(conn: Conn) {
    this.conn = conn;
    this.#writer = conn.writable.getWriter();
    void this.#read();
  }

  static async open(url: string): Promise<RawNats> {
    const nats = new RawNats(await connect(url.replace("nats://", "tcp://")));
    await nats.send('CONNECT {"verbose":false,"pedantic":false}');
    await nats.ping();
    return nats;
  }

  async #read(): Promise<void> {
    let text = "";
    const decoder = new TextDecoder();
    for await (const chunk of this.conn.readable) {
      text += decoder.decode(chunk, { stream: true });
      for (;;) {
        const end = text.indexOf("\r\n");
        if (end < 0) break;
        const line = text.slice(0, end);
        const msg = /^MSG (\S+) \S+ (\d+)$/.exec(line);
        if (msg) {
          const size = Number(msg[2]);
          if (text.length < end + 2 + size + 2) break; // the payload is not all here yet
          this.messages.push(`${msg[1]} ${text.slice(end + 2, end + 2 + size)}`);
          text = text.slice(end + 2 + size + 2);
          continue;
        }
        if (line === "PONG") this.#pongs++;
        if (line === "PING") await this.send("PONG");
        text = text.slice(end + 2);
      }
    }
  }

  send(line: string): Promise<void> {
    return this.#writer.write(utf8.encode(`${line}\r\n`));
  }

  /** Round trip to the server: everything sent before has been processed there. */
  async ping(): Promise<void> {
    const want = this.#pongs + 1;
    await this.send("PING");
    await until(() => this.#pongs >= want, 10_000, "PONG");
  }

  close(): void {
    this.conn.close();
  }
}

describe(`a NATS cluster of three nodes, from ${rt.name}`, () => {
  test(
    "routes a message across nodes, survives a node's SIGKILL, and takes it back",
    T,
    async () => {
      await using dir = await tempDir();
      const cluster = await startNatsCluster(dir.path, 3);
      const clients: RawNats[] = [];
      try {
        const [n0, n1, n2] = cluster.nodes as [
          (typeof cluster.nodes)[0],
          (typeof cluster.nodes)[0],
          (typeof cluster.nodes)[0],
        ];
        assert.deepEqual(cluster.urls, [n0.url, n1.url, n2.url]);
        const sub = await RawNats.open(n2.url);
        const pub = await RawNats.open(n0.url);
        clients.push(sub, pub);
        await sub.send("SUB orders.* 1");
        await sub.ping();
        // The subscription's interest reaches the other nodes over the routes a moment later.
        let n = 0;
        const crossed = async (to: RawNats, text: string): Promise<void> => {
          await until(
            async () => {
              await pub.send(`PUB orders.${++n} ${text.length}\r\n${text}`);
              await pub.ping();
              await new Promise((resolve) => setTimeout(resolve, 20));
              return to.messages.some((m) => m.endsWith(` ${text}`));
            },
            10_000,
            `"${text}" to cross the cluster`,
          );
        };
        await crossed(sub, "hello");
        await n1.kill("SIGKILL");
        assert.equal(n1.running, false);
        await crossed(sub, "still");
        const { clientPort, clusterPort } = n1;
        await n1.start();
        assert.deepEqual([n1.clientPort, n1.clusterPort], [clientPort, clusterPort]);
        const back = await RawNats.open(n1.url);
        clients.push(back);
        await back.send("SUB orders.* 1");
        await back.ping();
        await crossed(back, "again");
      } finally {
        for (const c of clients) c.close();
        await cluster.stop();
      }
      assert.ok(cluster.nodes.every((node) => !node.running));
    },
  );
});
