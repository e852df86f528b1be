import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type Conn,
  connect,
  frameChannel,
  framed,
  type FramedConn,
  IpcError,
  lines,
  listen,
  type Listener,
} from "../../mod.ts";
import {
  acceptedWhileStalled,
  concat,
  encodeFramesRaw,
  readAll,
  rejectsWith,
  rt,
  RUNTIMES,
  seeded,
  seededFrames,
  skipWithout,
  spawnFixture,
  tempDir,
  until,
} from "../_helpers.ts";

const T = { timeout: 60_000 };

/** A listener in a fresh temp dir and a connected pair of raw connections over it. */
async function pair(transport: "unix" | "tcp" = "unix"): Promise<
  { client: Conn; server: Conn; listener: Listener } & AsyncDisposable
> {
  const dir = await tempDir();
  const listener = await listen(transport === "unix" ? `${dir.path}/f.sock` : "tcp://127.0.0.1:0");
  const [client, server] = await Promise.all([connect(listener.addr), listener.accept()]);
  return {
    client,
    server,
    listener,
    async [Symbol.asyncDispose](): Promise<void> {
      client.close();
      server.close();
      await listener.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/** Writes `frames` in bursts of up to `burst` writes, awaiting `ready` between bursts. */
async function writeFrames<T>(
  writable: WritableStream<T>,
  frames: readonly T[],
  burst = 50,
): Promise<void> {
  const writer = writable.getWriter();
  for (let i = 0; i < frames.length; i += burst) {
    await Promise.all(frames.slice(i, i + burst).map((f) => writer.write(f)));
  }
  await writer.close();
}

const utf8 = new TextEncoder();

/** Writes raw bytes on a connection, then half-closes it. */
async function sendRaw(conn: Conn, ...chunks: Uint8Array[]): Promise<void> {
  const writer = conn.writable.getWriter();
  for (const chunk of chunks) await writer.write(chunk);
  await writer.close();
}

/** Why each line client's test is skipped here, or false. */
const LINE_CLIENTS_MISSING = {
  socat: await skipWithout("socat"),
  nc: await skipWithout("nc"),
};

describe("framed()", () => {
  for (const transport of ["unix", "tcp"] as const) {
    test(`framed() over ${transport} echoes 3,000 frames of mixed sizes exactly`, T, async () => {
      await using p = await pair(transport);
      const server = framed(p.server);
      server.readable.pipeTo(server.writable);
      const client = framed(p.client);
      const frames = seededFrames(3000, 7);
      const [, back] = await Promise.all([
        writeFrames(client.writable, frames),
        Array.fromAsync(client.readable),
      ]);
      assert.equal(back.length, frames.length);
      for (let i = 0; i < frames.length; i++) assert.deepEqual(back[i], frames[i], `frame ${i}`);
    });
  }

  test("framed() sends a burst of small frames in few socket writes", T, async () => {
    await using p = await pair();
    const client = framed(p.client);
    const frames = Array.from({ length: 1000 }, (_, i) => new Uint8Array(60).fill(i));
    // Read the raw bytes on the other side: they are exactly the frames, framed.
    const [, raw] = await Promise.all([
      writeFrames(client.writable, frames, 1000),
      readAll(p.server.readable),
    ]);
    assert.deepEqual(raw, encodeFramesRaw(frames));
  });

  test("framed() carries frames up to maxFrameSize and a zero-length frame", T, async () => {
    await using p = await pair();
    const max = 4 << 20;
    const server = framed(p.server, { maxFrameSize: max });
    server.readable.pipeTo(server.writable);
    const client = framed(p.client, { maxFrameSize: max });
    const frames = [new Uint8Array(max).fill(3), new Uint8Array(0), new Uint8Array(70_000).fill(4)];
    const [, back] = await Promise.all([
      writeFrames(client.writable, frames),
      Array.fromAsync(client.readable),
    ]);
    assert.deepEqual(back, frames);
  });

  test(
    "framed() closes the connection on an oversize length and errors both streams",
    T,
    async () => {
      await using p = await pair();
      const server = framed(p.server, { maxFrameSize: 1000 });
      const reading = Array.fromAsync(server.readable);
      void sendRaw(
        p.client,
        encodeFramesRaw([new Uint8Array(10)]),
        new Uint8Array([0xff, 0xff, 0xff, 0xff]),
      );
      const err = await rejectsWith(
        reading,
        "EFRAMETOOLARGE",
        /^Cannot decode frame as its length exceeds maxFrameSize \(1000\): current value is 4294967295 \(at stream offset 14\)$/,
      );
      await rejectsWith(server.writable.getWriter().write(new Uint8Array(1)), "EFRAMETOOLARGE");
      // The peer sees the connection end.
      assert.equal((await readAll(p.client.readable)).byteLength, 0);
      await server.closed;
      assert.equal(err.op, "decode");
    },
  );

  test("framed() reports a peer that ends inside a frame with ETRUNCATED", T, async () => {
    await using p = await pair();
    const server = framed(p.server);
    const got: Uint8Array[] = [];
    const reading = (async () => {
      for await (const frame of server.readable) got.push(frame);
    })();
    const wire = encodeFramesRaw([new Uint8Array([1, 2]), new Uint8Array(4096)]);
    void sendRaw(p.client, wire.subarray(0, 6 + 4 + 10));
    await rejectsWith(
      reading,
      "ETRUNCATED",
      /^Cannot decode frame as the stream ended after 10 of 4096 payload bytes \(at stream offset 6\)$/,
    );
    assert.deepEqual(got, [new Uint8Array([1, 2])]);
    await server.closed;
  });

  test(
    "framed() refuses an oversize write before sending a byte, delivers what came before, keeps reading",
    T,
    async () => {
      await using p = await pair();
      const client = framed(p.client, { maxFrameSize: 1000 });
      const server = framed(p.server, { maxFrameSize: 1000 });
      const writer = client.writable.getWriter();
      const accepted = [
        writer.write(new Uint8Array(10).fill(1)),
        writer.write(new Uint8Array(1000).fill(2)),
      ];
      await rejectsWith(
        writer.write(new Uint8Array(1001)),
        "EFRAMETOOLARGE",
        /^Cannot encode frame as its length exceeds maxFrameSize \(1000\): current value is 1001$/,
      );
      await Promise.all(accepted);
      const serverReader = server.readable.getReader();
      assert.deepEqual((await serverReader.read()).value, new Uint8Array(10).fill(1));
      assert.deepEqual((await serverReader.read()).value, new Uint8Array(1000).fill(2));
      // The connection is still open both ways: the server's frames still reach the client.
      const serverWriter = server.writable.getWriter();
      await serverWriter.write(new Uint8Array([9]));
      await serverWriter.close();
      assert.deepEqual(await Array.fromAsync(client.readable), [new Uint8Array([9])]);
      await rejectsWith(writer.write(new Uint8Array(1)), "EFRAMETOOLARGE");
      client.close();
      assert.equal((await serverReader.read()).done, true);
    },
  );

  test(
    "framed() close() ends reading quietly, rejects writes with ECLOSED and ends the peer",
    T,
    async () => {
      await using p = await pair();
      const client = framed(p.client);
      const reader = client.readable.getReader();
      // A frame and half of the next arrive, then the client closes: no ETRUNCATED for a close
      // of our own.
      const raw = p.server.writable.getWriter();
      await raw.write(new Uint8Array([0, 0, 0, 1, 7, 0, 0, 0, 9, 1]));
      assert.deepEqual((await reader.read()).value, new Uint8Array([7]));
      const pending = reader.read();
      client.close();
      assert.equal((await pending).done, true);
      await rejectsWith(client.writable.getWriter().write(new Uint8Array(1)), "ECLOSED");
      await client.closed;
      const end = await readAll(p.server.readable).then(
        (b) => b.byteLength,
        (e: IpcError) => e.code,
      );
      assert.ok(end === 0 || end === "ECONNRESET", `the server saw ${end}`);
    },
  );

  test(
    "framed() keeps writing after its readable is cancelled, then closes with the writable",
    T,
    async () => {
      await using p = await pair();
      const client = framed(p.client);
      const writer = client.writable.getWriter();
      await client.readable.cancel();
      const frames = [new Uint8Array([1]), new Uint8Array([2])];
      for (const frame of frames) await writer.write(frame);
      await writer.close();
      await client.closed;
      assert.deepEqual(await Array.fromAsync(framed(p.server).readable), frames);
    },
  );

  test("framed() surfaces a reset connection on both streams", T, async () => {
    await using p = await pair();
    const server = framed(p.server);
    const reading = Array.fromAsync(server.readable);
    const writer = p.client.writable.getWriter();
    await writer.write(new Uint8Array([0, 0, 0, 100, 1, 2, 3]));
    p.client.close();
    const err = await reading.then(() => undefined, (e: unknown) => e);
    // A peer that closes mid-frame is either a reset or a truncated stream, by platform.
    assert.ok(
      err instanceof IpcError && ["ECONNRESET", "ETRUNCATED"].includes(err.code),
      String(err),
    );
    await assert.rejects(server.writable.getWriter().write(new Uint8Array(1)));
  });

  test(
    "framed() keeps what a writer gets accepted bounded while the reader reads nothing",
    T,
    async () => {
      await using p = await pair();
      const client = framed(p.client);
      const server = framed(p.server);
      const frame = new Uint8Array(4096).fill(5);
      const total = 8192;
      const { accepted, writing } = await acceptedWhileStalled(client.writable, frame, total);
      const bytes = accepted * 4100;
      assert.ok(bytes <= 4 << 20, `accepted ${bytes} bytes with nobody reading`);
      let received = 0;
      for await (const f of server.readable) received += f.byteLength;
      await writing;
      assert.equal(received, total * 4096);
    },
  );

  test("framed() decodes frames written raw by child processes of every runtime", {
    timeout: 120_000,
  }, async () => {
    await using dir = await tempDir();
    await Promise.all(RUNTIMES.map(async (name, i) => {
      const seed = 11 + i;
      const path = `${dir.path}/${name}.sock`;
      await using listener = await listen(path);
      await using child = spawnFixture(name, "frame_writer.ts", [path, "2000", String(seed)]);
      const conn = framed(await listener.accept());
      const frames = await Array.fromAsync(conn.readable);
      conn.close();
      const expected = seededFrames(2000, seed);
      assert.equal(frames.length, expected.length, `${name}: frame count`);
      for (let j = 0; j < frames.length; j++) {
        assert.deepEqual(frames[j], expected[j], `${name}: frame ${j}`);
      }
      assert.equal(await child.line(), "done");
    }));
  });
});

describe("frameChannel()", () => {
  test("frameChannel() carries 5,000 frames of mixed sizes both ways, in order", T, async () => {
    await using p = await pair();
    const a = frameChannel(p.client);
    const b = frameChannel(p.server);
    const frames = seededFrames(5000, 3);
    const echo = (async () => {
      for (let batch; (batch = await b.read());) {
        for (const frame of batch) {
          const wait = b.send(frame);
          if (wait) await wait;
        }
      }
      await b.end();
    })();
    const sending = (async () => {
      for (const frame of frames) {
        const wait = a.send(frame);
        if (wait) await wait;
      }
      await a.end();
    })();
    const back: Uint8Array[] = [];
    for (let batch; (batch = await a.read());) back.push(...batch);
    await Promise.all([echo, sending]);
    assert.equal(back.length, frames.length);
    for (let i = 0; i < frames.length; i++) assert.deepEqual(back[i], frames[i], `frame ${i}`);
  });

  test(
    "frameChannel() refuses an oversize frame and stays usable; bad input fails read()",
    T,
    async () => {
      await using p = await pair();
      const a = frameChannel(p.client, { maxFrameSize: 100 });
      await rejectsWith(Promise.resolve(a.send(new Uint8Array(101))), "EFRAMETOOLARGE");
      await a.send(new Uint8Array([1]));
      await a.end();
      const raw = p.server.readable.getReader();
      assert.deepEqual((await raw.read()).value, new Uint8Array([0, 0, 0, 1, 1]));
      raw.releaseLock();
      // The other way: a frame, then a length over the limit.
      void sendRaw(p.server, encodeFramesRaw([new Uint8Array([7])]), new Uint8Array([0, 0, 1, 0]));
      assert.deepEqual(await a.read(), [new Uint8Array([7])]);
      await rejectsWith(a.read(), "EFRAMETOOLARGE", /current value is 256/);
      await a.closed;
    },
  );

  test("frameChannel() keeps every frame intact while later reads go on", T, async () => {
    // Frames come out as views of the memory they were read into: nothing may write there
    // again, however many reads follow and however the bytes are chunked.
    await using p = await pair();
    const random = seeded(11);
    const frames = Array.from(
      { length: 4000 },
      (_, i) => new Uint8Array(Math.floor(random() * 1500)).fill(i),
    );
    const bytes = encodeFramesRaw(frames);
    const sending = (async () => {
      const writer = p.server.writable.getWriter();
      for (let at = 0; at < bytes.length;) {
        const n = 1 + Math.floor(random() * 70_000);
        await writer.write(bytes.slice(at, at + n));
        at += n;
      }
      await writer.close();
    })();
    const c = frameChannel(p.client);
    const kept: Uint8Array[] = [];
    for (let batch; (batch = await c.read());) kept.push(...batch);
    await sending;
    assert.equal(kept.length, frames.length);
    for (let i = 0; i < frames.length; i++) assert.deepEqual(kept[i], frames[i], `frame ${i}`);
  });

  test("frameChannel() made late reads first what the connection had read already", T, async () => {
    // Node and Bun read ahead as soon as a connection opens, into the connection's stream; a
    // channel made later must deliver those bytes before its own reads, then the rest.
    await using p = await pair();
    const frames = Array.from({ length: 300 }, (_, i) => new Uint8Array(1000).fill(i));
    const sending = sendRaw(p.server, encodeFramesRaw(frames));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const c = frameChannel(p.client);
    const got: Uint8Array[] = [];
    for (let batch; (batch = await c.read());) got.push(...batch);
    await sending;
    assert.deepEqual(got, frames);
    assert.equal(await c.read(), undefined);
  });

  test(
    "frameChannel() drives any Conn, not only the library's own, through its streams",
    T,
    async () => {
      const [left, right] = memoryConns();
      const a = frameChannel(left);
      const b = frameChannel(right);
      assert.ok(left.readable.locked && left.writable.locked);
      const frames = seededFrames(500, 5);
      const echo = (async () => {
        for (let batch; (batch = await b.read());) for (const f of batch) await b.send(f);
        await b.end();
      })();
      // In-memory streams buffer almost nothing: send and read at once.
      const sending = (async () => {
        for (const f of frames) await a.send(f);
        await a.end();
      })();
      const back: Uint8Array[] = [];
      for (let batch; (batch = await a.read());) back.push(...batch);
      await Promise.all([sending, echo]);
      assert.deepEqual(back, frames);
    },
  );
  test("frameChannel() keeps batching a burst that waits for room", T, async () => {
    // A writer held back by backpressure has not stopped: once let through, its next frames
    // must join a full batch, not leave one by one as after a real pause.
    const sizes: number[] = [];
    const slow = new WritableStream<Uint8Array>({
      write: (chunk) =>
        new Promise((resolve) => {
          sizes.push(chunk.length);
          setTimeout(resolve, 2);
        }),
    });
    const [conn] = memoryConns();
    const c = frameChannel({ ...conn, writable: slow });
    for (let i = 0; i < 5000; i++) {
      const wait = c.send(new Uint8Array(100));
      if (wait) await wait;
    }
    await c.end();
    assert.equal(sizes.reduce((a, b) => a + b, 0), 5000 * 104);
    const middle = sizes.slice(1, -1);
    assert.ok(middle.length > 0 && middle.every((n) => n > 32 * 1024), `chunks: ${sizes}`);
  });
});

/** Two `Conn`s joined by in-memory streams, as a user might build one for tests. */
function memoryConns(): [Conn, Conn] {
  const there = new TransformStream<Uint8Array, Uint8Array>();
  const back = new TransformStream<Uint8Array, Uint8Array>();
  const end = (
    readable: ReadableStream<Uint8Array>,
    writable: WritableStream<Uint8Array>,
  ): Conn => {
    const addr = { transport: "unix", path: "" } as const;
    return {
      readable,
      writable,
      localAddr: addr,
      remoteAddr: addr,
      closed: Promise.resolve(),
      close(): void {
        readable.cancel().catch(() => {});
        writable.abort().catch(() => {});
      },
      [Symbol.asyncDispose](): Promise<void> {
        this.close();
        return this.closed;
      },
    };
  };
  return [end(back.readable, there.writable), end(there.readable, back.writable)];
}

describe("lines()", () => {
  /** A line server: answers each line with its upper case, and "BYE" on "quit". */
  function serveUpper(listener: Listener): Promise<void> {
    return (async () => {
      for await (const conn of listener) {
        const session: FramedConn<string> = lines(conn);
        void (async () => {
          const writer = session.writable.getWriter();
          try {
            for await (const line of session.readable) {
              if (line === "quit") {
                await writer.write("BYE");
                break;
              }
              await writer.write(line.toUpperCase());
            }
            await writer.close();
          } catch {
            session.close();
          }
        })();
      }
    })();
  }

  for (const client of ["socat", "nc"] as const) {
    const options = { ...T, skip: LINE_CLIENTS_MISSING[client] };
    test(`lines() serves ${client} as a client over a unix socket`, options, async () => {
      await using dir = await tempDir();
      const path = `${dir.path}/l.sock`;
      await using listener = await listen(path);
      void serveUpper(listener);
      const args = client === "socat" ? ["-", `UNIX-CONNECT:${path}`] : ["-U", "-N", path];
      const child = rt.spawn(client, args, { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
      const output = readAll(child.stdout!);
      const writer = child.stdin!.getWriter();
      await writer.write(utf8.encode("ping\r\nhéllo wörld\n\nquit\n"));
      await writer.close();
      assert.equal(new TextDecoder().decode(await output), "PING\nHÉLLO WÖRLD\n\nBYE\n");
      assert.equal((await child.status).code, 0);
    });
  }

  test(
    "lines() closes a peer that sends a line over maxLineLength and keeps serving others",
    T,
    async () => {
      await using dir = await tempDir();
      await using listener = await listen(`${dir.path}/l.sock`);
      const sessions: Promise<unknown>[] = [];
      void (async () => {
        for await (const conn of listener) {
          const session = lines(conn, { maxLineLength: 100 });
          const served = (async () => {
            const writer = session.writable.getWriter();
            for await (const line of session.readable) await writer.write(`got ${line.length}`);
            await writer.close();
          })();
          served.catch(() => {});
          sessions.push(served);
        }
      })();
      const bad = await connect(listener.addr);
      const badReply = readAll(bad.readable);
      void sendRaw(bad, utf8.encode(`short\n${"x".repeat(5000)}`)).catch(() => {});
      assert.equal(new TextDecoder().decode(await badReply), "got 5\n");
      await until(() => sessions.length === 1, 10_000, "the first session");
      await rejectsWith(sessions[0]!, "ELINETOOLONG", /maxLineLength \(100\)/);
      const good = lines(await connect(listener.addr));
      await writeFrames(good.writable, ["a", "bb"]);
      assert.deepEqual(await Array.fromAsync(good.readable), ["got 1", "got 2"]);
    },
  );

  test("lines() refuses bytes that are not UTF-8 with EPROTOCOL", T, async () => {
    await using p = await pair();
    const server = lines(p.server);
    void sendRaw(p.client, concat([utf8.encode("ok\n"), new Uint8Array([0xc3, 0x28, 0x0a])]));
    const got: string[] = [];
    await rejectsWith(
      (async () => {
        for await (const line of server.readable) got.push(line);
      })(),
      "EPROTOCOL",
      /not valid UTF-8 \(at stream offset 3\)/,
    );
    assert.deepEqual(got, ["ok"]);
  });

  test(
    "lines() refuses to write a line with a line break and keeps the connection",
    T,
    async () => {
      await using p = await pair();
      const client = lines(p.client);
      const writer = client.writable.getWriter();
      const first = writer.write("one");
      await rejectsWith(writer.write("two\nthree"), "EPROTOCOL", /contains a line break/);
      await first;
      const serverReader = lines(p.server).readable.getReader();
      assert.equal((await serverReader.read()).value, "one");
    },
  );
});
