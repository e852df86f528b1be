/** The session layer's shared behaviour (`_suite.ts`), run against RPC and against the hub. */
import { describe } from "node:test";
import { connectHub, Hub, serveHub } from "../../src/hub/mod.ts";
import { encodeHub, jsonBody, Op } from "../../src/hub/protocol.ts";
import { dial, serve } from "../../src/rpc/mod.ts";
import { sessionBehaviour } from "./_suite.ts";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe("the session layer under RPC", () => {
  sessionBehaviour("RPC", {
    protocol: "RPC",
    opening: [],
    serve: (path, options) =>
      serve(path, async (request) => {
        const [kind, ms] = new TextDecoder().decode(request).split(":");
        if (kind === "slow") await sleep(Number(ms));
        return request;
      }, options),
    dial: async (path, options) => {
      const client = await dial(path, options);
      return {
        get connected() {
          return client.connected;
        },
        status: () => client.status(),
        call: (timeout = 10_000) => client.request("x", { timeout }),
        slow: (ms) => client.request(`slow:${ms}`),
        big: (bytes) => client.request(new Uint8Array(bytes)),
        close: () => client.close(),
        abort: () => client.abort(),
        [Symbol.asyncDispose]: () => client.close(),
      };
    },
  });
});

describe("the session layer under the hub", () => {
  sessionBehaviour("hub", {
    protocol: "hub",
    // A hub server lists its streams (here none) right after its WELCOME.
    opening: [encodeHub({ type: Op.STREAMS, body: jsonBody([]) })],
    serve: (path, options) => {
      const hub = new Hub();
      hub.handle("echo", (m) => m.data);
      hub.handle("slow", async (m) => {
        await sleep(Number(new TextDecoder().decode(m.data)));
        return m.data;
      });
      return serveHub(hub, path, options);
    },
    dial: async (path, options) => {
      const client = await connectHub(path, options);
      return {
        get connected() {
          return client.connected;
        },
        status: () => client.status(),
        call: (timeout = 10_000) => client.request("echo", "x", { timeout }),
        slow: (ms) => client.request("slow", String(ms)),
        big: (bytes) => client.publish("big", new Uint8Array(bytes)),
        close: () => client.close(),
        abort: () => client.abort(),
        [Symbol.asyncDispose]: () => client.close(),
      };
    },
  });
});
