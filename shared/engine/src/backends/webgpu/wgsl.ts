// WGSL pieces shared by the kernels: weight access per dtype and the linear workgroup index.
import type { DType } from "../../tensor.js";

/**
 * Weights are read the same way on every adapter: 2-byte dtypes as u32 words holding two values (low half
 * first), widened in the shader. shader-f16 is not used even where present (lavapipe has it, the H100 under
 * Dawn/Vulkan does not): the storage is 2 bytes either way, the unpack is ALU work hidden under the memory
 * reads, and the path tested here is then the path that runs on the H100.
 */
export function weightElementType(dtype: DType): "u32" | "f32" {
  return dtype === "f32" ? "f32" : "u32";
}

/** `var<storage, read> NAME: array<u32|f32>` and `fn NAMEAt(i) -> f32`, element i of the weight. */
export function weightScalar(binding: number, name: string, dtype: DType): string {
  const decl = `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${weightElementType(dtype)}>;`;
  if (dtype === "f32") return `${decl}\nfn ${name}At(i: u32) -> f32 { return ${name}[i]; }`;
  if (dtype === "f16") {
    return `${decl}
fn ${name}At(i: u32) -> f32 {
  let pair = unpack2x16float(${name}[i >> 1u]);
  return select(pair.x, pair.y, (i & 1u) == 1u);
}`;
  }
  // bf16 is the top half of an f32: widening is a shift, exact.
  return `${decl}
fn ${name}At(i: u32) -> f32 {
  let word = ${name}[i >> 1u];
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}`;
}

/**
 * The weight as 16-byte vectors and `fn NAME8(chunk) -> F8`: elements 8*chunk .. 8*chunk+7 (rows are padded
 * to multiples of 8 elements, so a chunk never straddles two rows). One 16-byte load per chunk for 2-byte
 * weights, two for f32.
 */
export function weightVec8(binding: number, name: string, dtype: DType): string {
  if (dtype === "f32") {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec4<f32>>;
fn ${name}8(c: u32) -> F8 { return F8(${name}[2u * c], ${name}[2u * c + 1u]); }`;
  }
  const unpack =
    dtype === "f16"
      ? "unpack2x16float(w)"
      : "vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u))";
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec4<u32>>;
fn ${name}Pair(w: u32) -> vec2<f32> { return ${unpack}; }
fn ${name}8(c: u32) -> F8 {
  let q = ${name}[c];
  return F8(vec4<f32>(${name}Pair(q.x), ${name}Pair(q.y)), vec4<f32>(${name}Pair(q.z), ${name}Pair(q.w)));
}`;
}

/** Eight consecutive f32 values. */
export const F8_STRUCT = "struct F8 { a: vec4<f32>, b: vec4<f32> }";

/**
 * Dispatches past 65535 workgroups are split over x and y (Recorder.dispatch); kernels take the linear
 * index and drop the overshoot of the last row of workgroups.
 */
export const LINEAR_WORKGROUP = `fn linearWorkgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }`;
