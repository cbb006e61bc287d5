// The eagle head's blob checks: a random head is valid and the same bytes from the same seed, and every way
// a blob can be wrong is refused with a message naming what is wrong (the node refuses to swap it in).
import assert from "node:assert/strict";
import { test } from "node:test";
import { SpeculatorBlobError } from "../errors.js";
import { encodeSafetensors, parseSafetensors } from "../loader/safetensors.js";
import { type ModelConfig, parseModelConfig } from "../model/config.js";
import { type HostTensor, hostTensor, toFloat32 } from "../tensor.js";
import {
  EAGLE_ARCHITECTURE,
  eagleConfigFor,
  eagleMetadata,
  expectedEagleTensors,
  parseEagleConfig,
} from "./config.js";
import { randomEagleTensors, randomEagleWeights } from "./random.js";
import { sha256Hex, validateSpeculatorBlob } from "./validate.js";

// A small Llama-shaped target: validation reads only its config.
const TARGET: ModelConfig = parseModelConfig({
  architectures: ["LlamaForCausalLM"],
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 100,
  max_position_embeddings: 128,
});

function refused(fn: () => unknown, what: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SpeculatorBlobError, `expected a SpeculatorBlobError, got ${String(err)}`);
    assert.equal(err.what, what);
    assert.match(err.message, message);
    return true;
  });
}

/** A blob from the default head's tensors after `edit`, with `meta` over the default metadata. */
function blobWith(
  edit: (t: Map<string, HostTensor>) => void,
  meta: Record<string, string> = {},
  featureLayers?: number[],
): Uint8Array {
  const config = eagleConfigFor(TARGET, { featureLayers });
  const tensors = randomEagleTensors(config, 7, "f32");
  edit(tensors);
  return encodeSafetensors(tensors, { ...eagleMetadata(config), ...meta });
}

test("eagle validate - a random head is valid, fits the target and is deterministic from its seed", () => {
  const a = randomEagleWeights(TARGET, { seed: 1 });
  const b = randomEagleWeights(TARGET, { seed: 1 });
  const c = randomEagleWeights(TARGET, { seed: 2 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const v = validateSpeculatorBlob(a, TARGET, { architecture: EAGLE_ARCHITECTURE, sha256: sha256Hex(a) });
  assert.equal(v.config.architecture, "eagle-v1");
  assert.deepEqual(v.config.featureLayers, [3], "default: the target's last layer");
  assert.equal(v.config.numKvHeads, 2);
  assert.deepEqual([...v.tensors.keys()].sort(), [...expectedEagleTensors(v.config).keys()].sort());
  assert.ok(!v.tensors.has("fuse.weight"), "one feature layer needs no fuse");
  for (const t of v.tensors.values()) assert.equal(t.dtype, "bf16");

  const eagle3 = randomEagleWeights(TARGET, { seed: 1, featureLayers: [0, 2, 3], dtype: "f16" });
  const v3 = validateSpeculatorBlob(eagle3, TARGET);
  assert.deepEqual(v3.config.featureLayers, [0, 2, 3]);
  assert.deepEqual(v3.tensors.get("fuse.weight")?.shape, [32, 96]);
  assert.deepEqual(v3.tensors.get("fc.weight")?.shape, [32, 64]);
  assert.equal(v3.tensors.get("fc.weight")?.dtype, "f16");
});

test("eagle validate - the config round-trips through the metadata and refuses bad values by key", () => {
  const config = eagleConfigFor(TARGET, { featureLayers: [1, 3] });
  assert.deepEqual(parseEagleConfig(eagleMetadata(config)), config);
  const meta = eagleMetadata(config);
  refused(() => parseEagleConfig({ ...meta, head_dim: "7" }), "head_dim", /7 must be even/);
  refused(
    () => parseEagleConfig({ ...meta, num_key_value_heads: "3" }),
    "num_key_value_heads",
    /does not divide/,
  );
  refused(() => parseEagleConfig({ ...meta, feature_layers: "1,x" }), "feature_layers", /comma-separated/);
  refused(() => parseEagleConfig({ ...meta, feature_layers: "1,1" }), "feature_layers", /repeated/);
  refused(() => parseEagleConfig({ ...meta, rms_norm_eps: "-1" }), "rms_norm_eps", /positive number/);
  const { head_dim: _, ...noHeadDim } = meta;
  refused(() => parseEagleConfig(noHeadDim), "head_dim", /missing from the metadata/);
  refused(() => eagleConfigFor(TARGET, { featureLayers: [4] }), "feature_layers", /layer 4 is out of range/);
});

test("eagle validate - every malformed or misfit blob is refused with what is wrong", () => {
  refused(
    () =>
      validateSpeculatorBlob(
        blobWith(() => {}, { architecture: "medusa-v1" }),
        TARGET,
      ),
    "architecture",
    /"medusa-v1" is not supported \(supported: eagle-v1\)/,
  );
  refused(
    () =>
      validateSpeculatorBlob(
        blobWith((t) => t.delete("layer.mlp.up_proj.weight")),
        TARGET,
      ),
    "layer.mlp.up_proj.weight",
    /tensor missing/,
  );
  refused(
    () =>
      validateSpeculatorBlob(
        blobWith((t) => t.set("lm_head.weight", t.get("fc.weight") as HostTensor)),
        TARGET,
      ),
    "lm_head.weight",
    /unexpected tensor/,
  );
  refused(
    () =>
      validateSpeculatorBlob(
        blobWith((t) => t.set("fc.weight", t.get("layer.self_attn.o_proj.weight") as HostTensor)),
        TARGET,
      ),
    "fc.weight",
    /shape \[32, 32\], expected \[32, 64\]/,
  );
  // A dtype the engine does not run (i32): same byte size as f32, so only the dtype is wrong.
  const good = blobWith(() => {});
  const wrongDtype = rewriteHeader(good, (h) => {
    (h["norm.weight"] as { dtype: string }).dtype = "I32";
  });
  refused(
    () => validateSpeculatorBlob(wrongDtype, TARGET),
    "safetensors",
    /"norm.weight": dtype I32 is not supported/,
  );
  refused(
    () => validateSpeculatorBlob(good.subarray(0, good.byteLength - 10), TARGET),
    "safetensors",
    /truncated/,
  );
  refused(
    () =>
      validateSpeculatorBlob(good, TARGET, {
        architecture: EAGLE_ARCHITECTURE,
        sha256: sha256Hex(new Uint8Array(1)),
      }),
    "sha256",
    /the manifest says [0-9a-f]{64}, the blob is [0-9a-f]{64}/,
  );
  const outOfRange = blobWith(() => {}, { feature_layers: "4" });
  refused(
    () => validateSpeculatorBlob(outOfRange, TARGET),
    "feature_layers",
    /layer 4 is out of range: the target has 4 layers/,
  );
  const otherTarget = { ...TARGET, hiddenSize: 64 };
  refused(
    () => validateSpeculatorBlob(good, otherTarget),
    "hidden_size",
    /32, but the target's hidden size is 64/,
  );
  refused(
    () => validateSpeculatorBlob(good, { ...TARGET, vocabSize: 101 }),
    "vocab_size",
    /lm_head has 101 rows/,
  );
});

test("eagle validate - a manifest that disagrees with its blob is refused by field", () => {
  const blob = randomEagleWeights(TARGET, { seed: 3 });
  const { tensors } = parseSafetensors(blob, "t");
  const specs = [...tensors].map(([name, t]) => ({ name, dtype: "BF16", shape: [...t.shape] }));
  const ok = {
    architecture: EAGLE_ARCHITECTURE,
    sha256: sha256Hex(blob),
    tensors: specs,
    sizeBytes: blob.byteLength,
  };
  validateSpeculatorBlob(blob, TARGET, { ...ok, config: { hidden_size: "32" } });
  refused(
    () => validateSpeculatorBlob(blob, TARGET, { ...ok, architecture: "eagle-v2" }),
    "manifest.architecture",
    /"eagle-v2"/,
  );
  refused(
    () => validateSpeculatorBlob(blob, TARGET, { ...ok, config: { feature_layers: "1" } }),
    "manifest.config.feature_layers",
    /"1", but the blob's metadata says "3"/,
  );
  refused(
    () => validateSpeculatorBlob(blob, TARGET, { ...ok, tensors: specs.slice(1) }),
    "manifest.tensors",
    /does not list/,
  );
  refused(() => validateSpeculatorBlob(blob, TARGET, { ...ok, sizeBytes: 5 }), "size_bytes", /says 5 bytes/);
});

/** The blob with its JSON header edited (re-padded to 8 bytes; the data section unchanged). */
function rewriteHeader(blob: Uint8Array, edit: (header: Record<string, unknown>) => void): Uint8Array {
  const len = Number(new DataView(blob.buffer, blob.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(blob.subarray(8, 8 + len))) as Record<string, unknown>;
  edit(header);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const data = blob.subarray(8 + len);
  const out = new Uint8Array(8 + padded + data.byteLength).fill(0x20, 8, 8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.set(data, 8 + padded);
  return out;
}

test("eagle validate - a head with a NaN or infinite weight is refused, naming the tensor and element", () => {
  // The sha256 and size match the manifest: the blob is intact, its weights are not (hardening, item 10).
  for (const dtype of ["f32", "f16", "bf16"] as const) {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const config = eagleConfigFor(TARGET, {});
      const tensors = randomEagleTensors(config, 7, dtype);
      const fc = tensors.get("fc.weight") as HostTensor;
      const values = toFloat32(fc);
      values[37] = bad;
      tensors.set("fc.weight", hostTensor(fc.shape, values, dtype));
      const blob = encodeSafetensors(tensors, eagleMetadata(config));
      const manifest = {
        architecture: EAGLE_ARCHITECTURE,
        sha256: sha256Hex(blob),
        sizeBytes: blob.byteLength,
      };
      refused(
        () => validateSpeculatorBlob(blob, TARGET, manifest),
        "fc.weight",
        new RegExp(`element 37 is ${bad}: a head with NaN or infinite weights is refused`),
      );
    }
  }
  // Finite extremes stay valid: the largest finite half, subnormals and negative zero.
  const config = eagleConfigFor(TARGET, {});
  const tensors = randomEagleTensors(config, 7, "f16");
  const fc = tensors.get("fc.weight") as HostTensor;
  const values = toFloat32(fc);
  values.set([65504, -65504, 2 ** -24, -0], 0);
  tensors.set("fc.weight", hostTensor(fc.shape, values, "f16"));
  validateSpeculatorBlob(encodeSafetensors(tensors, eagleMetadata(config)), TARGET);
});
