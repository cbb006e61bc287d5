import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { test } from "node:test";
import { freePort, startNatsServer, tempDir } from "./index.js";

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

test("testkit nats-server - starts on a free port, restarts with its store, stop removes it", async (t) => {
  const server = await startNatsServer();
  t.after(() => server.stop());
  assert.match(server.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(server.port, 4222);
  assert.ok(await accepts(server.port));
  assert.ok(existsSync(server.storeDir), "JetStream store dir exists once the server is up");

  await server.kill();
  assert.equal(await accepts(server.port), false);
  await server.restart();
  assert.ok(await accepts(server.port));
  assert.ok(existsSync(server.storeDir));

  await server.stop();
  assert.equal(await accepts(server.port), false);
  assert.equal(existsSync(server.storeDir), false);
});

test("testkit nats-server - a taken port fails with the server's log", async (t) => {
  const first = await startNatsServer();
  t.after(() => first.stop());
  await assert.rejects(startNatsServer({ port: first.port, startTimeoutMs: 3000 }), /nats-server on port/);
});

test("testkit freePort and tempDir - give a bindable port and a disposable directory", async () => {
  const port = await freePort();
  assert.ok(port > 0 && port < 65536);
  const dir = tempDir("specloop-testkit");
  assert.ok(existsSync(dir.path));
  dir.dispose();
  dir.dispose();
  assert.equal(existsSync(dir.path), false);
});
