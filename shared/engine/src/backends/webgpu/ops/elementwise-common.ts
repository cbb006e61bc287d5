// The shape of every one-thread-per-element kernel: 256 threads, linear index over however many workgroups.
import { LINEAR_WORKGROUP } from "../wgsl.js";

export const ELEMENTWISE_WG = 256;

/**
 * A kernel over `params.n` elements whose body sees `i` (already bounds-checked), the declarations given and
 * any further u32 fields of Params (after n, in the order the ParamBlock writes them).
 */
export function elementwiseKernel(decls: string, body: string, fields: readonly string[] = []): string {
  return `${LINEAR_WORKGROUP}
struct Params { n: u32, ${fields.map((f) => `${f}: u32`).join(", ")} }
@group(0) @binding(0) var<uniform> params: Params;
${decls}
@compute @workgroup_size(${ELEMENTWISE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linearWorkgroup(wid, nwg) * ${ELEMENTWISE_WG}u + lid;
  if (i >= params.n) { return; }
  ${body}
}`;
}

export function elementwiseWorkgroups(n: number): number {
  return Math.ceil(n / ELEMENTWISE_WG);
}
