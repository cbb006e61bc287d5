// Host-side tensors: what the loader reads from safetensors and hands to a backend. Weights keep the
// checkpoint's dtype (bf16/f16 stay 2 bytes); each backend decides how to store them.

export type DType = "f32" | "f16" | "bf16";

export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, f16: 2, bf16: 2 };

/** safetensors dtype names the engine accepts. */
export const SAFETENSORS_DTYPES: Readonly<Record<string, DType>> = { F32: "f32", F16: "f16", BF16: "bf16" };

export interface HostTensor {
  dtype: DType;
  /** Row-major; a linear layer's weight is [out, in] as in Hugging Face checkpoints. */
  shape: readonly number[];
  /** Little-endian element bytes, exactly product(shape) * DTYPE_BYTES[dtype] long. */
  data: Uint8Array;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function bf16ToF32(bits: number): number {
  u32Scratch[0] = bits << 16;
  return f32Scratch[0] as number;
}

/** bf16 bits of v (taken as an f32), rounded to nearest even; a NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(value: number): number {
  f32Scratch[0] = value;
  const u = u32Scratch[0] as number;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * IEEE half-precision bits of v (taken as an f32), rounded to nearest even: subnormal halves kept, overflow
 * to infinity, a NaN stays a (quiet) NaN.
 */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A subnormal half (or zero): the implicit bit joins the mantissa, shifted down by the missing exponent.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // a carry rounds up the exponent
  return sign | half;
}

export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * Index of the first NaN or infinity among a host tensor's elements, or -1. One pass over the bits, nothing
 * widened: an all-ones exponent field is what makes a value non-finite in each dtype. The bytes are read
 * through a typed array, copied first only when they are not aligned (safetensors does not align a tensor's
 * data); typed arrays read in the platform's byte order, little-endian wherever the engine runs (the cpu
 * backend's wasm memory is little-endian too).
 */
export function firstNonFiniteElement(t: HostTensor): number {
  const n = numel(t.shape);
  const bytes = DTYPE_BYTES[t.dtype];
  const src = t.data.byteOffset % bytes === 0 ? t.data : t.data.slice();
  if (t.dtype === "f32") {
    const bits = new Uint32Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) if (((bits[i] as number) & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const exponent = t.dtype === "bf16" ? 0x7f80 : 0x7c00;
  const bits = new Uint16Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) if (((bits[i] as number) & exponent) === exponent) return i;
  return -1;
}

/** Widens any host tensor to f32 (a copy). */
export function toFloat32(t: HostTensor): Float32Array {
  const n = numel(t.shape);
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Float32Array(n);
  if (t.dtype === "f32") {
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (t.dtype === "bf16") {
    for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(i * 2, true));
  } else {
    for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
  }
  return out;
}

/** An f32 host tensor from numbers (tests, synthetic weights). */
export function f32Tensor(shape: readonly number[], values: ArrayLike<number>): HostTensor {
  if (values.length !== numel(shape))
    throw new RangeError(`f32Tensor: ${values.length} values for shape [${shape}]`);
  const data = new Float32Array(values);
  return { dtype: "f32", shape, data: new Uint8Array(data.buffer) };
}

/** A host tensor of `dtype` holding `values` (2-byte dtypes rounded to nearest even; f32 shares the buffer). */
export function hostTensor(shape: readonly number[], values: Float32Array, dtype: DType): HostTensor {
  if (values.length !== numel(shape))
    throw new RangeError(`hostTensor: ${values.length} values for shape [${shape}]`);
  if (dtype === "f32")
    return { dtype, shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
  const bits = Uint16Array.from(values, dtype === "bf16" ? f32ToBf16Bits : f32ToF16Bits);
  return { dtype, shape, data: new Uint8Array(bits.buffer) };
}
