/** What the consumer tests share: reading a given number of messages from a reader. */
import type { ConsumedMessage, Consumer } from "../../src/hub/mod.ts";

/** The next `n` messages of `reader`; fails if it ends first. */
export async function take(reader: Consumer, n: number): Promise<ConsumedMessage[]> {
  const out: ConsumedMessage[] = [];
  while (out.length < n) {
    const { value, done } = await reader.next();
    if (done) throw new Error(`The reader ended after ${out.length} of ${n} messages`);
    out.push(value);
  }
  return out;
}
