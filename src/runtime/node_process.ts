/**
 * This process's standard streams, arguments and exit through `node:process`: Node's, and
 * Bun's, which implements the same module.
 *
 * @module
 */

import process from "node:process";
import { Readable } from "node:stream";
import type { ProcessIo } from "./types.ts";

const streams = [process.stdin, process.stdout, process.stderr] as const;

/** Standard streams, arguments and exit through `node:process`. */
export const nodeProcess: ProcessIo = {
  args: process.argv.slice(2),
  stdin: () => Readable.toWeb(process.stdin) as ReadableStream<Uint8Array>,
  write: (fd, data) =>
    new Promise<void>((resolve, reject) => {
      (fd === 1 ? process.stdout : process.stderr).write(
        data,
        (err) => err ? reject(err) : resolve(),
      );
    }),
  isTerminal: (fd) => (streams[fd] as { isTTY?: boolean }).isTTY === true,
  columns: () => process.stdout.isTTY === true ? process.stdout.columns : undefined,
  onSignal: (signal, listener) => {
    process.on(signal, listener);
    return () => void process.off(signal, listener);
  },
  exit: (code) => process.exit(code),
};
