/**
 * What the `dockipc` program prints: text for people or JSON lines for scripts on standard
 * output, notes and errors on standard error, and, only on a terminal, progress bars and tables
 * that redraw in place. Writes are gathered and handed to the system in order, so that exiting
 * after `flush()` loses nothing.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { ProcessIo } from "../runtime/types.ts";

const utf8 = new TextEncoder();

/** Past this much text waiting, a write waits until it is handed to the system. */
const HIGH_WATER = 64 * 1024;

/** What to do about an error, by code: the second half of the one line an error prints. */
const HINTS: Partial<Record<string, string>> = {
  ECONNREFUSED: 'is a server running there? Start one with "dockipc hub serve ADDRESS"',
  ENOENT: "check the path; for a socket, is a server running there?",
  EAUTH: "give the server's token with --token-file, and its --app if it has one",
  ETIMEDOUT: "the server or responder did not answer in time; raise --timeout or check it runs",
  ENORESPONDERS: 'nothing answers that topic: start one with "dockipc reply PATTERN"',
  ECORRUPT:
    'inspect it with "dockipc wal verify DIR"; cut the damage with "dockipc wal repair DIR --yes"',
  ELOCKED:
    "another process has the log open for writing; stop it, or read with a read-only command",
  EADDRINUSE: "another process listens there; pick another address or stop it",
  EADDRINVALID:
    'addresses are a unix socket path ("/run/app.sock", "unix:PATH") or "tcp://HOST:PORT"',
  EACCES: "check the file's or socket's permissions",
  ENOSPC: "free some disk space",
  EREMOTE: "the responder failed: see its message",
  ECLOSED: "the connection or server closed",
  ECONNRESET: "the connection dropped; check that the server still runs",
};

/** The standard streams of a command, and how it draws on a terminal. */
export class Output {
  readonly #io: ProcessIo;
  /** Print JSON lines rather than text. */
  readonly json: boolean;
  /** Whether standard output and standard error are terminals. */
  readonly stdoutIsTerminal: boolean;
  readonly stderrIsTerminal: boolean;
  #pending: [string, string] = ["", ""];
  #writing: Promise<void> = Promise.resolve();
  #scheduled = false;
  /** Lines the last live table took on the terminal, to draw over them. */
  #liveLines = 0;
  /** Whether a progress bar is on the terminal's last line. */
  #progressShown = false;

  constructor(io: ProcessIo, json: boolean) {
    this.#io = io;
    this.json = json;
    this.stdoutIsTerminal = io.isTerminal(1);
    this.stderrIsTerminal = io.isTerminal(2);
  }

  #write(fd: 1 | 2, text: string): Promise<void> {
    this.#pending[fd - 1] += text;
    if (this.#pending[0].length + this.#pending[1].length > HIGH_WATER) return this.flush();
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => void this.flush());
    }
    return Promise.resolve();
  }

  /** Hands everything written so far to the system; resolves once it is there. */
  flush(): Promise<void> {
    this.#scheduled = false;
    const [out, err] = this.#pending;
    this.#pending = ["", ""];
    if (out !== "") this.#writing = this.#writing.then(() => this.#io.write(1, utf8.encode(out)));
    if (err !== "") this.#writing = this.#writing.then(() => this.#io.write(2, utf8.encode(err)));
    return this.#writing;
  }

  /** A line of the command's result on standard output. */
  line(text: string): Promise<void> {
    this.#clearProgress();
    return this.#write(1, `${text}\n`);
  }

  /** Text as it is on standard output (no line feed added). */
  write(text: string): Promise<void> {
    this.#clearProgress();
    return this.#write(1, text);
  }

  /** A value as one line of JSON on standard output. */
  value(value: unknown): Promise<void> {
    return this.line(JSON.stringify(value));
  }

  /** The result: `value` as JSON with `--json`, else `text` (lines). */
  result(value: unknown, text: () => string): Promise<void> {
    return this.json ? this.value(value) : this.line(text());
  }

  /** A note for the person at the terminal, on standard error (kept out of pipes' data). */
  note(text: string): Promise<void> {
    this.#clearProgress();
    return this.#write(2, `${text}\n`);
  }

  /** An error as one line on standard error: its code, its message, and what to do. */
  error(err: unknown): Promise<void> {
    const code = err instanceof IpcError
      ? err.code
      : err instanceof Error && /^E[A-Z]+$/.test(String((err as { code?: unknown }).code))
      ? String((err as { code?: unknown }).code)
      : err instanceof Error
      ? err.name
      : "Error";
    const message = err instanceof Error ? err.message : String(err);
    const hint = HINTS[code];
    this.#clearProgress();
    if (this.json) return this.#write(2, `${JSON.stringify({ error: { code, message, hint } })}\n`);
    return this.#write(
      2,
      `dockipc: ${code}: ${message}${hint === undefined ? "" : ` (${hint})`}\n`,
    );
  }

  /**
   * A progress bar on standard error while `done` of `total` units are done: drawn only when
   * standard error is a terminal, never into a pipe or a file.
   */
  progress(label: string, done: number, total: number): void {
    if (!this.stderrIsTerminal || this.json) return;
    const width = 30;
    const ratio = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(ratio * width);
    const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
    this.#progressShown = true;
    void this.#write(2, `\r\x1b[2K${label} ${bar} ${(ratio * 100).toFixed(0).padStart(3)}%`);
  }

  #clearProgress(): void {
    if (!this.#progressShown) return;
    this.#progressShown = false;
    this.#pending[1] += "\r\x1b[2K";
  }

  /**
   * A table that replaces the previous one on a terminal; in a pipe, each follows the last
   * after a blank line.
   */
  live(lines: readonly string[]): Promise<void> {
    if (!this.stdoutIsTerminal) return this.#write(1, `${lines.join("\n")}\n\n`);
    const up = this.#liveLines > 0 ? `\x1b[${this.#liveLines}A` : "";
    this.#liveLines = lines.length;
    return this.#write(1, `${up}${lines.map((l) => `\x1b[2K${l}`).join("\n")}\n\x1b[J`);
  }
}

/** Rows as aligned columns, the first row the header. Numbers are right-aligned. */
export function formatTable(rows: readonly (readonly (string | number)[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, String(cell).length));
  }
  return rows.map((row) =>
    row.map((cell, i) =>
      typeof cell === "number"
        ? String(cell).padStart(widths[i]!)
        : i === row.length - 1
        ? cell
        : cell.padEnd(widths[i]!)
    ).join("  ").trimEnd()
  );
}
