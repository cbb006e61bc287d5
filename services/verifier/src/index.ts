export { RUN_CODE_ROLE, type VerifierConfig, verifierConfigSchema } from "./config.js";
export * from "./errors.js";
export { connectInference, type InferenceNode } from "./judges/inference.js";
export { pruneStore, recoverInterrupted } from "./maintenance.js";
export { Sandbox, type SandboxOptions } from "./sandbox/index.js";
export { loadTournament, sandboxFor, type VerifierDeps, verifierServer } from "./server.js";
export { runTournament } from "./tournament/index.js";
export { UNKNOWN_MODEL_ID, VerdictOutbox } from "./verdicts.js";
