// Helpers for the bus's own tests (exported through ./internal): a connected, provisioned bus on a
// test server with small limits, sample messages, and polling.
import { Trace } from "@specloop/proto";
import { createLogger, type Logger } from "@specloop/runtime";
import { type BusConfig, type BusConfigInput, busConfig } from "./config.js";
import { type Bus, connectBus } from "./connection.js";
import { provisionBus } from "./provision.js";
import type { TraceLimits } from "./trace-validate.js";

export const testLogger: Logger = createLogger("bus-test", "silent");

/** Trace limits for tests' consumers: the bundled tiny-code model's vocabulary and context. */
export const testTraceLimits: TraceLimits = { vocabSize: 8192, maxTokens: 4096 };

/** Limits small enough for a test server; the rest are the defaults. */
export function testBusConfig(url: string, overrides: Partial<BusConfigInput> = {}): BusConfig {
  return busConfig({
    urls: [url],
    name: "bus-test",
    connectTimeoutMs: 2_000,
    reconnectWaitMs: 100,
    traceStream: { maxBytes: 64 * 1024 ** 2, maxAgeMs: 3_600_000, maxMessageBytes: 256 * 1024 },
    verdictStream: { maxBytes: 16 * 1024 ** 2 },
    weights: { maxBytes: 256 * 1024 ** 2 },
    heartbeats: { ttlMs: 1_500 },
    ...overrides,
  });
}

/** Connects and provisions; the caller closes the bus. */
export async function openTestBus(config: BusConfig): Promise<Bus> {
  const bus = await connectBus(config, testLogger);
  try {
    await provisionBus(bus, config, testLogger);
  } catch (err) {
    await bus.close();
    throw err;
  }
  return bus;
}

export function sampleTrace(requestId: string, modelId = "tiny-code", overrides: Partial<Trace> = {}): Trace {
  return Trace.fromPartial({
    traceId: `${requestId}:0`,
    requestId,
    chunkIndex: 0,
    final: true,
    modelId,
    nodeId: "node-a",
    promptTokenIds: [1, 2, 3],
    outputTokenIds: [4, 5, 6],
    ...overrides,
  });
}

/** Polls `check` until it returns true, failing after `timeoutMs` with `what` in the message. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
