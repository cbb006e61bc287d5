export { AcceptanceBook } from "./acceptance.js";
export { type InferenceConfig, inferenceConfigSchema } from "./config.js";
export { InferenceNode, type NodeIdentity, SERVICE_VERSION } from "./node.js";
export { inferenceServer } from "./server.js";
