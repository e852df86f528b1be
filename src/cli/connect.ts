/**
 * What every command that talks to a server needs: the token read safely from a file, and the
 * session options made from `--token-file` and `--app`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { Runtime } from "../runtime/types.ts";
import type { SessionOptions } from "../session/client.ts";
import { type Invocation, stringOption } from "./command.ts";

/**
 * Reads a token from `path`, refusing a file that its group or others may read or write, as ssh
 * refuses such a key: a secret others can read is no secret. A trailing line feed is dropped.
 */
export async function readTokenFile(rt: Runtime, path: string): Promise<string> {
  const info = await rt.fs.stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw new IpcError(
      "EACCES",
      `Cannot use the token file "${path}" as its mode ${
        (info.mode & 0o777).toString(8).padStart(4, "0")
      } lets others read it: run chmod 600 "${path}"`,
      { op: "read", path },
    );
  }
  const token = new TextDecoder().decode(await rt.fs.readFile(path)).replace(/\r?\n$/, "");
  if (token === "") {
    throw new IpcError("EAUTH", `Cannot use the token file "${path}" as it is empty`, {
      op: "read",
      path,
    });
  }
  return token;
}

/** The token and app id a command line gives, as session options (one attempt, no reconnect). */
export async function sessionOptions(
  rt: Runtime,
  invocation: Invocation,
): Promise<SessionOptions & { token?: string }> {
  const file = stringOption(invocation, "token-file");
  const app = stringOption(invocation, "app");
  return {
    reconnect: false,
    ...(file === undefined ? {} : { token: await readTokenFile(rt, file) }),
    ...(app === undefined ? {} : { app }),
  };
}
