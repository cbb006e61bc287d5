// Prometheus metrics: one Registry per service (with the default process metrics), the gRPC server
// metrics the handler adapters record, and a tiny node:http server answering GET /metrics.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "./logging.js";

/** A registry labelled with the service's name, holding Node's process metrics. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Seconds; from a fast metadata call to a long generation. */
export const GRPC_DURATION_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
];

/** gRPC server metrics, named as go-grpc-prometheus names them so existing dashboards work. */
export interface GrpcServerMetrics {
  /** A call started: counts it in flight. Returns the function that records its end. */
  start(service: string, method: string, type: "unary" | "server_stream"): (code: string) => void;
}

export function grpcServerMetrics(registry: Registry): GrpcServerMetrics {
  const handled = existing<Counter>(registry, "grpc_server_handled_total", () => {
    return new Counter({
      name: "grpc_server_handled_total",
      help: "gRPC calls completed on the server, by method and status code.",
      labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
      registers: [registry],
    });
  });
  const duration = existing<Histogram>(registry, "grpc_server_handling_seconds", () => {
    return new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Time from a call's start to its status, in seconds.",
      labelNames: ["grpc_service", "grpc_method", "grpc_type"],
      buckets: GRPC_DURATION_BUCKETS,
      registers: [registry],
    });
  });
  const inFlight = existing<Gauge>(registry, "grpc_server_in_flight", () => {
    return new Gauge({
      name: "grpc_server_in_flight",
      help: "gRPC calls being handled now.",
      labelNames: ["grpc_service", "grpc_method"],
      registers: [registry],
    });
  });
  return {
    start(service, method, type) {
      const started = process.hrtime.bigint();
      inFlight.inc({ grpc_service: service, grpc_method: method });
      let ended = false;
      return (code) => {
        if (ended) return;
        ended = true;
        inFlight.dec({ grpc_service: service, grpc_method: method });
        handled.inc({ grpc_service: service, grpc_method: method, grpc_type: type, grpc_code: code });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        duration.observe({ grpc_service: service, grpc_method: method, grpc_type: type }, seconds);
      };
    },
  };
}

/** Metrics register once per registry; a second server on the same registry shares them. */
function existing<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

export interface MetricsServerOptions {
  host: string;
  /** 0 picks a free port (tests); a service turns metrics off by not starting this at all. */
  port: number;
  registry: Registry;
  logger?: Logger;
}

export interface MetricsServer {
  /** The port actually bound. */
  readonly port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics in the Prometheus text format; everything else is 404. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, logger } = options;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" || path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      (err: unknown) => {
        logger?.error({ err }, "collecting metrics failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("collecting metrics failed\n");
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  logger?.info({ metricsPort: port }, "metrics endpoint listening");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Scrapers keep connections alive; without this close() waits for them.
        server.closeAllConnections();
      }),
  };
}
