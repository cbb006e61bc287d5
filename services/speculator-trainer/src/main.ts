#!/usr/bin/env node
// The speculator-trainer's process: `node services/speculator-trainer/dist/main.js` (npm start runs it).
import { SERVICE_NAMES, SpeculatorTrainerService } from "@specloop/proto";
import { runService } from "@specloop/runtime";
import { type TrainerConfig, trainerConfigSchema } from "./config.js";
import { openTrainerStore } from "./db/index.js";
import { trainerServer } from "./server.js";

await runService<TrainerConfig>({
  name: "speculator-trainer",
  configSchema: trainerConfigSchema,
  start: async ({ config, logger }) => {
    const store = openTrainerStore(config.store.path);
    logger.info({ path: store.path, migrationsApplied: store.migrationsApplied }, "store open");
    return {
      services: [
        {
          name: SERVICE_NAMES.trainer,
          definition: SpeculatorTrainerService,
          implementation: trainerServer(store.db, config.trainer.modelId),
        },
      ],
      onShutdown: () => store.close(),
    };
  },
});
