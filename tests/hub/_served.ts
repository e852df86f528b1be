/** A hub served on a unix socket in a temporary directory, for one test. */
import { Hub, type HubServer, serveHub, type ServeHubOptions } from "../../src/hub/mod.ts";
import { tempDir } from "../_helpers.ts";

/** A new hub, served at `path` with `options`; disposing it closes both and removes the directory. */
export async function served(
  options: ServeHubOptions = {},
): Promise<{ hub: Hub; server: HubServer; path: string } & AsyncDisposable> {
  const dir = await tempDir();
  const hub = new Hub();
  const path = `${dir.path}/hub.sock`;
  const server = await serveHub(hub, path, options);
  return {
    hub,
    server,
    path,
    [Symbol.asyncDispose]: async () => {
      await server.close();
      hub.abort(); // what a test left waiting (a delayed message) is not its point
      await dir[Symbol.asyncDispose]();
    },
  };
}
