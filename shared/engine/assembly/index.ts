// The cpu backend's WebAssembly module: every kernel in one module (one instance per thread over the shared
// memory), compiled by `npm run asbuild -w @specloop/engine` into dist/wasm/kernels.wasm, and again with
// relaxed SIMD (fused multiply-add) into kernels-relaxed.wasm. src/backends/cpu/wasm.ts types these exports.
export { attention, attentionChunk } from "./attention";
export { add, rmsNorm, rope, siluMul } from "./elementwise";
export { job, jobAll } from "./jobs";
export { interleave, matmul } from "./matmul";
export { probeCopy, probeMadd, probeSum } from "./probe";
export { argmaxRows, topkMerge, topkRows } from "./topk";
