#!/usr/bin/env node
// The inference node's process: `node services/inference/dist/main.js` (npm start runs it).
import { basename, resolve } from "node:path";
import { connectBus, provisionBus } from "@specloop/bus";
import { InferenceService, SERVICE_NAMES } from "@specloop/proto";
import { runService } from "@specloop/runtime";
import { type InferenceConfig, inferenceConfigSchema } from "./config.js";
import { startHeartbeat } from "./heartbeat.js";
import { inferenceServer, nodeStatus } from "./server.js";

await runService<InferenceConfig>({
  name: "inference",
  configSchema: inferenceConfigSchema,
  start: async ({ config, logger }) => {
    const node = {
      nodeId: config.node.id,
      modelId: basename(resolve(config.node.modelDir)),
      startedAt: Date.now(),
    };
    const bus = await connectBus(config.bus, logger);
    await provisionBus(bus, config.bus, logger);
    const heartbeat = await startHeartbeat(
      bus,
      () => nodeStatus(node),
      config.node.heartbeatIntervalMs,
      logger,
    );
    return {
      services: [
        {
          name: SERVICE_NAMES.inference,
          definition: InferenceService,
          implementation: inferenceServer(node),
        },
      ],
      onShutdown: async () => {
        await heartbeat.stop();
        await bus.close();
      },
    };
  },
});
