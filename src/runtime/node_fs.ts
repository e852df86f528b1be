/**
 * Files through `node:fs`, for Node and for Bun (which implements `node:fs` natively and has no
 * positional file API of its own).
 *
 * @module
 */

import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { atPath as at, systemError } from "../errors.ts";
import type { FileHandle, FileInfo, FileSystem, OpenOptions } from "./types.ts";

function info(s: fs.Stats): FileInfo {
  return {
    isFile: s.isFile(),
    isDirectory: s.isDirectory(),
    isSymlink: s.isSymbolicLink(),
    isSocket: s.isSocket(),
    size: s.size,
    mode: s.mode,
    mtimeMs: s.mtimeMs,
    ino: s.ino,
    dev: s.dev,
  };
}

function flags(o: OpenOptions): number {
  const c = fs.constants;
  const read = o.read ?? true;
  const write = o.write || o.append || o.create || o.createNew || o.truncate;
  let f = read && write ? c.O_RDWR : write ? c.O_WRONLY : c.O_RDONLY;
  if (o.append) f |= c.O_APPEND;
  if (o.create || o.createNew) f |= c.O_CREAT;
  if (o.createNew) f |= c.O_EXCL;
  if (o.truncate) f |= c.O_TRUNC;
  return f;
}

/**
 * Closes the file of a `NodeFile` dropped unclosed (a log reader left half read, say), quietly.
 * Left to itself, the runtime would close it at some later garbage collection with a warning on
 * Node and, on Bun, an uncaught error. The registry holds the handle, so it is closed here first.
 */
const unclosed = new FinalizationRegistry<fsp.FileHandle>((handle) => {
  handle.close().catch(() => {});
});

class NodeFile implements FileHandle {
  #handle: fsp.FileHandle;
  #path: string;
  readonly tryLock: undefined = undefined;

  constructor(handle: fsp.FileHandle, path: string) {
    this.#handle = handle;
    this.#path = path;
    unclosed.register(this, handle, this);
  }

  read(buf: Uint8Array, position: number): Promise<number> {
    return at("read", this.#path, async () => {
      return (await this.#handle.read(buf, 0, buf.byteLength, position)).bytesRead;
    });
  }

  write(data: Uint8Array, position?: number): Promise<void> {
    return at("write", this.#path, async () => {
      for (let off = 0; off < data.byteLength;) {
        const pos = position === undefined ? null : position + off;
        off += (await this.#handle.write(data, off, data.byteLength - off, pos)).bytesWritten;
      }
    });
  }

  writeSync(data: Uint8Array, position?: number): void {
    try {
      for (let off = 0; off < data.byteLength;) {
        const pos = position === undefined ? null : position + off;
        off += fs.writeSync(this.#handle.fd, data, off, data.byteLength - off, pos);
      }
    } catch (err) {
      throw systemError(err, "write", this.#path, "path");
    }
  }

  datasync(): Promise<void> {
    return at("sync", this.#path, () => this.#handle.datasync());
  }

  datasyncSync(): void {
    try {
      fs.fdatasyncSync(this.#handle.fd);
    } catch (err) {
      throw systemError(err, "sync", this.#path, "path");
    }
  }

  sync(): Promise<void> {
    return at("sync", this.#path, () => this.#handle.sync());
  }

  truncate(length: number): Promise<void> {
    return at("truncate", this.#path, () => this.#handle.truncate(length));
  }

  stat(): Promise<FileInfo> {
    return at("stat", this.#path, async () => info(await this.#handle.stat()));
  }

  close(): Promise<void> {
    unclosed.unregister(this);
    return at("close", this.#path, () => this.#handle.close());
  }
}

/** The file system through `node:fs`. */
export const nodeFs: FileSystem = {
  open: (path, options) =>
    at("open", path, async () => {
      return new NodeFile(await fsp.open(path, flags(options), options.mode ?? 0o600), path);
    }),
  stat: (path) => at("stat", path, async () => info(await fsp.stat(path))),
  lstat: (path) => at("stat", path, async () => info(await fsp.lstat(path))),
  mkdir: (path, options) =>
    at("create directory", path, async () => {
      await fsp.mkdir(path, { recursive: options.recursive ?? false, mode: options.mode ?? 0o777 });
    }),
  readDir: (path) => at("read directory", path, () => fsp.readdir(path)),
  readFile: (path) =>
    at("read", path, async () => {
      const b = await fsp.readFile(path);
      return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    }),
  rename: (from, to) => at("rename", from, () => fsp.rename(from, to)),
  link: (from, to) => at("link", to, () => fsp.link(from, to)),
  remove: (path, options = {}) =>
    at("remove", path, async () => {
      const s = await fsp.lstat(path);
      if (s.isDirectory()) {
        await (options.recursive ? fsp.rm(path, { recursive: true }) : fsp.rmdir(path));
      } else await fsp.unlink(path);
    }),
  chmod: (path, mode) => at("change mode of", path, () => fsp.chmod(path, mode)),
  syncDir: (path) =>
    at("sync", path, async () => {
      const dir = await fsp.open(path, "r");
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    }),
  makeTempDir: (prefix) =>
    at("create directory", tmpdir(), () => fsp.mkdtemp(join(tmpdir(), prefix))),
};
