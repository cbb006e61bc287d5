// Test helpers shared by every package's tests: real servers on free ports, throwaway directories.
export { type NatsServer, type NatsServerOptions, startNatsServer } from "./nats-server.js";
export { freePort } from "./ports.js";
export { type TempDir, tempDir } from "./tempdir.js";
