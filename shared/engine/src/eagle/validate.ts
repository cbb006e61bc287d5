// Checks a speculator blob before a node swaps it in: the sha256 the manifest announced, the safetensors
// structure, the architecture and config, that the head fits the target (hidden size, vocabulary of the
// shared lm_head, feature layers), every tensor present with its shape and a supported dtype, and nothing
// else, and every weight finite. Each refusal is a SpeculatorBlobError naming what is wrong.
//
// Why finite: verification stays exact for greedy requests whatever the head proposes, but a NaN weight
// gives NaN draft probabilities, and sampled verification's residual max(p - q, 0) is then NaN: a blob whose
// sha256 matched its manifest but whose tensors held NaN moved P(first token = EOS) from 0.355 to 0.595.
import { createHash } from "node:crypto";
import { ModelFileError, SpeculatorBlobError } from "../errors.js";
import { parseSafetensors } from "../loader/safetensors.js";
import type { ModelConfig } from "../model/config.js";
import { DTYPE_BYTES, firstNonFiniteElement, type HostTensor, toFloat32 } from "../tensor.js";
import { parseDraftVocab } from "../train/draft-vocab.js";
import { checkFitsTarget, type EagleConfig, expectedEagleTensors, parseEagleConfig } from "./config.js";

/**
 * What a manifest says about its blob: the fields of specloop.v1.SpeculatorManifest this check reads, so
 * the generated message type can be passed as is (the engine does not depend on @specloop/proto).
 */
export interface SpeculatorManifestFacts {
  versionId?: string;
  architecture: string;
  /** Hyper-parameters as strings; each one given must equal the blob's metadata. */
  config?: { readonly [key: string]: string };
  /** When non-empty: exactly the blob's tensors (safetensors dtype names, shapes). */
  tensors?: readonly { name: string; dtype: string; shape: readonly number[] }[];
  /** Hex sha256 of the whole blob; "" skips the check. */
  sha256: string;
  /** 0 or absent skips the check. */
  sizeBytes?: number;
}

export interface ValidatedSpeculator {
  config: EagleConfig;
  /** The head's draft vocabulary (metadata `draft_vocab`, train/draft-vocab.ts); undefined: the whole one. */
  draftVocab?: Int32Array;
  /** The head's tensors, views into the blob. */
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
  sha256: string;
}

const SAFETENSORS_NAMES: Readonly<Record<HostTensor["dtype"], string>> = {
  f32: "F32",
  f16: "F16",
  bf16: "BF16",
};

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** Validates `bytes` as an eagle head for `target`; throws SpeculatorBlobError naming the first problem. */
export function validateSpeculatorBlob(
  bytes: Uint8Array,
  target: ModelConfig,
  manifest?: SpeculatorManifestFacts,
): ValidatedSpeculator {
  const sha256 = sha256Hex(bytes);
  // The digest first: a blob that does not match its manifest was corrupted or swapped in transit, and
  // that is the truer message than whatever its damaged header would say.
  if (manifest !== undefined) {
    if (manifest.sha256 !== "" && manifest.sha256.toLowerCase() !== sha256) {
      throw new SpeculatorBlobError("sha256", `the manifest says ${manifest.sha256}, the blob is ${sha256}`);
    }
    if (
      manifest.sizeBytes !== undefined &&
      manifest.sizeBytes > 0 &&
      manifest.sizeBytes !== bytes.byteLength
    ) {
      throw new SpeculatorBlobError(
        "size_bytes",
        `the manifest says ${manifest.sizeBytes} bytes, the blob has ${bytes.byteLength}`,
      );
    }
  }
  let parsed: ReturnType<typeof parseSafetensors>;
  try {
    parsed = parseSafetensors(bytes, manifest?.versionId ? `version ${manifest.versionId}` : "blob");
  } catch (err) {
    if (!(err instanceof ModelFileError)) throw err;
    throw new SpeculatorBlobError("safetensors", err.message, { cause: err });
  }
  const { tensors, metadata } = parsed;
  const config = parseEagleConfig(metadata);
  checkFitsTarget(config, target);
  const draftVocab = parseDraftVocab(metadata, config.vocabSize);
  if (manifest !== undefined) checkManifest(manifest, config, metadata, tensors);

  const expected = expectedEagleTensors(config);
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (t === undefined) throw new SpeculatorBlobError(name, "tensor missing");
    if (!sameShape(t.shape, shape))
      throw new SpeculatorBlobError(name, `shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
  for (const name of tensors.keys()) {
    if (!expected.has(name)) {
      throw new SpeculatorBlobError(
        name,
        `unexpected tensor (an ${config.architecture} head with ${config.featureLayers.length} feature layer(s) holds only ${[...expected.keys()].join(", ")})`,
      );
    }
  }
  for (const [name, t] of tensors) {
    const at = firstNonFiniteElement(t);
    if (at >= 0) {
      throw new SpeculatorBlobError(
        name,
        `element ${at} is ${valueAt(t, at)}: a head with NaN or infinite weights is refused`,
      );
    }
  }
  return { config, tensors, metadata, sha256, draftVocab };
}

/** Element i of t as a number (for messages). */
function valueAt(t: HostTensor, i: number): number {
  const b = DTYPE_BYTES[t.dtype];
  return toFloat32({ dtype: t.dtype, shape: [1], data: t.data.subarray(i * b, (i + 1) * b) })[0] as number;
}

function checkManifest(
  m: SpeculatorManifestFacts,
  config: EagleConfig,
  metadata: Readonly<Record<string, string>>,
  tensors: ReadonlyMap<string, HostTensor>,
): void {
  if (m.architecture !== config.architecture) {
    throw new SpeculatorBlobError(
      "manifest.architecture",
      `"${m.architecture}", but the blob's metadata says "${config.architecture}"`,
    );
  }
  for (const [key, value] of Object.entries(m.config ?? {})) {
    if (metadata[key] !== value) {
      throw new SpeculatorBlobError(
        `manifest.config.${key}`,
        `"${value}", but the blob's metadata says ${metadata[key] === undefined ? "nothing" : `"${metadata[key]}"`}`,
      );
    }
  }
  if (m.tensors === undefined || m.tensors.length === 0) return;
  const listed = new Set<string>();
  for (const spec of m.tensors) {
    listed.add(spec.name);
    const t = tensors.get(spec.name);
    if (t === undefined) throw new SpeculatorBlobError(`manifest.tensors.${spec.name}`, "not in the blob");
    if (SAFETENSORS_NAMES[t.dtype] !== spec.dtype || !sameShape(t.shape, spec.shape.map(Number))) {
      throw new SpeculatorBlobError(
        `manifest.tensors.${spec.name}`,
        `${spec.dtype} [${spec.shape.join(", ")}], but the blob holds ${SAFETENSORS_NAMES[t.dtype]} [${t.shape.join(", ")}]`,
      );
    }
  }
  for (const name of tensors.keys()) {
    if (!listed.has(name)) throw new SpeculatorBlobError(`manifest.tensors`, `does not list "${name}"`);
  }
}
