// `trainer config set KEY=VALUE ...`: keys are the TrainingConfig fields' proto names (snake_case, as the
// trainer's UpdateTrainingConfig update_fields names them); values are parsed by the field's type here, and
// the trainer checks their bounds (INVALID_ARGUMENT naming the field).
import { TrainingConfig } from "@specloop/proto";
import { CliError } from "../exit-codes.js";

type Kind = "number" | "integer" | "list";

/** Every TrainingConfig field by proto name: its TypeScript name and how its value is written. */
export const TRAINING_CONFIG_FIELDS: Readonly<Record<string, { field: keyof TrainingConfig; kind: Kind }>> = {
  learning_rate: { field: "learningRate", kind: "number" },
  batch_size: { field: "batchSize", kind: "integer" },
  unroll_steps: { field: "unrollSteps", kind: "integer" },
  rejection_loss_weight: { field: "rejectionLossWeight", kind: "number" },
  publish_every_steps: { field: "publishEverySteps", kind: "integer" },
  canary_share: { field: "canaryShare", kind: "number" },
  canary_min_requests: { field: "canaryMinRequests", kind: "integer" },
  promote_min_speedup: { field: "promoteMinSpeedup", kind: "number" },
  domains: { field: "domains", kind: "list" },
};

const KEYS = Object.keys(TRAINING_CONFIG_FIELDS).join(", ");

/** The update (a TrainingConfig holding the new values) and its update_fields, from KEY=VALUE words. */
export function parseConfigAssignments(words: readonly string[]): {
  config: TrainingConfig;
  updateFields: string[];
} {
  if (words.length === 0) throw new CliError(`give at least one KEY=VALUE; keys: ${KEYS}`);
  const config = TrainingConfig.create();
  const updateFields: string[] = [];
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq <= 0) throw new CliError(`"${word}" is not KEY=VALUE`);
    const key = word.slice(0, eq).trim();
    const raw = word.slice(eq + 1).trim();
    const spec = TRAINING_CONFIG_FIELDS[key];
    if (spec === undefined) throw new CliError(`unknown key "${key}"; keys: ${KEYS}`);
    if (updateFields.includes(key)) throw new CliError(`${key} is given twice`);
    if (spec.kind === "list") {
      (config[spec.field] as string[]) = raw === "" ? [] : raw.split(",").map((s) => s.trim());
    } else {
      const n = Number(raw);
      if (raw === "" || !Number.isFinite(n)) throw new CliError(`${key}: "${raw}" is not a number`);
      if (spec.kind === "integer" && !(Number.isInteger(n) && n >= 0)) {
        throw new CliError(`${key}: "${raw}" is not a whole number`);
      }
      (config[spec.field] as number) = n;
    }
    updateFields.push(key);
  }
  return { config, updateFields };
}

/** The config as KEY VALUE pairs under the proto names. */
export function configPairs(config: TrainingConfig): [string, string][] {
  return Object.entries(TRAINING_CONFIG_FIELDS).map(([key, { field }]) => {
    const v = config[field];
    return [key, Array.isArray(v) ? (v.length === 0 ? "(all)" : v.join(",")) : String(v)];
  });
}
