#!/usr/bin/env node
// The inference node's process: `node services/inference/dist/main.js` (npm start runs it).
import { basename, resolve } from "node:path";
import { InferenceService, SERVICE_NAMES } from "@specloop/proto";
import { runService } from "@specloop/runtime";
import { type InferenceConfig, inferenceConfigSchema } from "./config.js";
import { inferenceServer } from "./server.js";

await runService<InferenceConfig>({
  name: "inference",
  configSchema: inferenceConfigSchema,
  start: async ({ config }) => {
    const node = {
      nodeId: config.node.id,
      modelId: basename(resolve(config.node.modelDir)),
      startedAt: Date.now(),
    };
    return {
      services: [
        {
          name: SERVICE_NAMES.inference,
          definition: InferenceService,
          implementation: inferenceServer(node),
        },
      ],
    };
  },
});
