export { type VerifierConfig, verifierConfigSchema } from "./config.js";
export { loadTournament, verifierServer } from "./server.js";
