/**
 * The Prometheus text exposition format (version 0.0.4): families of samples with their HELP
 * and TYPE lines, label values escaped, histograms as cumulative buckets with a sum and a count.
 *
 * @module
 */

import type { HistogramSnapshot } from "./histogram.ts";

/** Labels of one sample, by name; values are escaped when written. */
export type Labels = Readonly<Record<string, string | number>>;

/** Escapes a label value: backslash, double quote and line feed. */
function escape(value: string | number): string {
  return String(value).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([name, value]) => `${name}="${escape(value)}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** A number as Prometheus spells it: `+Inf`, `-Inf` and `NaN` included. */
function value(n: number): string {
  return n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : String(n);
}

/** Builds an exposition: one family after another, each written whole. */
export class PrometheusText {
  #out = "";

  /** A counter or gauge family: one sample per row. */
  family(
    name: string,
    help: string,
    type: "counter" | "gauge",
    rows: Iterable<readonly [Labels, number]>,
  ): this {
    this.#out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
    for (const [labels, n] of rows) this.#out += `${name}${labelText(labels)} ${value(n)}\n`;
    return this;
  }

  /** A histogram family: per row, cumulative buckets, `+Inf`, the sum and the count. */
  histogram(
    name: string,
    help: string,
    rows: Iterable<readonly [Labels, HistogramSnapshot]>,
  ): this {
    this.#out += `# HELP ${name} ${help}\n# TYPE ${name} histogram\n`;
    for (const [labels, h] of rows) {
      h.buckets.forEach((le, i) => {
        this.#out += `${name}_bucket${labelText({ ...labels, le })} ${h.counts[i]}\n`;
      });
      this.#out += `${name}_bucket${labelText({ ...labels, le: "+Inf" })} ${h.count}\n`;
      this.#out += `${name}_sum${labelText(labels)} ${value(h.sum)}\n`;
      this.#out += `${name}_count${labelText(labels)} ${h.count}\n`;
    }
    return this;
  }

  /** The text so far. */
  toString(): string {
    return this.#out;
  }
}
