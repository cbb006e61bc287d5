// The webgpu few-row products alone (the matrix-vector program, and the skinny program for 2-16 rows), at the
// Qwen3-0.6B shape's products, per row count and layout, GPU time per dispatch:
//   node --conditions=source --import tsx bench/gpu-matvec.ts [--rows 1,2,4,8,9,16] [--reps 100]
//        [--products qkv,gateUp,o,down,lmHead] [--shapes default|all] [--out FILE]
// Each measurement records `reps` dispatches of one product into one compute pass (each depends on the one
// before through its output, as a forward's do: Dawn puts a barrier between them) and reads the pass's GPU
// time from timestamps; the figure is the pass's time over reps, so it includes the barrier (about 2 us on
// the H100). Bandwidth counts the weights (2-byte, as stored) and x once per dispatch. The default is what
// matmul.ts picks (the skinny program from 2 rows, else matvecShape's layout); `--shapes all` adds the
// matrix-vector program's layouts (outputs per thread group x threads per group) around it.
import type { DType } from "@specloop/engine";
import { createWebGpuBackend, createWebGpuDevice } from "@specloop/engine";
import {
  dispatchMatvec,
  MATVEC_MAX_ROWS,
  type MatvecOptions,
  type MatvecShape,
  matvecChunkRows,
  matvecShape,
} from "../shared/engine/src/backends/webgpu/ops/matmul.js";
import type { MatvecMode } from "../shared/engine/src/backends/webgpu/ops/matvec-program.js";
import { Recorder } from "../shared/engine/src/backends/webgpu/recorder.js";
import type { GpuWeight } from "../shared/engine/src/backends/webgpu/resources.js";
import { emit, hostInfo, intArg, intListArg, parseArgs, round } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set());
const rowCounts = intListArg(args, "rows", [1, 2, 4, 8, 9, 16]);
const reps = intArg(args, "reps", 100);
const wanted = new Set((args.get("products") ?? "qkv,gateUp,o,down,lmHead").split(","));
const allShapes = args.get("shapes") === "all";

interface Product {
  name: string;
  mode: MatvecMode;
  /** [rows, cols] of each weight. */
  weights: [number, number][];
  norm: boolean;
  residual: boolean;
}

// Qwen3-0.6B: hidden 1024, 16 query heads and 8 KV heads of 128, MLP 3072, vocabulary 151,936 (tied).
const PRODUCTS: Product[] = [
  {
    name: "qkv",
    mode: "qkv",
    weights: [
      [2048, 1024],
      [1024, 1024],
      [1024, 1024],
    ],
    norm: true,
    residual: false,
  },
  {
    name: "gateUp",
    mode: "gateUp",
    weights: [
      [3072, 1024],
      [3072, 1024],
    ],
    norm: true,
    residual: false,
  },
  { name: "o", mode: "plain", weights: [[1024, 2048]], norm: false, residual: true },
  { name: "down", mode: "plain", weights: [[1024, 3072]], norm: false, residual: true },
  { name: "lmHead", mode: "plain", weights: [[151936, 1024]], norm: true, residual: false },
];

const dev = await createWebGpuDevice({
  label: "gpu-matvec",
  dawnOptions: ["disable-dawn-features=timestamp_quantization"],
});
if (!dev.features.has("timestamp-query")) throw new Error("gpu-matvec needs the timestamp-query feature");
// The backend only loads the weights; the products are recorded on a recorder of their own.
const be = createWebGpuBackend(dev);
const rec = new Recorder(dev.device, dev.subgroupSize);
const sg = dev.subgroupSize;
const dtype: DType = "bf16";
const zeros = (rows: number, cols: number) => ({
  dtype,
  shape: [rows, cols],
  data: new Uint8Array(rows * cols * 2),
});

/** GPU microseconds per dispatch of `product` at `rows` rows with `shape`. */
async function time(
  product: Product,
  weights: GpuWeight[],
  norm: GpuWeight,
  rows: number,
  shape: MatvecShape | undefined,
) {
  const k = product.weights[0]?.[1] as number;
  const m = product.weights.reduce((t, [r]) => t + r, 0);
  const x = rec.activation(rows, k);
  const outs =
    product.mode === "qkv"
      ? product.weights.map(([r]) => rec.activation(rows, r))
      : [rec.activation(rows, m)];
  const residual = product.residual ? rec.activation(rows, m) : undefined;
  const opts: MatvecOptions = {
    ...(shape ? { shape } : {}),
    ...(product.norm ? { norm: { weight: norm, eps: 1e-6 } } : {}),
    ...(residual ? { residual } : {}),
    ...(product.mode === "qkv" ? { m0: product.weights[0]?.[0], m1: product.weights[1]?.[0] } : {}),
  };
  const record = (count: number) => {
    for (let i = 0; i < count; i++) dispatchMatvec(rec, product.mode, x, weights, outs, m, opts);
    rec.flush();
  };
  record(5); // pipeline, bind group
  await dev.device.queue.onSubmittedWorkDone();
  rec.timePasses(true);
  record(reps);
  await dev.device.queue.onSubmittedWorkDone();
  const t = await rec.passTime();
  rec.timePasses(false);
  for (const a of [x, ...outs, ...(residual ? [residual] : [])]) rec.pool.release(a.buffer as GPUBuffer);
  const us = (1000 * t.ms) / reps;
  const bytes = product.weights.reduce((b, [r, c]) => b + r * c * 2, 0) + rows * k * 4;
  return { us: round(us, 2), gbPerS: round(bytes / us / 1e3, 0) };
}

const results = [];
for (const product of PRODUCTS.filter((p) => wanted.has(p.name))) {
  const weights = product.weights.map(
    ([r, c], i) => be.loadWeight(`${product.name}${i}`, zeros(r, c)) as GpuWeight,
  );
  const k = product.weights[0]?.[1] as number;
  const norm = be.loadWeight(`${product.name} norm`, {
    dtype,
    shape: [k],
    data: new Uint8Array(2 * k),
  }) as GpuWeight;
  const m = product.weights.reduce((t, [r]) => t + r, 0);
  for (const rows of rowCounts) {
    const chunk = matvecChunkRows(Math.min(rows, MATVEC_MAX_ROWS));
    const chosen = matvecShape(m, chunk, sg);
    // undefined: matmul.ts's own choice (the skinny program from 2 rows).
    const shapes: (MatvecShape | undefined)[] = [undefined];
    if (allShapes) {
      for (const outs of [1, 2, 4, 8])
        for (const tpr of [sg || 32, 2 * (sg || 32), 4 * (sg || 32)])
          if (tpr >= chunk && !(chunk === 1 && outs === chosen.outs && tpr === chosen.tpr))
            shapes.push({ outs, tpr });
    }
    for (const shape of shapes) {
      const r = await time(product, weights, norm, rows, shape);
      const program = shape ? "matvec" : chunk === 1 ? "matvec" : "skinny";
      const layout = shape ?? (chunk === 1 ? chosen : undefined);
      const row = {
        product: product.name,
        m,
        k,
        rows,
        program,
        ...(layout ? { outs: layout.outs, tpr: layout.tpr } : {}),
        chosen: shape === undefined,
        ...r,
      };
      results.push(row);
      console.error(
        `[gpu-matvec] ${product.name.padEnd(6)} rows ${String(rows).padStart(2)} ${program.padEnd(6)} ` +
          `${layout ? `outs ${layout.outs} tpr ${String(layout.tpr).padStart(3)}` : "".padEnd(14)}` +
          `${shape === undefined ? " *" : "  "} ${String(r.us).padStart(8)} us ${String(r.gbPerS).padStart(5)} GB/s`,
      );
    }
  }
  for (const w of weights) w.buffer.destroy();
}
emit(
  {
    benchmark: "gpu-matvec",
    date: new Date().toISOString(),
    host: hostInfo(),
    adapter: dev.adapter,
    subgroup_size: sg,
    reps,
    results,
  },
  args.get("out"),
);
rec.destroy();
be.destroy();
