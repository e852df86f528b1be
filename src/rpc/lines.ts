/**
 * The line protocol of our reference design: a client sends a command terminated by `\n` and
 * receives the reply as lines; `nc -U` and `socat` work as clients.
 *
 * @module
 */

import type { Address } from "../address.ts";
import { lines } from "../frame/framed.ts";
import { later } from "../internal/async.ts";
import { listen, type ListenOptions } from "../transport.ts";

/** Answers one command line; an array or a string with line breaks becomes several lines. */
export type LineHandler = (
  command: string,
  context: { remoteAddr: Address },
) => string | readonly string[] | Promise<string | readonly string[]>;

/** Options of {@linkcode serveLines}. */
export interface ServeLinesOptions extends Pick<ListenOptions, "mode" | "signal"> {
  /** The longest command or reply line, in bytes. @default {65536} */
  maxLineLength?: number;
}

/** A running line server. */
export interface LineServer extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Address;
  /**
   * Stops accepting; lets each command being answered finish (10 s at most), sends every reply
   * already written, then closes every connection. `[Symbol.asyncDispose]` does the same.
   */
  close(): Promise<void>;
}

/**
 * Serves a line protocol: each line a client sends is a command; the handler's answer goes
 * back as one or more lines. Commands on one connection are answered in order. A handler that
 * throws answers `ERR <message>`; the connection stays open.
 *
 * @param address Where to listen.
 * @param handler Answers each command.
 * @param options Socket mode, a signal that closes the server, the line length bound.
 * @returns The running server.
 *
 * @example A status command
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, lines } from "@dockipc/dockipc";
 * import { serveLines } from "@dockipc/dockipc/rpc";
 *
 * await using server = await serveLines("tcp://127.0.0.1:0", (command) =>
 *   command === "status" ? ["ok", "uptime 42"] : `unknown ${command}`);
 * const client = lines(await connect(server.addr));
 * const writer = client.writable.getWriter();
 * await writer.write("status");
 * await writer.close();
 * assert.deepEqual(await Array.fromAsync(client.readable), ["ok", "uptime 42"]);
 * ```
 */
export async function serveLines(
  address: string | Address,
  handler: LineHandler,
  options: ServeLinesOptions = {},
): Promise<LineServer> {
  if (typeof handler !== "function") {
    throw new TypeError(
      `Cannot serve lines as the handler must be a function: got ${typeof handler}`,
    );
  }
  const listenOptions: ListenOptions = {};
  if (options.mode !== undefined) listenOptions.mode = options.mode;
  if (options.signal !== undefined) listenOptions.signal = options.signal;
  const listener = await listen(address, listenOptions);
  const open = new Set<LineSession>();
  const lineOptions = options.maxLineLength === undefined
    ? {}
    : { maxLineLength: options.maxLineLength };
  const accepting = (async () => {
    for await (const conn of listener) {
      const framed = lines(conn, lineOptions);
      const session: LineSession = {
        writer: framed.writable.getWriter(),
        close: () => framed.close(),
        busy: false,
        stopping: false,
        finished: Promise.resolve(),
      };
      open.add(session);
      session.finished = (async () => {
        const { writer } = session;
        try {
          for await (const command of framed.readable) {
            session.busy = true;
            let reply: string | readonly string[];
            try {
              reply = await handler(command, { remoteAddr: conn.remoteAddr });
            } catch (err) {
              reply = `ERR ${err instanceof Error ? err.message : String(err)}`;
            }
            for (
              const line of typeof reply === "string"
                ? reply.split("\n")
                : reply.flatMap((l) => l.split("\n"))
            ) {
              await writer.write(line.endsWith("\r") ? line.slice(0, -1) : line);
            }
            session.busy = false;
            if (session.stopping) break; // the server closes: this reply was the last
          }
          await writer.close();
          if (session.stopping) framed.close();
        } catch {
          framed.close();
        } finally {
          open.delete(session);
        }
      })();
    }
  })();
  const close = async (): Promise<void> => {
    await listener.close();
    // A command being answered gets its whole reply; then, as for an idle connection, what
    // was written leaves before the connection closes.
    for (const session of open) {
      session.stopping = true;
      if (!session.busy) {
        void session.writer.close().catch(() => {}).finally(() => session.close());
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all([...open].map((s) => s.finished)),
      new Promise<void>((resolve) => (timer = later(resolve, CLOSE_BOUND_MS))),
    ]);
    clearTimeout(timer);
    for (const session of open) session.close();
    await accepting;
  };
  return { addr: listener.addr, close, [Symbol.asyncDispose]: close };
}

/** One client's connection, as `close()` needs to see it. */
interface LineSession {
  readonly writer: WritableStreamDefaultWriter<string>;
  /** Closes the connection at once. */
  close(): void;
  /** A command is being answered. */
  busy: boolean;
  /** The server is closing: no command after the one being answered. */
  stopping: boolean;
  /** Resolves once the connection is done with. */
  finished: Promise<void>;
}

/** How long `close()` lets commands being answered finish before it closes their connections. */
const CLOSE_BOUND_MS = 10_000;
