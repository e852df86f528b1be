/**
 * Commands for RPC daemons: `call ADDRESS DATA` for `serve()` servers, and `lines ADDRESS`, a
 * line client for `serveLines()` daemons (standard input to the socket, the socket to standard
 * output, as `nc -U` does).
 *
 * @module
 */

import { dial } from "../rpc/client.ts";
import { connect } from "../transport.ts";
import { type Command, CONNECT_OPTIONS, intOption } from "./command.ts";
import { sessionOptions } from "./connect.ts";
import { jsonBytes, showBytes } from "./format.ts";

const call: Command = {
  name: "call",
  summary: "Send one request to an RPC server and print its reply (streamed replies as they come)",
  usage: "ADDRESS DATA",
  arity: [2, 2],
  options: {
    timeout: { type: "string", arg: "MS", help: "Give up after MS milliseconds (default 5000)" },
    stream: { type: "boolean", help: "The reply is a stream: print each chunk as it comes" },
    ...CONNECT_OPTIONS,
  },
  examples: [
    ['call /run/thumbs.sock "photo.jpg"', "One request"],
    ['call tcp://127.0.0.1:4301 "tail" --stream', "A streamed reply"],
  ],
  async run(context): Promise<number> {
    const { out, signal } = context;
    const [address, data] = context.args as [string, string];
    const timeout = intOption(context, "timeout", 5000);
    await using client = await dial(address, await sessionOptions(context.rt, context));
    if (context.values.stream === true) {
      const chunks = client.requestStream(data, { timeout, signal });
      for await (const chunk of chunks) {
        await (out.json ? out.value(jsonBytes(chunk)) : out.line(showBytes(chunk)));
      }
      return 0;
    }
    const start = performance.now();
    const reply = await client.request(data, { timeout, signal });
    const ms = performance.now() - start;
    await out.result({ ...jsonBytes(reply), ms }, () => showBytes(reply));
    return 0;
  },
};

const lines: Command = {
  name: "lines",
  summary: "Talk to a line server: standard input goes to it, its replies to standard output",
  usage: "ADDRESS",
  arity: [1, 1],
  options: {},
  examples: [
    ["lines /run/app.sock", "Type commands, read the replies; Ctrl-D ends"],
    ['printf "status\\n" | dockipc lines tcp://127.0.0.1:4302', "One command from a script"],
  ],
  async run(context): Promise<number> {
    const { rt, out, signal } = context;
    const conn = await connect(context.args[0]!);
    const onAbort = (): void => conn.close();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      if (out.stderrIsTerminal && rt.process.isTerminal(0)) {
        await out.note(`connected to ${context.args[0]}: type a line, Ctrl-D to end`);
        await out.flush();
      }
      // What we type goes out; once input ends, so does our side, and the replies finish. The
      // server's end of the replies ends the command, whether or not input has ended.
      void rt.process.stdin().pipeTo(conn.writable).catch(() => {});
      const decoder = new TextDecoder();
      for await (const chunk of conn.readable) {
        const text = decoder.decode(chunk, { stream: true });
        if (text !== "") await out.write(text);
      }
      await out.write(decoder.decode());
    } finally {
      signal.removeEventListener("abort", onAbort);
      conn.close();
      await conn.closed;
    }
    return 0;
  },
};

/** The RPC commands. */
export const RPC_COMMANDS: readonly Command[] = [call, lines];
