/**
 * The server's heartbeat: a connection whose reading waits for work (a handler, a full
 * subscription), or whose client ended its side while work still runs, hears from the server
 * every {@linkcode HEARTBEAT_MS}. The client takes it as a sign of life (its own PINGs wait unread
 * behind that work), and the write is how the server learns that a client is gone: writing to a
 * closed socket fails, and the connection's handlers are aborted at once instead of running on
 * for nobody.
 *
 * @module
 */

import { refTimer } from "../runtime/platform.ts";

/** Milliseconds between the heartbeats a waiting connection sends. */
export const HEARTBEAT_MS = 500;

/** A connection that can beat: sends its heartbeat, unless the last one still waits. */
export interface Beating {
  beat(): void;
}

/** Every waiting connection of one server, on one timer that runs only while some wait. */
export class Heartbeats {
  /** Connections that wait, with when they began to. */
  readonly #waiting = new Map<Beating, number>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** `conn` waits from now on. */
  waiting(conn: Beating): void {
    if (this.#waiting.has(conn)) return;
    this.#waiting.set(conn, Date.now());
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#tick(), HEARTBEAT_MS);
    // A waiting connection keeps nothing alive by itself: its server does.
    refTimer(this.#timer, false);
  }

  /** `conn` no longer waits. */
  done(conn: Beating): void {
    this.#waiting.delete(conn);
  }

  #tick(): void {
    if (this.#waiting.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const due = Date.now() - HEARTBEAT_MS;
    for (const [conn, since] of this.#waiting) if (since <= due) conn.beat();
  }
}
