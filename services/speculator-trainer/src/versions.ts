// Reading the version registry (SQLite) and turning rows into the wire's SpeculatorVersion.
import { type SpeculatorVersion, VersionStatus } from "@specloop/proto";
import { and, desc, eq, inArray } from "drizzle-orm";
import {
  type SpeculatorVersionRow,
  type VersionStatus as StoredStatus,
  speculatorVersions,
  type TrainerDb,
} from "./db/index.js";

const STATUS_TO_PROTO: Record<StoredStatus, VersionStatus> = {
  candidate: VersionStatus.VERSION_STATUS_CANDIDATE,
  canary: VersionStatus.VERSION_STATUS_CANARY,
  live: VersionStatus.VERSION_STATUS_LIVE,
  retired: VersionStatus.VERSION_STATUS_RETIRED,
  rejected: VersionStatus.VERSION_STATUS_REJECTED,
};

const PROTO_TO_STATUS = new Map<VersionStatus, StoredStatus>(
  Object.entries(STATUS_TO_PROTO).map(([stored, proto]) => [proto, stored as StoredStatus]),
);

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 1000;

export function toProtoVersion(row: SpeculatorVersionRow): SpeculatorVersion {
  return {
    versionId: row.id,
    modelId: row.modelId,
    parentVersionId: row.parentId ?? "",
    status: STATUS_TO_PROTO[row.status],
    architecture: row.architecture,
    samplesSeen: row.samplesSeen,
    trainingSteps: row.trainingSteps,
    offline: row.offlineMetrics ?? undefined,
    online: row.onlineMetrics ?? undefined,
    sha256: row.sha256,
    sizeBytes: row.sizeBytes,
    pinned: row.pinned,
    createdAt: row.createdAt,
    promotedAt: row.promotedAt ?? undefined,
    promotedBy: row.promotedBy ?? "",
    statusReason: row.statusReason ?? "",
  };
}

/** Statuses given as wire enums; returns undefined for "every status". Unknown values are skipped by the caller. */
export function storedStatuses(statuses: readonly VersionStatus[]): StoredStatus[] | undefined {
  const out = statuses.flatMap((s) => {
    const stored = PROTO_TO_STATUS.get(s);
    return stored === undefined ? [] : [stored];
  });
  return out.length === 0 ? undefined : out;
}

export function listVersions(
  db: TrainerDb,
  modelId: string,
  statuses: StoredStatus[] | undefined,
  limit: number,
): SpeculatorVersionRow[] {
  const byModel = eq(speculatorVersions.modelId, modelId);
  return db
    .select()
    .from(speculatorVersions)
    .where(statuses ? and(byModel, inArray(speculatorVersions.status, statuses)) : byModel)
    .orderBy(desc(speculatorVersions.createdAt), desc(speculatorVersions.id))
    .limit(limit)
    .all();
}
