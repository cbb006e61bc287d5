export { type ServiceName, type ServiceProcess, spawnService } from "./harness/service-process.js";
