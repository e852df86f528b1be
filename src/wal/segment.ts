/**
 * Segment files: their names, listing, installation, and the writer's lock.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { ownerOf, ownerState, ownerText } from "../internal/owner.ts";
import type { FileHandle, FileSystem } from "../runtime/types.ts";
import { encodeSegmentHeader } from "./record.ts";

/** A segment of the log, by the sequence of its first record. */
export interface Segment {
  readonly firstSeq: number;
  readonly path: string;
}

const DIGITS = 20;
const SEGMENT_RE = /^(\d{20})\.wal$/;

/** The name of the segment whose first record is `firstSeq`: name order is sequence order. */
export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(DIGITS, "0")}.wal`;
}

/** Joins a directory and a name. */
export function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The segments in `dir`, oldest first, and the names of leftover temporary files. */
export async function listSegments(
  fs: FileSystem,
  dir: string,
): Promise<{ segments: Segment[]; temps: string[] }> {
  const segments: Segment[] = [];
  const temps: string[] = [];
  for (const name of await fs.readDir(dir)) {
    const m = SEGMENT_RE.exec(name);
    if (m) segments.push({ firstSeq: Number(m[1]), path: join(dir, name) });
    else if (name.endsWith(".tmp")) temps.push(join(dir, name));
  }
  segments.sort((a, b) => a.firstSeq - b.firstSeq);
  return { segments, temps };
}

/**
 * Runs `write` on the new file `file` at `path` and closes it; when writing fails (a full disk),
 * removes the file too, so that a failure leaves nothing half written to fill the disk.
 */
export async function writeOrRemove(
  fs: FileSystem,
  path: string,
  file: FileHandle,
  write: () => Promise<void>,
): Promise<void> {
  try {
    await write();
  } catch (err) {
    await file.close().catch(() => {});
    await fs.remove(path).catch(() => {});
    throw err;
  }
  await file.close();
}

/**
 * Makes the segment starting at `firstSeq`: writes its header into a new file, syncs it, renames
 * it into place and syncs the directory, so the segment exists after a crash exactly when its
 * name does. Returns the open segment file.
 */
export async function installSegment(
  fs: FileSystem,
  dir: string,
  firstSeq: number,
  seed: number,
): Promise<{ file: FileHandle; segment: Segment }> {
  const tmp = join(dir, `new-${firstSeq}.wal.tmp`);
  const file = await fs.open(tmp, { write: true, create: true, truncate: true });
  try {
    await file.write(encodeSegmentHeader(firstSeq, seed), 0);
    await file.datasync();
    const path = join(dir, segmentName(firstSeq));
    await fs.rename(tmp, path);
    await fs.syncDir(dir);
    return { file, segment: { firstSeq, path } };
  } catch (err) {
    await file.close().catch(() => {});
    await fs.remove(tmp).catch(() => {}); // not yet a segment: nothing in it is needed
    throw err;
  }
}

/** Lock files this process holds, so a second writer in the same process is refused too. */
const held = new Set<string>();

/** The writer's hold on a log directory; `release()` gives it up. */
export interface DirLock {
  release(): Promise<void>;
}

let created = 0;

/**
 * Makes `path` hold `content`, atomically and only if it does not exist: the content is written
 * under a name of this process's own, then hard-linked into place. Nobody can read `path` half
 * written. Returns `false` when `path` exists.
 */
async function createWith(
  fs: FileSystem,
  path: string,
  content: Uint8Array,
  pid: number,
): Promise<boolean> {
  // No other call, in this process or another, uses this name.
  const own = `${path}.${pid}.${++created}.new`;
  const file = await fs.open(own, { write: true, create: true, truncate: true });
  try {
    await file.write(content, 0);
  } finally {
    await file.close();
  }
  try {
    await fs.link(own, path);
    return true;
  } catch (err) {
    if (err instanceof IpcError && err.code === "EEXIST") return false;
    throw err;
  } finally {
    await fs.remove(own).catch(() => {});
  }
}

/**
 * Takes the writer's lock on `dir`: a `LOCK` file holding the owner's pid and start time, which
 * every runtime understands, plus an advisory `flock` on it where the runtime has one (Deno). A
 * lock whose process is no longer running (its pid is gone, or was given to a process that
 * started later) is stale and taken over, under a second lock file (`LOCK.takeover`, made
 * the same exclusive way), so that processes that all found the owner dead cannot all take it.
 * Lock files need no sync: after a power cut every pid they name is dead. Fails with `ELOCKED`
 * naming the holder.
 */
export async function lockDir(fs: FileSystem, dir: string, pid: number): Promise<DirLock> {
  const path = join(dir, "LOCK");
  const info = await fs.stat(dir);
  const key = `${info.dev}:${info.ino}`;
  const locked = (holder: string): IpcError =>
    new IpcError(
      "ELOCKED",
      `Cannot open the log in "${dir}" for writing as ${holder} holds its lock file "${path}"`,
      { op: "lock", path },
    );
  // Taken at once, before any wait, so that two opens in this process cannot both go on.
  if (held.has(key)) throw locked("another Wal in this process");
  held.add(key);
  let file: FileHandle;
  try {
    file = await lockFile(fs, path, pid, locked);
  } catch (err) {
    held.delete(key);
    throw err;
  }
  return {
    async release(): Promise<void> {
      held.delete(key);
      await fs.remove(path).catch(() => {});
      await file.close().catch(() => {});
    },
  };
}

/**
 * The cross-process part of {@linkcode lockDir}: makes or takes over `LOCK` and returns it open
 * (and `flock`ed where the runtime can).
 */
async function lockFile(
  fs: FileSystem,
  path: string,
  pid: number,
  locked: (holder: string) => IpcError,
): Promise<FileHandle> {
  const takeover = `${path}.takeover`;
  const mine = new TextEncoder().encode(await ownerText(fs, pid));
  for (let attempt = 0; attempt < 3; attempt++) {
    const created = await createWith(fs, path, mine, pid);
    let file: FileHandle;
    try {
      file = await fs.open(path, { read: true, write: true });
    } catch (err) {
      if (err instanceof IpcError && err.code === "ENOENT") continue; // released meanwhile
      throw err;
    }
    try {
      // Where there is flock, it is held by whoever is looking at the file: a Deno process that
      // found our pid in it lets go at once.
      if (file.tryLock !== undefined && !(await tryLockFor(file, created ? 1000 : 0))) {
        throw locked("another process");
      }
      if (created) return file;
      // Someone's lock: keep it when its owner runs, take it over when not.
      const owner = await ownerOf(fs, path);
      if (owner !== undefined && owner.pid !== pid && await ownerState(fs, owner) !== "gone") {
        throw locked(`process ${owner.pid}`);
      }
      if (!(await claim(fs, takeover, mine, pid))) {
        throw locked("another process taking it over");
      }
      try {
        // Taken over before our claim: look again.
        if ((await ownerOf(fs, path))?.text !== owner?.text) {
          await file.close();
          continue;
        }
        await file.truncate(0);
        await file.write(mine, 0);
      } finally {
        await fs.remove(takeover).catch(() => {});
      }
      return file;
    } catch (err) {
      await file.close().catch(() => {});
      throw err;
    }
  }
  throw locked("another process");
}

/** Takes `LOCK.takeover`, removing one left by a dead process; `false` when a live one has it. */
async function claim(
  fs: FileSystem,
  takeover: string,
  mine: Uint8Array,
  pid: number,
): Promise<boolean> {
  if (await createWith(fs, takeover, mine, pid)) return true;
  const owner = await ownerOf(fs, takeover).catch(() => undefined);
  if (owner !== undefined && await ownerState(fs, owner) !== "gone") return false;
  await fs.remove(takeover).catch(() => {});
  return createWith(fs, takeover, mine, pid);
}

/** `tryLock`, retried for up to `ms` while another process holds the flock for a moment. */
async function tryLockFor(file: FileHandle, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!(await file.tryLock!(true))) {
    if (Date.now() >= until) return false;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return true;
}
