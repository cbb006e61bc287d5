// The SpeculatorTrainer gRPC API. Reads (status, versions with their events and gate evidence, config) are
// open to anyone who can reach the port; every RPC that changes what the fleet serves or how the trainer
// learns (promote, rollback, pin, unpin, pause, resume, config update) needs a bearer token with the
// `admin` role (grpc/auth.ts in the runtime kit), and the event log records that token's identity, never a
// name the client wrote. Invalid transitions are FAILED_PRECONDITION with a message (lifecycle.ts).
import {
  type GateEvidence,
  SpeculatorRole,
  type SpeculatorTrainerServer,
  type TrainerStatus,
  type VersionEvent,
  VersionStatus,
} from "@specloop/proto";
import { type CallContext, InvalidArgumentError, type TokenAuth, unary } from "@specloop/runtime";
import type { VersionStatus as StoredStatus, TrainerDb, VersionEventRow } from "./db/index.js";
import type { VersionLifecycle } from "./lifecycle.js";
import type { TrainerStateStore } from "./state.js";
import {
  DEFAULT_LIST_LIMIT,
  listVersions,
  MAX_LIST_LIMIT,
  storedStatuses,
  toProtoVersion,
} from "./versions.js";

/** The role an admin token needs for the mutating RPCs. */
export const ADMIN_ROLE = "admin";

const STATUS: Record<StoredStatus, VersionStatus> = {
  candidate: VersionStatus.VERSION_STATUS_CANDIDATE,
  canary: VersionStatus.VERSION_STATUS_CANARY,
  live: VersionStatus.VERSION_STATUS_LIVE,
  retired: VersionStatus.VERSION_STATUS_RETIRED,
  rejected: VersionStatus.VERSION_STATUS_REJECTED,
};

export interface TrainerApiDeps {
  db: TrainerDb;
  modelId: string;
  lifecycle: VersionLifecycle;
  state: TrainerStateStore;
  auth: TokenAuth;
  /** Traces waiting in the stream for this trainer's consumer, read when asked. */
  backlog: () => Promise<number>;
}

export async function trainerStatus(deps: Omit<TrainerApiDeps, "auth">): Promise<TrainerStatus> {
  const state = deps.state.get();
  const live = deps.lifecycle.withStatus("live");
  return {
    modelId: deps.modelId,
    paused: state.paused,
    tracesConsumed: state.tracesConsumed,
    tracesRejected: state.tracesRejected,
    trainingSteps: state.trainingSteps,
    recentLoss: state.recentLoss ?? 0,
    liveVersionId: live?.id ?? "",
    canaryVersionId: deps.lifecycle.withStatus("canary")?.id ?? "",
    pinned: live?.pinned ?? false,
    backlog: await deps.backlog(),
  };
}

function toProtoEvent(e: VersionEventRow): VersionEvent {
  const ev: GateEvidence | undefined = e.evidence ?? undefined;
  return {
    action: e.action,
    fromStatus: e.fromStatus === null ? VersionStatus.VERSION_STATUS_UNSPECIFIED : STATUS[e.fromStatus],
    toStatus: e.toStatus === null ? VersionStatus.VERSION_STATUS_UNSPECIFIED : STATUS[e.toStatus],
    actor: e.actor,
    reason: e.reason,
    at: e.at,
    evidence: ev,
  };
}

function reasonOf(reason: string): string {
  if (reason.length > 1024) throw new InvalidArgumentError("reason", "at most 1024 characters");
  return reason;
}

export function trainerServer(deps: TrainerApiDeps): SpeculatorTrainerServer {
  const { lifecycle, state, auth } = deps;
  const admin = (ctx: CallContext) => auth.require(ctx.metadata, ADMIN_ROLE).name;
  const versionId = (id: string) => {
    if (id === "") throw new InvalidArgumentError("version_id", "must not be empty");
    if (id.length > 256) throw new InvalidArgumentError("version_id", "at most 256 characters");
    return id;
  };
  return {
    getTrainerStatus: unary(async () => ({ status: await trainerStatus(deps) })),
    listVersions: unary(async (request) => {
      if (request.limit > MAX_LIST_LIMIT)
        throw new InvalidArgumentError("limit", `must be at most ${MAX_LIST_LIMIT}`);
      const rows = listVersions(
        deps.db,
        deps.modelId,
        storedStatuses(request.statuses),
        request.limit || DEFAULT_LIST_LIMIT,
      );
      return { versions: rows.map(toProtoVersion) };
    }),
    getVersion: unary(async (request) => {
      const row = lifecycle.get(versionId(request.versionId));
      return { version: toProtoVersion(row), events: lifecycle.events(row.id).map(toProtoEvent) };
    }),
    getTrainingConfig: unary(async () => ({ config: state.config() })),
    promoteVersion: unary(async (request, ctx) => {
      const actor = admin(ctx);
      const id = versionId(request.versionId);
      const reason = reasonOf(request.reason || "promoted by an operator");
      const row =
        request.role === SpeculatorRole.SPECULATOR_ROLE_CANARY
          ? await lifecycle.canary(id, state.config().canaryShare, actor, reason)
          : await lifecycle.promote(id, actor, reason);
      return { version: toProtoVersion(row) };
    }),
    rollbackVersion: unary(async (request, ctx) => {
      const actor = admin(ctx);
      const { live, retired } = await lifecycle.rollback(
        actor,
        reasonOf(request.reason || "rolled back by an operator"),
      );
      return { live: toProtoVersion(live), retired: toProtoVersion(retired) };
    }),
    pinVersion: unary(async (request, ctx) => ({
      version: toProtoVersion(
        lifecycle.pin(admin(ctx), reasonOf(request.reason || "pinned by an operator"), true),
      ),
    })),
    unpinVersion: unary(async (_request, ctx) => ({
      version: toProtoVersion(lifecycle.pin(admin(ctx), "unpinned by an operator", false)),
    })),
    pauseTraining: unary(async (_request, ctx) => {
      state.setPaused(true, admin(ctx));
      return { status: await trainerStatus(deps) };
    }),
    resumeTraining: unary(async (_request, ctx) => {
      state.setPaused(false, admin(ctx));
      return { status: await trainerStatus(deps) };
    }),
    updateTrainingConfig: unary(async (request, ctx) => {
      const actor = admin(ctx);
      if (request.config === undefined) throw new InvalidArgumentError("config", "is required");
      return { config: state.updateConfig(request.config, request.updateFields, actor) };
    }),
  };
}
