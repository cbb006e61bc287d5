// The trainer's options: defaults (Aurora's released recipe where it has one) and one validating parse
// whose errors name the key.
import { InvalidArgumentError } from "@specloop/errors";
import type { LinearKernelsName } from "./ops/linear-kernels.js";

export interface EagleTrainerOptions {
  /** AdamW learning rate (Aurora: 1e-4 from scratch, 1e-5 from a trained head). */
  lr: number;
  /** Decoupled weight decay on the matrices (not the norm gains); Aurora: 0. */
  weightDecay: number;
  betas: [number, number];
  eps: number;
  /** Largest global gradient norm before the update (Aurora: 0.5 to 2.5); 0 turns clipping off. */
  gradClip: number;
  /** Draft steps unrolled in training ("training-time test"; Aurora: 5 to 7). */
  unrollSteps: number;
  /** Step k's loss is weighted stepDecay^k (Aurora: 0.8). */
  stepDecay: number;
  /** Weight of the forward-KL anchor to the target's distribution. */
  klWeight: number;
  /** Weight of the rejected-proposal term (draft-objective.ts); 0: off. */
  rejectedWeight: number;
  /** Weight of the acceptance term 1 - sum min(p, q); 0: off. */
  acceptanceWeight: number;
  /** Seeds the day-0 weights; nothing else is random (a step is a function of the weights and the batch). */
  seed: number;
  /** A reduced draft vocabulary: draft id i -> target id draftVocab[i] (draft-vocab.ts); default: all. */
  draftVocab?: Int32Array;
  /**
   * The linear products' kernels: "cpu" (WebAssembly SIMD, f32 sums; the default) or "reference" (plain
   * TypeScript, f64 sums). Each is deterministic; the two differ in the last bits.
   */
  kernels: LinearKernelsName;
}

export const DEFAULT_EAGLE_TRAINER_OPTIONS: Readonly<Omit<EagleTrainerOptions, "draftVocab">> = Object.freeze(
  {
    lr: 1e-4,
    weightDecay: 0,
    betas: [0.9, 0.999] as [number, number],
    eps: 1e-8,
    gradClip: 0.5,
    unrollSteps: 5,
    stepDecay: 0.8,
    klWeight: 1,
    rejectedWeight: 0,
    acceptanceWeight: 0,
    seed: 0,
    kernels: "cpu",
  },
);

/** A fresh copy of the defaults. */
export function defaultEagleTrainerOptions(): EagleTrainerOptions {
  return { ...DEFAULT_EAGLE_TRAINER_OPTIONS, betas: [...DEFAULT_EAGLE_TRAINER_OPTIONS.betas] };
}

const KEYS = new Set<string>([...Object.keys(DEFAULT_EAGLE_TRAINER_OPTIONS), "draftVocab"]);

/** The defaults overridden by `given`, checked; throws InvalidArgumentError naming the key. */
export function parseEagleTrainerOptions(given: Partial<EagleTrainerOptions> = {}): EagleTrainerOptions {
  for (const key of Object.keys(given)) {
    if (!KEYS.has(key)) throw new InvalidArgumentError(`options.${key}`, "unknown option");
  }
  const o: EagleTrainerOptions = { ...defaultEagleTrainerOptions(), ...given };
  const num = (key: keyof EagleTrainerOptions, ok: (v: number) => boolean, what: string) => {
    const v = o[key];
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v))
      throw new InvalidArgumentError(`options.${key}`, `${String(v)}: expected ${what}`);
  };
  num("lr", (v) => v > 0, "a positive number");
  num("weightDecay", (v) => v >= 0, "a number >= 0");
  num("eps", (v) => v > 0, "a positive number");
  num("gradClip", (v) => v >= 0, "a number >= 0 (0: no clipping)");
  num("unrollSteps", (v) => Number.isInteger(v) && v >= 1 && v <= 64, "an integer in [1, 64]");
  num("stepDecay", (v) => v > 0 && v <= 1, "a number in (0, 1]");
  num("klWeight", (v) => v >= 0, "a number >= 0");
  num("rejectedWeight", (v) => v >= 0, "a number >= 0");
  num("acceptanceWeight", (v) => v >= 0, "a number >= 0");
  num("seed", (v) => Number.isSafeInteger(v), "an integer");
  if (o.klWeight + o.rejectedWeight + o.acceptanceWeight <= 0)
    throw new InvalidArgumentError("options.klWeight", "every objective weight is 0: nothing to learn");
  const b = o.betas;
  if (!Array.isArray(b) || b.length !== 2 || !b.every((v) => typeof v === "number" && v >= 0 && v < 1))
    throw new InvalidArgumentError("options.betas", `${JSON.stringify(b)}: expected two numbers in [0, 1)`);
  o.betas = [b[0], b[1]];
  if (o.kernels !== "cpu" && o.kernels !== "reference")
    throw new InvalidArgumentError(
      "options.kernels",
      `${JSON.stringify(o.kernels)}: expected "cpu" or "reference"`,
    );
  if (o.draftVocab !== undefined && !(o.draftVocab instanceof Int32Array && o.draftVocab.length > 0))
    throw new InvalidArgumentError("options.draftVocab", "expected a non-empty Int32Array of target ids");
  return o;
}
