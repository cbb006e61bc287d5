// The eagle head's trainable parameters as one flat fp32 array (the master weights), with a named view per
// tensor in the blob's order (EAGLE_TENSORS). One flat array makes the global gradient norm, AdamW and a
// checkpoint single passes; the views are what the forward and backward read and write.
import { type EagleConfig, expectedEagleTensors } from "../eagle/config.js";
import { type HostTensor, hostTensor, toFloat32 } from "../tensor.js";

export interface HeadTensors {
  /** [H, F * H], only with several feature layers. */
  fuse?: Float32Array;
  /** [H, 2H] over concat(g, embedding). */
  fc: Float32Array;
  inputNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  postNorm: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
  norm: Float32Array;
}

const ROLE_OF: Readonly<Record<string, keyof HeadTensors>> = {
  "fuse.weight": "fuse",
  "fc.weight": "fc",
  "layer.input_layernorm.weight": "inputNorm",
  "layer.self_attn.q_proj.weight": "q",
  "layer.self_attn.k_proj.weight": "k",
  "layer.self_attn.v_proj.weight": "v",
  "layer.self_attn.o_proj.weight": "o",
  "layer.post_attention_layernorm.weight": "postNorm",
  "layer.mlp.gate_proj.weight": "gate",
  "layer.mlp.up_proj.weight": "up",
  "layer.mlp.down_proj.weight": "down",
  "norm.weight": "norm",
};

export interface ParamEntry {
  name: string;
  shape: number[];
  offset: number;
  size: number;
}

/** Where each tensor of `config`'s head sits in the flat array. */
export class ParamLayout {
  readonly entries: readonly ParamEntry[];
  readonly size: number;

  constructor(readonly config: EagleConfig) {
    const entries: ParamEntry[] = [];
    let offset = 0;
    for (const [name, shape] of expectedEagleTensors(config)) {
      const size = shape.reduce((a, b) => a * b, 1);
      entries.push({ name, shape, offset, size });
      offset += size;
    }
    this.entries = entries;
    this.size = offset;
  }

  /** Named views into a flat array of this layout (parameters, gradients or moments alike). */
  views(flat: Float32Array): HeadTensors {
    if (flat.length !== this.size)
      throw new RangeError(`ParamLayout: ${flat.length} values for ${this.size}`);
    const out: Partial<HeadTensors> = {};
    for (const e of this.entries) {
      const role = ROLE_OF[e.name];
      if (role === undefined) throw new RangeError(`ParamLayout: no role for tensor ${e.name}`);
      out[role] = flat.subarray(e.offset, e.offset + e.size);
    }
    return out as HeadTensors;
  }

  /** 1 where weight decay applies: the matrices, not the norm gains (as transformers' trainers group them). */
  decayMask(): Uint8Array {
    const mask = new Uint8Array(this.size);
    for (const e of this.entries) if (e.shape.length === 2) mask.fill(1, e.offset, e.offset + e.size);
    return mask;
  }

  /** A flat array from named host tensors (any dtype; widened to f32); every tensor must be there. */
  fromTensors(tensors: ReadonlyMap<string, HostTensor>, prefix = ""): Float32Array {
    const flat = new Float32Array(this.size);
    for (const e of this.entries) {
      const t = tensors.get(prefix + e.name);
      if (t === undefined) throw new RangeError(`ParamLayout: tensor ${prefix + e.name} missing`);
      const values = toFloat32(t);
      if (values.length !== e.size)
        throw new RangeError(
          `ParamLayout: ${prefix + e.name} has ${values.length} values, expected ${e.size}`,
        );
      flat.set(values, e.offset);
    }
    return flat;
  }

  /** Named host tensors (copies) of a flat array, in the blob's order. */
  toTensors(flat: Float32Array, dtype: HostTensor["dtype"] = "f32", prefix = ""): Map<string, HostTensor> {
    const out = new Map<string, HostTensor>();
    for (const e of this.entries) {
      out.set(prefix + e.name, hostTensor(e.shape, flat.slice(e.offset, e.offset + e.size), dtype));
    }
    return out;
  }
}
