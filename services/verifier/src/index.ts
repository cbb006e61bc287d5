export { type VerifierConfig, verifierConfigSchema } from "./config.js";
export * from "./errors.js";
export { connectInference, type InferenceNode } from "./judges/inference.js";
export { loadTournament, type VerifierDeps, verifierServer } from "./server.js";
export { runTournament } from "./tournament/index.js";
