import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { EXIT } from "./exit-codes.js";
import { runCli } from "./run-cli.testing.js";

let server: Server;
let address = "";
const health = new HealthImplementation({ "": "SERVING", "specloop.v1.Inference": "NOT_SERVING" });

before(async () => {
  server = new Server();
  health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  address = `127.0.0.1:${port}`;
});

after(() => server.forceShutdown());

test("cli - --help lists the commands and the exit codes", async () => {
  const { code, stdout } = await runCli(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /Usage: specloop/);
  for (const command of [
    "status",
    "versions",
    "trainer",
    "traces",
    "generate",
    "health",
    "model",
    "verdicts",
  ]) {
    assert.match(stdout, new RegExp(`\\n  ${command} `), command);
  }
  assert.match(
    stdout,
    /Exit codes: 0 ok, 1 failed .* 2 usage, 3 unreachable, 4 auth, 5 not found, 6 not possible/,
  );
  const version = await runCli(["--version"]);
  assert.deepEqual([version.code, version.stdout.trim()], [0, "0.1.0"]);
});

test("cli - an unknown command or option is a usage error (exit 2) with the help", async () => {
  const unknown = await runCli(["versoins", "list"]);
  assert.equal(unknown.code, EXIT.usage);
  assert.match(unknown.stderr, /unknown command 'versoins'/);
  const option = await runCli(["versions", "list", "--colour"]);
  assert.equal(option.code, EXIT.usage);
  assert.match(option.stderr, /unknown option '--colour'/);
  const status = await runCli(["versions", "list", "--status", "alive"]);
  assert.equal(status.code, EXIT.usage);
  assert.match(status.stderr, /"alive" is not one of candidate, canary, live, retired, rejected/);
  const none = await runCli([]);
  assert.equal(none.code, EXIT.usage);
  assert.match(none.stderr, /Usage: specloop/);
});

test("cli health - a serving server exits 0 and says SERVING", async () => {
  const { code, stdout } = await runCli(["health", "--server", address, "--json"]);
  assert.equal(code, 0);
  assert.deepEqual(JSON.parse(stdout), { server: address, service: "", status: "SERVING" });
});

test("cli health - a service that is not serving exits 1", async () => {
  const { code, stdout } = await runCli([
    "health",
    "--server",
    address,
    "--service",
    "specloop.v1.Inference",
  ]);
  assert.equal(code, 1);
  assert.match(stdout, /NOT_SERVING/);
});

test("cli health - an unreachable server exits 3 with a message naming it", async () => {
  const { code, stderr } = await runCli(["health", "--server", "127.0.0.1:1", "--timeout", "2000"]);
  assert.equal(code, EXIT.unavailable);
  assert.match(stderr, /127\.0\.0\.1:1: (unreachable|no answer)/);
});

test("cli health - a bad --timeout is refused with a usage error", async () => {
  const { code, stderr } = await runCli(["health", "--server", address, "--timeout", "soon"]);
  assert.equal(code, EXIT.usage);
  assert.match(stderr, /positive integer/);
});
