// The Aurora loop for one model: traces in, a better speculator out, promoted only when it proves faster.
//
// - Intake hands every whole trace to offer(): it goes into the replay buffer (training) and, when an eagle
//   head drafted it, into the gate's samples for the version that drafted it (what users felt).
// - tick() runs one training step when the buffer holds enough and training is not paused: a batch drawn
//   by freshness and domain balance, each trace turned into an example by the trainer's own target
//   (examples.ts), one AdamW step of the eagle head (the engine's EagleHeadTrainer), both on the
//   training thread (head-training.ts) so the service keeps answering meanwhile.
// - Every `publish_every_steps` steps the head becomes a version (safetensors, id from the step, offline
//   metrics on the newest traces) and, when no canary is running, the canary; a checkpoint (weights, AdamW
//   state, step) is written atomically after each publish, so a SIGKILL resumes there without a new id.
// - The gate (gate.ts) judges the canary against live and live against its own record after every batch
//   of samples; its decisions move versions through lifecycle.ts with their evidence. A pinned live
//   version stops automatic promotion and rollback.
// Day 0: with no live version, the head's day-0 weights are published and made live at once, so the eagle
// drafter exists from the first minute (suffix drafting serves meanwhile; `auto` picks by measured speed).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EAGLE_ARCHITECTURE, type EagleTrainerOptions } from "@specloop/engine";
import { Drafter, SpeculatorRole, type Trace, type TrainingConfig } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import { ReplayBuffer } from "./buffer.js";
import { type GateDecision, type GateOptions, type GateSample, judgeCanary, judgeLive } from "./gate.js";
import type { HeadStart, HeadTraining } from "./head-training.js";
import { TRAINER_ACTOR, type VersionLifecycle, versionIdFor } from "./lifecycle.js";
import type { TrainerStateStore } from "./state.js";

export interface TrainerLoopOptions {
  modelId: string;
  /**
   * Opens the head's training from where it starts (head-training.ts): on a worker thread in the service,
   * in process in tests. It owns the trainer's copy of the target and the head trainer.
   */
  openHead: (start: HeadStart, options: Partial<EagleTrainerOptions>) => Promise<HeadTraining>;
  lifecycle: VersionLifecycle;
  state: TrainerStateStore;
  logger: Logger;
  gate: GateOptions;
  /** Where the checkpoint lives (head.ckpt). */
  checkpointDir: string;
  /** Replay buffer capacity (traces). */
  bufferCapacity: number;
  /** Trainer options beyond the operator's config (seed, step decay, acceptance weight...). */
  trainerOptions?: Partial<EagleTrainerOptions>;
  /** Told of every gate decision that moved a version (metrics, tests). */
  onDecision?: (kind: "promote" | "reject" | "rollback", versionId: string, decision: GateDecision) => void;
  /** Told after each training step. */
  onStep?: (result: { loss: number; tokens: number; seconds: number }) => void;
  /** Told of each version the loop publishes (and whether it became the canary). */
  onPublish?: (versionId: string, canary: boolean, simulatedAcceptedPerPass: number | undefined) => void;
}

/** The most samples kept per version (the gate reads recent traffic). */
const MAX_SAMPLES_PER_VERSION = 4000;

/** What the gate reads of one eagle-drafted request: its version, slot and what its user felt. */
export function gateSampleOf(
  trace: Trace,
): { version: string; role: "live" | "canary"; sample: GateSample } | undefined {
  const eagle = trace.steps.filter((s) => s.drafter === Drafter.DRAFTER_EAGLE && s.speculatorVersion !== "");
  if (eagle.length === 0) return undefined;
  const version = eagle[0]?.speculatorVersion as string;
  const t = trace.timings;
  const seconds = ((t?.draftMs ?? 0) + (t?.verifyMs ?? 0)) / 1000;
  const tokens = trace.outputTokenIds.length - 1;
  if (!(seconds > 0) || tokens <= 0) return undefined;
  const perPass = trace.steps.reduce((s, st) => s + st.acceptedIndices.length + 1, 0) / trace.steps.length;
  return {
    version,
    role: trace.speculatorRole === SpeculatorRole.SPECULATOR_ROLE_CANARY ? "canary" : "live",
    sample: { domain: trace.domain, tokensPerSecond: tokens / seconds, acceptedPerPass: perPass },
  };
}

export class TrainerLoop {
  private readonly buffer: ReplayBuffer<Trace>;
  private readonly samples = new Map<string, GateSample[]>();
  private canarySince = new Map<string, number>();
  private newSamples = 0;
  /** The live version a wanted rollback was last refused for (logged once, not at every judgement). */
  private rollbackRefusedFor = "";
  private appliedConfig = "";
  private running: Promise<void> | undefined;
  private stopped = false;

  private constructor(
    private readonly options: TrainerLoopOptions,
    private readonly head: HeadTraining,
  ) {
    this.buffer = new ReplayBuffer<Trace>({
      capacity: options.bufferCapacity,
      halfLifeMs: 10 * 60_000,
      balanceDomains: true,
      seed: 1,
    });
  }

  /** Resumes from the checkpoint, else from the live version's weights, else day 0 (published live at once). */
  static async open(options: TrainerLoopOptions): Promise<TrainerLoop> {
    mkdirSync(options.checkpointDir, { recursive: true });
    const config = options.state.config();
    const trainerOptions = { ...options.trainerOptions, ...trainerOptionsOf(config) };
    const ckpt = join(options.checkpointDir, "head.ckpt");
    const live = options.lifecycle.withStatus("live");
    const start: HeadStart = existsSync(ckpt)
      ? { from: "checkpoint", bytes: readFileSync(ckpt) }
      : live !== undefined
        ? { from: "blob", bytes: options.lifecycle.blobOf(live.id) }
        : { from: "new" };
    const head = await options.openHead(start, trainerOptions);
    if (start.from === "checkpoint")
      options.logger.info({ step: head.stepCount }, "trainer: resumed from the checkpoint");
    if (start.from === "blob")
      options.logger.info({ from: live?.id }, "trainer: starting from the live version");
    const loop = new TrainerLoop(options, head);
    loop.appliedConfig = JSON.stringify(trainerOptionsOf(config));
    if (live === undefined) await loop.publishDayZero();
    await options.lifecycle.reannounce(config.canaryShare);
    return loop;
  }

  get stepCount(): number {
    return this.head.stepCount;
  }

  get bufferSize(): number {
    return this.buffer.size;
  }

  get bufferCapacity(): number {
    return this.buffer.capacity;
  }

  bufferAgeMs(now = Date.now()): number {
    return this.buffer.oldestAgeMs(now);
  }

  /** A whole trace from the intake: training data, and a gate sample when an eagle head drafted it. */
  offer(trace: Trace, now = Date.now()): void {
    const domains = this.options.state.config().domains;
    if (domains.length === 0 || domains.includes(trace.domain)) this.buffer.add(trace, trace.domain, now);
    const g = gateSampleOf(trace);
    if (g === undefined) return;
    const list = this.samples.get(g.version) ?? [];
    list.push(g.sample);
    if (list.length > MAX_SAMPLES_PER_VERSION) list.shift();
    this.samples.set(g.version, list);
    this.newSamples++;
  }

  /** Runs ticks until stop(); each yields to I/O. */
  start(): void {
    this.running ??= (async () => {
      while (!this.stopped) {
        const worked = await this.tick().catch((err: unknown) => {
          this.options.logger.error({ err }, "trainer: a step failed");
          return false;
        });
        await new Promise((r) => setTimeout(r, worked ? 0 : 200));
      }
    })();
  }

  /** Stops after the step in flight and closes the head's training (its thread). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    await this.head.close();
  }

  /** One step of work; returns whether anything was done. */
  async tick(now = Date.now()): Promise<boolean> {
    let worked = await this.judge(now);
    const state = this.options.state.get();
    const config = this.options.state.config();
    if (state.paused || this.buffer.size < Math.min(config.batchSize, 4)) return worked;
    await this.applyConfig(config);
    const t0 = performance.now();
    const r = await this.head.step(this.buffer.sample(config.batchSize, now));
    const seconds = (performance.now() - t0) / 1000;
    this.options.state.recordProgress({ trainingSteps: this.head.stepCount, recentLoss: r.loss });
    this.options.onStep?.({ loss: r.loss, tokens: r.tokens, seconds });
    worked = true;
    if (this.head.stepCount % config.publishEverySteps === 0) await this.publish(config);
    return worked;
  }

  /** An operator's config change takes effect at the next step (the head is rebuilt from its checkpoint). */
  private async applyConfig(config: TrainingConfig): Promise<void> {
    const wanted = JSON.stringify(trainerOptionsOf(config));
    if (wanted === this.appliedConfig) return;
    await this.head.reconfigure({ ...this.options.trainerOptions, ...trainerOptionsOf(config) });
    this.appliedConfig = wanted;
  }

  private async publishDayZero(): Promise<void> {
    const { lifecycle, modelId } = this.options;
    const row = lifecycle.create({
      id: versionIdFor(modelId, this.head.stepCount),
      parentId: undefined,
      blob: await this.head.exportBlob(),
      architecture: EAGLE_ARCHITECTURE,
      samplesSeen: 0,
      trainingSteps: this.head.stepCount,
      offline: undefined,
    });
    await lifecycle.promote(row.id, TRAINER_ACTOR, "day 0: the first head, so the eagle drafter exists");
    await this.writeCheckpoint();
  }

  /** The head as a new version; the canary when none is running. */
  private async publish(config: TrainingConfig): Promise<void> {
    const { lifecycle, modelId, state } = this.options;
    const ev = await this.head.evaluate(this.buffer.newest(4));
    const live = lifecycle.withStatus("live");
    const row = lifecycle.create({
      id: versionIdFor(modelId, this.head.stepCount),
      parentId: live?.id,
      blob: await this.head.exportBlob(),
      architecture: EAGLE_ARCHITECTURE,
      samplesSeen: state.get().tracesConsumed,
      trainingSteps: this.head.stepCount,
      offline:
        ev === undefined
          ? undefined
          : { loss: ev.loss, accuracy: ev.accuracy, simulatedAcceptedPerPass: ev.simulatedAcceptedPerPass },
    });
    await this.writeCheckpoint();
    const canary = lifecycle.withStatus("canary") === undefined && !(live?.pinned ?? false);
    if (canary) {
      await lifecycle.canary(
        row.id,
        config.canaryShare,
        TRAINER_ACTOR,
        `trained ${this.head.stepCount} steps`,
      );
      this.canarySince.set(row.id, Date.now());
    }
    this.options.onPublish?.(row.id, canary, ev?.simulatedAcceptedPerPass);
  }

  private async writeCheckpoint(): Promise<void> {
    const path = join(this.options.checkpointDir, "head.ckpt");
    writeFileSync(`${path}.tmp`, await this.head.checkpoint());
    renameSync(`${path}.tmp`, path);
  }

  /** The gate's turn: the canary against live, live against its own record. */
  private async judge(now: number): Promise<boolean> {
    if (this.newSamples < 5) return false;
    this.newSamples = 0;
    const { lifecycle, gate } = this.options;
    const live = lifecycle.withStatus("live");
    if (live === undefined || live.pinned) return false;
    const liveSamples = this.samples.get(live.id) ?? [];
    const canary = lifecycle.withStatus("canary");
    if (canary !== undefined) {
      const since = this.canarySince.get(canary.id) ?? canary.createdAt.getTime();
      this.canarySince.set(canary.id, since);
      const d = judgeCanary(this.samples.get(canary.id) ?? [], liveSamples, now - since, gate);
      if (d.action === "promote") {
        await lifecycle.promote(canary.id, TRAINER_ACTOR, d.reason, toProtoEvidence(d));
        this.options.onDecision?.("promote", canary.id, d);
        return true;
      }
      if (d.action === "retire") {
        await lifecycle.reject(canary.id, TRAINER_ACTOR, d.reason, toProtoEvidence(d));
        this.options.onDecision?.("reject", canary.id, d);
        return true;
      }
    }
    const w = Math.max(gate.minSamples, 50);
    const d = judgeLive(liveSamples.slice(-w), liveSamples.slice(-2 * w, -w), gate);
    if (d.action === "rollback") {
      try {
        const { retired } = await lifecycle.rollback(TRAINER_ACTOR, d.reason, toProtoEvidence(d));
        this.samples.delete(retired.id);
        this.options.onDecision?.("rollback", retired.id, d);
        return true;
      } catch (err) {
        // No previous version to go back to (day 0 collapsing): say so once per live version, keep serving.
        if (this.rollbackRefusedFor !== live.id) {
          this.rollbackRefusedFor = live.id;
          this.options.logger.warn(
            { live: live.id, reason: d.reason, err: (err as Error).message },
            "trainer: rollback wanted but not possible",
          );
        }
      }
    }
    return false;
  }
}

function trainerOptionsOf(config: TrainingConfig): Partial<EagleTrainerOptions> {
  return {
    lr: config.learningRate,
    unrollSteps: config.unrollSteps,
    rejectedWeight: config.rejectionLossWeight,
  };
}

function toProtoEvidence(d: GateDecision) {
  const e = d.evidence;
  if (e === undefined) return undefined;
  return {
    samples: e.samples,
    meanLogTokensPerSecond: e.meanLogTokensPerSecond,
    difference: e.difference,
    intervalLow: e.interval[0],
    intervalHigh: e.interval[1],
    statistic: e.statistic,
    threshold: e.threshold,
    acceptedPerPass: e.acceptedPerPass,
    speedup: e.speedup,
    domains: e.domains,
  };
}
