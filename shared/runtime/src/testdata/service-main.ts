// A service main for the lifecycle tests, run as a child process. Config comes from SPECLOOP_* env vars;
// FIXTURE_FAIL_START=1 makes start() fail the way an unreachable dependency would.

import { serviceConfigSchema } from "../config-sections.js";
import { UnavailableError } from "../errors.js";
import { runService } from "../service.js";
import { testInferenceSpec } from "./inference.js";

await runService({
  name: "fixture",
  configSchema: serviceConfigSchema,
  start: async ({ logger }) => {
    if (process.env.FIXTURE_FAIL_START === "1") {
      throw new UnavailableError("cannot connect to NATS at nats://127.0.0.1:1: connection refused");
    }
    return {
      services: [testInferenceSpec()],
      onShutdown: () => logger.info("fixture closed its dependencies"),
    };
  },
});
