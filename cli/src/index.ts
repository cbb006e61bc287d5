export { checkHealth, type HealthOptions, type HealthResult } from "./commands/health.js";
export { buildProgram, type Io } from "./program.js";
