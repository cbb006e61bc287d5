#!/usr/bin/env node
// The speculator-trainer's process: `node services/speculator-trainer/dist/main.js` (npm start runs it).
import { dirname, join, resolve } from "node:path";
import {
  type Bus,
  connectBus,
  ManifestSigner,
  provisionBus,
  readRecentTraces,
  SpeculatorRegistry,
} from "@specloop/bus";
import { SERVICE_NAMES, SpeculatorTrainerService } from "@specloop/proto";
import { type Logger, runService, TokenAuth } from "@specloop/runtime";
import type { Registry } from "prom-client";
import { traceBacklog } from "./backlog.js";
import { type TrainerConfig, trainerConfigSchema } from "./config.js";
import { openTrainerStore } from "./db/index.js";
import { HeadTrainingThread } from "./head-training.js";
import { startTraceIntake } from "./intake.js";
import { VersionLifecycle } from "./lifecycle.js";
import { TrainerLoop } from "./loop.js";
import { trainerMetrics } from "./metrics.js";
import { trainerServer } from "./server.js";
import { TrainerStateStore } from "./state.js";

await runService<TrainerConfig>({
  name: "speculator-trainer",
  configSchema: trainerConfigSchema,
  start: async ({ config, logger, registry: metricsRegistry }) => {
    const store = openTrainerStore(config.store.path);
    logger.info({ path: store.path, migrationsApplied: store.migrationsApplied }, "store open");
    try {
      const bus = await connectBus(config.bus, logger);
      await provisionBus(bus, config.bus, logger);
      const registry = await SpeculatorRegistry.open(bus.js, {
        signer: ManifestSigner.fromConfig(config.bus.manifests),
      });
      const modelId = config.trainer.modelId;
      const lifecycle = new VersionLifecycle({
        db: store.db,
        modelId,
        registry,
        blobDir: join(dirname(store.path), "versions"),
      });
      const state = new TrainerStateStore(store.db, modelId);
      const loop = config.trainer.enabled
        ? await openLoop(config, { lifecycle, state, logger, dataDir: dirname(store.path), metricsRegistry })
        : undefined;
      if (loop !== undefined) await refillBuffer(bus, loop, state, config, logger);
      const intake = await startTraceIntake(bus, store.db, modelId, logger, config.intake, (trace) =>
        loop?.offer(trace),
      );
      loop?.start();
      return {
        services: [
          {
            name: SERVICE_NAMES.trainer,
            definition: SpeculatorTrainerService,
            implementation: trainerServer({
              db: store.db,
              modelId,
              lifecycle,
              state,
              auth: TokenAuth.fromConfig(config.server.auth),
              backlog: () => traceBacklog(bus, modelId),
            }),
          },
        ],
        onShutdown: async () => {
          await intake.stop();
          await loop?.stop();
          await bus.close();
          store.close();
        },
      };
    } catch (err) {
      store.close();
      throw err;
    }
  },
});

/** The loop, its head training on a worker thread with the trainer's own target (resumed from its checkpoint). */
async function openLoop(
  config: TrainerConfig,
  parts: {
    lifecycle: VersionLifecycle;
    state: TrainerStateStore;
    logger: Logger;
    dataDir: string;
    metricsRegistry: Registry;
  },
): Promise<TrainerLoop> {
  const t = config.trainer;
  let loop: TrainerLoop | undefined;
  const metrics = trainerMetrics(parts.metricsRegistry, {
    bufferTraces: () => loop?.bufferSize ?? 0,
    bufferCapacity: () => loop?.bufferCapacity ?? t.bufferCapacity,
    bufferAgeSeconds: () => (loop?.bufferAgeMs() ?? 0) / 1000,
    trainingSteps: () => loop?.stepCount ?? 0,
  });
  loop = await TrainerLoop.open({
    modelId: t.modelId,
    openHead: (start, options) =>
      HeadTrainingThread.open({
        modelDir: resolve(t.modelDir),
        backend: t.backend,
        cpuThreads: t.cpuThreads,
        featureLayers: t.featureLayers,
        exampleMaxTokens: t.exampleMaxTokens,
        start,
        options,
      }),
    lifecycle: parts.lifecycle,
    state: parts.state,
    logger: parts.logger,
    gate: config.gate,
    checkpointDir: join(parts.dataDir, "checkpoints", t.modelId),
    bufferCapacity: t.bufferCapacity,
    trainerOptions: { seed: t.seed },
    onStep: ({ loss, tokens, seconds }) => {
      metrics.tokensLearned.inc(tokens);
      metrics.loss.set(loss);
      metrics.stepSeconds.observe(seconds);
    },
    onPublish: (_id, canary, simulated) => {
      metrics.versions.inc({ event: "published" });
      if (canary) metrics.versions.inc({ event: "canaried" });
      if (simulated !== undefined) metrics.simulatedAcceptedPerPass.set(simulated);
    },
    onDecision: (kind) => {
      metrics.gateDecisions.inc({ decision: kind });
      metrics.versions.inc({
        event: kind === "promote" ? "promoted" : kind === "reject" ? "rejected" : "rolled_back",
      });
    },
  });
  return loop;
}

/**
 * A restarted trainer's replay buffer starts from what it had: the model's newest consumed traces, read
 * back from the stream up to the last one it counted (not counted again; the gate gets their samples too).
 */
async function refillBuffer(
  bus: Bus,
  loop: TrainerLoop,
  state: TrainerStateStore,
  config: TrainerConfig,
  logger: Logger,
): Promise<void> {
  const toSeq = state.get().lastTraceSeq;
  if (toSeq === 0) return;
  const capacity = config.trainer.bufferCapacity;
  const t0 = performance.now();
  try {
    const traces = await readRecentTraces(bus, {
      modelId: config.trainer.modelId,
      limits: { vocabSize: config.intake.vocabSize, maxTokens: config.intake.maxTokens },
      toSeq,
      // Other models share the stream: scan a few times the buffer's worth of messages, no more.
      scan: 4 * capacity,
      max: capacity,
    });
    for (const t of traces) loop.offer(t);
    logger.info(
      { traces: traces.length, toSeq, seconds: (performance.now() - t0) / 1000 },
      "trainer: replay buffer refilled from the trace stream",
    );
  } catch (err) {
    logger.warn(
      { err },
      "trainer: cannot refill the replay buffer from the stream; it fills from new traces",
    );
  }
}
