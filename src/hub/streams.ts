/**
 * A hub's store: a directory holding one directory per stream (its settings in `stream.json`,
 * its messages in `log/`, each durable consumer in `consumers/<name>/`: its settings in
 * `consumer.json`, its position in `log/`), which stream a topic belongs to, the checks that
 * keep streams apart, and each stream's consumers.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import { getRuntime } from "../runtime/detect.ts";
import type { FileSystem } from "../runtime/types.ts";
import {
  type ConsumeOptions,
  type ConsumerConfig,
  consumerConfig,
  type DeadLetterSink,
  sameConsumer,
  StreamConsumer,
} from "./consumer.ts";
import { fullConfig, Stream, type StreamConfig } from "./stream.ts";
import { topicMatches, TopicMemo, validatePattern } from "./topics.ts";

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

/** JSON with `Infinity` as `null`, as settings are saved. */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_, v) => v === Infinity ? null : v, 2);
}

/** The settings saved at `path` (`null` read as `Infinity`); `undefined` when there is no file. */
async function readSettings(fs: FileSystem, path: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(path);
  } catch (err) {
    if (err instanceof IpcError && err.code === "ENOENT") return undefined;
    throw err;
  }
  return JSON.parse(new TextDecoder().decode(bytes), (_, v) => v === null ? Infinity : v);
}

/** The streams of a hub opened with a store. */
export class StreamStore {
  readonly dir: string;
  readonly #fs: FileSystem;
  readonly #streams = new Map<string, Stream>();
  /** Each stream's consumers, by name. */
  readonly #consumers = new Map<Stream, Map<string, StreamConsumer>>();
  readonly #deadLetter: DeadLetterSink;
  readonly #repair: boolean;
  /** The stream of each topic published lately, if any. */
  readonly #byTopic = new TopicMemo<Stream | undefined>();
  /** Changes to the set of streams, one at a time. */
  #changing: Promise<unknown> = Promise.resolve();

  private constructor(fs: FileSystem, dir: string, deadLetter: DeadLetterSink, repair: boolean) {
    this.#fs = fs;
    this.dir = dir;
    this.#deadLetter = deadLetter;
    this.#repair = repair;
  }

  /**
   * Opens the store in `dir` (made `0700` when missing), every stream in it and their durable
   * consumers; `deadLetter` publishes what consumers give up on; `repair` cuts a corrupt log at
   * its first bad record instead of failing with `ECORRUPT`.
   */
  static async open(
    dir: string,
    deadLetter: DeadLetterSink,
    repair = false,
  ): Promise<StreamStore> {
    const fs = (await getRuntime()).fs;
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new StreamStore(fs, dir, deadLetter, repair);
    try {
      for (const name of (await fs.readDir(dir)).sort()) {
        const saved = await readSettings(fs, `${dir}/${name}/stream.json`);
        if (saved === undefined) continue; // not a stream
        const config = fullConfig(saved as StreamConfig);
        const stream = await Stream.open(config, `${dir}/${name}`, repair);
        store.#streams.set(name, stream);
        store.#consumers.set(stream, new Map());
        await store.#loadConsumers(stream);
      }
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** Opens the durable consumers of `stream`, then lets its retention follow them. */
  async #loadConsumers(stream: Stream): Promise<void> {
    const home = `${stream.home}/consumers`;
    let names: string[] = [];
    try {
      names = (await this.#fs.readDir(home)).sort();
    } catch (err) {
      if (!(err instanceof IpcError && err.code === "ENOENT")) throw err;
    }
    for (const name of names) {
      const config = await readSettings(this.#fs, `${home}/${name}/consumer.json`) as
        | ConsumerConfig
        | undefined;
      if (config === undefined) continue; // made, never saved
      if (config?.name !== name || typeof config.filter !== "string") {
        throw new IpcError(
          "ECORRUPT",
          `Cannot open consumer "${name}" as ${home}/${name}/consumer.json is not its settings`,
          {
            op: "open",
            path: `${home}/${name}/consumer.json`,
          },
        );
      }
      await this.#openConsumer(stream, config, `${home}/${name}/log`);
    }
    stream.tracking = true;
    await stream.applyLimits();
  }

  async #openConsumer(
    stream: Stream,
    config: ConsumerConfig,
    dir: string | undefined,
  ): Promise<StreamConsumer> {
    const consumer = await StreamConsumer.open(stream, config, dir, this.#deadLetter);
    this.#consumers.get(stream)!.set(config.name, consumer);
    stream.readers.add(consumer);
    return consumer;
  }

  /**
   * The consumer `options` name on stream `name`: a durable one made (its settings saved) or
   * joined, or a new ephemeral one. `EEXIST` when a durable's stored settings differ, or when a
   * work queue's consumers' filters would overlap.
   */
  consumer(name: string, options: ConsumeOptions): Promise<StreamConsumer> {
    return this.#serial(async () => {
      const op = `consume stream "${name}"`;
      const stream = this.get(name, op);
      const consumers = this.#consumers.get(stream)!;
      const existing = options.durable === undefined ? undefined : consumers.get(options.durable);
      if (existing !== undefined) {
        const differs = sameConsumer(existing.config, options);
        if (differs !== undefined) {
          throw new IpcError(
            "EEXIST",
            `Cannot ${op} as durable "${existing.name}" exists with other settings: ${differs}`,
            { op: "consume" },
          );
        }
        return existing;
      }
      const config = consumerConfig(stream, options);
      if (stream.config.retention === "workqueue") {
        for (const other of consumers.values()) {
          if (patternsOverlap(other.config.filter, config.filter)) {
            throw new IpcError(
              "EEXIST",
              `Cannot ${op} with filter "${config.filter}" as consumer "${other.name}" takes ` +
                `"${other.config.filter}": a work queue's consumers may not share messages`,
              { op: "consume" },
            );
          }
        }
      }
      if (!config.durable) return await this.#openConsumer(stream, config, undefined);
      const home = `${stream.home}/consumers/${config.name}`;
      await this.#fs.mkdir(home, { recursive: true, mode: 0o700 });
      await this.#save(home, "consumer.json", toJson(config));
      return await this.#openConsumer(stream, config, `${home}/log`);
    });
  }

  /** The consumer `consumer` of stream `name`; `ENOENT` when either is missing. */
  getConsumer(name: string, consumer: string, op: string): StreamConsumer {
    const found = this.#consumers.get(this.get(name, op))!.get(consumer);
    if (found === undefined) {
      throw new IpcError(
        "ENOENT",
        `Cannot ${op} as stream "${name}" has no consumer "${consumer}"`,
        { op },
      );
    }
    return found;
  }

  /** The consumers of stream `name`, by name. */
  consumersOf(name: string, op: string): StreamConsumer[] {
    return [...this.#consumers.get(this.get(name, op))!.values()]
      .sort((a, b) => a.name < b.name ? -1 : 1);
  }

  /** Every consumer of every stream. */
  allConsumers(): StreamConsumer[] {
    return [...this.#consumers.values()].flatMap((m) => [...m.values()]);
  }

  /**
   * Removes a consumer: its readers end with `ENOENT`, a durable one's position is deleted. An
   * ephemeral consumer is removed this way once its reader leaves.
   */
  removeConsumer(name: string, consumer: string): Promise<void> {
    return this.#serial(async () => {
      const op = "delete the consumer";
      const found = this.getConsumer(name, consumer, op);
      const stream = found.stream;
      this.#consumers.get(stream)!.delete(consumer);
      await found.close(
        new IpcError("ENOENT", `Consumer "${consumer}" of stream "${name}" was deleted`, {
          op: "consume",
        }),
      );
      if (found.config.durable) {
        await this.#fs.remove(`${stream.home}/consumers/${consumer}`, { recursive: true });
      }
      await stream.applyLimits();
    });
  }

  /** Removes an ephemeral consumer whose last reader left; nothing when it is gone already. */
  async dropEphemeral(consumer: StreamConsumer): Promise<void> {
    if (consumer.config.durable || consumer.readers > 0) return;
    const consumers = this.#consumers.get(consumer.stream);
    if (consumers?.get(consumer.name) !== consumer) return;
    await this.removeConsumer(consumer.stream.name, consumer.name);
  }

  /** Whether the store holds any stream: when not, publishing need not look for one. */
  get empty(): boolean {
    return this.#streams.size === 0;
  }

  /** The stream that stores `topic`'s messages, if any. */
  streamFor(topic: string): Stream | undefined {
    return this.#byTopic.get(topic, (topic) => {
      for (const stream of this.#streams.values()) {
        if (stream.config.subjects.some((p) => topicMatches(p, topic))) return stream;
      }
      return undefined;
    });
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
      for (const fixed of ["durability", "retention"] as const) {
        if (existing !== undefined && existing.config[fixed] !== config[fixed]) {
          throw new RangeError(
            `Cannot update stream "${config.name}" as its ${fixed} cannot change: it is ${
              existing.config[fixed]
            }`,
          );
        }
      }
      const home = `${this.dir}/${config.name}`;
      await this.#fs.mkdir(home, { recursive: true, mode: 0o700 });
      await this.#save(home, "stream.json", toJson(config));
      this.#byTopic.clear();
      if (existing !== undefined) {
        existing.config = config;
        return existing;
      }
      const stream = await Stream.open(config, home);
      stream.tracking = true;
      this.#streams.set(config.name, stream);
      this.#consumers.set(stream, new Map());
      return stream;
    });
  }

  /** Writes `home/name` under a temporary name, syncs it and renames it into place. */
  async #save(home: string, name: string, text: string): Promise<void> {
    const tmp = `${home}/${name}.tmp`;
    const file = await this.#fs.open(tmp, { write: true, create: true, truncate: true });
    try {
      await file.write(new TextEncoder().encode(text), 0);
      await file.datasync();
    } finally {
      await file.close();
    }
    await this.#fs.rename(tmp, `${home}/${name}`);
    await this.#fs.syncDir(home);
  }

  /** Closes and removes a stream, its messages with it. */
  remove(name: string): Promise<void> {
    return this.#serial(async () => {
      const stream = this.get(name, "delete the stream");
      this.#streams.delete(name);
      this.#byTopic.clear();
      await this.#closeConsumers(
        stream,
        new IpcError("ENOENT", `Stream "${name}" was deleted`, { op: "consume" }),
      );
      await stream.close();
      await this.#fs.remove(`${this.dir}/${name}`, { recursive: true });
    });
  }

  /** Closes a stream's consumers (their readers end with `error`), saving durable positions. */
  async #closeConsumers(stream: Stream, error: IpcError): Promise<void> {
    const consumers = [...(this.#consumers.get(stream)?.values() ?? [])];
    this.#consumers.delete(stream);
    await Promise.all(consumers.map((c) => c.close(error).catch(() => {})));
  }

  /** Closes every consumer, then every stream. */
  async close(): Promise<void> {
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#byTopic.clear();
    for (const stream of streams) {
      await this.#closeConsumers(
        stream,
        new IpcError("ECLOSED", "The hub was closed", { op: "consume" }),
      );
      await stream.close();
    }
  }
}
