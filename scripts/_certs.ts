/**
 * Certificates for the tests and the benchmarks, made with openssl (Debian's; `.ci/run` installs
 * it) into a temp directory removed at exit: a CA and a server certificate for `localhost` and
 * 127.0.0.1, two client certificates (alice, bob), an expired one signed by the same CA, and one
 * from another CA. Files `NAME.pem` and `NAME.key` (the CAs: `ca.pem`, `ca2.pem`).
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { onPath } from "./_system.ts";

/** A certificate and its key, PEM. */
export interface KeyPair {
  cert: string;
  key: string;
}

/** Everything the TLS tests use. */
export interface TestCerts {
  /** The trusted CA's certificate, and another CA's. */
  ca: string;
  otherCa: string;
  server: KeyPair;
  alice: KeyPair;
  bob: KeyPair;
  /** Signed by the trusted CA, valid only in 2020; for localhost too (as a server or client). */
  expired: KeyPair;
  /** Signed by the other CA; for localhost too. */
  stranger: KeyPair;
  /** The directory the files are in (removed at exit). */
  dir: string;
}

const EC = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
const LOCAL = "subjectAltName=DNS:localhost,IP:127.0.0.1";

/** Makes a new set of certificates. */
export function makeCerts(): TestCerts {
  const dir = mkdtempSync(`${tmpdir()}/dk-certs-`);
  // Each command line is written as one string: no argument of these holds a space.
  const openssl = (line: string): void => {
    execFileSync("openssl", line.split(/\s+/), { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  };
  const read = (name: string): string => readFileSync(`${dir}/${name}`, "utf8");
  for (const ca of ["ca", "ca2"]) {
    openssl(`req -x509 ${EC} -keyout ${ca}.key -out ${ca}.pem -days 30 -subj /CN=test-${ca}`);
  }
  // `openssl ca` sets any validity window (x509 -req cannot start one in the past).
  writeFileSync(`${dir}/index.txt`, "");
  writeFileSync(`${dir}/serial`, "1000\n");
  writeFileSync(
    `${dir}/ca.cnf`,
    "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n" +
      "default_md=sha256\npolicy=p\ncopy_extensions=copy\nunique_subject=no\n[p]\ncommonName=supplied\n",
  );
  const sign = (name: string, cn: string, san: string, ca: string, dates: string): KeyPair => {
    openssl(`req ${EC} -keyout ${name}.key -out ${name}.csr -subj /CN=${cn} -addext ${san}`);
    openssl(
      `ca -batch -notext -config ca.cnf -cert ${ca}.pem -keyfile ${ca}.key ` +
        `-in ${name}.csr -out ${name}.pem ${dates}`,
    );
    return { cert: read(`${name}.pem`), key: read(`${name}.key`) };
  };
  const current = "-days 30";
  const certs: TestCerts = {
    ca: read("ca.pem"),
    otherCa: read("ca2.pem"),
    server: sign("server", "localhost", LOCAL, "ca", current),
    alice: sign("alice", "alice", "subjectAltName=email:alice@example.com", "ca", current),
    bob: sign("bob", "bob", "subjectAltName=DNS:bob.example", "ca", current),
    expired: sign(
      "expired",
      "expired",
      LOCAL,
      "ca",
      "-startdate 20200101000000Z -enddate 20200102000000Z",
    ),
    stranger: sign("stranger", "stranger", LOCAL, "ca2", current),
    dir,
  };
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return certs;
}

let made: TestCerts | undefined;

/**
 * Why the tests that need certificates are skipped here (openssl is missing: `npm test` installs
 * nothing, `.ci/run` does), or false; for the `skip` option of `test()`.
 */
export const noOpenssl: string | false = onPath("openssl")
  ? false
  : "openssl is not installed (.ci/run installs it)";

/**
 * The test certificates, made on first use; where openssl is missing, an empty stand-in, for a
 * test module's top level: the tests that read it are skipped there (`noOpenssl`).
 */
export function availableCerts(): TestCerts {
  return noOpenssl ? ({} as TestCerts) : testCerts();
}

/** The test certificates of this process, made on first use. */
export function testCerts(): TestCerts {
  return made ??= makeCerts();
}
