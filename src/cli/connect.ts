/**
 * What every command that talks to a server needs: the token read safely from a file, and the
 * session options made from `--token-file` and `--app`.
 *
 * @module
 */

import { IpcError } from "../errors.ts";
import type { Runtime } from "../runtime/types.ts";
import { readSecretFile, type User } from "../session/users.ts";
import type { SessionOptions } from "../session/client.ts";
import { type Invocation, stringOption } from "./command.ts";

/** Reads a token from `path` (see `readSecretFile`), refusing an empty one. */
export async function readTokenFile(path: string): Promise<string> {
  const token = new TextDecoder().decode(await readSecretFile(path));
  if (token === "") {
    throw new IpcError("EAUTH", `Cannot use the token file "${path}" as it is empty`, {
      op: "read",
      path,
    });
  }
  return token;
}

/** A users file's text (JSON: a list of users) as users; the server checks each. */
export function parseUsers(text: string, path: string): User[] {
  let users: unknown;
  try {
    users = JSON.parse(text);
  } catch (err) {
    throw new IpcError(
      "EINVAL",
      `Cannot read the users file "${path}" as it is not JSON: ${(err as Error).message}`,
      { op: "read", path },
    );
  }
  if (!Array.isArray(users)) {
    throw new IpcError(
      "EINVAL",
      `Cannot read the users file "${path}" as it is not a list of users: write [{ "name": …, "token": … }]`,
      { op: "read", path },
    );
  }
  return users as User[];
}

/** The PEM files and server name the `--tls-*` options name, read; undefined without any. */
export async function tlsFiles(
  rt: Runtime,
  invocation: Invocation,
): Promise<{ ca?: string; cert?: string; key?: string; serverName?: string } | undefined> {
  const read = async (name: string): Promise<string | undefined> => {
    const path = stringOption(invocation, `tls-${name}`);
    return path === undefined ? undefined : new TextDecoder().decode(await rt.fs.readFile(path));
  };
  const [ca, cert, key] = [await read("ca"), await read("cert"), await read("key")];
  const serverName = stringOption(invocation, "tls-server-name");
  const tls = {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    ...(serverName === undefined ? {} : { serverName }),
  };
  return Object.keys(tls).length === 0 ? undefined : tls;
}

/** The token, app id and TLS files a command line gives, as session options (no reconnect). */
export async function sessionOptions(
  rt: Runtime,
  invocation: Invocation,
): Promise<SessionOptions & { token?: string }> {
  const file = stringOption(invocation, "token-file");
  const app = stringOption(invocation, "app");
  const tls = await tlsFiles(rt, invocation);
  return {
    reconnect: false,
    ...(file === undefined ? {} : { token: await readTokenFile(file) }),
    ...(app === undefined ? {} : { app }),
    ...(tls === undefined ? {} : { tls }),
  };
}
