import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { acceptedOrRefused, fuzzText } from "./_helpers.ts";
import { type Address, formatAddress, IpcError, parseAddress } from "../mod.ts";

const valid: [string, Address][] = [
  ["unix:/run/app.sock", { transport: "unix", path: "/run/app.sock" }],
  ["unix:./rel.sock", { transport: "unix", path: "./rel.sock" }],
  ["unix:rel", { transport: "unix", path: "rel" }],
  ["unix:///abs/x", { transport: "unix", path: "/abs/x" }],
  ["/tmp/a", { transport: "unix", path: "/tmp/a" }],
  ["./x.sock", { transport: "unix", path: "./x.sock" }],
  ["x.sock", { transport: "unix", path: "x.sock" }],
  ["dir/with:colon", { transport: "unix", path: "dir/with:colon" }],
  ["/tmp/ünïcode.sock", { transport: "unix", path: "/tmp/ünïcode.sock" }],
  ["tcp://127.0.0.1:4222", { transport: "tcp", hostname: "127.0.0.1", port: 4222 }],
  ["tcp://localhost:0", { transport: "tcp", hostname: "localhost", port: 0 }],
  ["tcp://[::1]:65535", { transport: "tcp", hostname: "::1", port: 65535 }],
  ["tls://localhost:4433", { transport: "tls", hostname: "localhost", port: 4433 }],
  ["tls://[::1]:0", { transport: "tls", hostname: "::1", port: 0 }],
  ["tcp://[fe80::1%eth0]:80", { transport: "tcp", hostname: "fe80::1%eth0", port: 80 }],
  ["tcp://[::ffff:127.0.0.1]:80", { transport: "tcp", hostname: "::ffff:127.0.0.1", port: 80 }],
  ["tcp://[2001:db8:0:0:0:0:2:1]:1", {
    transport: "tcp",
    hostname: "2001:db8:0:0:0:0:2:1",
    port: 1,
  }],
  ["localhost:8080", { transport: "tcp", hostname: "localhost", port: 8080 }],
  ["10.0.0.255:1", { transport: "tcp", hostname: "10.0.0.255", port: 1 }],
  ["[::]:9", { transport: "tcp", hostname: "::", port: 9 }],
  ["my-host.example:443", { transport: "tcp", hostname: "my-host.example", port: 443 }],
];

const invalid: [string, RegExp][] = [
  ["", /is empty/],
  ["unix:", /path is empty/],
  ["unix://relative", /absolute path/],
  ["unix:/a\0b", /NUL byte/],
  [`/tmp/${"x".repeat(103)}`, /longer than the OS allows \(107 bytes\): current length is 108/],
  // 57 characters, but 109 bytes: the limit is in bytes.
  [`unix:/tmp/${"é".repeat(52)}`, /current length is 109/],
  ["http://x:80", /scheme "http" is not "unix", "tcp" or "tls"/],
  ["ws://127.0.0.1:80", /scheme "ws"/],
  ["tcp:127.0.0.1:80", /lacks "\/\/"/],
  ["tcp://127.0.0.1", /no port/],
  ["tcp://127.0.0.1:", /port is not a number from 0 to 65535: current value is ""/],
  ["tcp://127.0.0.1:65536", /current value is "65536"/],
  ["tcp://127.0.0.1:-1", /current value is "-1"/],
  ["tcp://127.0.0.1:8o", /current value is "8o"/],
  ["tcp://127.0.0.1:123456", /current value is "123456"/],
  ["localhost", /no port and is not a path/],
  ["256.0.0.1:80", /not an IPv4 address or a host name: current value is "256.0.0.1"/],
  ["1.2.3:80", /not an IPv4 address or a host name/],
  ["::1:80", /IPv6 host must be in brackets/],
  ["tcp://[::1:80", /lacks the closing "\]"/],
  ["tcp://[::1]80", /no ":PORT" after the IPv6 host/],
  ["tls:localhost:80", /lacks "\/\/" after "tls:"/],
  ["tls://localhost", /no port/],
  ["tls://[::1]:99999", /not a number from 0 to 65535/],
  ["https://x:1", /scheme "https" is not "unix", "tcp" or "tls"/],
  ["tcp://[1::2::3]:80", /not an IPv6 address/],
  ["tcp://[12345::]:80", /not an IPv6 address/],
  ["tcp://[1:2:3:4:5:6:7:8:9]:80", /not an IPv6 address/],
  ["tcp://bad_host:80", /not an IPv4 address or a host name/],
  ["tcp://-lead.example:80", /not an IPv4 address or a host name/],
  ["tcp://:80", /not an IPv4 address or a host name: current value is ""/],
  ["ftp:foo", /port is not a number/],
];

describe("parseAddress()", () => {
  for (const [input, expected] of valid) {
    test(`parseAddress() reads ${JSON.stringify(input)}`, () => {
      assert.deepEqual(parseAddress(input), expected);
    });
  }

  for (const [input, message] of invalid) {
    test(`parseAddress() refuses ${JSON.stringify(input).slice(0, 40)} with EADDRINVALID`, () => {
      assert.throws(() => parseAddress(input), (err: unknown) => {
        assert.ok(err instanceof IpcError);
        assert.equal(err.code, "EADDRINVALID");
        assert.equal(err.address, input);
        assert.match(err.message, message);
        assert.ok(err.message.includes(JSON.stringify(input)), "the message names the value");
        return true;
      });
    });
  }

  test("parseAddress() accepts a path of exactly the limit and honours maxUnixPathBytes", () => {
    const atLimit = `/${"a".repeat(106)}`;
    assert.equal(parseAddress(atLimit).transport, "unix");
    assert.throws(() => parseAddress("/tmp/abc.sock", { maxUnixPathBytes: 10 }), {
      code: "EADDRINVALID",
    });
  });

  test("parseAddress() checks address objects as strictly as strings", () => {
    assert.deepEqual(parseAddress({ transport: "tcp", hostname: "::1", port: 1 }), {
      transport: "tcp",
      hostname: "::1",
      port: 1,
    });
    assert.throws(() => parseAddress({ transport: "tcp", hostname: "x y", port: 1 }), {
      code: "EADDRINVALID",
    });
    assert.throws(() => parseAddress({ transport: "tcp", hostname: "a", port: 1.5 }), {
      code: "EADDRINVALID",
    });
    assert.throws(() => parseAddress({ transport: "unix", path: "" }), { code: "EADDRINVALID" });
    assert.throws(
      () => parseAddress({ transport: "udp" } as unknown as Address),
      /transport is not "unix", "tcp" or "tls"/,
    );
  });

  test("parseAddress() throws TypeError for a non-string", () => {
    assert.throws(() => parseAddress(42 as unknown as string), TypeError);
  });
});

describe("parseAddress() on random input", () => {
  test("random strings: an address that formats and parses back, or EADDRINVALID", () => {
    const input = fuzzText([
      "unix:",
      "tcp://",
      "/",
      "./",
      ".sock",
      ":",
      "[",
      "]",
      "::1",
      "127.0.0.1",
      "localhost",
      "80",
      "65536",
      "0",
      "a",
      "é",
      " ",
      "\u0000",
      "%",
      "@",
    ], 40);
    fc.assert(
      fc.property(input, (text) => {
        const parsed = acceptedOrRefused("EADDRINVALID", text, () => parseAddress(text));
        if (parsed === undefined) return;
        assert.deepEqual(parseAddress(formatAddress(parsed.value)), parsed.value, text);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("formatAddress()", () => {
  test("formatAddress() output parses back to the same address", () => {
    for (const [, address] of valid) {
      assert.deepEqual(parseAddress(formatAddress(address)), address);
    }
  });
});
