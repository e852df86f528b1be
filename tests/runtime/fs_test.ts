import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { IpcError } from "../../mod.ts";
import { rt, tempDir } from "../_helpers.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function rejectsCode(p: Promise<unknown>, code: string, path: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof IpcError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.path, path);
    assert.ok(err.message.includes(path), "the message names the path");
    return true;
  });
}

describe(`Runtime.fs on ${rt.name}`, () => {
  test("open() creates a file 0600 and write()/read() work at positions", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/f`;
    const f = await rt.fs.open(path, { write: true, create: true });
    await f.write(bytes("hello world"));
    await f.write(bytes("W"), 6);
    const buf = new Uint8Array(11);
    assert.equal(await f.read(buf, 0), 11);
    assert.equal(text(buf), "hello World");
    assert.equal(await f.read(new Uint8Array(4), 11), 0, "0 at the end of the file");
    const part = new Uint8Array(5);
    assert.equal(await f.read(part, 6), 5);
    assert.equal(text(part), "World");
    const info = await f.stat();
    assert.equal(info.size, 11);
    assert.ok(info.isFile);
    assert.equal(info.mode & 0o777, 0o600);
    await f.close();
  });

  test("append mode writes at the end, async and sync, and datasync/sync succeed", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/log`;
    const f = await rt.fs.open(path, { append: true, create: true });
    await f.write(bytes("a"));
    f.writeSync(bytes("bc"));
    await f.datasync();
    f.datasyncSync();
    await f.sync();
    await f.close();
    const g = await rt.fs.open(path, { append: true });
    g.writeSync(bytes("d"));
    await g.close();
    assert.equal(text(await rt.fs.readFile(path)), "abcd");
  });

  test("writeSync() at a position and truncate() change the file in place", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/t`;
    const f = await rt.fs.open(path, { write: true, create: true });
    f.writeSync(bytes("0123456789"), 0);
    f.writeSync(bytes("xx"), 4);
    await f.truncate(8);
    await f.close();
    assert.equal(text(await rt.fs.readFile(path)), "0123xx67");
  });

  test("positional calls land at their positions in any order, sequential or not", async () => {
    // Deno has no pwrite: a positional call is a seek, skipped when the file offset is known
    // to be there already. Every mix of order, reads, writes and truncation must still land.
    await using dir = await tempDir();
    const path = `${dir.path}/p`;
    const f = await rt.fs.open(path, { write: true, create: true });
    f.writeSync(bytes("abcd"), 0);
    f.writeSync(bytes("efgh"), 4);
    await f.write(bytes("XY"), 2);
    await f.write(bytes("ZZ"), 6);
    const head = new Uint8Array(3);
    assert.equal(await f.read(head, 1), 3);
    assert.equal(text(head), "bXY");
    f.writeSync(bytes("12"), 8);
    f.writeSync(bytes("q"), 4);
    const ten = new Uint8Array(10);
    assert.equal(await f.read(ten, 0), 10);
    assert.equal(text(ten), "abXYqfZZ12");
    await f.truncate(7);
    f.writeSync(bytes("end"), 10);
    const all = new Uint8Array(16);
    assert.equal(await f.read(all, 0), 13);
    assert.equal(text(all.subarray(0, 7)), "abXYqfZ");
    assert.deepEqual([...all.subarray(7, 10)], [0, 0, 0], "a hole where truncate cut");
    assert.equal(text(all.subarray(10, 13)), "end");
    await f.close();
  });

  test("createNew fails with EEXIST and open of a missing file with ENOENT, naming the path", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/x`;
    await (await rt.fs.open(path, { write: true, createNew: true })).close();
    await rejectsCode(rt.fs.open(path, { write: true, createNew: true }), "EEXIST", path);
    await rejectsCode(rt.fs.open(`${dir.path}/missing`, {}), "ENOENT", `${dir.path}/missing`);
  });

  test("mkdir, readDir, rename, link, chmod, stat, lstat and remove do what they say", async () => {
    await using dir = await tempDir();
    const d = `${dir.path}/a/b`;
    await rt.fs.mkdir(d, { recursive: true, mode: 0o700 });
    await (await rt.fs.open(`${d}/one`, { write: true, create: true })).close();
    await rt.fs.rename(`${d}/one`, `${d}/two`);
    await rt.fs.link(`${d}/two`, `${d}/three`);
    await rejectsCode(rt.fs.link(`${d}/two`, `${d}/three`), "EEXIST", `${d}/three`);
    assert.deepEqual((await rt.fs.readDir(d)).sort(), ["three", "two"]);
    const two = await rt.fs.stat(`${d}/two`);
    assert.equal(two.ino, (await rt.fs.lstat(`${d}/three`)).ino, "a link is the same file");
    await rt.fs.chmod(`${d}/two`, 0o640);
    assert.equal((await rt.fs.stat(`${d}/two`)).mode & 0o777, 0o640);
    assert.ok((await rt.fs.stat(d)).isDirectory);
    await rt.fs.syncDir(d);
    await rt.fs.remove(`${d}/two`);
    assert.deepEqual(await rt.fs.readDir(d), ["three"]);
    // ENOTEMPTY has no code of ours: EIO, with the OS's words in the message.
    await rejectsCode(rt.fs.remove(`${dir.path}/a`), "EIO", `${dir.path}/a`);
    assert.ok((await rt.fs.stat(d)).isDirectory, "a non-recursive remove leaves a full directory");
    await rt.fs.remove(`${dir.path}/a`, { recursive: true });
    await rejectsCode(rt.fs.stat(`${dir.path}/a`), "ENOENT", `${dir.path}/a`);
  });

  test("makeTempDir() makes a fresh private directory each time", async () => {
    const a = await rt.fs.makeTempDir("dk-t-");
    const b = await rt.fs.makeTempDir("dk-t-");
    try {
      assert.notEqual(a, b);
      assert.equal((await rt.fs.stat(a)).mode & 0o077, 0, "no access for group or others");
    } finally {
      await rt.fs.remove(a, { recursive: true });
      await rt.fs.remove(b, { recursive: true });
    }
  });

  test("tryLock() is exclusive between handles where the runtime has file locks", async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/lock`;
    const a = await rt.fs.open(path, { write: true, create: true });
    const b = await rt.fs.open(path, { write: true });
    if (rt.name === "deno") {
      assert.equal(await a.tryLock!(true), true);
      assert.equal(await b.tryLock!(true), false, "a second exclusive lock is refused at once");
      await a.close();
      assert.equal(await b.tryLock!(true), true, "closing the holder releases the lock");
    } else {
      // Node and Bun have no flock(2): the WAL falls back to a lock file holding the pid.
      assert.equal(a.tryLock, undefined);
      await a.close();
    }
    await b.close();
  });
});
