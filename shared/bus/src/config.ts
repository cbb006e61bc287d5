// The `bus:` section of a service's configuration. Every key comes from YAML or from the environment:
// `bus.traceStream.maxBytes` is SPECLOOP_BUS__TRACE_STREAM__MAX_BYTES (see @specloop/runtime).
import { z } from "zod";

export const DEFAULT_BUS_URLS: readonly string[] = ["nats://127.0.0.1:4222"];
export const DEFAULT_CONNECTION_NAME = "specloop";
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_RECONNECT_WAIT_MS = 1_000;
export const DEFAULT_REPLICAS = 1;

export const DEFAULT_TRACE_MAX_BYTES = 1024 ** 3;
export const DEFAULT_TRACE_MAX_AGE_MS = 24 * 3_600_000;
export const DEFAULT_TRACE_DUPLICATE_WINDOW_MS = 120_000;
/** Under the NATS server's default max_payload (1 MiB), with room for headers. */
export const DEFAULT_TRACE_MAX_MESSAGE_BYTES = 1_000_000;

export const DEFAULT_VERDICT_MAX_BYTES = 256 * 1024 ** 2;
export const DEFAULT_VERDICT_MAX_AGE_MS = 7 * 24 * 3_600_000;
export const DEFAULT_VERDICT_DUPLICATE_WINDOW_MS = 120_000;

export const DEFAULT_SPECULATOR_HISTORY = 5;
export const DEFAULT_WEIGHTS_MAX_BYTES = 4 * 1024 ** 3;
export const DEFAULT_HEARTBEAT_TTL_MS = 15_000;

const positiveInt = z.int().min(1);
const replicas = z.int().min(1).max(5).default(DEFAULT_REPLICAS);

export const traceStreamConfigSchema = z.object({
  maxBytes: positiveInt.default(DEFAULT_TRACE_MAX_BYTES),
  maxAgeMs: positiveInt.default(DEFAULT_TRACE_MAX_AGE_MS),
  duplicateWindowMs: positiveInt.default(DEFAULT_TRACE_DUPLICATE_WINDOW_MS),
  /** Largest encoded trace a node publishes (longer requests are chunked under it). */
  maxMessageBytes: positiveInt.default(DEFAULT_TRACE_MAX_MESSAGE_BYTES),
  replicas,
});

export const verdictStreamConfigSchema = z.object({
  maxBytes: positiveInt.default(DEFAULT_VERDICT_MAX_BYTES),
  maxAgeMs: positiveInt.default(DEFAULT_VERDICT_MAX_AGE_MS),
  duplicateWindowMs: positiveInt.default(DEFAULT_VERDICT_DUPLICATE_WINDOW_MS),
  replicas,
});

export const busConfigSchema = z.object({
  /** NATS server URLs; the client picks among them and fails over. */
  urls: z
    .array(z.string().min(1))
    .min(1)
    .default([...DEFAULT_BUS_URLS]),
  /** Connection name the server shows in its monitoring. */
  name: z.string().min(1).default(DEFAULT_CONNECTION_NAME),
  /** How long the first connect may take before the service gives up. */
  connectTimeoutMs: positiveInt.default(DEFAULT_CONNECT_TIMEOUT_MS),
  /** Pause between reconnect attempts once connected (attempts are unlimited). */
  reconnectWaitMs: positiveInt.default(DEFAULT_RECONNECT_WAIT_MS),
  traceStream: traceStreamConfigSchema.prefault({}),
  verdictStream: verdictStreamConfigSchema.prefault({}),
  speculators: z
    .object({
      /** Manifests kept per key (live, canary) for audit. */
      history: z.int().min(1).max(64).default(DEFAULT_SPECULATOR_HISTORY),
      replicas,
    })
    .prefault({}),
  weights: z
    .object({
      maxBytes: positiveInt.default(DEFAULT_WEIGHTS_MAX_BYTES),
      replicas,
    })
    .prefault({}),
  heartbeats: z
    .object({
      /** A node that has not reported for this long drops out of the live list. */
      ttlMs: z.int().min(100).default(DEFAULT_HEARTBEAT_TTL_MS),
      replicas,
    })
    .prefault({}),
});
export type BusConfig = z.output<typeof busConfigSchema>;
export type BusConfigInput = z.input<typeof busConfigSchema>;
export type TraceStreamConfig = z.output<typeof traceStreamConfigSchema>;

/** A full bus config from a partial one (defaults filled in, values validated). */
export function busConfig(input: BusConfigInput = {}): BusConfig {
  return busConfigSchema.parse(input);
}
