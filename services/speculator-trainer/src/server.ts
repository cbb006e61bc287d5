// The SpeculatorTrainer gRPC API. The read side (status, versions, config) answers from the trainer's
// store today. Training, promotion, rollback, pinning and pausing come with the trainer issue: until then
// they answer UNIMPLEMENTED with a message saying so.
import type { SpeculatorTrainerServer, TrainerStatus } from "@specloop/proto";
import { InvalidArgumentError, NotFoundError, UnimplementedError, unary } from "@specloop/runtime";
import { and, eq } from "drizzle-orm";
import { DEFAULT_TRAINING_CONFIG } from "./config.js";
import { speculatorVersions, type TrainerDb, trainerState } from "./db/index.js";
import {
  DEFAULT_LIST_LIMIT,
  listVersions,
  MAX_LIST_LIMIT,
  storedStatuses,
  toProtoVersion,
  versionWithStatus,
} from "./versions.js";

function notYet(rpc: string): UnimplementedError {
  return new UnimplementedError(`${rpc}: online training and promotion are not in this trainer yet`);
}

export function trainerStatus(db: TrainerDb, modelId: string): TrainerStatus {
  const state = db.select().from(trainerState).where(eq(trainerState.modelId, modelId)).get();
  const live = versionWithStatus(db, modelId, "live");
  return {
    modelId,
    paused: state?.paused ?? false,
    tracesConsumed: state?.tracesConsumed ?? 0,
    tracesRejected: state?.tracesRejected ?? 0,
    trainingSteps: state?.trainingSteps ?? 0,
    recentLoss: state?.recentLoss ?? 0,
    liveVersionId: live?.id ?? "",
    canaryVersionId: versionWithStatus(db, modelId, "canary")?.id ?? "",
    pinned: live?.pinned ?? false,
    backlog: 0,
  };
}

export function trainerServer(db: TrainerDb, modelId: string): SpeculatorTrainerServer {
  const rejectNotYet = (rpc: string) =>
    unary(async () => {
      throw notYet(rpc);
    });
  return {
    getTrainerStatus: unary(async () => ({ status: trainerStatus(db, modelId) })),
    listVersions: unary(async (request) => {
      if (request.limit > MAX_LIST_LIMIT)
        throw new InvalidArgumentError("limit", `must be at most ${MAX_LIST_LIMIT}`);
      const rows = listVersions(
        db,
        modelId,
        storedStatuses(request.statuses),
        request.limit || DEFAULT_LIST_LIMIT,
      );
      return { versions: rows.map(toProtoVersion) };
    }),
    getVersion: unary(async (request) => {
      if (request.versionId === "") throw new InvalidArgumentError("version_id", "must not be empty");
      const row = db
        .select()
        .from(speculatorVersions)
        .where(and(eq(speculatorVersions.modelId, modelId), eq(speculatorVersions.id, request.versionId)))
        .get();
      if (row === undefined) throw new NotFoundError(`version ${request.versionId} of ${modelId} not found`);
      return { version: toProtoVersion(row) };
    }),
    getTrainingConfig: unary(async () => {
      const state = db.select().from(trainerState).where(eq(trainerState.modelId, modelId)).get();
      return { config: { ...(state?.config ?? DEFAULT_TRAINING_CONFIG) } };
    }),
    promoteVersion: rejectNotYet("PromoteVersion"),
    rollbackVersion: rejectNotYet("RollbackVersion"),
    pinVersion: rejectNotYet("PinVersion"),
    unpinVersion: rejectNotYet("UnpinVersion"),
    pauseTraining: rejectNotYet("PauseTraining"),
    resumeTraining: rejectNotYet("ResumeTraining"),
    updateTrainingConfig: rejectNotYet("UpdateTrainingConfig"),
  };
}
