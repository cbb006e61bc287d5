// THE place where the bus's names are spelled: subjects, streams, consumers, buckets and keys. Nothing
// else in the codebase writes these strings; services and tests call the functions below.
//
// Model and node ids become single subject tokens and KV key tokens through `sanitizeToken`, which is
// injective (two different ids never share a token) and reversible (`unsanitizeToken`):
//   - ASCII letters, digits and "-" are kept;
//   - every other byte of the id's UTF-8 form, "_" included, becomes "_" and two upper-case hex digits.
// So "tiny-code" stays "tiny-code", "Qwen/Qwen2.5-0.5B" becomes "Qwen_2FQwen2_2E5-0_2E5B" and
// "a_b" becomes "a_5Fb". The result is a valid NATS subject token (no ".", "*", ">" or whitespace) and
// a valid KV key token.
import { InvalidBusNameError } from "./errors.js";

const KEEP = /^[A-Za-z0-9-]$/;
const TOKEN = /^(?:[A-Za-z0-9-]|_[0-9A-F]{2})+$/;

/** Turns any non-empty id into one subject/key token (see the module comment). */
export function sanitizeToken(id: string, what = "id"): string {
  if (id.length === 0) throw new InvalidBusNameError(what, "must not be empty");
  let out = "";
  for (const ch of id) {
    if (KEEP.test(ch)) {
      out += ch;
      continue;
    }
    for (const byte of new TextEncoder().encode(ch))
      out += `_${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** The id a token was made from; throws when the string is not a token sanitizeToken produces. */
export function unsanitizeToken(token: string, what = "token"): string {
  if (!TOKEN.test(token)) throw new InvalidBusNameError(what, `"${token}" is not a sanitised token`);
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === "_") {
      bytes.push(Number.parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

const ROOT = "specloop";

/** Streams and the subjects they hold. */
export const TRACE_STREAM = "SPECLOOP_TRACES";
export const TRACE_SUBJECT_PREFIX = `${ROOT}.traces`;
export const VERDICT_STREAM = "SPECLOOP_VERDICTS";
export const VERDICT_SUBJECT_PREFIX = `${ROOT}.verdicts`;

/** Every subject of a stream, for its configuration. */
export const TRACE_SUBJECTS = `${TRACE_SUBJECT_PREFIX}.>`;
export const VERDICT_SUBJECTS = `${VERDICT_SUBJECT_PREFIX}.>`;

/** Where a model's traces are published: `specloop.traces.<model token>`. */
export function traceSubject(modelId: string): string {
  return `${TRACE_SUBJECT_PREFIX}.${sanitizeToken(modelId, "model_id")}`;
}

/** Where verdicts about a model's candidates are published: `specloop.verdicts.<model token>`. */
export function verdictSubject(modelId: string): string {
  return `${VERDICT_SUBJECT_PREFIX}.${sanitizeToken(modelId, "model_id")}`;
}

/** KV bucket of speculator manifests, keyed `<model token>.<role>`. */
export const SPECULATOR_BUCKET = "specloop-speculators";
/** Object store of speculator weights (safetensors blobs). */
export const WEIGHTS_BUCKET = "specloop-weights";
/** KV bucket of node heartbeats, keyed by node token; entries expire after the heartbeat TTL. */
export const HEARTBEAT_BUCKET = "specloop-nodes";

/** The stream nats.js keeps a KV bucket in, and the one it keeps an object store in. */
export function kvStreamName(bucket: string): string {
  return `KV_${bucket}`;
}
export function objectStoreStreamName(bucket: string): string {
  return `OBJ_${bucket}`;
}

/** Slots of a model's speculator, as they appear in KV keys. */
export const SPECULATOR_ROLES = ["live", "canary"] as const;
export type SpeculatorSlot = (typeof SPECULATOR_ROLES)[number];

export function speculatorKey(modelId: string, slot: SpeculatorSlot): string {
  return `${sanitizeToken(modelId, "model_id")}.${slot}`;
}

/** KV key filter matching every slot of one model. */
export function speculatorKeyFilter(modelId: string): string {
  return `${sanitizeToken(modelId, "model_id")}.*`;
}

/** The slot a speculator key names, or undefined for a key of another shape. */
export function slotOfSpeculatorKey(key: string): SpeculatorSlot | undefined {
  const slot = key.slice(key.lastIndexOf(".") + 1);
  return (SPECULATOR_ROLES as readonly string[]).includes(slot) ? (slot as SpeculatorSlot) : undefined;
}

/** Name of a version's blob in the weights object store. */
export function weightsObjectName(modelId: string, versionId: string): string {
  return `${sanitizeToken(modelId, "model_id")}/${sanitizeToken(versionId, "version_id")}.safetensors`;
}

export function heartbeatKey(nodeId: string): string {
  return sanitizeToken(nodeId, "node_id");
}

/** Durable consumers of the services. */
export const CONSUMERS = {
  /**
   * The consumer every model's trainer once shared (so two models' trainers split each other's traces);
   * superseded by trainerTracesConsumer, named here so a trainer can remove what an old version left.
   */
  trainerTraces: "trainer-traces",
  /** The speculator-trainer's consumer of verdicts (rewards for the tournament's judge). */
  trainerVerdicts: "trainer-verdicts",
} as const;

/** The speculator-trainer's consumer of one model's traces (one per model: each trainer sees all of its model's). */
export function trainerTracesConsumer(modelId: string): string {
  return `trainer-traces-${sanitizeToken(modelId, "model_id")}`;
}

/**
 * An inference node's consumer of the fleet's traces (it feeds the node's suffix index), one per node
 * since each node needs every trace; the server removes it once the node has been gone a while.
 */
export function nodeSuffixConsumer(nodeId: string): string {
  return `node-suffix-${sanitizeToken(nodeId, "node_id")}`;
}
