// The config sections every service has. A service extends the base schema with its own sections:
//   const schema = serviceConfigSchema.extend({ bus: busConfigSchema });
// and may change a default by extending a section:
//   serverConfigSchema.extend({ grpcPort: portSchema.default(50052) })
import { z } from "zod";
import { authConfigSchema, tlsConfigSchema } from "./grpc/auth.js";
import { DEFAULT_LOG_LEVEL, LOG_LEVELS } from "./logging.js";

export const DEFAULT_HOST = "0.0.0.0";
export const DEFAULT_GRPC_PORT = 50051;
/** 0 turns the Prometheus endpoint off. */
export const DEFAULT_METRICS_PORT = 0;
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;

/** A TCP port; 0 means "pick a free one" for gRPC and "off" for metrics. */
export const portSchema = z.int().min(0).max(65_535);

export const serverConfigSchema = z.object({
  /** Interface to listen on; 0.0.0.0 for all. */
  host: z.string().min(1).default(DEFAULT_HOST),
  grpcPort: portSchema.default(DEFAULT_GRPC_PORT),
  /** Port of the Prometheus /metrics endpoint; 0 = off. */
  metricsPort: portSchema.default(DEFAULT_METRICS_PORT),
  /** How long in-flight calls may run after shutdown begins before they are cut off. */
  shutdownGraceMs: z.int().min(0).default(DEFAULT_SHUTDOWN_GRACE_MS),
  /** Bearer tokens for the RPCs that check them (grpc/auth.ts); none by default. */
  auth: authConfigSchema.prefault({}),
  /** Serve gRPC over TLS from PEM files; plaintext when absent. */
  tls: tlsConfigSchema.optional(),
});
export type ServerConfig = z.output<typeof serverConfigSchema>;

export const logConfigSchema = z.object({
  level: z.enum(LOG_LEVELS).default(DEFAULT_LOG_LEVEL),
});
export type LogConfig = z.output<typeof logConfigSchema>;

/** The sections runService needs; services extend it with their own. */
export const serviceConfigSchema = z.object({
  server: serverConfigSchema,
  log: logConfigSchema,
});
export type ServiceConfig = z.output<typeof serviceConfigSchema>;
