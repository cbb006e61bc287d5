// The lifecycle of a service's main: load config, create the logger and metrics registry, let the
// service build its parts (connect to NATS, open stores...), serve gRPC (+ /metrics), and on
// SIGTERM/SIGINT drain, close the parts and exit 0. A failure to start prints ONE line naming the
// problem and exits 2 for bad config, 1 for anything else (dependency down, port in use).
//
//   await runService({
//     name: "inference",
//     configSchema: serviceConfigSchema.extend({ bus: busConfigSchema }),
//     start: async ({ config, logger, registry }) => {
//       const node = await InferenceNode.open(config, logger, registry);
//       return { services: [{ name: SERVICE_NAMES.inference, definition: InferenceService, implementation: node.server }],
//                onShutdown: () => node.close() };
//     },
//   });
import type { Registry } from "prom-client";
import type { z } from "zod";
import { type LoadConfigOptions, loadConfig } from "./config.js";
import type { ServiceConfig } from "./config-sections.js";
import { ConfigError } from "./errors.js";
import { serverCredentials } from "./grpc/auth.js";
import {
  type GrpcServerHandle,
  type GrpcServiceSpec,
  type ShutdownReport,
  startGrpcServer,
} from "./grpc/server.js";
import { createLogger, type Logger } from "./logging.js";
import { createMetricsRegistry, type MetricsServer, startMetricsServer } from "./metrics.js";
import { onShutdownSignal } from "./signals.js";

/** Exit status when the configuration is invalid. */
export const EXIT_BAD_CONFIG = 2;
/** Exit status for any other failure to start or to stop cleanly. */
export const EXIT_FAILURE = 1;

export interface StartContext<C> {
  config: C;
  logger: Logger;
  registry: Registry;
}

/** What a service hands back from start(). */
export interface ServiceParts {
  services: GrpcServiceSpec[];
  /** Runs after gRPC has drained: close connections, flush, stop loops. */
  onShutdown?: () => Promise<void> | void;
}

export interface RunServiceOptions<C extends ServiceConfig> {
  /** Short name for logs and metrics: "inference", "speculator-trainer", "verifier". */
  name: string;
  /** A schema with at least the server and log sections (serviceConfigSchema.extend({...})). */
  configSchema: z.ZodObject & z.ZodType<C>;
  /** Where config comes from; defaults to process.env and SPECLOOP_CONFIG. */
  config?: LoadConfigOptions;
  start(ctx: StartContext<C>): Promise<ServiceParts>;
}

export interface RunningService<C> {
  config: C;
  logger: Logger;
  grpc: GrpcServerHandle;
  metrics: MetricsServer | undefined;
  /** Drains gRPC, runs onShutdown, closes metrics; what the signal handlers call before exiting. */
  stop(reason: string): Promise<ShutdownReport>;
}

/** Starts the service, or prints one line and exits non-zero if it cannot. */
export async function runService<C extends ServiceConfig>(
  options: RunServiceOptions<C>,
): Promise<RunningService<C>> {
  const { name } = options;
  try {
    const config = loadConfig(options.configSchema, options.config) as C;
    const logger = createLogger(name, config.log.level);
    const registry = createMetricsRegistry(name);
    const parts = await options.start({ config, logger, registry });
    const { server } = config;
    const grpc = await startGrpcServer({
      host: server.host,
      port: server.grpcPort,
      services: parts.services,
      logger,
      shutdownGraceMs: server.shutdownGraceMs,
      registry,
      credentials: serverCredentials(server.tls),
    });
    const metrics =
      server.metricsPort > 0
        ? await startMetricsServer({ host: server.host, port: server.metricsPort, registry, logger })
        : undefined;

    let stopping: Promise<ShutdownReport> | undefined;
    const stop = (reason: string): Promise<ShutdownReport> => {
      stopping ??= (async () => {
        const report = await grpc.shutdown(reason);
        await parts.onShutdown?.();
        await metrics?.close();
        logger.info({ reason }, `${name} stopped`);
        return report;
      })();
      return stopping;
    };
    onShutdownSignal((signal) => {
      if (stopping !== undefined) {
        logger.warn({ signal }, "second signal during shutdown: exiting now");
        process.exit(EXIT_FAILURE);
      }
      stop(signal).then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          process.exit(EXIT_FAILURE);
        },
      );
    });
    logger.info({ grpcPort: grpc.port, metricsPort: metrics?.port ?? 0 }, `${name} serving`);
    return { config, logger, grpc, metrics, stop };
  } catch (err) {
    return failToStart(name, err);
  }
}

function failToStart(name: string, err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${name}: cannot start: ${message.replace(/\s*\n\s*/g, " ")}\n`);
  process.exit(err instanceof ConfigError ? EXIT_BAD_CONFIG : EXIT_FAILURE);
}
