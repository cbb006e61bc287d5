// A speculator version's life, in one place: created (candidate), canaried, promoted to live, retired,
// rejected, rolled back, pinned. Each move updates SQLite (the version row and an event with who, why and,
// for the gate's decisions, the evidence) and then the bus (the signed manifest in the model's live or canary
// slot, or the canary slot cleared). Blobs are kept under the data directory so a rollback or a restart can
// announce a version again; version ids are derived from the training step, so a re-publish after a crash is
// the same version, not a new one (idempotent).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SpeculatorRegistry } from "@specloop/bus";
import { sha256Hex } from "@specloop/engine";
import { type GateEvidence, type OfflineMetrics, SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { FailedPreconditionError, NotFoundError } from "@specloop/runtime";
import { and, desc, eq } from "drizzle-orm";
import {
  type SpeculatorVersionRow,
  speculatorVersions,
  type TrainerDb,
  type VersionAction,
  type VersionStatus,
  versionEvents,
} from "./db/index.js";

/** The trainer's own name in the event log (operators are recorded by their authenticated identity). */
export const TRAINER_ACTOR = "trainer";

export interface NewVersion {
  id: string;
  parentId: string | undefined;
  blob: Uint8Array;
  architecture: string;
  samplesSeen: number;
  trainingSteps: number;
  offline: OfflineMetrics | undefined;
}

export interface LifecycleOptions {
  db: TrainerDb;
  modelId: string;
  /** Where to announce; absent: SQLite only (tools, tests of the store alone). */
  registry: Pick<SpeculatorRegistry, "publish" | "clear"> | undefined;
  /** Directory for version blobs (<id>.safetensors). */
  blobDir: string;
}

/** The id of the version published after `step` optimizer steps: the same step gives the same id. */
export function versionIdFor(modelId: string, step: number): string {
  return `${modelId}-s${String(step).padStart(8, "0")}`;
}

export class VersionLifecycle {
  constructor(private readonly options: LifecycleOptions) {
    mkdirSync(options.blobDir, { recursive: true });
  }

  private get db(): TrainerDb {
    return this.options.db;
  }

  get(id: string): SpeculatorVersionRow {
    const row = this.db
      .select()
      .from(speculatorVersions)
      .where(and(eq(speculatorVersions.modelId, this.options.modelId), eq(speculatorVersions.id, id)))
      .get();
    if (row === undefined)
      throw new NotFoundError(`version ${id.slice(0, 128)} of ${this.options.modelId} not found`);
    return row;
  }

  withStatus(status: VersionStatus): SpeculatorVersionRow | undefined {
    return this.db
      .select()
      .from(speculatorVersions)
      .where(and(eq(speculatorVersions.modelId, this.options.modelId), eq(speculatorVersions.status, status)))
      .get();
  }

  blobOf(id: string): Uint8Array {
    return readFileSync(this.blobPath(id));
  }

  /** Records a new candidate (blob written first, atomically); an existing id is returned as it is. */
  create(v: NewVersion): SpeculatorVersionRow {
    const existing = this.db.select().from(speculatorVersions).where(eq(speculatorVersions.id, v.id)).get();
    if (existing !== undefined) return existing;
    const path = this.blobPath(v.id);
    if (!existsSync(path)) {
      writeFileSync(`${path}.tmp`, v.blob);
      renameSync(`${path}.tmp`, path);
    }
    this.db.transaction((tx) => {
      tx.insert(speculatorVersions)
        .values({
          id: v.id,
          modelId: this.options.modelId,
          parentId: v.parentId ?? null,
          status: "candidate",
          architecture: v.architecture,
          samplesSeen: v.samplesSeen,
          trainingSteps: v.trainingSteps,
          offlineMetrics: v.offline ?? null,
          sha256: sha256Hex(v.blob),
          sizeBytes: v.blob.length,
        })
        .run();
      tx.insert(versionEvents)
        .values({
          versionId: v.id,
          modelId: this.options.modelId,
          action: "create",
          toStatus: "candidate",
          actor: TRAINER_ACTOR,
        })
        .run();
    });
    return this.get(v.id);
  }

  /** Makes a candidate the canary (a running canary is retired first) and announces it with `share`. */
  async canary(id: string, share: number, actor: string, reason: string): Promise<SpeculatorVersionRow> {
    const row = this.get(id);
    if (row.status !== "candidate") {
      throw new FailedPreconditionError(
        `version ${id} is ${row.status}; only a candidate can become the canary`,
      );
    }
    const current = this.withStatus("canary");
    if (current !== undefined) this.move(current, "retired", "retire", actor, `replaced by ${id}`);
    this.move(row, "canary", "canary", actor, reason);
    await this.announce(id, SpeculatorRole.SPECULATOR_ROLE_CANARY, share);
    return this.get(id);
  }

  /**
   * Makes a version live: the live one is retired (it stays the rollback target), a canary being promoted
   * leaves the canary slot empty. Refused for a retired or rejected version and while live is pinned.
   */
  async promote(
    id: string,
    actor: string,
    reason: string,
    evidence?: GateEvidence,
  ): Promise<SpeculatorVersionRow> {
    const row = this.pending(id, "promoted");
    const live = this.withStatus("live");
    if (live?.pinned) throw new FailedPreconditionError(`live version ${live.id} is pinned; unpin it first`);
    if (live !== undefined) this.move(live, "retired", "retire", actor, `replaced by ${id}`);
    this.move(row, "live", "promote", actor, reason, evidence);
    await this.announce(id, SpeculatorRole.SPECULATOR_ROLE_LIVE, 0);
    if (row.status === "canary") await this.options.registry?.clear(this.options.modelId, "canary");
    return this.get(id);
  }

  /** The gate (or an operator) refuses the canary: rejected, and the canary slot cleared. */
  async reject(
    id: string,
    actor: string,
    reason: string,
    evidence?: GateEvidence,
  ): Promise<SpeculatorVersionRow> {
    const row = this.pending(id, "rejected");
    this.move(row, "rejected", "reject", actor, reason, evidence);
    if (row.status === "canary") await this.options.registry?.clear(this.options.modelId, "canary");
    return this.get(id);
  }

  /** Puts the previous live version back (the newest retired one that was live) and rejects the current. */
  async rollback(
    actor: string,
    reason: string,
    evidence?: GateEvidence,
  ): Promise<{ live: SpeculatorVersionRow; retired: SpeculatorVersionRow }> {
    const live = this.withStatus("live");
    if (live === undefined) throw new FailedPreconditionError("there is no live version to roll back");
    if (live.pinned) throw new FailedPreconditionError(`live version ${live.id} is pinned; unpin it first`);
    const previous = this.previousLive(live.id);
    if (previous === undefined) {
      throw new FailedPreconditionError(
        `live version ${live.id} has no previous live version to roll back to`,
      );
    }
    this.move(live, "rejected", "rollback", actor, reason, evidence);
    this.move(previous, "live", "rollback", actor, `rolled back from ${live.id}`);
    await this.announce(previous.id, SpeculatorRole.SPECULATOR_ROLE_LIVE, 0);
    return { live: this.get(previous.id), retired: this.get(live.id) };
  }

  pin(actor: string, reason: string, pinned: boolean): SpeculatorVersionRow {
    const live = this.withStatus("live");
    if (live === undefined) throw new FailedPreconditionError("there is no live version to pin");
    this.db.transaction((tx) => {
      tx.update(speculatorVersions).set({ pinned }).where(eq(speculatorVersions.id, live.id)).run();
      tx.insert(versionEvents)
        .values({
          versionId: live.id,
          modelId: this.options.modelId,
          action: pinned ? "pin" : "unpin",
          fromStatus: "live",
          toStatus: "live",
          actor,
          reason,
        })
        .run();
    });
    return this.get(live.id);
  }

  /** Re-announces the live and canary versions (after a restart, or a bus that lost its state). */
  async reannounce(canaryShare: number): Promise<void> {
    const live = this.withStatus("live");
    if (live !== undefined) await this.announce(live.id, SpeculatorRole.SPECULATOR_ROLE_LIVE, 0);
    const canary = this.withStatus("canary");
    if (canary !== undefined)
      await this.announce(canary.id, SpeculatorRole.SPECULATOR_ROLE_CANARY, canaryShare);
  }

  events(id: string) {
    return this.db
      .select()
      .from(versionEvents)
      .where(eq(versionEvents.versionId, id))
      .orderBy(versionEvents.id)
      .all();
  }

  /** A version not yet decided (a candidate or the canary); FAILED_PRECONDITION for any other. */
  private pending(id: string, what: string): SpeculatorVersionRow {
    const row = this.get(id);
    if (row.status !== "candidate" && row.status !== "canary") {
      throw new FailedPreconditionError(
        `version ${id} is ${row.status}; only a candidate or the canary can be ${what}`,
      );
    }
    return row;
  }

  /** The newest version that was live before `id` and is retired now. */
  private previousLive(id: string): SpeculatorVersionRow | undefined {
    const wasLive = this.db
      .select({ versionId: versionEvents.versionId })
      .from(versionEvents)
      .where(and(eq(versionEvents.modelId, this.options.modelId), eq(versionEvents.toStatus, "live")))
      .orderBy(desc(versionEvents.id))
      .all();
    for (const { versionId } of wasLive) {
      if (versionId === id) continue;
      const row = this.get(versionId);
      if (row.status === "retired") return row;
    }
    return undefined;
  }

  private move(
    row: SpeculatorVersionRow,
    to: VersionStatus,
    action: VersionAction,
    actor: string,
    reason: string,
    evidence?: GateEvidence,
  ): void {
    const now = new Date();
    this.db.transaction((tx) => {
      tx.update(speculatorVersions)
        .set({
          status: to,
          pinned: to === "live" ? row.pinned : false,
          statusReason: reason,
          ...(to === "live" ? { promotedAt: now, promotedBy: actor } : {}),
        })
        .where(eq(speculatorVersions.id, row.id))
        .run();
      tx.insert(versionEvents)
        .values({
          versionId: row.id,
          modelId: this.options.modelId,
          action,
          fromStatus: row.status,
          toStatus: to,
          actor,
          reason,
          evidence: evidence ?? null,
        })
        .run();
    });
  }

  private async announce(id: string, role: SpeculatorRole, canaryShare: number): Promise<void> {
    const registry = this.options.registry;
    if (registry === undefined) return;
    const row = this.get(id);
    await registry.publish({
      manifest: SpeculatorManifest.fromPartial({
        modelId: this.options.modelId,
        versionId: id,
        role,
        architecture: row.architecture,
        parentVersionId: row.parentId ?? "",
        canaryShare,
      }),
      blob: this.blobOf(id),
    });
  }

  private blobPath(id: string): string {
    return join(this.options.blobDir, `${id.replace(/[^A-Za-z0-9._-]/g, "_")}.safetensors`);
  }
}
