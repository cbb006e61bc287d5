// @specloop/bus: NATS JetStream for specloop: connection, provisioning, the trace and verdict streams,
// the durable consumer loop, the speculator registry (KV + object store) and node heartbeats.
export {
  type BusConfig,
  type BusConfigInput,
  type BusTlsConfig,
  busConfig,
  busConfigSchema,
  DEFAULT_BUS_URLS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_CONNECTION_NAME,
  DEFAULT_FLEET_INACTIVE_THRESHOLD_MS,
  DEFAULT_FLEET_REPLAY_WINDOW_MS,
  DEFAULT_HEARTBEAT_TTL_MS,
  DEFAULT_RECONNECT_WAIT_MS,
  DEFAULT_REPLICAS,
  DEFAULT_SPECULATOR_HISTORY,
  DEFAULT_SPOOL_MAX_BYTES,
  DEFAULT_TRACE_DUPLICATE_WINDOW_MS,
  DEFAULT_TRACE_MAX_AGE_MS,
  DEFAULT_TRACE_MAX_BYTES,
  DEFAULT_TRACE_MAX_MESSAGE_BYTES,
  DEFAULT_VERDICT_DUPLICATE_WINDOW_MS,
  DEFAULT_VERDICT_MAX_AGE_MS,
  DEFAULT_VERDICT_MAX_BYTES,
  DEFAULT_WEIGHTS_MAX_BYTES,
  type FleetConsumerConfig,
  type ManifestSigningConfig,
  type SpoolConfig,
  type TraceStreamConfig,
} from "./config.js";
export { type Bus, type BusConnectionConfig, connectBus } from "./connection.js";
export {
  type ConsumerOptions,
  type ConsumerStats,
  type Delivery,
  type HandlerResult,
  type MessageHandler,
  type RunningConsumer,
  startConsumer,
} from "./consumer.js";
export {
  type BusCredentials,
  type BusCredentialsOptions,
  credentialsFileOf,
  publicKeyOfSeedFile,
  SERVER_AUTH_FILE,
  writeBusCredentials,
} from "./credentials.js";
export * from "./errors.js";
export { Heartbeats } from "./heartbeat.js";
export {
  type LocalBus,
  type LocalBusOptions,
  provisionLocalBus,
  type ServiceRole,
  writeLocalBus,
} from "./local.js";
export {
  CONSUMERS,
  nodeSuffixConsumer,
  SPECULATOR_ROLES,
  type SpeculatorSlot,
  sanitizeToken,
  TRACE_STREAM,
  traceSubject,
  trainerTracesConsumer,
  unsanitizeToken,
} from "./names.js";
export {
  BUS_ROLES,
  type BusRole,
  inboxPrefix,
  rolePermissions,
  type SubjectPermissions,
} from "./permissions.js";
export {
  isPermissionError,
  type ProvisionAction,
  type ProvisionConfig,
  type ProvisionReport,
  provisionBus,
} from "./provision.js";
export {
  type ManifestUpdate,
  type ManifestWatch,
  type PublishSpeculatorInput,
  type RegistryOptions,
  SpeculatorRegistry,
  sha256Hex,
  slotOfRole,
} from "./registry.js";
export {
  MANIFEST_SIGNATURE_CONTEXT,
  type ManifestSignature,
  ManifestSigner,
  ManifestVerifier,
  manifestSigningBytes,
  publicKeyId,
  type SigningKeyFiles,
  writeSigningKey,
} from "./signing.js";
export {
  DEFAULT_SPOOL_PUBLISH_TIMEOUT_MS,
  isTransient,
  type SpoolDropReason,
  SpooledPublisher,
  type SpoolMessage,
  type SpoolOptions,
  type SpoolStats,
} from "./spool.js";
export {
  consumeTraces,
  consumeVerdicts,
  type RecentTracesOptions,
  readRecentTraces,
  type StreamConsumerOptions,
  type TraceConsumerOptions,
} from "./subscriptions.js";
export { type AssemblerStats, TraceAssembler, type TraceAssemblerOptions } from "./trace-assemble.js";
export { chunkTrace, chunkTraceId } from "./trace-chunks.js";
export {
  DEFAULT_TRACE_MAX_DRAFT_TOKENS,
  DEFAULT_TRACE_MAX_HIDDEN_BYTES,
  DEFAULT_TRACE_MAX_TOPK,
  type TraceLimits,
  validateTraceContent,
} from "./trace-validate.js";
export {
  decodeTrace,
  decodeVerdict,
  encodeTrace,
  type PublishOptions,
  type PublishResult,
  publishTrace,
  publishVerdict,
  type VerdictPublishOptions,
  validateTrace,
  verdictId,
} from "./traces.js";
