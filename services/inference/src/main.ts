#!/usr/bin/env node
// The inference node's process: `node services/inference/dist/main.js` (npm start runs it).
import { connectBus, provisionBus } from "@specloop/bus";
import { InferenceService, SERVICE_NAMES } from "@specloop/proto";
import { runService } from "@specloop/runtime";
import { type InferenceConfig, inferenceConfigSchema } from "./config.js";
import { startHeartbeat } from "./heartbeat.js";
import { InferenceNode } from "./node.js";
import { inferenceServer } from "./server.js";

await runService<InferenceConfig>({
  name: "inference",
  configSchema: inferenceConfigSchema,
  start: async ({ config, logger, registry }) => {
    const bus = await connectBus(config.bus, logger);
    await provisionBus(bus, config.bus, logger);
    const node = await InferenceNode.open({ config, logger, registry, bus });
    const heartbeat = await startHeartbeat(bus, () => node.status(), config.node.heartbeatIntervalMs, logger);
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
        await node.close();
        await bus.close();
      },
    };
  },
});
