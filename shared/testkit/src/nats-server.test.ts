import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
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

/** What the server answers a client that connects with `connect` (a CONNECT line's JSON), then pings. */
function handshake(
  port: number,
  connect_: Record<string, unknown>,
): Promise<{ info: string; reply: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let buffered = "";
    let info = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\r\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith("INFO ")) {
          info = line;
          socket.write(`CONNECT ${JSON.stringify({ verbose: false, ...connect_ })}\r\nPING\r\n`);
        } else if (line === "PONG" || line.startsWith("-ERR")) {
          socket.destroy();
          resolve({ info, reply: line });
        }
      }
    });
    socket.once("error", reject);
  });
}

test("testkit nats-server - starts with auth on from an authorization block or a config file", async (t) => {
  const server = await startNatsServer({
    config: 'authorization { users = [ { user: "svc", password: "s3cret" } ] }',
  });
  t.after(() => server.stop());
  const anonymous = await handshake(server.port, {});
  assert.match(anonymous.info, /"auth_required":true/);
  assert.match(anonymous.reply, /Authorization Violation/);
  assert.equal((await handshake(server.port, { user: "svc", pass: "s3cret" })).reply, "PONG");

  // A whole config file whose include resolves against its own directory (what npm start writes).
  const dir = tempDir("specloop-testkit-conf");
  t.after(() => dir.dispose());
  writeFileSync(
    join(dir.path, "auth.conf"),
    'authorization { users = [ { user: "op", password: "pw" } ] }\n',
  );
  writeFileSync(join(dir.path, "nats.conf"), 'include "auth.conf"\n');
  const fromFile = await startNatsServer({ configFile: join(dir.path, "nats.conf") });
  t.after(() => fromFile.stop());
  assert.match((await handshake(fromFile.port, {})).reply, /Authorization Violation/);
  assert.equal((await handshake(fromFile.port, { user: "op", pass: "pw" })).reply, "PONG");
  await fromFile.restart();
  assert.equal((await handshake(fromFile.port, { user: "op", pass: "pw" })).reply, "PONG");
});
