/**
 * Every example a user can copy: the ```ts blocks of `README.md` and `docs/*.md`, and the
 * `@example` blocks of the JSDoc in `mod.ts` and `src/`. The examples test runs each from the
 * sources on Deno, Bun and Node; the package check runs each against the installed npm package.
 * Plain TypeScript over `node:fs`, so it loads under all three runtimes.
 *
 * @module
 */

import { readdirSync, readFileSync } from "node:fs";

/** One example: where it stands and its code, as a user would paste it. */
export interface Example {
  /** `file:line` of the opening fence, for messages. */
  readonly where: string;
  readonly code: string;
}

/** An opening fence, indented as in a list item or not; its indent is taken off each line. */
const FENCE_OPEN = /^( *)```ts\s*$/;
const FENCE_CLOSE = /^ *```\s*$/;

/** The ```ts blocks of `text`; `strip` turns a line of the file into a line of the block. */
function blocks(file: string, text: string, strip: (line: string) => string): Example[] {
  const found: Example[] = [];
  let open: { line: number; indent: number; code: string[] } | undefined;
  text.split("\n").forEach((raw, i) => {
    const line = strip(raw);
    if (open === undefined) {
      const fence = FENCE_OPEN.exec(line);
      if (fence) open = { line: i + 1, indent: fence[1]!.length, code: [] };
    } else if (FENCE_CLOSE.test(line)) {
      found.push({ where: `${file}:${open.line}`, code: open.code.join("\n") + "\n" });
      open = undefined;
    } else {
      open.code.push(line.slice(Math.min(open.indent, line.length - line.trimStart().length)));
    }
  });
  if (open) throw new Error(`${file}:${open.line}: a code block is never closed`);
  return found;
}

/** A JSDoc line without its leading ` * ` (or ` *` on an empty line). */
function jsdocLine(line: string): string {
  return line.replace(/^\s*\* ?/, "");
}

function sourceFiles(root: string, dir: string): string[] {
  return readdirSync(`${root}${dir}`, { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(root, path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** All examples under `root` (the repository, or an installed package: a trailing slash). */
export function examples(root: string): Example[] {
  const markdown = ["README.md", ...readdirSync(`${root}docs`).map((f) => `docs/${f}`)]
    .filter((f) => f.endsWith(".md"));
  const typescript = ["mod.ts", ...sourceFiles(root, "src")];
  return [
    ...markdown.flatMap((f) => blocks(f, readFileSync(`${root}${f}`, "utf8"), (l) => l)),
    ...typescript.flatMap((f) => blocks(f, readFileSync(`${root}${f}`, "utf8"), jsdocLine)),
  ];
}

/** The package's name, whose specifiers (`@dockipc/dockipc`, `@dockipc/dockipc/hub`…) examples use. */
export const PACKAGE = "@dockipc/dockipc";

/**
 * `code` with each import of the package pointing at `target(subpath)` instead, where subpath is
 * `"."` or `"./hub"` and so on, as in the `exports` of `deno.json`.
 */
export function redirectImports(code: string, target: (subpath: string) => string): string {
  return code.replace(
    /(["'])@dockipc\/dockipc(\/[a-z]+)?\1/g,
    (_, quote: string, sub: string | undefined) => `${quote}${target(`.${sub ?? ""}`)}${quote}`,
  );
}
