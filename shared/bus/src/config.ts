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

export const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 ** 2;
/** How far back a node's fleet consumer starts when it has none to resume (a bounded recent window). */
export const DEFAULT_FLEET_REPLAY_WINDOW_MS = 10 * 60_000;
/** A node's fleet consumer is removed by the server once nobody has pulled from it for this long. */
export const DEFAULT_FLEET_INACTIVE_THRESHOLD_MS = 5 * 60_000;

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

/** Files of TLS to the NATS server; all empty: plain TCP (loopback, or a network you trust). */
export const busTlsConfigSchema = z.object({
  /** CA bundle (PEM) that signed the server's certificate; empty: the system's CAs. */
  caFile: z.string().default(""),
  /** Client certificate and key (PEM), when the server asks for one (mutual TLS). */
  certFile: z.string().default(""),
  keyFile: z.string().default(""),
  /** Use TLS even with no file set (the server's certificate checked against the system's CAs). */
  enabled: z.boolean().default(false),
});

/** Signed speculator manifests (signing.ts): the trainer's private key, the nodes' trusted public keys. */
export const manifestSigningConfigSchema = z.object({
  /** Ed25519 private key (PKCS#8 PEM) the trainer signs manifests with; empty: manifests go unsigned. */
  signingKeyFile: z.string().default(""),
  /** Public keys a node trusts, each `ed25519:<base64url of the 32 raw bytes>` (keys.ts writes them). */
  trustedKeys: z.array(z.string().min(1)).default([]),
  /** A file of such keys, one a line (`#` starts a comment); added to trustedKeys. */
  trustedKeysFile: z.string().default(""),
});

export const spoolConfigSchema = z.object({
  /**
   * Directory of the spool files (one sub-directory per publisher), e.g. `<data dir>/spool` (npm start
   * sets it); empty: what waits for the bus is held in memory only, and lost if the process exits.
   */
  dir: z.string().default(""),
  /** Bytes the spool may hold (on disk, or in memory without a dir); what comes beyond is dropped and counted. */
  maxBytes: positiveInt.default(DEFAULT_SPOOL_MAX_BYTES),
});

export const fleetConsumerConfigSchema = z.object({
  /** A new fleet consumer starts this far back in the trace stream, not at its beginning. */
  replayWindowMs: positiveInt.default(DEFAULT_FLEET_REPLAY_WINDOW_MS),
  /** The server removes a node's fleet consumer after this long without a pull (a node that is gone). */
  inactiveThresholdMs: z.int().min(1_000).default(DEFAULT_FLEET_INACTIVE_THRESHOLD_MS),
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
  /**
   * This service's NATS credential: an nkey seed file (what credentials.ts writes, one per role) or a
   * `.creds` file (user JWT and seed); empty: connect without authenticating.
   */
  credentialsFile: z.string().default(""),
  tls: busTlsConfigSchema.prefault({}),
  manifests: manifestSigningConfigSchema.prefault({}),
  spool: spoolConfigSchema.prefault({}),
  fleetConsumer: fleetConsumerConfigSchema.prefault({}),
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
export type BusTlsConfig = z.output<typeof busTlsConfigSchema>;
export type ManifestSigningConfig = z.output<typeof manifestSigningConfigSchema>;
export type SpoolConfig = z.output<typeof spoolConfigSchema>;
export type FleetConsumerConfig = z.output<typeof fleetConsumerConfigSchema>;

/** A full bus config from a partial one (defaults filled in, values validated). */
export function busConfig(input: BusConfigInput = {}): BusConfig {
  return busConfigSchema.parse(input);
}
