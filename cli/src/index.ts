export { checkHealth, type HealthOptions, type HealthResult } from "./commands/health.js";
export { type DemoNode, type DemoOptions, runDemo } from "./demo/demo.js";
export type { Io } from "./io.js";
export { buildProgram } from "./program.js";
