// The gRPC server every service runs: its services, grpc.health.v1 (overall "" and per service),
// server reflection, typed handlers with deadlines and in-flight tracking, and graceful shutdown:
// health goes NOT_SERVING, new calls are refused with UNAVAILABLE, in-flight calls get
// shutdownGraceMs to finish, then the rest are cut off (their signals abort).
import { createServer } from "node:net";
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { Registry } from "prom-client";
import { DEFAULT_HOST, DEFAULT_SHUTDOWN_GRACE_MS } from "../config-sections.js";
import { UnavailableError } from "../errors.js";
import type { Logger } from "../logging.js";
import { grpcServerMetrics } from "../metrics.js";
import { onShutdownSignal } from "../signals.js";
import { CallTracker, type HandlerRuntime } from "./calls.js";
import { bindImplementation } from "./handlers.js";
import { createReflectionService } from "./reflection.js";

/** After the drain, how long open connections (health watchers, say) get before they are closed. */
export const CLOSE_CONNECTIONS_MS = 1_000;

export interface GrpcServiceSpec {
  /** Fully qualified name, as SERVICE_NAMES from @specloop/proto gives it: "specloop.v1.Inference". */
  name: string;
  /** The ts-proto service definition, e.g. InferenceService. */
  definition: ServiceDefinition;
  /** The ts-proto server interface (e.g. InferenceServer) implemented with unary() and serverStream(). */
  implementation: UntypedServiceImplementation;
}

export interface GrpcServerOptions {
  host?: string;
  /** 0 binds a free port; the handle says which. */
  port: number;
  services: readonly GrpcServiceSpec[];
  logger: Logger;
  shutdownGraceMs?: number;
  /** Serve grpc.reflection (v1 and v1alpha); default true. */
  reflection?: boolean;
  /** Record grpc_server_* metrics into this registry. */
  registry?: Registry;
  /** Shut down on SIGTERM/SIGINT (the caller still decides when to exit); default false. */
  handleSignals?: boolean;
  /** Largest message received or sent, bytes (default DEFAULT_MAX_MESSAGE_BYTES); larger is RESOURCE_EXHAUSTED. */
  maxMessageBytes?: number;
  /** The transport (serverCredentials in grpc/auth.ts); insecure when absent. */
  credentials?: ServerCredentials;
}

export interface ShutdownReport {
  reason: string;
  /** Calls in flight when shutdown began that finished on their own. */
  drained: number;
  /** Calls cut off when the grace period ran out. */
  forced: number;
  ms: number;
}

export interface GrpcServerHandle {
  /** The port actually bound. */
  readonly port: number;
  /** Calls being handled now. */
  readonly inFlight: number;
  /** Sets the health of one service ("" for the server as a whole). Ignored once shutdown began. */
  setServing(service: string, serving: boolean): void;
  /** Drains and stops; calling it again returns the same report. */
  shutdown(reason: string): Promise<ShutdownReport>;
  /** Settles when the server has stopped, however shutdown was started. */
  readonly closed: Promise<ShutdownReport>;
}

/** Default bound on one gRPC message: 4 MiB, grpc-js's own receive default, stated so it is a decision. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServerHandle> {
  const { logger, services } = options;
  const host = options.host ?? DEFAULT_HOST;
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  const names = services.map((s) => s.name);

  const calls = new CallTracker();
  const metrics = options.registry ? grpcServerMetrics(options.registry) : undefined;
  const rt: HandlerRuntime = { logger, calls, metrics };
  // Bounded messages both ways: a client cannot make the server buffer more than this for one message.
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new Server({
    "grpc.max_receive_message_length": maxBytes,
    "grpc.max_send_message_length": maxBytes,
  });
  for (const spec of services) {
    checkName(spec);
    server.addService(
      spec.definition,
      bindImplementation(spec.name, spec.definition, spec.implementation, rt),
    );
  }
  const health = new HealthImplementation({
    "": "SERVING",
    ...Object.fromEntries(names.map((n) => [n, "SERVING"])),
  });
  health.addToServer(server);
  if (options.reflection ?? true) createReflectionService(names).addToServer(server);

  const port = await bind(server, host, options.port, options.credentials);
  logger.info({ host, grpcPort: port, services: names }, "gRPC server listening");

  let closing: Promise<ShutdownReport> | undefined;
  let resolveClosed: (report: ShutdownReport) => void = () => {};
  const closed = new Promise<ShutdownReport>((resolve) => {
    resolveClosed = resolve;
  });
  const removeSignals = options.handleSignals
    ? onShutdownSignal((signal) => void shutdown(signal))
    : () => {};

  function shutdown(reason: string): Promise<ShutdownReport> {
    closing ??= (async () => {
      const started = Date.now();
      for (const name of ["", ...names]) health.setStatus(name, "NOT_SERVING");
      calls.stopAccepting();
      const inFlight = calls.size;
      logger.info({ reason, inFlight, graceMs }, "shutting down: draining in-flight calls");
      const idle = await calls.waitIdle(graceMs);
      const forced = idle
        ? 0
        : calls.abortAll(new UnavailableError("server shut down before the call finished"));
      await close(server);
      removeSignals();
      const report: ShutdownReport = { reason, drained: inFlight - forced, forced, ms: Date.now() - started };
      logger.info(report, "gRPC server stopped");
      resolveClosed(report);
      return report;
    })();
    return closing;
  }

  return {
    port,
    get inFlight() {
      return calls.size;
    },
    setServing(service, serving) {
      if (service !== "" && !names.includes(service)) {
        throw new TypeError(`setServing: unknown service "${service}"; this server has: ${names.join(", ")}`);
      }
      if (closing === undefined) health.setStatus(service, serving ? "SERVING" : "NOT_SERVING");
    },
    shutdown,
    closed,
  };
}

/** A typo in a service name would make its health status unreachable; catch it at start. */
function checkName(spec: GrpcServiceSpec): void {
  for (const method of Object.values(spec.definition)) {
    if (!method.path.startsWith(`/${spec.name}/`)) {
      throw new TypeError(
        `service name "${spec.name}" does not match its definition's method ${method.path}`,
      );
    }
  }
}

async function bind(
  server: Server,
  host: string,
  port: number,
  credentials: ServerCredentials = ServerCredentials.createInsecure(),
): Promise<number> {
  // IPv6 literals need brackets in a gRPC target.
  const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  // grpc-js logs its own line when a bind fails; a plain listen first keeps the usual failure to one line.
  const taken = port === 0 ? undefined : await listenError(host, port);
  if (taken !== undefined) throw new UnavailableError(`cannot listen on ${address}: ${taken}`);
  try {
    return await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  } catch (err) {
    // grpc-js says only "No address added"; a plain listen on the same address tells why.
    const why = (await listenError(host, port)) ?? (err as Error).message;
    throw new UnavailableError(`cannot listen on ${address}: ${why}`, { cause: err });
  }
}

function listenError(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => {
      resolve(err.code === "EADDRINUSE" ? "address already in use" : err.message);
    });
    probe.listen(port, host, () => probe.close(() => resolve(undefined)));
  });
}

/** Lets open connections end, then closes what is left. */
function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, CLOSE_CONNECTIONS_MS);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
