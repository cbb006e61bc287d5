#!/usr/bin/env node
// The speculator-trainer's process: `node services/speculator-trainer/dist/main.js` (npm start runs it).
import { connectBus, provisionBus } from "@specloop/bus";
import { SERVICE_NAMES, SpeculatorTrainerService } from "@specloop/proto";
import { runService } from "@specloop/runtime";
import { type TrainerConfig, trainerConfigSchema } from "./config.js";
import { openTrainerStore } from "./db/index.js";
import { startTraceIntake } from "./intake.js";
import { trainerServer } from "./server.js";

await runService<TrainerConfig>({
  name: "speculator-trainer",
  configSchema: trainerConfigSchema,
  start: async ({ config, logger }) => {
    const store = openTrainerStore(config.store.path);
    logger.info({ path: store.path, migrationsApplied: store.migrationsApplied }, "store open");
    try {
      const bus = await connectBus(config.bus, logger);
      await provisionBus(bus, config.bus, logger);
      const intake = await startTraceIntake(bus, store.db, config.trainer.modelId, logger);
      return {
        services: [
          {
            name: SERVICE_NAMES.trainer,
            definition: SpeculatorTrainerService,
            implementation: trainerServer(store.db, config.trainer.modelId),
          },
        ],
        onShutdown: async () => {
          await intake.stop();
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
