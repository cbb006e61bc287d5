#!/usr/bin/env node
// The verifier's process: `node services/verifier/dist/main.js` (npm start runs it). Before it takes
// calls it marks the tournaments a stopped verifier left unfinished as failed, prunes the store and hands the
// verdicts still waiting in it to the bus's spool (under bus.spool.dir/verdicts when set).
import { join } from "node:path";
import { connectBus, provisionBus, SpooledPublisher } from "@specloop/bus";
import { SERVICE_NAMES, VerifierService } from "@specloop/proto";
import { runService, TokenAuth } from "@specloop/runtime";
import { type VerifierConfig, verifierConfigSchema } from "./config.js";
import { openVerifierStore } from "./db/index.js";
import { connectInference } from "./judges/inference.js";
import { recoverInterrupted, startRetention } from "./maintenance.js";
import { sandboxFor, verifierServer } from "./server.js";
import { VerdictOutbox } from "./verdicts.js";

await runService<VerifierConfig>({
  name: "verifier",
  configSchema: verifierConfigSchema,
  start: async ({ config, logger }) => {
    const auth = TokenAuth.fromConfig(config.server.auth);
    if (!auth.configured)
      logger.warn("no tokens configured (server.auth): the tests judge refuses every call");
    const store = openVerifierStore(config.store.path);
    logger.info({ path: store.path, migrationsApplied: store.migrationsApplied }, "store open");
    try {
      recoverInterrupted(store.db, logger);
      const stopRetention = startRetention(store.db, config, logger);
      // The verdict stream is where tournaments publish their pairwise verdicts.
      const bus = await connectBus(config.bus, logger);
      await provisionBus(bus, config.bus, logger);
      const { spool } = config.bus;
      const publisher = SpooledPublisher.open(bus, {
        dir: spool.dir === "" ? "" : join(spool.dir, "verdicts"),
        maxBytes: spool.maxBytes,
        logger,
      });
      const outbox = new VerdictOutbox(store.db, publisher, logger);
      outbox.handOver();
      // The node is dialled lazily by grpc-js: the verifier starts (and GetTournament works) without it.
      const node = connectInference(config.inference.address);
      const sandbox = sandboxFor(config);
      return {
        services: [
          {
            name: SERVICE_NAMES.verifier,
            definition: VerifierService,
            implementation: verifierServer({
              db: store.db,
              bus,
              node,
              config,
              logger,
              auth,
              sandbox,
              outbox,
            }),
          },
        ],
        onShutdown: async () => {
          stopRetention();
          outbox.close();
          await publisher.flush(2_000);
          await publisher.close();
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
