// The eagle head's trainer on the host: fp32 master weights, AdamW, and the training-time-test objective,
// deterministic given the seed and the batches. One definition with the served head: the forward is
// eagle/head.ts's (parity-tested against EagleHead on the reference backend), and what it exports is a
// blob that validateSpeculatorBlob accepts and EagleHead.load serves.
//
//   const trainer = EagleHeadTrainer.create(trainerTarget(loaded), eagleConfigFor(loaded.config), { seed: 1 });
//   trainer.step(batch)       -> { loss, kl, rejected, acceptance, tokens, gradNorm }   one AdamW update
//   trainer.evaluate(batch)   -> { loss, kl, accuracy, simulatedAcceptedPerPass, expectedAcceptedPerPassSampled, tokens }
//   trainer.exportBlob()      -> safetensors (config in metadata, a draft vocabulary as `draft_vocab`)
//   trainer.checkpoint()      -> bytes; EagleHeadTrainer.restore(target, bytes) resumes bit-identically
//   EagleHeadTrainer.fromBlob(target, blob, options)   starts from a served head
//
// A step over a batch: plan the unrolled rows (examples.ts, ttt-layout.ts), run the head step by step
// (head-pass.ts; its linear products on the `cpu` WebAssembly kernels unless options.kernels says
// "reference") scoring each step's logits as it comes (objective.ts), backpropagate through every step,
// clip the global gradient norm and take one AdamW step (ops/adamw.ts). Cost grows with the rows run:
// every committed position of every example at step 0 (context rows only through K/V), and the trained
// positions at each further step. A step runs synchronously on the calling thread (about 0.7 s for 64
// trained positions of tiny-code's default head at 5 steps: bench/results/trainer-throughput-cpu.md), so a
// service that must stay responsive runs it in a worker or keeps batches small.
import { DataLossError, FailedPreconditionError, InvalidArgumentError } from "@specloop/errors";
import type { RopeSpec } from "../backend.js";
import { checkFitsTarget, type EagleConfig, eagleMetadata, parseEagleConfig } from "../eagle/config.js";
import { randomEagleTensors } from "../eagle/random.js";
import { validateSpeculatorBlob } from "../eagle/validate.js";
import { ModelFileError } from "../errors.js";
import { encodeSafetensors, parseSafetensors } from "../loader/safetensors.js";
import { defaultInvFreq } from "../model/rope.js";
import type { DType } from "../tensor.js";
import { DRAFT_VOCAB_KEY, draftVocabMetadata, parseDraftVocab } from "./draft-vocab.js";
import {
  type BatchPlan,
  checkExample,
  type EagleTrainingExample,
  planBatch,
  type VocabMap,
} from "./examples.js";
import { ParamLayout } from "./head-params.js";
import { type FrozenTarget, HeadPass } from "./head-pass.js";
import { stepObjective } from "./objective.js";
import { type AdamWState, adamwStep, newAdamWState } from "./ops/adamw.js";
import { inverseVocab } from "./ops/cross-entropy.js";
import { type LinearKernels, REFERENCE_LINEAR } from "./ops/linear-kernels.js";
import { wasmLinear } from "./ops/linear-wasm.js";
import { type EagleTrainerOptions, parseEagleTrainerOptions } from "./options.js";
import type { TrainerTarget } from "./target.js";

export interface TrainStepResult {
  /** The objective (weighted KL + rejected + acceptance terms, summed over the unrolled steps). */
  loss: number;
  kl: number;
  rejected: number;
  acceptance: number;
  /** Target positions trained at step 0 (trace tokens learned). */
  tokens: number;
  /** The global gradient norm before clipping. */
  gradNorm: number;
}

export interface EvaluateResult {
  loss: number;
  kl: number;
  /** Share of step-0 positions where the head's top token is the target's. */
  accuracy: number;
  /**
   * Tokens per target pass of greedy chain drafting replayed on the batch: from every trained position, a
   * chain of up to unrollSteps drafts is accepted while the head's top token equals the target's (the
   * committed token where no distribution was given), plus the target's own token. Replayed
   * teacher-forced, which equals drafting on the head's own proposals for greedy traces.
   */
  simulatedAcceptedPerPass: number;
  /**
   * The same chains verified by sampling (Leviathan et al.) with the head's proposals drawn from its own
   * distribution, both at temperature 1: 1 + sum_k prod_{j <= k} a_j in expectation, a_j = sum_x min(p, q)
   * at depth j (Aurora's simulated acceptance length, plus the target's own token). Teacher-forced too.
   */
  expectedAcceptedPerPassSampled: number;
  /** Positions the chains started from. */
  tokens: number;
}

export interface ExportOptions {
  /** Storage dtype of the blob's tensors; default f32 (bit-exact with the trainer's masters). */
  dtype?: DType;
}

/** The checkpoint format tag, in the checkpoint's metadata. */
export const TRAINER_CHECKPOINT_FORMAT = "specloop-eagle-trainer-checkpoint-v1";
const META = { format: "format", step: "trainer.step", options: "trainer.options" } as const;

export class EagleHeadTrainer {
  private readonly layout: ParamLayout;
  private readonly decay: Uint8Array;
  private readonly vocab: VocabMap;
  private readonly frozen: FrozenTarget;
  private readonly rope: RopeSpec;
  private readonly lin: LinearKernels;

  private constructor(
    target: TrainerTarget,
    readonly config: EagleConfig,
    readonly options: EagleTrainerOptions,
    private readonly params: Float32Array,
    private readonly adam: AdamWState,
  ) {
    this.layout = new ParamLayout(config);
    this.decay = this.layout.decayMask();
    const H = config.hiddenSize;
    if (target.embed.length !== config.vocabSize * H || target.lmHead.length !== config.vocabSize * H)
      throw new InvalidArgumentError("target", `embed and lmHead must be [${config.vocabSize}, ${H}]`);
    const d2t = options.draftVocab;
    this.vocab = {
      d2t,
      t2d: d2t === undefined ? undefined : inverseVocab(d2t, config.vocabSize),
      cols: d2t?.length ?? config.vocabSize,
    };
    let lm = target.lmHead;
    if (d2t !== undefined) {
      lm = new Float32Array(d2t.length * H);
      d2t.forEach((id, i) => {
        lm.set(target.lmHead.subarray(id * H, (id + 1) * H), i * H);
      });
    }
    this.frozen = { embed: target.embed, lm, cols: this.vocab.cols };
    this.lin = options.kernels === "cpu" ? wasmLinear() : REFERENCE_LINEAR;
    this.rope = {
      headDim: config.headDim,
      theta: config.ropeTheta,
      invFreq: defaultInvFreq(config.headDim, config.ropeTheta),
    };
  }

  /** Day 0: a head drawn from options.seed (randomEagleTensors: the node's day-0 head for the same seed). */
  static create(
    target: TrainerTarget,
    head: EagleConfig,
    options: Partial<EagleTrainerOptions> = {},
  ): EagleHeadTrainer {
    const o = parseEagleTrainerOptions(options);
    const config = parseEagleConfig(eagleMetadata(head));
    checkFitsTarget(config, target.config);
    const layout = new ParamLayout(config);
    const params = layout.fromTensors(randomEagleTensors(config, o.seed, "f32"));
    return new EagleHeadTrainer(target, config, o, params, newAdamWState(layout.size));
  }

  /**
   * Starts from a served head (any dtype, widened to fp32), with fresh optimizer state. The blob's draft
   * vocabulary is used unless options give one.
   */
  static fromBlob(
    target: TrainerTarget,
    blob: Uint8Array,
    options: Partial<EagleTrainerOptions> = {},
  ): EagleHeadTrainer {
    const { config, tensors, metadata } = validateSpeculatorBlob(blob, target.config);
    const draftVocab = options.draftVocab ?? parseDraftVocab(metadata, config.vocabSize);
    const o = parseEagleTrainerOptions({ ...options, ...(draftVocab === undefined ? {} : { draftVocab }) });
    const layout = new ParamLayout(config);
    return new EagleHeadTrainer(target, config, o, layout.fromTensors(tensors), newAdamWState(layout.size));
  }

  /**
   * Resumes from checkpoint(): weights, AdamW moments and step. The checkpoint's options apply unless
   * `options` overrides them (a lower learning rate, say); a draft vocabulary cannot change.
   */
  static restore(
    target: TrainerTarget,
    bytes: Uint8Array,
    options: Partial<EagleTrainerOptions> = {},
  ): EagleHeadTrainer {
    let file: ReturnType<typeof parseSafetensors>;
    try {
      file = parseSafetensors(bytes, "trainer checkpoint");
    } catch (err) {
      if (err instanceof ModelFileError)
        throw new DataLossError(`trainer checkpoint: ${err.message}`, { cause: err });
      throw err;
    }
    const meta = file.metadata;
    if (meta[META.format] !== TRAINER_CHECKPOINT_FORMAT)
      throw new FailedPreconditionError(
        `trainer checkpoint: format ${JSON.stringify(meta[META.format])}, expected ${TRAINER_CHECKPOINT_FORMAT}`,
      );
    const config = parseEagleConfig(meta);
    checkFitsTarget(config, target.config);
    const stored = JSON.parse(meta[META.options] ?? "{}") as Partial<EagleTrainerOptions>;
    const savedVocab = parseDraftVocab(meta, config.vocabSize);
    if (options.draftVocab !== undefined && !sameIds(options.draftVocab, savedVocab))
      throw new InvalidArgumentError("options.draftVocab", "differs from the checkpoint's draft vocabulary");
    const o = parseEagleTrainerOptions({
      ...stored,
      ...options,
      ...(savedVocab === undefined ? {} : { draftVocab: savedVocab }),
    });
    const layout = new ParamLayout(config);
    const step = Number(meta[META.step]);
    if (!Number.isSafeInteger(step) || step < 0)
      throw new DataLossError(`trainer checkpoint: step ${meta[META.step]}`);
    const adam: AdamWState = {
      m: layout.fromTensors(file.tensors, "adam_m."),
      v: layout.fromTensors(file.tensors, "adam_v."),
      step,
    };
    return new EagleHeadTrainer(target, config, o, layout.fromTensors(file.tensors, "param."), adam);
  }

  /** AdamW updates taken. */
  get stepCount(): number {
    return this.adam.step;
  }

  /** One AdamW update on `batch` (none when the batch has no trained position and no rejection). */
  step(batch: readonly EagleTrainingExample[]): TrainStepResult {
    const plan = this.plan(batch, false);
    // Nothing to learn (no trained position, no rejection): no update, and the step is not counted.
    if (plan.rows.every((rows) => rows.length === 0))
      return { loss: 0, kl: 0, rejected: 0, acceptance: 0, tokens: 0, gradNorm: 0 };
    const pass = this.pass(plan);
    const dLogits: Float32Array[] = [];
    const out = { loss: 0, kl: 0, rejected: 0, acceptance: 0 };
    for (let k = 0; k < this.options.unrollSteps; k++) {
      const logits = pass.runStep();
      const obj = stepObjective(plan, k, logits, this.vocab.cols, this.options);
      dLogits.push(obj.dLogits);
      out.loss += obj.loss;
      out.kl += obj.kl;
      out.rejected += obj.rejected;
      out.acceptance += obj.acceptance;
    }
    const grad = new Float32Array(this.layout.size);
    pass.backward(dLogits, this.layout.views(grad));
    const o = this.options;
    const gradNorm = adamwStep(
      this.params,
      grad,
      this.adam,
      { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weightDecay, gradClip: o.gradClip },
      this.decay,
    );
    return { ...out, tokens: plan.klRows[0] ?? 0, gradNorm };
  }

  /** The objective and the drafting metrics on `batch`, without an update. */
  evaluate(batch: readonly EagleTrainingExample[]): EvaluateResult {
    const plan = this.plan(batch, true);
    const pass = this.pass(plan);
    const K = this.options.unrollSteps;
    let loss = 0;
    let kl = 0;
    // Per step: (example, target position) -> whether the head's top token is the one to accept, and the
    // probability that sampled verification accepts a draw from the head.
    const hits: Map<number, boolean>[] = [];
    const overlaps: Map<number, number>[] = [];
    const key = (e: number, p: number) => e * 1_000_003 + p;
    let correct = 0;
    let counted = 0;
    for (let k = 0; k < K; k++) {
      const obj = stepObjective(plan, k, pass.runStep(), this.vocab.cols, this.options);
      loss += obj.loss;
      kl += obj.kl;
      const m = new Map<number, boolean>();
      const o = new Map<number, number>();
      plan.rows[k]!.forEach((row, j) => {
        if (row.hasTarget) o.set(key(row.example, row.position), obj.overlap[j]!);
        const col = obj.argmax[j]!;
        const proposed = this.vocab.d2t === undefined ? col : this.vocab.d2t[col]!;
        const ex = batch[row.example]!;
        const want = row.hasTarget ? obj.targetArgmax[j]! : (ex.tokens[row.position + 1] ?? -1);
        if (want < 0) return;
        m.set(key(row.example, row.position), proposed === want);
        if (k === 0 && row.hasTarget) {
          counted++;
          if (proposed === want) correct++;
        }
      });
      hits.push(m);
      overlaps.push(o);
    }
    let starts = 0;
    let accepted = 0;
    let expected = 0;
    for (const row of plan.rows[0]!) {
      if (!hits[0]!.has(key(row.example, row.position))) continue;
      starts++;
      for (let k = 0; k < K; k++) {
        if (hits[k]!.get(key(row.example, row.position + k)) !== true) break;
        accepted++;
      }
      let chain = 1;
      for (let k = 0; k < K; k++) {
        chain *= overlaps[k]!.get(key(row.example, row.position + k)) ?? 0;
        expected += chain;
      }
    }
    return {
      loss,
      kl,
      accuracy: counted === 0 ? 0 : correct / counted,
      simulatedAcceptedPerPass: starts === 0 ? 1 : 1 + accepted / starts,
      expectedAcceptedPerPassSampled: starts === 0 ? 1 : 1 + expected / starts,
      tokens: starts,
    };
  }

  /**
   * The head's logits over the trained vocabulary (draftVocab's columns, or the whole vocabulary) at each
   * unrolled step for every trained position of `example`, teacher-forced as in training: step k's row
   * for position p reads the head's own step k-1 hidden and token p of the example, and predicts token
   * p + 1. For inspection and for the parity test against the served head.
   */
  forwardLogits(
    example: EagleTrainingExample,
  ): { step: number; positions: Int32Array; logits: Float32Array }[] {
    const plan = this.plan([example], true);
    const pass = this.pass(plan);
    return plan.rows.map((rows, step) => ({
      step,
      positions: Int32Array.from(rows, (r) => r.position),
      logits: pass.runStep(),
    }));
  }

  /** The head as a blob the node serves (validateSpeculatorBlob, EagleHead.load); embed and lm_head are not in it. */
  exportBlob(options: ExportOptions = {}): Uint8Array {
    const meta = eagleMetadata(this.config);
    if (this.vocab.d2t !== undefined) meta[DRAFT_VOCAB_KEY] = draftVocabMetadata(this.vocab.d2t);
    return encodeSafetensors(this.layout.toTensors(this.params, options.dtype ?? "f32"), meta);
  }

  /** Everything a resume needs: fp32 weights, AdamW moments, the step, the options (restore()). */
  checkpoint(): Uint8Array {
    const tensors = new Map([
      ...this.layout.toTensors(this.params, "f32", "param."),
      ...this.layout.toTensors(this.adam.m, "f32", "adam_m."),
      ...this.layout.toTensors(this.adam.v, "f32", "adam_v."),
    ]);
    const { draftVocab, ...rest } = this.options;
    const meta: Record<string, string> = {
      ...eagleMetadata(this.config),
      [META.format]: TRAINER_CHECKPOINT_FORMAT,
      [META.step]: String(this.adam.step),
      [META.options]: JSON.stringify(rest),
    };
    if (draftVocab !== undefined) meta[DRAFT_VOCAB_KEY] = draftVocabMetadata(draftVocab);
    return encodeSafetensors(tensors, meta);
  }

  private plan(batch: readonly EagleTrainingExample[], allRows: boolean): BatchPlan {
    if (!Array.isArray(batch) || batch.length === 0) throw new InvalidArgumentError("batch", "no examples");
    batch.forEach((ex, i) => {
      checkExample(ex, i, this.config);
    });
    return planBatch(batch, this.config, this.options.unrollSteps, this.vocab, allRows);
  }

  private pass(plan: BatchPlan): HeadPass {
    return new HeadPass(
      this.config,
      this.rope,
      this.layout.views(this.params),
      this.frozen,
      {
        layout: plan.layout,
        features: plan.features,
        tokens: plan.tokens,
        logitRows: plan.rows.map((rows) => Int32Array.from(rows, (r) => r.row)),
      },
      this.lin,
    );
  }
}

function sameIds(a: Int32Array, b: Int32Array | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);
}
