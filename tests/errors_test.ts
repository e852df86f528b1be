import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { IpcError } from "../mod.ts";
import { systemError } from "../src/errors.ts";

describe("systemError()", () => {
  const cases: [unknown, string][] = [
    [Object.assign(new Error("x"), { code: "ENOENT" }), "ENOENT"],
    [Object.assign(new Error("x"), { code: "EEXIST" }), "EEXIST"],
    [Object.assign(new Error("x"), { code: "EPIPE" }), "ECONNRESET"],
    [Object.assign(new Error("x"), { name: "ConnectionRefused" }), "ECONNREFUSED"],
    [Object.assign(new Error("x"), { name: "PermissionDenied" }), "EACCES"],
    [Object.assign(new Error("x"), { code: "EAGAIN" }), "EBUSY"],
    [Object.assign(new Error("x"), { code: "ENOSPC" }), "ENOSPC"],
    [Object.assign(new Error("x"), { code: "EDQUOT" }), "ENOSPC"],
    [Object.assign(new Error("x"), { code: "EMFILE" }), "EIO"],
    ["a string", "EIO"],
  ];
  for (const [raw, code] of cases) {
    test(`systemError() maps ${JSON.stringify((raw as { code?: string }).code ?? (raw as Error).name ?? raw)} to ${code}`, () => {
      const err = systemError(raw, "connect to", "unix:/x.sock");
      assert.ok(err instanceof IpcError);
      assert.equal(err.code, code);
      assert.equal(err.op, "connect to");
      assert.equal(err.address, "unix:/x.sock");
      assert.equal(err.cause, raw);
      assert.match(err.message, /^Cannot connect to "unix:\/x\.sock" as /);
    });
  }

  test("systemError() names a path as path and keeps an IpcError as it is", () => {
    const err = systemError(
      Object.assign(new Error("x"), { code: "ENOENT" }),
      "open",
      "/a",
      "path",
    );
    assert.equal(err.path, "/a");
    assert.equal(err.address, undefined);
    assert.equal(systemError(err, "other", "b"), err);
  });

  test("systemError() quotes the OS's words for an unmapped code", () => {
    const err = systemError(
      Object.assign(new Error("too many open files"), { code: "EMFILE" }),
      "accept on",
      "x",
    );
    assert.match(err.message, /reported EMFILE: too many open files/);
  });
});
