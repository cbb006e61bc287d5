#!/usr/bin/env node
// The verifier's process: `node services/verifier/dist/main.js` (npm start runs it).
import { connectBus, provisionBus } from "@specloop/bus";
import { SERVICE_NAMES, VerifierService } from "@specloop/proto";
import { runService } from "@specloop/runtime";
import { type VerifierConfig, verifierConfigSchema } from "./config.js";
import { openVerifierStore } from "./db/index.js";
import { verifierServer } from "./server.js";

await runService<VerifierConfig>({
  name: "verifier",
  configSchema: verifierConfigSchema,
  start: async ({ config, logger }) => {
    const store = openVerifierStore(config.store.path);
    logger.info({ path: store.path, migrationsApplied: store.migrationsApplied }, "store open");
    try {
      // The verdict stream is where tournaments publish their pairwise verdicts.
      const bus = await connectBus(config.bus, logger);
      await provisionBus(bus, config.bus, logger);
      return {
        services: [
          {
            name: SERVICE_NAMES.verifier,
            definition: VerifierService,
            implementation: verifierServer(store.db),
          },
        ],
        onShutdown: async () => {
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
