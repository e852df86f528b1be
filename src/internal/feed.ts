/**
 * A feed of events any number of readers follow as async iterables, each from the moment it
 * starts, each with a bounded backlog: a reader that does not keep up loses its oldest events,
 * never the feed's memory.
 *
 * @module
 */

/** How many events a reader that does not read may have waiting; older ones are dropped. */
const BACKLOG = 256;

/** One reader's queue and, while it waits, its wake-up. */
interface Reader<T> {
  queue: T[];
  wake: (() => void) | undefined;
}

/** Events handed to every reader following at the time, until `end()`. */
export class Feed<T> {
  readonly #readers = new Set<Reader<T>>();
  #ended = false;

  /** Hands `event` to every reader. */
  emit(event: T): void {
    for (const reader of this.#readers) {
      if (reader.queue.length >= BACKLOG) reader.queue.shift();
      reader.queue.push(event);
      reader.wake?.();
    }
  }

  /** Ends every reader once it has read what it has; later readers end at once. */
  end(): void {
    this.#ended = true;
    for (const reader of this.#readers) reader.wake?.();
  }

  /** The events from now on, until `end()` or until the caller leaves its loop. */
  follow(): AsyncIterableIterator<T> {
    const reader: Reader<T> = { queue: [], wake: undefined };
    if (!this.#ended) this.#readers.add(reader);
    const readers = this.#readers;
    const isEnded = (): boolean => this.#ended;
    const done = (): IteratorResult<T> => {
      readers.delete(reader);
      return { done: true, value: undefined };
    };
    return {
      async next(): Promise<IteratorResult<T>> {
        while (reader.queue.length === 0) {
          if (isEnded() || !readers.has(reader)) return done();
          await new Promise<void>((resolve) => (reader.wake = resolve));
          reader.wake = undefined;
        }
        return { done: false, value: reader.queue.shift()! };
      },
      return(): Promise<IteratorResult<T>> {
        reader.queue.length = 0;
        reader.wake?.();
        return Promise.resolve(done());
      },
      [Symbol.asyncIterator](): AsyncIterableIterator<T> {
        return this;
      },
    };
  }
}
