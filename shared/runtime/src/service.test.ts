import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import { startGrpcServer } from "./grpc/server.js";
import { createLogger } from "./logging.js";
import { callError, complete, inferenceClient } from "./testdata/clients.js";
import { testInferenceSpec } from "./testdata/inference.js";

const FIXTURE = fileURLToPath(new URL("./testdata/service-main.ts", import.meta.url));

interface Fixture {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exit: Promise<number | null>;
}

function spawnFixture(env: Record<string, string>): Fixture {
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", FIXTURE], {
    env: { ...process.env, SPECLOOP_SERVER__HOST: "127.0.0.1", SPECLOOP_SERVER__GRPC_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout?.setEncoding("utf8").on("data", (s: string) => stdout.push(...s.split("\n").filter(Boolean)));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => stderr.push(...s.split("\n").filter(Boolean)));
  const exit = once(child, "exit").then(([code]) => code as number | null);
  return { child, stdout, stderr, exit };
}

/** The JSON log lines whose msg is `msg`. */
function logged(f: Fixture, msg: string): Array<Record<string, unknown>> {
  return f.stdout.flatMap((line) => {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      return entry.msg === msg ? [entry] : [];
    } catch {
      return [];
    }
  });
}

async function servingPort(f: Fixture): Promise<number> {
  for (let i = 0; i < 300; i++) {
    const [entry] = logged(f, "fixture serving");
    if (entry) return entry.grpcPort as number;
    if (f.child.exitCode !== null) break;
    await sleep(50);
  }
  throw new Error(`fixture did not start:\n${f.stdout.join("\n")}\n${f.stderr.join("\n")}`);
}

describe("service", () => {
  test("service - SIGTERM drains an in-flight call, refuses new ones and exits 0", async () => {
    const f = spawnFixture({ SPECLOOP_SERVER__SHUTDOWN_GRACE_MS: "10000" });
    try {
      const port = await servingPort(f);
      const client = inferenceClient(port);
      try {
        const slow = complete(client, { prompt: "sleep:1500" });
        await sleep(400);
        f.child.kill("SIGTERM");
        await sleep(200);
        const refused = await callError(complete(client, { prompt: "hello" }));
        assert.equal(refused.code, status.UNAVAILABLE);
        assert.equal((await slow).text, "slept");
      } finally {
        client.close();
      }
      assert.equal(await f.exit, 0);
      const [stopped] = logged(f, "gRPC server stopped");
      assert.equal(stopped?.reason, "SIGTERM");
      assert.equal(stopped?.drained, 1);
      assert.equal(stopped?.forced, 0);
      assert.equal(logged(f, "fixture closed its dependencies").length, 1);
    } finally {
      f.child.kill("SIGKILL");
    }
  });

  test("service - a call longer than the grace period is cut off and the process exits promptly", async () => {
    const f = spawnFixture({ SPECLOOP_SERVER__SHUTDOWN_GRACE_MS: "300" });
    try {
      const port = await servingPort(f);
      const client = inferenceClient(port);
      try {
        const stubborn = callError(complete(client, { prompt: "sleep:30000" }));
        await sleep(400);
        const t0 = Date.now();
        f.child.kill("SIGTERM");
        assert.equal((await stubborn).code, status.UNAVAILABLE);
        assert.equal(await f.exit, 0);
        const elapsed = Date.now() - t0;
        assert.ok(elapsed < 3_000, `exit took ${elapsed} ms`);
      } finally {
        client.close();
      }
      const [stopped] = logged(f, "gRPC server stopped");
      assert.equal(stopped?.forced, 1);
      assert.equal(stopped?.drained, 0);
    } finally {
      f.child.kill("SIGKILL");
    }
  });

  test("service - bad config prints one line naming the env var and exits 2", async () => {
    const f = spawnFixture({ SPECLOOP_SERVER__GRPC_PORT: "not-a-port" });
    assert.equal(await f.exit, 2);
    assert.equal(f.stderr.length, 1, f.stderr.join("\n"));
    assert.match(
      f.stderr[0]!,
      /^fixture: cannot start: config SPECLOOP_SERVER__GRPC_PORT: expected a number/,
    );
  });

  test("service - a port in use prints one line and exits 1", async () => {
    const taken = await startGrpcServer({
      host: "127.0.0.1",
      port: 0,
      services: [testInferenceSpec()],
      logger: createLogger("test", "silent"),
    });
    try {
      const f = spawnFixture({ SPECLOOP_SERVER__GRPC_PORT: String(taken.port) });
      assert.equal(await f.exit, 1);
      assert.equal(f.stderr.length, 1, f.stderr.join("\n"));
      assert.match(
        f.stderr[0]!,
        new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken.port}: address already in use`),
      );
    } finally {
      await taken.shutdown("test end");
    }
  });

  test("service - an unreachable dependency prints one line and exits 1", async () => {
    const f = spawnFixture({ FIXTURE_FAIL_START: "1" });
    assert.equal(await f.exit, 1);
    assert.deepEqual(f.stderr, [
      "fixture: cannot start: cannot connect to NATS at nats://127.0.0.1:1: connection refused",
    ]);
  });
});
