// @specloop/runtime: what every service needs to run: config, logging, the gRPC server kit (health,
// reflection, deadlines, graceful shutdown, error mapping), metrics and the service lifecycle.
export { Channel } from "./channel.js";
export { configDefaults, type LoadConfigOptions, loadConfig } from "./config.js";
export { type ConfigLeaf, configLeaves, DEFAULT_ENV_PREFIX, envVarName } from "./config-schema.js";
export {
  DEFAULT_GRPC_PORT,
  DEFAULT_HOST,
  DEFAULT_METRICS_PORT,
  DEFAULT_SHUTDOWN_GRACE_MS,
  type LogConfig,
  logConfigSchema,
  portSchema,
  type ServerConfig,
  type ServiceConfig,
  serverConfigSchema,
  serviceConfigSchema,
} from "./config-sections.js";
export * from "./errors.js";
export {
  type AuthConfig,
  authConfigSchema,
  bearerMetadata,
  generateToken,
  type Identity,
  serverCredentials,
  type TlsConfig,
  TokenAuth,
  type TokenEntry,
  tlsConfigSchema,
} from "./grpc/auth.js";
export type { CallContext } from "./grpc/calls.js";
export { type ServerStreamHandler, serverStream, type UnaryHandler, unary } from "./grpc/handlers.js";
export { HEALTH_SERVICE_NAME } from "./grpc/reflection.js";
export {
  type GrpcServerHandle,
  type GrpcServerOptions,
  type GrpcServiceSpec,
  type ShutdownReport,
  startGrpcServer,
} from "./grpc/server.js";
export { errorToStatus, type GrpcStatus, KIND_TO_STATUS, Status } from "./grpc/status.js";
export { createLogger, DEFAULT_LOG_LEVEL, LOG_LEVELS, type Logger, type LogLevel } from "./logging.js";
export {
  createMetricsRegistry,
  type MetricsServer,
  type MetricsServerOptions,
  startMetricsServer,
} from "./metrics.js";
export {
  EXIT_BAD_CONFIG,
  EXIT_FAILURE,
  type RunningService,
  type RunServiceOptions,
  runService,
  type ServiceParts,
  type StartContext,
} from "./service.js";
export { onShutdownSignal, type ShutdownSignal } from "./signals.js";
export { safeUint64 } from "./wire.js";
