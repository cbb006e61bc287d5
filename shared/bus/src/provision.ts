// Idempotent provisioning of everything on the bus: streams, KV buckets and the object store are
// created when missing and updated when their limits differ from the config. Nothing is ever deleted.
// With auth on only the trainer and admin credentials may create or update streams (permissions.ts): a
// node or verifier finds them there (it only reads their info), keeps a stream whose limits differ from
// its own config as it is (logged, "not_permitted"), and fails clearly when one is missing.
import type { Logger } from "@specloop/runtime";
import {
  DiscardPolicy,
  ErrorCode,
  type JetStreamManager,
  NatsError,
  nanos,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from "nats";
import type { BusConfig } from "./config.js";
import type { Bus } from "./connection.js";
import { BusConflictError, BusPermissionError, BusUnavailableError } from "./errors.js";
import {
  HEARTBEAT_BUCKET,
  kvStreamName,
  objectStoreStreamName,
  SPECULATOR_BUCKET,
  TRACE_STREAM,
  TRACE_SUBJECTS,
  VERDICT_STREAM,
  VERDICT_SUBJECTS,
  WEIGHTS_BUCKET,
} from "./names.js";

/** not_permitted: the stream's limits differ from the config and this credential may not update them. */
export type ProvisionAction = "created" | "updated" | "unchanged" | "not_permitted";

/** What provisioning did, by stream name. */
export type ProvisionReport = Record<string, ProvisionAction>;

export type ProvisionConfig = Pick<
  BusConfig,
  "traceStream" | "verdictStream" | "speculators" | "weights" | "heartbeats"
>;

/** The limits provisioning enforces on an existing stream. */
type Limits = Pick<
  StreamConfig,
  "max_bytes" | "max_age" | "duplicate_window" | "max_msg_size" | "max_msgs_per_subject" | "num_replicas"
>;

/** The nats-server's cap on a duplicate window it derives for itself (KV buckets). */
const SERVER_MAX_DUPLICATE_WINDOW_MS = 120_000;

export async function provisionBus(
  bus: Bus,
  config: ProvisionConfig,
  logger: Logger,
): Promise<ProvisionReport> {
  const report: ProvisionReport = {};
  const limitsStream = {
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
  };
  const t = config.traceStream;
  report[TRACE_STREAM] = await ensureStream(
    bus.jsm,
    logger,
    { name: TRACE_STREAM, subjects: [TRACE_SUBJECTS], ...limitsStream },
    {
      max_bytes: t.maxBytes,
      max_age: nanos(t.maxAgeMs),
      duplicate_window: nanos(Math.min(t.duplicateWindowMs, t.maxAgeMs)),
      max_msg_size: t.maxMessageBytes,
      num_replicas: t.replicas,
    },
  );
  const v = config.verdictStream;
  report[VERDICT_STREAM] = await ensureStream(
    bus.jsm,
    logger,
    { name: VERDICT_STREAM, subjects: [VERDICT_SUBJECTS], ...limitsStream },
    {
      max_bytes: v.maxBytes,
      max_age: nanos(v.maxAgeMs),
      duplicate_window: nanos(Math.min(v.duplicateWindowMs, v.maxAgeMs)),
      num_replicas: v.replicas,
    },
  );

  // KV buckets and the object store: nats.js creates them with its own layout (subjects, rollups,
  // direct get); their limits are then brought in line the same way as the streams'.
  const s = config.speculators;
  report[kvStreamName(SPECULATOR_BUCKET)] = await ensureView(
    bus,
    logger,
    kvStreamName(SPECULATOR_BUCKET),
    () =>
      bus.js.views.kv(SPECULATOR_BUCKET, {
        history: s.history,
        replicas: s.replicas,
        storage: StorageType.File,
      }),
    { max_msgs_per_subject: s.history, num_replicas: s.replicas },
  );
  const w = config.weights;
  report[objectStoreStreamName(WEIGHTS_BUCKET)] = await ensureView(
    bus,
    logger,
    objectStoreStreamName(WEIGHTS_BUCKET),
    () =>
      bus.js.views.os(WEIGHTS_BUCKET, {
        max_bytes: w.maxBytes,
        replicas: w.replicas,
        storage: StorageType.File,
      }),
    { max_bytes: w.maxBytes, num_replicas: w.replicas },
  );
  const h = config.heartbeats;
  report[kvStreamName(HEARTBEAT_BUCKET)] = await ensureView(
    bus,
    logger,
    kvStreamName(HEARTBEAT_BUCKET),
    () => bus.js.views.kv(HEARTBEAT_BUCKET, { history: 1, ttl: h.ttlMs, replicas: h.replicas }),
    {
      max_age: nanos(h.ttlMs),
      duplicate_window: nanos(Math.min(h.ttlMs, SERVER_MAX_DUPLICATE_WINDOW_MS)),
      num_replicas: h.replicas,
    },
  );
  logger.info({ report }, "bus provisioned");
  return report;
}

async function ensureStream(
  jsm: JetStreamManager,
  logger: Logger,
  base: Partial<StreamConfig> & { name: string },
  limits: Partial<Limits>,
): Promise<ProvisionAction> {
  const info = await streamInfo(jsm, base.name);
  if (info === undefined) {
    await call(`create stream ${base.name}`, () => jsm.streams.add({ ...base, ...limits }));
    return "created";
  }
  if (base.storage !== undefined && info.config.storage !== base.storage) {
    throw new BusConflictError(
      `bus: stream ${base.name} has ${info.config.storage} storage, ${base.storage} was asked; it is never recreated`,
    );
  }
  return updateLimits(jsm, logger, info, limits);
}

async function ensureView(
  bus: Bus,
  logger: Logger,
  stream: string,
  create: () => Promise<unknown>,
  limits: Partial<Limits>,
): Promise<ProvisionAction> {
  const existing = await streamInfo(bus.jsm, stream);
  await call(`open ${stream}`, create);
  if (existing === undefined) {
    const info = await streamInfo(bus.jsm, stream);
    if (info === undefined) throw new BusUnavailableError(`bus: ${stream} was not created`);
    await updateLimits(bus.jsm, logger, info, limits);
    return "created";
  }
  return updateLimits(bus.jsm, logger, existing, limits);
}

async function updateLimits(
  jsm: JetStreamManager,
  logger: Logger,
  info: StreamInfo,
  limits: Partial<Limits>,
): Promise<ProvisionAction> {
  const current = info.config as unknown as Record<string, unknown>;
  const changed = Object.entries(limits).filter(([key, value]) => current[key] !== value);
  if (changed.length === 0) return "unchanged";
  try {
    await jsm.streams.update(info.config.name, { ...info.config, ...limits });
  } catch (err) {
    if (!isPermissionError(err)) throw unavailable(`update stream ${info.config.name}`, err);
    logger.warn(
      { stream: info.config.name, differs: Object.fromEntries(changed), have: pick(current, changed) },
      "bus: stream limits differ from this service's config and its credential may not update them; using the stream as it is",
    );
    return "not_permitted";
  }
  return "updated";
}

function pick(current: Record<string, unknown>, changed: [string, unknown][]): Record<string, unknown> {
  return Object.fromEntries(changed.map(([key]) => [key, current[key]]));
}

/** The server refused the call for want of a permission (the credential's role does not allow it). */
export function isPermissionError(err: unknown): boolean {
  return err instanceof NatsError && err.code === ErrorCode.PermissionsViolation;
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (err instanceof Error && err.message === "stream not found") return undefined;
    throw new BusUnavailableError(`bus: cannot read stream ${name}: ${String(err)}`, { cause: err });
  }
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw unavailable(what, err);
  }
}

function unavailable(what: string, err: unknown): Error {
  if (isPermissionError(err)) {
    return new BusPermissionError(
      `bus: cannot ${what}: this credential may not; provision the bus with the trainer or admin credential first`,
      { cause: err },
    );
  }
  return new BusUnavailableError(`bus: cannot ${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}
