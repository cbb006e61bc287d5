import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
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

test("cli - --help lists the commands", async () => {
  const { code, stdout } = await runCli(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /Usage: specloop/);
  assert.match(stdout, /health/);
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

test("cli health - an unreachable server exits 1 with a message naming it", async () => {
  const { code, stderr } = await runCli(["health", "--server", "127.0.0.1:1", "--timeout", "2000"]);
  assert.equal(code, 1);
  assert.match(stderr, /127\.0\.0\.1:1: (unreachable|no answer)/);
});

test("cli health - a bad --timeout is refused with a usage error", async () => {
  const { code, stderr } = await runCli(["health", "--server", address, "--timeout", "soon"]);
  assert.notEqual(code, 0);
  assert.match(stderr, /positive integer/);
});
