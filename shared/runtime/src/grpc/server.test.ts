import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import { GenerateRequest, InferenceService, SERVICE_NAMES } from "@specloop/proto";
import { CancelledError, DeadlineExceededError } from "../errors.js";
import { createLogger } from "../logging.js";
import {
  callError,
  complete,
  generate,
  healthCheck,
  inferenceClient,
  reflectionListServices,
} from "../testdata/clients.js";
import { testInference, testInferenceSpec } from "../testdata/inference.js";
import { type GrpcServerOptions, startGrpcServer } from "./server.js";

const logger = createLogger("test", "silent");

function start(options: Partial<GrpcServerOptions> = {}) {
  return startGrpcServer({ host: "127.0.0.1", port: 0, services: [testInferenceSpec()], logger, ...options });
}

describe("grpc server", () => {
  test("grpc server - health reports SERVING, then NOT_SERVING once shutdown begins", async () => {
    const server = await start({ shutdownGraceMs: 5_000 });
    const client = inferenceClient(server.port);
    try {
      assert.equal(await healthCheck(server.port), "SERVING");
      assert.equal(await healthCheck(server.port, SERVICE_NAMES.inference), "SERVING");
      server.setServing(SERVICE_NAMES.inference, false);
      assert.equal(await healthCheck(server.port, SERVICE_NAMES.inference), "NOT_SERVING");
      server.setServing(SERVICE_NAMES.inference, true);

      // Hold a call in flight so shutdown is draining while we ask.
      const slow = complete(client, { prompt: "sleep:600" });
      await sleep(100);
      const done = server.shutdown("test");
      assert.equal(await healthCheck(server.port), "NOT_SERVING");
      assert.equal(await healthCheck(server.port, SERVICE_NAMES.inference), "NOT_SERVING");
      assert.equal((await slow).text, "slept");
      const report = await done;
      assert.deepEqual([report.drained, report.forced], [1, 0]);
    } finally {
      client.close();
      await server.shutdown("test end");
    }
  });

  test("grpc server - setServing refuses a service the server does not have", async () => {
    const server = await start();
    try {
      assert.throws(() => server.setServing("specloop.v1.Nope", true), /unknown service "specloop.v1.Nope"/);
    } finally {
      await server.shutdown("test end");
    }
  });

  test("grpc server - reflection lists the specloop.v1 services and health", async () => {
    const server = await start();
    try {
      const services = await reflectionListServices(server.port);
      assert.ok(services.includes(SERVICE_NAMES.inference), `got ${services.join(", ")}`);
      assert.ok(services.includes("grpc.health.v1.Health"), `got ${services.join(", ")}`);
    } finally {
      await server.shutdown("test end");
    }
  });

  test("grpc server - unary and server-streaming handlers answer", async () => {
    const server = await start();
    const client = inferenceClient(server.port);
    try {
      assert.equal((await complete(client, { prompt: "hello" })).text, "hello");
      const chunks = await generate(client, { maxTokens: 3 });
      assert.deepEqual(
        chunks.map((c) => c.text),
        ["t0", "t1", "t2"],
      );
    } finally {
      client.close();
      await server.shutdown("test end");
    }
  });

  test("grpc server - a deadline aborts the handler's signal and the client gets DEADLINE_EXCEEDED", async () => {
    let observed: unknown;
    const server = await start({
      services: [testInferenceSpec({ aborted: (reason) => (observed = reason) })],
    });
    const client = inferenceClient(server.port);
    try {
      const t0 = Date.now();
      const err = await callError(
        complete(client, { prompt: "wait-signal" }, { deadline: Date.now() + 200 }),
      );
      const elapsed = Date.now() - t0;
      assert.equal(err.code, status.DEADLINE_EXCEEDED);
      assert.ok(elapsed < 1_000, `took ${elapsed} ms`);
      await sleep(50);
      assert.ok(observed instanceof DeadlineExceededError, `handler saw ${String(observed)}`);
      assert.equal(server.inFlight, 0);
    } finally {
      client.close();
      await server.shutdown("test end");
    }
  });

  test("grpc server - a cancelled stream aborts the handler's signal", async () => {
    let observed: unknown;
    const server = await start({
      services: [testInferenceSpec({ aborted: (reason) => (observed = reason) })],
    });
    const client = inferenceClient(server.port);
    try {
      const call = client.generate(GenerateRequest.fromPartial({ prompt: "50", maxTokens: 1_000 }));
      await new Promise<void>((resolve) => call.once("data", () => resolve()));
      call.cancel();
      await new Promise<void>((resolve) => call.on("error", () => resolve()));
      for (let i = 0; i < 20 && server.inFlight > 0; i++) await sleep(25);
      assert.equal(server.inFlight, 0);
      assert.ok(observed instanceof CancelledError, `handler saw ${String(observed)}`);
    } finally {
      client.close();
      await server.shutdown("test end");
    }
  });

  test("grpc server - shutdown refuses new calls with UNAVAILABLE while draining", async () => {
    const server = await start({ shutdownGraceMs: 5_000 });
    const client = inferenceClient(server.port);
    try {
      const slow = complete(client, { prompt: "sleep:500" });
      await sleep(100);
      const done = server.shutdown("test");
      const err = await callError(complete(client, { prompt: "hello" }));
      assert.equal(err.code, status.UNAVAILABLE);
      assert.match(err.details, /shutting down/);
      assert.equal((await slow).text, "slept");
      assert.deepEqual([(await done).drained, (await done).forced], [1, 0]);
    } finally {
      client.close();
    }
  });

  test("grpc server - a call longer than the grace period is cut off with UNAVAILABLE", async () => {
    let observed: unknown;
    const services = [testInferenceSpec({ aborted: (reason) => (observed = reason) })];
    const server = await start({ services, shutdownGraceMs: 200 });
    const client = inferenceClient(server.port);
    try {
      const stubborn = callError(complete(client, { prompt: "sleep:3000" }));
      const cooperative = callError(complete(client, { prompt: "wait-signal" }));
      await sleep(100);
      const t0 = Date.now();
      const report = await server.shutdown("test");
      assert.ok(Date.now() - t0 < 2_000, `shutdown took ${Date.now() - t0} ms`);
      assert.deepEqual([report.drained, report.forced], [0, 2]);
      assert.equal((await stubborn).code, status.UNAVAILABLE);
      assert.equal((await cooperative).code, status.UNAVAILABLE);
      assert.ok(observed instanceof Error, "the cooperative handler saw its signal abort");
    } finally {
      client.close();
    }
  });

  test("grpc server - a handler not wrapped with unary() is refused at start", async () => {
    const implementation = { ...testInference(), complete: () => {} };
    await assert.rejects(
      start({ services: [{ name: SERVICE_NAMES.inference, definition: InferenceService, implementation }] }),
      /specloop\.v1\.Inference\.complete: wrap the handler with unary\(\)/,
    );
  });

  test("grpc server - a service name that does not match its definition is refused", async () => {
    const spec = { ...testInferenceSpec(), name: "specloop.v1.Inferense" };
    await assert.rejects(start({ services: [spec] }), /does not match/);
  });

  test("grpc server - a port in use is a clear error", async () => {
    const first = await start();
    try {
      await assert.rejects(start({ port: first.port }), (err: Error) => {
        assert.match(
          err.message,
          new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}: address already in use`),
        );
        return true;
      });
    } finally {
      await first.shutdown("test end");
    }
  });

  test("grpc server - with handleSignals, SIGTERM starts the shutdown", async () => {
    const server = await start({ handleSignals: true });
    assert.equal(await healthCheck(server.port), "SERVING");
    process.emit("SIGTERM", "SIGTERM");
    const report = await server.closed;
    assert.equal(report.reason, "SIGTERM");
    assert.equal(process.listenerCount("SIGTERM"), 0, "the handler is removed once stopped");
  });

  test("grpc server - shutdown logs how many calls were drained and forced", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const server = await start({ logger: createLogger("test", "info", sink) });
    await server.shutdown("unit test");
    const stopped = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "gRPC server stopped");
    assert.equal(stopped?.reason, "unit test");
    assert.equal(stopped?.drained, 0);
    assert.equal(stopped?.forced, 0);
  });
});
