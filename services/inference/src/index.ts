export { type InferenceConfig, inferenceConfigSchema } from "./config.js";
export { inferenceServer, type NodeIdentity, nodeStatus } from "./server.js";
