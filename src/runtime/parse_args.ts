/**
 * Command line parsing: `node:util`'s `parseArgs`, which Deno, Bun and Node all provide, kept
 * here so that only the runtime layer imports `node:` modules.
 *
 * @module
 */

export { parseArgs } from "node:util";
