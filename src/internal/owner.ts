/**
 * Owner files: a file that names the process holding something (the write-ahead log's `LOCK`, a
 * unix socket's `.lock`) by its pid and start time, so that whoever finds it can tell whether the
 * holder still runs, even after the system gave its pid to another process.
 *
 * @module
 */

import { processAlive, processStartTime } from "../runtime/platform.ts";
import type { FileSystem } from "../runtime/types.ts";

/** Who an owner file names: a pid, and when that process started where that could be had. */
export interface Owner {
  readonly pid: number;
  readonly start: string | undefined;
  /** The file's text, to see whether it changed. */
  readonly text: string;
}

/** What an owner file of process `pid` holds: "pid start", or "pid" when the start is unknown. */
export async function ownerText(fs: FileSystem, pid: number): Promise<string> {
  const start = await processStartTime(pid, (path) => fs.readFile(path));
  return start === undefined ? `${pid}\n` : `${pid} ${start}\n`;
}

/** Who the owner file at `path` names, or `undefined` when it names nobody (nothing, or not a pid). */
export async function ownerOf(fs: FileSystem, path: string): Promise<Owner | undefined> {
  const text = new TextDecoder().decode(await fs.readFile(path));
  const [pidText = "", start, ...rest] = text.trim().split(" ");
  const pid = Number(pidText);
  if (pidText === "" || !Number.isInteger(pid) || pid <= 0 || rest.length > 0) return undefined;
  return { pid, start: start !== undefined && /^\d+$/.test(start) ? start : undefined, text };
}

/**
 * Whether the process an owner file names still runs: `"running"` when its pid runs and started
 * when the file says; `"gone"` when the pid runs no process, or one that started at another time
 * (the system gave the pid again); `"unsure"` when its pid runs but the start times cannot be
 * compared (the file has none, or Deno without `--allow-all` may not read `/proc`).
 */
export async function ownerState(
  fs: FileSystem,
  owner: Owner,
): Promise<"running" | "gone" | "unsure"> {
  if (await processAlive(owner.pid, (path) => fs.stat(path)) === "no") return "gone";
  if (owner.start === undefined) return "unsure";
  const start = await processStartTime(owner.pid, (path) => fs.readFile(path));
  if (start === undefined) return "unsure";
  return start === owner.start ? "running" : "gone";
}

/**
 * Makes `path` an owner file of process `pid`, replacing what was there; returns its text, for
 * {@linkcode removeOwner}.
 */
export async function writeOwner(fs: FileSystem, path: string, pid: number): Promise<string> {
  const text = await ownerText(fs, pid);
  const file = await fs.open(path, { write: true, create: true, truncate: true });
  try {
    await file.write(new TextEncoder().encode(text), 0);
  } finally {
    await file.close();
  }
  return text;
}

/** Removes the owner file at `path` if it still holds `text`: one that another took is left. */
export async function removeOwner(fs: FileSystem, path: string, text: string): Promise<void> {
  const found = await fs.readFile(path).catch(() => undefined);
  if (found !== undefined && new TextDecoder().decode(found) === text) {
    await fs.remove(path).catch(() => {});
  }
}
