// A fleet's traces into one trainer (issue 16, "Scale, measured" 1): how many traces per second the
// speculator-trainer's intake takes from NATS, and where one trainer per model stops sufficing.
//   node --conditions=source --import tsx bench/fleet-sim.ts [--nodes 10,100,1000] [--rate 5] [--seconds 10]
//       [--record 24] [--connections 8] [--capacity 20000] [--out bench/results/fleet-sim.json]
// 1. Record: a real inference node on the bundled model (cpu, 1 thread) serves --record bundled prompts
//    (suffix and none, 48 new tokens) with traces on; its traces, as it published them on a real nats-server
//    (JetStream, started here on a free port), are read back from the stream: the recording.
// 2. Replay, per fleet size N: N simulated nodes, each publishing the recorded traces (fresh trace and
//    request ids, its own node id) at --rate requests per second, spread over --connections NATS connections
//    (publishTrace: the nodes' own publish path, acks awaited, Nats-Msg-Id set), for --seconds; one trainer
//    intake (startTraceIntake: the trainer's durable pull consumer, validation, the exactly-once ledger and
//    counters in SQLite, a real file) consumes them. Measured: traces/s offered and consumed in the window,
//    intake lag (published and acked by JetStream, not yet consumed) sampled every 250 ms, bytes on the bus
//    per trace and per second, and after publishing stops the time to drain; lost = published - consumed
//    (must be 0). Publishers and the intake share this process (and its one event loop), so the intake's
//    figure is a lower bound of what a trainer process alone takes.
// 3. The intake alone (--capacity traces, default 20,000): published first as a backlog, then drained by one
//    intake with nothing else in the process: traces/s and CPU µs per trace (nats-server runs beside it).
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import {
  connectBus,
  consumeTraces,
  encodeTrace,
  provisionBus,
  publishTrace,
  type RunningConsumer,
} from "@specloop/bus";
import { bundledPromptTokens, loadModelDir } from "@specloop/engine";
import { InferenceNode, inferenceConfigSchema } from "@specloop/inference";
import { Drafter, GenerateRequest, type Trace } from "@specloop/proto";
import { createLogger, loadConfig } from "@specloop/runtime";
import { startTraceIntake } from "@specloop/speculator-trainer";
import { openTrainerStore, trainerState } from "@specloop/speculator-trainer/db";
import { startNatsServer } from "@specloop/testkit";
import { eq } from "drizzle-orm";
import { Registry } from "prom-client";
import { emit, hostInfo, intArg, intListArg, parseArgs, round } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set());
const fleetSizes = intListArg(args, "nodes", [10, 100, 1000]);
const ratePerNode = Number(args.get("rate") ?? "5");
const seconds = Number(args.get("seconds") ?? "10");
const recordCount = intArg(args, "record", 24);
const connections = intArg(args, "connections", 8);
const MODELS = new URL("../models/", import.meta.url).pathname;
const logger = createLogger("fleet-sim", "warn");

const work = mkdtempSync(join(tmpdir(), "specloop-fleet-sim-"));
const nats = await startNatsServer();
const busEnv = {
  SPECLOOP_BUS__URLS: nats.url,
  // Room for the largest run: every trace of it stays in the stream until the window ends.
  SPECLOOP_BUS__TRACE_STREAM__MAX_BYTES: String(8 * 2 ** 30),
  SPECLOOP_BUS__TRACE_STREAM__MAX_AGE_MS: "3600000",
};
const bus = await connectBus(busConfigOf(), logger);
await provisionBus(bus, busConfigOf(), logger);

function busConfigOf() {
  return loadConfig(inferenceConfigSchema, { env: busEnv }).bus;
}

// 1. Record a real node's traces.
async function record(): Promise<Trace[]> {
  const config = loadConfig(inferenceConfigSchema, {
    env: {
      SPECLOOP_NODE__MODEL_DIR: `${MODELS}tiny-code`,
      SPECLOOP_SPECULATION__DRAFT_MODEL_DIR: "",
      SPECLOOP_NODE__CPU_THREADS: "1",
      SPECLOOP_NODE__ID: "recorder",
      ...busEnv,
    },
  });
  const node = await InferenceNode.open({ config, logger, registry: new Registry(), bus });
  const loaded = await loadModelDir(`${MODELS}tiny-code`);
  const prompts = await bundledPromptTokens(`${MODELS}tiny-code`, loaded.tokenizer, {
    perDomain: Math.ceil(recordCount / 3),
    maxTokens: 64,
  });
  const recorded: Trace[] = [];
  const consumer: RunningConsumer = await consumeTraces(bus, {
    modelId: "tiny-code",
    durable: "fleet-sim-recorder",
    limits: { vocabSize: 8192, maxTokens: 4096 },
    logger,
    handler: (t) => {
      recorded.push(t);
      return "ack";
    },
  });
  for (const [i, prompt] of prompts.slice(0, recordCount).entries()) {
    const req = node.resolve(
      GenerateRequest.fromPartial({
        promptTokenIds: prompt,
        maxTokens: 48,
        domain: ["python", "c", "prose"][i % 3] as string,
        speculation: { drafter: i % 4 === 3 ? Drafter.DRAFTER_NONE : Drafter.DRAFTER_SUFFIX },
        sampling: { stopTokenIds: [] },
      }),
    );
    for await (const _ of node.submit(req).events) {
      // drained: the trace is published when the request finishes
    }
  }
  const until = Date.now() + 30_000;
  while (recorded.length < Math.min(recordCount, prompts.length) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await consumer.stop();
  await node.close();
  return recorded;
}

/** One trainer intake for `modelId` on its own SQLite file, counting the traces it hands on. */
async function countingIntake(modelId: string, file: string) {
  const store = openTrainerStore(join(work, file));
  const seen = { traces: 0 };
  const intake = await startTraceIntake(
    bus,
    store.db,
    modelId,
    logger,
    { vocabSize: 8192, maxTokens: 4096, consumerInactiveMs: 3_600_000 },
    () => {
      seen.traces++;
    },
  );
  return { store, intake, seen };
}

interface RunResult {
  nodes: number;
  offeredPerSecond: number;
  seconds: number;
  published: number;
  publishedPerSecond: number;
  consumedInWindow: number;
  consumedPerSecond: number;
  drainSeconds: number;
  consumedTotal: number;
  lost: number;
  maxLag: number;
  meanLag: number;
  bytesPerTrace: number;
  busMiBPerSecond: number;
  publishAckP50Ms: number;
  publishAckP99Ms: number;
}

// 2. Replay the recording as N nodes would, into one trainer intake.
async function replay(recording: readonly Trace[], nodes: number): Promise<RunResult> {
  const modelId = `sim-${nodes}`;
  const { store, intake, seen } = await countingIntake(modelId, `trainer-${nodes}.sqlite`);
  const conns = await Promise.all(
    Array.from({ length: Math.min(connections, nodes) }, () => connectBus(busConfigOf(), logger)),
  );
  const encoded = recording.map((t) => encodeTrace({ ...t, modelId }).length);
  const bytesPerTrace = encoded.reduce((a, b) => a + b, 0) / encoded.length;
  const total = Math.round(nodes * ratePerNode * seconds);
  const ackMs: number[] = [];
  let published = 0;
  let inFlight = 0;
  const lags: number[] = [];
  const t0 = performance.now();
  const lagTimer = setInterval(() => lags.push(published - seen.traces), 250);
  // Request i (of the whole fleet) is due at i / (nodes * rate) seconds; node i % nodes serves it.
  const perSecond = nodes * ratePerNode;
  await new Promise<void>((resolve) => {
    let next = 0;
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * perSecond));
      // At most 4096 publishes awaiting their ack: past that the publishers (the fleet) are the bottleneck.
      while (next < due && inFlight < 4096) {
        const i = next++;
        const node = i % nodes;
        const base = recording[i % recording.length] as Trace;
        const trace: Trace = {
          ...base,
          modelId,
          traceId: `${modelId}-${i}`,
          requestId: `${modelId}-${i}`,
          clientRequestId: `${modelId}-${i}`,
          nodeId: `sim-node-${node}`,
        };
        const conn = conns[node % conns.length];
        if (conn === undefined) throw new Error("no connection");
        inFlight++;
        const sent = performance.now();
        void publishTrace(conn.js, trace).then(
          () => {
            ackMs.push(performance.now() - sent);
            published++;
            inFlight--;
            if (published === total) resolve();
          },
          (err: unknown) => {
            inFlight--;
            console.error(`publish failed: ${(err as Error).message}`);
            resolve();
          },
        );
      }
      if (next < total) setTimeout(tick, 5);
    };
    tick();
  });
  const windowSeconds = (performance.now() - t0) / 1000;
  const consumedInWindow = seen.traces;
  const drainStart = performance.now();
  const until = Date.now() + 120_000;
  while (seen.traces < published && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const drainSeconds = (performance.now() - drainStart) / 1000;
  clearInterval(lagTimer);
  await intake.stop();
  const counted = store.db.select().from(trainerState).where(eq(trainerState.modelId, modelId)).get();
  store.close();
  for (const c of conns) await c.close();
  ackMs.sort((a, b) => a - b);
  const q = (p: number) => ackMs[Math.min(ackMs.length - 1, Math.floor(p * ackMs.length))] ?? 0;
  const elapsed = windowSeconds + drainSeconds;
  return {
    nodes,
    offeredPerSecond: perSecond,
    seconds: round(windowSeconds, 2),
    published,
    publishedPerSecond: round(published / windowSeconds, 0),
    consumedInWindow,
    consumedPerSecond: round(seen.traces / elapsed, 0),
    drainSeconds: round(drainSeconds, 2),
    consumedTotal: counted?.tracesConsumed ?? 0,
    lost: published - (counted?.tracesConsumed ?? 0),
    maxLag: Math.max(0, ...lags),
    meanLag: round(lags.reduce((a, b) => a + b, 0) / Math.max(1, lags.length), 0),
    bytesPerTrace: round(bytesPerTrace, 0),
    busMiBPerSecond: round((published * bytesPerTrace) / windowSeconds / 2 ** 20, 2),
    publishAckP50Ms: round(q(0.5), 2),
    publishAckP99Ms: round(q(0.99), 2),
  };
}

/**
 * The intake alone: `count` traces published first (a backlog, as after a trainer restart), then one intake
 * drains them with nothing else running in this process; its wall time and this process's CPU time give
 * the traces per second one trainer takes and the CPU each costs.
 */
async function capacity(recording: readonly Trace[], count: number) {
  const modelId = "sim-capacity";
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const base = recording[i % recording.length] as Trace;
    pending.push(
      publishTrace(bus.js, { ...base, modelId, traceId: `${modelId}-${i}`, requestId: `${modelId}-${i}` }),
    );
    if (pending.length >= 2048) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const { store, intake, seen } = await countingIntake(modelId, "trainer-capacity.sqlite");
  const until = Date.now() + 300_000;
  while (seen.traces < count && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await intake.stop();
  store.close();
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return {
    traces: count,
    consumed: seen.traces,
    seconds: round(wall, 2),
    tracesPerSecond: round(seen.traces / wall, 0),
    cpuMicrosecondsPerTrace: round((cpuSeconds / Math.max(1, seen.traces)) * 1e6, 1),
    tracesPerCpuSecond: round(seen.traces / cpuSeconds, 0),
  };
}

const loadBefore = loadavg()[0];
const recording = await record();
if (recording.length === 0) throw new Error("fleet-sim: no trace was recorded");
const runs: RunResult[] = [];
for (const n of fleetSizes) {
  const r = await replay(recording, n);
  runs.push(r);
  console.error(
    `N=${n}: offered ${r.offeredPerSecond}/s, published ${r.publishedPerSecond}/s, consumed ${r.consumedPerSecond}/s, ` +
      `max lag ${r.maxLag}, drain ${r.drainSeconds} s, lost ${r.lost}`,
  );
}
const intakeAlone = await capacity(recording, intArg(args, "capacity", 20_000));
console.error(
  `intake alone: ${intakeAlone.tracesPerSecond} traces/s, ${intakeAlone.cpuMicrosecondsPerTrace} CPU µs per trace`,
);
await bus.close();
await nats.stop();
rmSync(work, { recursive: true, force: true });
emit(
  {
    bench: "fleet-sim",
    machine: hostInfo(),
    loadAverage: { before: loadBefore, after: loadavg()[0] },
    ratePerNode,
    connections,
    recording: {
      traces: recording.length,
      meanSteps: round(recording.reduce((a, t) => a + t.steps.length, 0) / recording.length, 1),
      meanTokens: round(
        recording.reduce((a, t) => a + t.promptTokenIds.length + t.outputTokenIds.length, 0) /
          recording.length,
        1,
      ),
    },
    runs,
    intakeAlone,
  },
  args.get("out"),
);
