/**
 * A hub's store: a directory holding one directory per stream (its settings in `stream.json`,
 * its messages in `log/`), which stream a topic belongs to, and the checks that keep streams
 * apart.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { getRuntime } from "../runtime/detect.ts";
import type { FileSystem } from "../runtime/types.ts";
import { fullConfig, Stream, type StreamConfig } from "./stream.ts";
import { topicMatches, validatePattern } from "./topics.ts";

/** Whether some topic matches both patterns (`*` one token, `>` one or more). */
export function patternsOverlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0;; i++) {
    const p = x[i];
    const q = y[i];
    if (p === undefined || q === undefined) return p === q;
    if (p === ">" || q === ">") return true;
    if (p !== "*" && q !== "*" && p !== q) return false;
  }
}

function unknown(name: string, op: string): IpcError {
  return new IpcError("ENOENT", `Cannot ${op} as there is no stream "${name}"`, { op });
}

/** The streams of a hub opened with a store. */
export class StreamStore {
  readonly dir: string;
  readonly #fs: FileSystem;
  readonly #streams = new Map<string, Stream>();
  /** The stream of each topic published lately; `null` for none. */
  readonly #byTopic = new Map<string, Stream | null>();
  /** Changes to the set of streams, one at a time. */
  #changing: Promise<unknown> = Promise.resolve();

  private constructor(fs: FileSystem, dir: string) {
    this.#fs = fs;
    this.dir = dir;
  }

  /** Opens the store in `dir` (made `0700` when missing) and every stream in it. */
  static async open(dir: string): Promise<StreamStore> {
    const fs = (await getRuntime()).fs;
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new StreamStore(fs, dir);
    try {
      for (const name of (await fs.readDir(dir)).sort()) {
        let text: string;
        try {
          text = new TextDecoder().decode(await fs.readFile(`${dir}/${name}/stream.json`));
        } catch (err) {
          if (err instanceof IpcError && err.code === "ENOENT") continue; // not a stream
          throw err;
        }
        const config = fullConfig(JSON.parse(text, (_, v) => v === null ? Infinity : v));
        store.#streams.set(name, await Stream.open(config, `${dir}/${name}/log`));
      }
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** Whether the store holds any stream: when not, publishing need not look for one. */
  get empty(): boolean {
    return this.#streams.size === 0;
  }

  /** The stream that stores `topic`'s messages, if any. */
  streamFor(topic: string): Stream | undefined {
    let found = this.#byTopic.get(topic);
    if (found === undefined) {
      found = null;
      for (const stream of this.#streams.values()) {
        if (stream.config.subjects.some((p) => topicMatches(p, topic))) {
          found = stream;
          break;
        }
      }
      if (this.#byTopic.size >= 4096) this.#byTopic.clear();
      this.#byTopic.set(topic, found);
    }
    return found ?? undefined;
  }

  /** The stream called `name`; `ENOENT` when there is none. */
  get(name: string, op: string): Stream {
    const stream = this.#streams.get(name);
    if (stream === undefined) throw unknown(name, op);
    return stream;
  }

  /** Every stream, by name. */
  all(): Stream[] {
    return [...this.#streams.values()].sort((a, b) => a.name < b.name ? -1 : 1);
  }

  /** Runs `change` after the changes before it. */
  #serial<T>(change: () => Promise<T>): Promise<T> {
    const next = this.#changing.then(change, change);
    this.#changing = next.catch(() => {});
    return next;
  }

  /**
   * Adds a stream, or changes one (`update`): its settings saved first, atomically. Refuses
   * subjects that overlap another stream's with `EEXIST` naming both.
   */
  put(input: StreamConfig, update: boolean): Promise<Stream> {
    const op = update ? "update the stream" : "add the stream";
    let config: ReturnType<typeof fullConfig>;
    try {
      config = fullConfig(input);
      for (const p of config.subjects) validatePattern(p);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#serial(async () => {
      const existing = this.#streams.get(config.name);
      if (update && existing === undefined) throw unknown(config.name, op);
      if (!update && existing !== undefined) {
        throw new IpcError("EEXIST", `Cannot ${op} as "${config.name}" exists`, { op });
      }
      for (const other of this.#streams.values()) {
        if (other.name === config.name) continue;
        for (const p of config.subjects) {
          const clash = other.config.subjects.find((q) => patternsOverlap(p, q));
          if (clash !== undefined) {
            throw new IpcError(
              "EEXIST",
              `Cannot ${op} "${config.name}" as its subject "${p}" overlaps "${clash}" of stream "${other.name}"`,
              { op },
            );
          }
        }
      }
      if (existing !== undefined && existing.config.durability !== config.durability) {
        throw new RangeError(
          `Cannot update stream "${config.name}" as its durability cannot change: it is ${existing.config.durability}`,
        );
      }
      const home = `${this.dir}/${config.name}`;
      await this.#fs.mkdir(home, { recursive: true, mode: 0o700 });
      await this.#save(home, config);
      this.#byTopic.clear();
      if (existing !== undefined) {
        existing.config = config;
        return existing;
      }
      const stream = await Stream.open(config, `${home}/log`);
      this.#streams.set(config.name, stream);
      return stream;
    });
  }

  /** Writes `stream.json` under a temporary name, syncs it and renames it into place. */
  async #save(home: string, config: ReturnType<typeof fullConfig>): Promise<void> {
    const text = JSON.stringify(config, (_, v) => v === Infinity ? null : v, 2);
    const tmp = `${home}/stream.json.tmp`;
    const file = await this.#fs.open(tmp, { write: true, create: true, truncate: true });
    try {
      await file.write(new TextEncoder().encode(text), 0);
      await file.datasync();
    } finally {
      await file.close();
    }
    await this.#fs.rename(tmp, `${home}/stream.json`);
    await this.#fs.syncDir(home);
  }

  /** Closes and removes a stream, its messages with it. */
  remove(name: string): Promise<void> {
    return this.#serial(async () => {
      const stream = this.get(name, "delete the stream");
      this.#streams.delete(name);
      this.#byTopic.clear();
      await stream.close();
      await this.#fs.remove(`${this.dir}/${name}`, { recursive: true });
    });
  }

  /** Closes every stream. */
  async close(): Promise<void> {
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#byTopic.clear();
    for (const stream of streams) await stream.close();
  }
}
