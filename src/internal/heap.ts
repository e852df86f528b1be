/**
 * A binary min-heap of values by a numeric key, ties in the order they were added, from which
 * any value can be removed in O(log n): the one structure under every timer that many things
 * share (deadlines, delayed messages).
 *
 * @module
 */

interface Slot<T> {
  readonly value: T;
  readonly key: number;
  /** Breaks ties between equal keys: the value added first comes first. */
  readonly order: number;
  /** Where it stands in the heap's array. */
  at: number;
}

/** A min-heap of distinct values by key; see the module doc. */
export class IndexedHeap<T> {
  readonly #slots: Slot<T>[] = [];
  readonly #where = new Map<T, Slot<T>>();
  #added = 0;

  /** Values held. */
  get size(): number {
    return this.#slots.length;
  }

  /** How many values were ever added: the `order` the next one gets. */
  get added(): number {
    return this.#added;
  }

  /** Whether `value` is held. */
  has(value: T): boolean {
    return this.#where.has(value);
  }

  /** Adds `value` with `key`; a value already held moves to its new key (and order). */
  add(value: T, key: number): void {
    this.delete(value);
    const slot: Slot<T> = { value, key, order: this.#added++, at: this.#slots.length };
    this.#slots.push(slot);
    this.#where.set(value, slot);
    this.#up(slot.at);
  }

  /** Removes `value`; false when it was not held. */
  delete(value: T): boolean {
    const slot = this.#where.get(value);
    if (slot === undefined) return false;
    this.#where.delete(value);
    const slots = this.#slots;
    const last = slots.pop()!;
    if (last !== slot) {
      slots[slot.at] = last;
      last.at = slot.at;
      this.#down(this.#up(slot.at));
    }
    return true;
  }

  /** The value with the lowest key (the first added among equals), its key and order. */
  peek(): { readonly value: T; readonly key: number; readonly order: number } | undefined {
    return this.#slots[0];
  }

  /** Removes and returns the value {@linkcode IndexedHeap.peek} shows. */
  pop(): T | undefined {
    const top = this.#slots[0];
    if (top === undefined) return undefined;
    this.delete(top.value);
    return top.value;
  }

  /** Removes every value. */
  clear(): void {
    this.#slots.length = 0;
    this.#where.clear();
  }

  #before(a: Slot<T>, b: Slot<T>): boolean {
    return a.key < b.key || (a.key === b.key && a.order < b.order);
  }

  /** Moves the slot at `i` up to its place; returns where it ends. */
  #up(i: number): number {
    const slots = this.#slots;
    const slot = slots[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(slot, slots[parent]!)) break;
      slots[i] = slots[parent]!;
      slots[i]!.at = i;
      i = parent;
    }
    slots[i] = slot;
    slot.at = i;
    return i;
  }

  /** Moves the slot at `i` down to its place. */
  #down(i: number): void {
    const slots = this.#slots;
    const n = slots.length;
    const slot = slots[i]!;
    while (true) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && this.#before(slots[right]!, slots[left]!) ? right : left;
      if (!this.#before(slots[child]!, slot)) break;
      slots[i] = slots[child]!;
      slots[i]!.at = i;
      i = child;
    }
    slots[i] = slot;
    slot.at = i;
  }
}
