/**
 * The hub's commands: `hub serve`, `pub`, `sub`, `req`, `reply` and `stats`.
 *
 * @module
 */

import { formatAddress } from "../address.ts";
import { connectHub, type RemoteHub } from "../hub/remote.ts";
import { Hub } from "../hub/hub.ts";
import { serveHub } from "../hub/server.ts";
import type { Message } from "../hub/subscription.ts";
import type { User } from "../session/users.ts";
import { delay } from "../internal/async.ts";
import { quantile } from "../internal/histogram.ts";
import { serveMetrics } from "../metrics/serve_metrics.ts";
import {
  type Command,
  CONNECT_OPTIONS,
  type Context,
  intOption,
  stringOption,
  UsageError,
} from "./command.ts";
import { parseUsers, readTokenFile, sessionOptions, tlsFiles } from "./connect.ts";
import { duration, messageJson, messageText, parseHeaders, showBytes } from "./format.ts";
import { formatTable } from "./output.ts";

/** The address every hub command defaults to: `DOCKIPC_HUB`, else this. */
export const DEFAULT_HUB = "/tmp/dockipc-hub.sock";

/**
 * The hub to talk to: `address` when the command line gave one as an argument, else the
 * `--server` option, `DOCKIPC_HUB`, or {@linkcode DEFAULT_HUB}.
 */
function hubAddress(context: Context, address?: string): string {
  return address ?? stringOption(context, "server") ?? context.rt.env("DOCKIPC_HUB") ??
    DEFAULT_HUB;
}

/** The options of every command that talks to a hub server. */
export const SERVER_OPTION = {
  server: {
    type: "string",
    short: "s",
    arg: "ADDRESS",
    help: `The hub server (default $DOCKIPC_HUB, else ${DEFAULT_HUB})`,
  },
  ...CONNECT_OPTIONS,
} as const;

/** `--headers K=V`, repeated for more. */
const HEADERS_OPTION = {
  type: "string",
  short: "H",
  multiple: true,
  arg: "K=V",
  help: "Add a header (repeat for more)",
} as const;

/** Connects to the hub a command line names. */
export async function connect(context: Context, address?: string): Promise<RemoteHub> {
  return await connectHub(
    hubAddress(context, address),
    await sessionOptions(context.rt, context),
  );
}

/** Waits until the command is stopped (SIGINT, SIGTERM). */
function stopped(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

const hubServe: Command = {
  name: "hub serve",
  summary: "Run a hub server until stopped (SIGINT or SIGTERM)",
  usage: "ADDRESS",
  arity: [1, 1],
  options: {
    store: { type: "string", arg: "DIR", help: "Keep stored streams in DIR" },
    http: {
      type: "string",
      arg: "HOST:PORT",
      help: "Serve metrics, JSON and the dashboard over HTTP there (loopback unless a token)",
    },
    "require-client-cert": {
      type: "boolean",
      help: "tls://: refuse clients without a certificate signed by --tls-ca",
    },
    users: {
      type: "string",
      arg: "FILE",
      help: "The users (JSON: a list of {name, token|tokenFile|cert, publish, subscribe, …}); " +
        "SIGHUP reads it again",
    },
    ...CONNECT_OPTIONS,
  },
  examples: [
    ["hub serve /tmp/app.sock", "A hub on a unix socket"],
    [
      "hub serve tls://0.0.0.0:4433 --tls-cert server.pem --tls-key server.key " +
      "--tls-ca ca.pem --require-client-cert --users users.json",
      "Mutual TLS, each client a user of users.json with its permissions",
    ],
    [
      "hub serve tcp://127.0.0.1:4300 --store ./data --http 127.0.0.1:9464",
      "A hub on TCP with stored streams, and its dashboard at http://127.0.0.1:9464/",
    ],
  ],
  async run(context): Promise<number> {
    const { rt, out } = context;
    const file = stringOption(context, "token-file");
    const token = file === undefined ? undefined : await readTokenFile(file);
    const app = stringOption(context, "app");
    const store = stringOption(context, "store");
    const http = stringOption(context, "http");
    await using hub = new Hub(store === undefined ? {} : { store });
    if (store !== undefined) await hub.streams(); // a store that cannot open fails here
    const tls = await tlsFiles(rt, context);
    const usersFile = stringOption(context, "users");
    const readUsers = async (): Promise<User[]> =>
      parseUsers(new TextDecoder().decode(await rt.fs.readFile(usersFile!)), usersFile!);
    await using hubServer = await serveHub(hub, context.args[0]!, {
      ...(token === undefined ? {} : { token }),
      ...(app === undefined ? {} : { app }),
      ...(usersFile === undefined ? {} : { users: await readUsers() }),
      ...(tls === undefined ? {} : {
        tls: {
          cert: tls.cert ?? "",
          key: tls.key ?? "",
          ...(tls.ca === undefined ? {} : { ca: tls.ca }),
          requireClientCert: context.values["require-client-cert"] === true,
        },
      }),
    });
    // SIGHUP: the users file again, without a restart; a bad one keeps the users as they are.
    const stopReloading = usersFile === undefined ? () => {} : rt.process.onSignal("SIGHUP", () => {
      void readUsers().then((users) => hubServer.setUsers(users)).then(
        () => out.note(`users reloaded from ${usersFile}`),
        (err: Error) => out.note(`users not reloaded: ${err.message}`),
      );
    });
    using _reloading = { [Symbol.dispose]: stopReloading };
    await using metrics = http === undefined ? undefined : await serveMetrics({ hub, hubServer }, {
      listen: http,
      ...(token === undefined ? {} : { token }),
    });
    const addr = formatAddress(hubServer.addr);
    await out.result(
      { addr, http: metrics?.url ?? null, store: store ?? null, pid: rt.pid },
      () => `hub serving at ${addr}${metrics === undefined ? "" : `, dashboard at ${metrics.url}`}`,
    );
    await out.flush();
    await stopped(context.signal);
    await out.note("stopping: closing connections");
    return 0;
  },
};

/** The lines of standard input, as they come. */
async function* stdinLines(context: Context): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of context.rt.process.stdin().pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl).replace(/\r$/, "");
      rest = rest.slice(nl + 1);
    }
  }
  if (rest !== "") yield rest;
}

const pub: Command = {
  name: "pub",
  summary: "Publish messages: DATA, or each line of standard input",
  usage: "TOPIC [DATA]",
  arity: [1, 2],
  options: {
    count: {
      type: "string",
      short: "n",
      arg: "N",
      help: "Publish DATA N times; {{n}} in DATA becomes 1, 2, … (default 1)",
    },
    headers: HEADERS_OPTION,
    id: { type: "string", arg: "ID", help: "A message id: a stream stores it once per window" },
    interval: { type: "string", arg: "MS", help: "Wait MS milliseconds between messages" },
    delay: {
      type: "string",
      arg: "MS",
      help: "Deliver each message MS milliseconds from when it is published, not before",
    },
    priority: {
      type: "string",
      arg: "P",
      help: "0 (default, lowest) to 9: a subscriber with a backlog gets higher ones first",
    },
    ...SERVER_OPTION,
  },
  examples: [
    ['pub jobs.resize "photo.jpg" -H size=small', "One message with a header"],
    ['pub load.test "message {{n}}" --count 1000', "A thousand numbered messages"],
    ['pub reminders "stand up" --delay 60000 --id r-1', "Delivered in a minute, unless cancelled"],
    ["pub logs.app < app.log", "Each line of a file as a message"],
  ],
  async run(context): Promise<number> {
    const { out, signal } = context;
    const [topic, data] = context.args as [string, string | undefined];
    const count = intOption(context, "count", 1);
    const interval = intOption(context, "interval", 0, 0);
    const headers = parseHeaders((context.values.headers as string[] | undefined) ?? []);
    const id = stringOption(context, "id");
    if (id !== undefined && count > 1) throw new UsageError("--id names one message: drop --count");
    const delayMs = context.values.delay === undefined
      ? undefined
      : intOption(context, "delay", 0, 0);
    const priority = context.values.priority === undefined
      ? undefined
      : intOption(context, "priority", 0, 0);
    if (priority !== undefined && priority > 9) {
      throw new UsageError(`--priority must be a whole number from 0 to 9: got "${priority}"`);
    }
    await using hub = await connect(context);
    const options = {
      headers,
      ...(id === undefined ? {} : { id }),
      ...(delayMs === undefined ? {} : { delay: delayMs }),
      ...(priority === undefined ? {} : { priority }),
    };
    let published = 0;
    const acks: { seq: number; stream: string; duplicate: boolean }[] = [];
    const publish = async (payload: string): Promise<void> => {
      const ack = await hub.publish(topic, payload, options);
      published++;
      if (ack) acks.push({ seq: ack.seq, stream: ack.stream, duplicate: ack.duplicate });
      if (interval > 0) await delay(interval, { signal }).catch(() => {});
    };
    if (data !== undefined) {
      const numbered = data.includes("{{n}}");
      for (let n = 1; n <= count && !signal.aborted; n++) {
        await publish(numbered ? data.replaceAll("{{n}}", String(n)) : data);
        if (count >= 100 && n % 64 === 0) out.progress("publishing", n, count);
      }
    } else {
      if (context.values.count !== undefined) {
        throw new UsageError("--count repeats DATA: give DATA, or drop --count to read lines");
      }
      for await (const line of stdinLines(context)) {
        if (signal.aborted) break;
        await publish(line);
      }
    }
    await hub.flush();
    const last = acks.at(-1);
    await out.result(
      { topic, published, ...(last === undefined ? {} : { stored: acks }) },
      () =>
        `published ${published} message${published === 1 ? "" : "s"} to ${topic}${
          last === undefined
            ? ""
            : `; stored in ${last.stream}${
              acks.length === 1 ? ` as #${last.seq}${last.duplicate ? " (duplicate)" : ""}` : ""
            }`
        }`,
    );
    return 0;
  },
};

/** Prints one message as `sub` does: raw, JSON or text. */
function printMessage(context: Context, m: Message): Promise<void> {
  const { out } = context;
  if (context.values.raw === true) return out.line(showBytes(m.data));
  return out.json ? out.value(messageJson(m)) : out.line(messageText(m));
}

const sub: Command = {
  name: "sub",
  summary: "Print the messages published to a pattern, until stopped or --count",
  usage: "PATTERN",
  arity: [1, 1],
  options: {
    queue: { type: "string", short: "q", arg: "GROUP", help: "Join a queue group" },
    count: { type: "string", short: "n", arg: "N", help: "Stop after N messages" },
    raw: { type: "boolean", help: "Print only each payload, one per line" },
    ...SERVER_OPTION,
  },
  examples: [
    ["sub 'jobs.>'", "Every message under jobs."],
    ["sub 'jobs.*' --queue workers --count 1", "Take one job as a member of a queue group"],
    ["sub 'events.>' --json | jq .topic", "JSON lines for a script"],
  ],
  async run(context): Promise<number> {
    const { out, signal } = context;
    const pattern = context.args[0]!;
    const count = intOption(context, "count", Infinity);
    const queue = stringOption(context, "queue");
    await using hub = await connect(context);
    const subscription = hub.subscribe(pattern, {
      signal,
      ...(queue === undefined ? {} : { queue }),
    });
    await hub.flush();
    await out.note(`subscribed to ${pattern}${queue === undefined ? "" : ` in queue ${queue}`}`);
    await out.flush();
    let seen = 0;
    try {
      for await (const m of subscription) {
        await printMessage(context, m);
        if (++seen >= count) break;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
    return 0;
  },
};

const req: Command = {
  name: "req",
  summary: "Send a request and print its reply",
  usage: "TOPIC DATA",
  arity: [2, 2],
  options: {
    timeout: { type: "string", arg: "MS", help: "Give up after MS milliseconds (default 5000)" },
    headers: HEADERS_OPTION,
    ...SERVER_OPTION,
  },
  examples: [["req math.double 21", "Ask a responder on math.double"]],
  async run(context): Promise<number> {
    const [topic, data] = context.args as [string, string];
    const timeout = intOption(context, "timeout", 5000);
    const headers = parseHeaders((context.values.headers as string[] | undefined) ?? []);
    await using hub = await connect(context);
    const start = performance.now();
    const reply = await hub.request(topic, data, { timeout, headers, signal: context.signal });
    const ms = performance.now() - start;
    await context.out.result(
      { ...messageJson(reply), ms },
      () => showBytes(reply.data),
    );
    return 0;
  },
};

/** Runs `command` with the request on its standard input; its output is the reply. */
async function runCommand(context: Context, command: string, m: Message): Promise<Uint8Array> {
  const child = context.rt.spawn("sh", ["-c", command], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { DOCKIPC_TOPIC: m.topic },
  });
  const writing = (async () => {
    const writer = child.stdin!.getWriter();
    await writer.write(m.data).catch(() => {});
    await writer.close().catch(() => {});
  })();
  const [stdout, stderr, status] = await Promise.all([
    new Response(child.stdout).bytes(),
    new Response(child.stderr).text(),
    child.status,
    writing,
  ]);
  if (!status.success) {
    throw new Error(
      `"${command}" exited with ${status.code ?? status.signal}${
        stderr.trim() === "" ? "" : `: ${stderr.trim().split("\n").at(-1)}`
      }`,
    );
  }
  return stdout;
}

const reply: Command = {
  name: "reply",
  summary: "Answer requests on a pattern: with a command's output, or with the request itself",
  usage: "PATTERN",
  arity: [1, 1],
  options: {
    command: {
      type: "string",
      short: "c",
      arg: "CMD",
      help: "Run CMD with sh for each request: the request on its input, its output the reply " +
        "($DOCKIPC_TOPIC holds the topic); a failing CMD fails the request",
    },
    queue: { type: "string", short: "q", arg: "GROUP", help: "Share the requests in a group" },
    count: { type: "string", short: "n", arg: "N", help: "Stop after N requests" },
    ...SERVER_OPTION,
  },
  examples: [
    ["reply 'math.double' --command 'read n; echo $((n * 2))'", "A responder in one line"],
    ["reply 'echo.>'", "Echo every request back"],
  ],
  async run(context): Promise<number> {
    const { out, signal } = context;
    const pattern = context.args[0]!;
    const command = stringOption(context, "command");
    const count = intOption(context, "count", Infinity);
    const queue = stringOption(context, "queue");
    await using hub = await connect(context);
    let answered = 0;
    const { promise: done, resolve } = Promise.withResolvers<void>();
    const handler = hub.handle(pattern, async (m) => {
      try {
        await (out.json
          ? out.value({ request: messageJson(m) })
          : out.line(`request ${messageText(m)}`));
        return command === undefined ? m.data : await runCommand(context, command, m);
      } finally {
        if (++answered >= count) resolve();
      }
    }, queue === undefined ? {} : { queue });
    await hub.flush();
    await out.note(`answering ${pattern}${command === undefined ? " (echo)" : ` with ${command}`}`);
    await out.flush();
    await Promise.race([done, stopped(signal)]);
    // The last reply is published once its handler's promise settles: let that happen (a turn of
    // the event loop), and the server take it (flush), before the subscription goes.
    await delay(0);
    await hub.flush();
    handler.unsubscribe();
    return 0;
  },
};

const stats: Command = {
  name: "stats",
  summary: "Show a hub server's topics, connections, subscriptions and consumers",
  usage: "[ADDRESS]",
  arity: [0, 1],
  options: {
    watch: { type: "boolean", short: "w", help: "Refresh until stopped (in place on a terminal)" },
    interval: { type: "string", arg: "MS", help: "How often --watch refreshes (default 1000)" },
    ...SERVER_OPTION,
  },
  examples: [
    ["stats", "The default hub's counters once"],
    ["stats tcp://127.0.0.1:4300 --watch", "A live table"],
  ],
  async run(context): Promise<number> {
    const { out, signal } = context;
    const interval = intOption(context, "interval", 1000);
    await using hub = await connect(context, context.args[0]);
    let last: { at: number; published: Map<string, number> } | undefined;
    while (!signal.aborted) {
      const s = await hub.serverStats();
      const at = performance.now();
      if (out.json) await out.value(s);
      else {
        const rate = (topic: string, n: number): string => {
          const before = last?.published.get(topic);
          return before === undefined ? "" : ((n - before) / ((at - last!.at) / 1000)).toFixed(0);
        };
        const d = s.latency.delivery;
        const lines = [
          `connections ${s.connections.length}  subscriptions ${s.subscriptions.length}  ` +
          `requests waiting ${s.requests}  delivery p50 ${duration(quantile(d, 0.5))} p99 ${
            duration(quantile(d, 0.99))
          }`,
          "",
          ...formatTable([
            ["TOPIC", "PUBLISHED", "BYTES", "ROUTED", "MSG/S"],
            ...s.topics.map((
              t,
            ) => [t.topic, t.published, t.bytes, t.routed, rate(t.topic, t.published)]),
          ]),
          "",
          ...formatTable([
            ["SUBSCRIPTION", "QUEUE", "POLICY", "DELIVERED", "PENDING", "DROPPED"],
            ...s.subscriptions.map((x) => [
              x.pattern,
              x.queue ?? "",
              x.overflow,
              x.delivered,
              x.pending,
              x.dropped,
            ]),
          ]),
        ];
        if (s.consumers.length > 0) {
          lines.push(
            "",
            ...formatTable([
              ["STREAM", "CONSUMER", "LAG", "PENDING", "ACKED", "REDELIVERED", "DEAD"],
              ...s.consumers.map((c) => [
                c.stream,
                c.config.name,
                c.lag,
                c.pending,
                c.acked,
                c.redelivered,
                c.deadLettered,
              ]),
            ]),
          );
        }
        await out.live(lines);
      }
      last = { at, published: new Map(s.topics.map((t) => [t.topic, t.published])) };
      if (context.values.watch !== true) break;
      await out.flush();
      await delay(interval, { signal }).catch(() => {}); // a signal ends the wait, then the loop
    }
    return 0;
  },
};

/** The hub's commands. */
export const HUB_COMMANDS: readonly Command[] = [hubServe, pub, sub, req, reply, stats];
