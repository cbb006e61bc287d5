export { checkHealth, type HealthOptions, type HealthResult } from "./commands/health.js";
export type { Io } from "./io.js";
export { buildProgram } from "./program.js";
