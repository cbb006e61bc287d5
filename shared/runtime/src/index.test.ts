import assert from "node:assert/strict";
import { test } from "node:test";
import * as errors from "@specloop/errors";
import * as runtime from "./index.js";

// Pins the public surface: a change here is a change every service sees.
test("index - exports exactly the public API", () => {
  assert.deepEqual(Object.keys(runtime).sort(), [
    "CancelledError",
    "Channel",
    "ConfigError",
    "DEFAULT_ENV_PREFIX",
    "DEFAULT_GRPC_PORT",
    "DEFAULT_HOST",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_SHUTDOWN_GRACE_MS",
    "DataLossError",
    "DeadlineExceededError",
    "EXIT_BAD_CONFIG",
    "EXIT_FAILURE",
    "ErrorKind",
    "FailedPreconditionError",
    "HEALTH_SERVICE_NAME",
    "InternalError",
    "InvalidArgumentError",
    "KIND_TO_STATUS",
    "LOG_LEVELS",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SpecloopError",
    "Status",
    "TokenAuth",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "authConfigSchema",
    "bearerMetadata",
    "configDefaults",
    "configLeaves",
    "createLogger",
    "createMetricsRegistry",
    "envVarName",
    "errorToStatus",
    "generateToken",
    "isSpecloopError",
    "loadConfig",
    "logConfigSchema",
    "onShutdownSignal",
    "portSchema",
    "runService",
    "safeUint64",
    "serverConfigSchema",
    "serverCredentials",
    "serverStream",
    "serviceConfigSchema",
    "startGrpcServer",
    "startMetricsServer",
    "tlsConfigSchema",
    "unary",
  ]);
});

// The error classes are @specloop/errors' own (re-exported, not copied): an error the engine throws from
// that leaf package is the same class here, so errorToStatus maps it by its kind.
test("index - the error classes are @specloop/errors' own", () => {
  assert.equal(runtime.SpecloopError, errors.SpecloopError);
  assert.equal(runtime.ErrorKind, errors.ErrorKind);
  assert.equal(runtime.errorToStatus(new errors.NotFoundError("gone")).code, runtime.Status.NOT_FOUND);
});
