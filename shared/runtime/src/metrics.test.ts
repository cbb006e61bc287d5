import assert from "node:assert/strict";
import { test } from "node:test";
import { SERVICE_NAMES } from "@specloop/proto";
import { startGrpcServer } from "./grpc/server.js";
import { createLogger } from "./logging.js";
import { createMetricsRegistry, startMetricsServer } from "./metrics.js";
import { callError, complete, inferenceClient } from "./testdata/clients.js";
import { testInferenceSpec } from "./testdata/inference.js";

const logger = createLogger("test", "silent");

/** The value of the one sample of `name` whose labels include `labels` (label order does not matter). */
function sample(body: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of body.split("\n")) {
    const m = /^([a-z_:]+)\{(.*)\} (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

test("metrics - /metrics serves gRPC counters, durations and process metrics after calls", async () => {
  const registry = createMetricsRegistry("test-service");
  const grpc = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    services: [testInferenceSpec()],
    logger,
    registry,
  });
  const metrics = await startMetricsServer({ host: "127.0.0.1", port: 0, registry, logger });
  const client = inferenceClient(grpc.port);
  try {
    await complete(client, { prompt: "hello" });
    await complete(client, { prompt: "hello" });
    await callError(complete(client, { prompt: "throw:not_found" }));

    const res = await fetch(`http://127.0.0.1:${metrics.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
    const body = await res.text();
    const complete_ = {
      grpc_service: SERVICE_NAMES.inference,
      grpc_method: "Complete",
      service: "test-service",
    };
    assert.equal(sample(body, "grpc_server_handled_total", { ...complete_, grpc_code: "OK" }), 2);
    assert.equal(sample(body, "grpc_server_handled_total", { ...complete_, grpc_code: "NOT_FOUND" }), 1);
    assert.equal(sample(body, "grpc_server_handling_seconds_count", complete_), 3);
    assert.equal(sample(body, "grpc_server_in_flight", complete_), 0);
    assert.match(body, /process_cpu_user_seconds_total/);
  } finally {
    client.close();
    await grpc.shutdown("test end");
    await metrics.close();
  }
});

test("metrics - anything but GET /metrics is 404, and close frees the port", async () => {
  const registry = createMetricsRegistry("test-service");
  const metrics = await startMetricsServer({ host: "127.0.0.1", port: 0, registry });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${metrics.port}/`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${metrics.port}/metrics`, { method: "POST" })).status, 404);
  } finally {
    await metrics.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${metrics.port}/metrics`));
  const again = await startMetricsServer({ host: "127.0.0.1", port: metrics.port, registry });
  await again.close();
});
