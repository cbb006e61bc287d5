export { DEFAULT_TRAINING_CONFIG, type TrainerConfig, trainerConfigSchema } from "./config.js";
export { CONSUMED_SEQ_WINDOW, startTraceIntake } from "./intake.js";
export { trainerServer, trainerStatus } from "./server.js";
export { toProtoVersion } from "./versions.js";
