#!/usr/bin/env node
// The verifier's process: `node services/verifier/dist/main.js` (npm start runs it).
import { connectBus, provisionBus } from "@specloop/bus";
import { SERVICE_NAMES, VerifierService } from "@specloop/proto";
import { runService } from "@specloop/runtime";
import { type VerifierConfig, verifierConfigSchema } from "./config.js";
import { openVerifierStore } from "./db/index.js";
import { connectInference } from "./judges/inference.js";
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
      // The node is dialled lazily by grpc-js: the verifier starts (and GetTournament works) without it.
      const node = connectInference(config.inference.address);
      return {
        services: [
          {
            name: SERVICE_NAMES.verifier,
            definition: VerifierService,
            implementation: verifierServer({ db: store.db, bus, node, config, logger }),
          },
        ],
        onShutdown: async () => {
          node.close();
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
