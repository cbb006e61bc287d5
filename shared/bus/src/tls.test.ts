// TLS where configured: a real nats-server with a certificate signed by a test CA (made with the openssl
// command line, which Debian ships) and auth on. A client with the CA file (bus.tls.caFile) and its
// credential connects and publishes; one without TLS, or trusting another CA, is refused.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { connectBus } from "./connection.js";
import { writeBusCredentials } from "./credentials.js";
import { BusUnavailableError } from "./errors.js";
import { provisionBus } from "./provision.js";
import { sampleTrace, testBusConfig, testLogger } from "./test-support.js";
import { publishTrace } from "./traces.js";

let dir: TempDir;
let server: NatsServer;
let credentialsFile: string;
let adminFile: string;

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir.path, stdio: "pipe" });
}

before(async () => {
  dir = tempDir("specloop-tls");
  const p = (f: string) => join(dir.path, f);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  for (const ca of ["ca", "other-ca"]) {
    openssl(
      "req",
      "-x509",
      ...ec,
      "-days",
      "1",
      "-subj",
      `/CN=${ca}`,
      "-keyout",
      p(`${ca}.key`),
      "-out",
      p(`${ca}.pem`),
    );
  }
  openssl("req", ...ec, "-subj", "/CN=nats", "-keyout", p("server.key"), "-out", p("server.csr"));
  writeFileSync(p("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    "x509",
    "-req",
    "-in",
    p("server.csr"),
    "-CA",
    p("ca.pem"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    p("san.ext"),
    "-out",
    p("server.pem"),
  );
  const credentials = writeBusCredentials({ dir: p("credentials") });
  credentialsFile = credentials.credentialsFile("node");
  adminFile = credentials.credentialsFile("admin");
  server = await startNatsServer({
    config: `${credentials.serverConfig}\ntls { cert_file: ${JSON.stringify(p("server.pem"))}, key_file: ${JSON.stringify(p("server.key"))} }\n`,
  });
});

after(async () => {
  await server?.stop();
  dir?.dispose();
});

const tlsConfig = (caFile: string, file = credentialsFile) =>
  testBusConfig(server.url, { credentialsFile: file, tls: { caFile: join(dir.path, caFile) } });

test("bus tls - a client trusting the server's CA connects with its credential and publishes", async () => {
  const admin = await connectBus(tlsConfig("ca.pem", adminFile), testLogger);
  await provisionBus(admin, tlsConfig("ca.pem", adminFile), testLogger);
  await admin.close();
  const bus = await connectBus(tlsConfig("ca.pem"), testLogger);
  try {
    const ack = await publishTrace(bus.js, sampleTrace("over-tls", "m-tls"));
    assert.ok(ack.seq > 0);
  } finally {
    await bus.close();
  }
});

test("bus tls - without TLS, or trusting another CA, the connection is refused", async () => {
  await assert.rejects(
    connectBus(testBusConfig(server.url, { credentialsFile }), testLogger),
    BusUnavailableError,
  );
  await assert.rejects(connectBus(tlsConfig("other-ca.pem"), testLogger), BusUnavailableError);
});
