// Decode speed of the webgpu backend on one model directory, against the memory roofline:
//   node --conditions=source --import tsx bench/gpu-decode.ts --model DIR [--batch 1,16] [--prompt 32]
//        [--new 128] [--runs 2] [--warmup-new 16] [--budget-s 60] [--breakdown-steps 32] [--submit-every N]
//        [--host-ids] [--dawn OPTION,...] [--few-rows auto|matvec|skinny] [--skinny-splits auto|N]
//        [--no-fused-argmax] [--prefetch] [--profile] [--out FILE]
// On the GPU machine it runs as an esbuild bundle (bench/gpu-run.sh). DIR is a Hugging Face directory; a
// tokenizer is not needed (config.json + *.safetensors is enough).
//
// Per batch size:
//   1. warm-up: a short generate() (compiles this batch size's pipelines, fills the buffer pool);
//   2. `runs` timed generate() calls of `new` tokens per sequence: the engine's real path, greedy ids read
//      back each step. Decode tokens/s is aggregate over the batch; the median run is the figure. If the
//      warm-up's step time says the runs would take longer than --budget-s, `new` is cut to fit (the
//      result says so in new_tokens_reduced_from);
//   3. a breakdown: the same loop written out (KvManager, buildLayout, forward, argmax) so each step's
//      time splits into recording (JavaScript from the step's layout to its ids' read being issued,
//      including any early submits) and waiting (for the ids: with ids on the device, generate()'s path, the
//      ids of the step before, which the GPU finishes while this one is recorded; with --host-ids this
//      step's, after its last submit), with dispatches and submits per step;
//   4. with --profile, the GPU time of each kind of dispatch over the breakdown's steps (see profileRun).
// --host-ids hides the backend's argmaxIds, so generate() reads each step's ids before recording the next (the
// path before ids stayed on the device). --dawn passes options to Dawn's create(), e.g.
// "enable-dawn-features=skip_validation" (commas inside one option; several options: repeat --dawn).
// The roofline: bytes a step must read = weights as stored (embedding table only as the tied LM head) +
// every sequence's K and V over all layers at the engine's KV element size, over 3.0 TB/s.
import {
  type Backend,
  buildLayout,
  createWebGpuBackend,
  createWebGpuDevice,
  KvManager,
  Model,
  type TokenIds,
  type WebGpuBackend,
} from "@specloop/engine";
import {
  emit,
  hostInfo,
  intArg,
  intListArg,
  kvElementBytes,
  loadBenchModel,
  median,
  parseArgs,
  ROOFLINE_BYTES_PER_SECOND,
  roofline,
  round,
  weightBytesPerStep,
} from "./common.js";
import { benchPrompts, decodeRun } from "./decode.js";

// --dawn may repeat: its values are gathered before the rest is parsed.
const argv = process.argv.slice(2);
const dawnOptions: string[] = [];
for (let i = argv.indexOf("--dawn"); i >= 0; i = argv.indexOf("--dawn")) {
  const v = argv[i + 1];
  if (v === undefined) throw new RangeError("--dawn needs a value");
  dawnOptions.push(v);
  argv.splice(i, 2);
}
const args = parseArgs(argv, new Set(["profile", "host-ids", "no-fused-argmax", "prefetch"]));
// --prefetch: one-row products read the next product's weights into L2 (WebGpuBackendOptions.prefetch).
const prefetch = args.has("prefetch");
// --no-fused-argmax: the two-pass argmax after the LM head (WebGpuBackendOptions.fuseArgmax false).
const fuseArgmax = !args.has("no-fused-argmax");
// --few-rows auto|matvec|skinny: which program products of 2-16 rows take (WebGpuBackendOptions.fewRows).
const fewRowsArg = args.get("few-rows") ?? "auto";
if (fewRowsArg !== "auto" && fewRowsArg !== "matvec" && fewRowsArg !== "skinny")
  throw new RangeError(`--few-rows ${fewRowsArg}: expected auto, matvec or skinny`);
const fewRows: "auto" | "matvec" | "skinny" = fewRowsArg;
// --skinny-splits auto|N: splits of k for skinny products (WebGpuBackendOptions.skinnySplits; absent: the
// backend's default, none).
const splitsArg = args.get("skinny-splits");
if (splitsArg !== undefined && splitsArg !== "auto" && !/^\d+$/.test(splitsArg))
  throw new RangeError(`--skinny-splits ${splitsArg}: expected auto or a non-negative integer`);
const skinnySplits: "auto" | number | undefined =
  splitsArg === undefined || splitsArg === "auto" ? splitsArg : Number(splitsArg);
const hostIds = args.get("host-ids") === "true";
const modelDir = args.get("model");
if (modelDir === undefined) throw new RangeError("--model DIR is required");
const batches = intListArg(args, "batch", [1, 16]);
const promptLen = intArg(args, "prompt", 32);
const newTokens = intArg(args, "new", 128);
const runs = intArg(args, "runs", 2);
const warmupNew = intArg(args, "warmup-new", 16);
const budgetSeconds = intArg(args, "budget-s", 60);
const breakdownSteps = intArg(args, "breakdown-steps", 32);
// --profile: afterwards, per batch size, GPU time per kind of dispatch over the breakdown's steps (a second
// backend with timestamp queries around every dispatch, each in a pass of its own).
const profile = args.get("profile") === "true";

interface Breakdown {
  steps: number;
  record_ms_per_step: number;
  wait_ms_per_step: number;
  dispatches_per_step: number;
  submits_per_step: number;
  /** Bind groups created per step (0 once the recorder's cache is warm). */
  bind_groups_per_step: number;
  kv_element_bytes: number;
}

/** The backend generate() decodes on: `be`, or with --host-ids `be` without argmaxIds (same device, kernels). */
function decodingBackend(be: WebGpuBackend): Backend {
  return hostIds ? Object.create(be, { argmaxIds: { value: undefined } }) : be;
}

/** generate()'s loop written out, timing recording and waiting apart (see the header). */
async function breakdown(
  be: WebGpuBackend,
  model: Model,
  batch: number,
  steps: number,
  beforeSteps?: () => Promise<void>,
): Promise<Breakdown> {
  const blockSize = 16;
  const prompts = benchPrompts(batch, promptLen, model.config.vocabSize);
  const kv = new KvManager(
    be,
    model.kvSpec(batch * Math.ceil((promptLen + steps + 1) / blockSize), blockSize),
  );
  const seqs = prompts.map((_, i) => String(i));
  const grow = (s: string, n: number) => {
    if (kv.allocateSlots(s, n) === null) throw new Error(`breakdown: KV blocks ran out for sequence ${s}`);
  };
  for (const s of seqs) grow(s, promptLen);
  const prefill = buildLayout(
    kv,
    seqs.map((seq) => ({ seq, newTokens: promptLen })),
  );
  const first = model.forward(kv.storage, prefill, Int32Array.from(prompts.flat()));
  let last: Int32Array | TokenIds = await be.argmaxRows(first.logits!);
  be.release(first.logits!);
  for (const s of seqs) kv.commit(s, promptLen);
  await beforeSteps?.();
  let record = 0;
  let wait = 0;
  let reading: Promise<Int32Array> | null = null;
  const before = be.stats();
  for (let j = 0; j < steps; j++) {
    const t0 = performance.now();
    for (const s of seqs) grow(s, 1);
    const layout = buildLayout(
      kv,
      seqs.map((seq) => ({ seq, newTokens: 1 })),
    );
    const { logits } = model.forward(kv.storage, layout, last);
    for (const s of seqs) kv.commit(s, 1);
    let t1: number;
    if (hostIds) {
      t1 = performance.now();
      last = await be.argmaxRows(logits!);
      be.release(logits!);
    } else {
      // generate()'s path: this step's ids stay on the device for the next; the wait is for the ids of the
      // step before, which the GPU finished (or finishes) while this one was recorded.
      const ids = be.argmaxIds(logits!);
      be.release(logits!);
      const previous = reading;
      reading = be.readIds(ids);
      last = ids;
      t1 = performance.now();
      if (previous) await previous;
    }
    const t2 = performance.now();
    record += t1 - t0;
    wait += t2 - t1;
  }
  if (reading) await reading;
  const after = be.stats();
  const elementBytes = kvElementBytes(kv.storage);
  for (const s of seqs) kv.free(s);
  return {
    steps,
    record_ms_per_step: round(record / steps, 3),
    wait_ms_per_step: round(wait / steps, 3),
    dispatches_per_step: round((after.dispatches - before.dispatches) / steps, 1),
    submits_per_step: round((after.submits - before.submits) / steps, 2),
    bind_groups_per_step: round((after.bindGroups - before.bindGroups) / steps, 2),
    kv_element_bytes: elementBytes,
  };
}

/** GPU time per dispatch kind per decode step, on a backend of its own that times every dispatch. */
async function profileRun(source: Parameters<typeof Model.load>[1], batch: number, steps: number) {
  // Dawn quantizes timestamps (to 65.5 us steps) unless told not to.
  const dev = await createWebGpuDevice({
    label: "gpu-decode profile",
    dawnOptions: [...dawnOptions, "disable-dawn-features=timestamp_quantization"],
  });
  const pbe = createWebGpuBackend(dev, {
    profile: true,
    submitEvery,
    fewRows,
    skinnySplits,
    fuseArgmax,
    prefetch,
  });
  try {
    const model = Model.load(decodingBackend(pbe), source);
    await breakdown(pbe, model, batch, 4);
    const bd = await breakdown(pbe, model, batch, steps, () => pbe.profileReset());
    const report = await pbe.profileReport();
    const total = report.reduce((t, e) => t + e.totalMs, 0);
    return {
      batch,
      steps,
      record_ms_per_step: bd.record_ms_per_step,
      wait_ms_per_step: bd.wait_ms_per_step,
      gpu_ms_per_step: round(total / steps, 4),
      kinds: report.map((e) => ({
        kind: e.kind,
        per_step: round(e.count / steps, 2),
        us_per_step: round((1000 * e.totalMs) / steps, 1),
        us_each: round((1000 * e.totalMs) / e.count, 2),
      })),
    };
  } finally {
    pbe.destroy();
  }
}

const tLoad = performance.now();
const { id, source } = await loadBenchModel(modelDir);
const readSeconds = (performance.now() - tLoad) / 1000;
// Dawn quantizes timestamps (to 65.5 us steps) unless told not to; the GPU busy time needs them whole.
const device = await createWebGpuDevice({
  label: "gpu-decode",
  dawnOptions: [...dawnOptions, "disable-dawn-features=timestamp_quantization"],
});
// --submit-every N: submit every N dispatches (overlapping recording with the GPU; 0: at reads only); absent:
// the backend's default (DEFAULT_SUBMIT_EVERY).
const submitArg = args.get("submit-every");
if (submitArg !== undefined && !/^\d+$/.test(submitArg))
  throw new RangeError(`--submit-every ${submitArg}: expected a non-negative integer`);
const be = createWebGpuBackend(device, {
  fewRows,
  skinnySplits,
  fuseArgmax,
  prefetch,
  ...(submitArg === undefined ? {} : { submitEvery: Number(submitArg) }),
});
const submitEvery = be.submitEvery;
const rows = [];
let uploadSeconds = 0;
try {
  const tUp = performance.now();
  const model = Model.load(decodingBackend(be), source);
  await be.sync();
  uploadSeconds = (performance.now() - tUp) / 1000;
  const weightBytes = weightBytesPerStep(model.config, source.tensors);
  console.error(
    `[gpu-decode] ${id}: ${(weightBytes / 1e9).toFixed(3)} GB of weights per step; read ${readSeconds.toFixed(1)} s, ` +
      `upload ${uploadSeconds.toFixed(1)} s on ${device.adapter.description || device.adapter.device}`,
  );
  for (const batch of batches) {
    const warm = await decodeRun(model, batch, promptLen, warmupNew);
    const warmStepSeconds = warm.stats.decodeSeconds / Math.max(1, warm.stats.decodeSteps);
    // Leave a quarter of the budget for the breakdown and the prefills.
    const fits = Math.floor((0.75 * budgetSeconds) / (runs * warmStepSeconds));
    const n = Math.max(Math.min(newTokens, fits), Math.min(newTokens, 16));
    const measured = [];
    for (let r = 0; r < runs; r++) measured.push(await decodeRun(model, batch, promptLen, n));
    const tps = median(measured.map((m) => m.stats.decodeTokensPerSecond));
    const msStep = median(measured.map((m) => (1000 * m.stats.decodeSeconds) / m.stats.decodeSteps));
    const bd = await breakdown(be, model, batch, Math.min(breakdownSteps, n));
    // The same loop again with every compute pass timed on the GPU: its busy time a step (the timing's own
    // cost, a staging buffer and a read per submit, is on the CPU).
    be.timePasses(true);
    const timed = await breakdown(be, model, batch, Math.min(breakdownSteps, n));
    const busy = await be.passTime();
    be.timePasses(false);
    const roof = roofline(model.config, weightBytes, bd.kv_element_bytes, batch, promptLen, n);
    const row = {
      batch,
      prompt_tokens: promptLen,
      new_tokens: n,
      ...(n < newTokens ? { new_tokens_reduced_from: newTokens } : {}),
      decode_tokens_per_second: round(tps, 1),
      ms_per_step: round(msStep, 3),
      runs_tokens_per_second: measured.map((m) => round(m.stats.decodeTokensPerSecond, 1)),
      prefill_seconds: round(median(measured.map((m) => m.stats.prefillSeconds)), 4),
      warmup_ms_per_step: round(1000 * warmStepSeconds, 3),
      roofline: {
        weight_bytes_per_step: roof.weightBytesPerStep,
        kv_element_bytes: roof.kvElementBytes,
        mean_kv_bytes_per_step: Math.round(roof.meanKvBytesPerStep),
        mean_bytes_per_step: Math.round(roof.meanBytesPerStep),
        bytes_per_second: ROOFLINE_BYTES_PER_SECOND,
        ceiling_tokens_per_second: round(roof.ceilingTokensPerSecond, 1),
        share: round(tps / roof.ceilingTokensPerSecond, 4),
        achieved_bytes_per_second: Math.round((roof.meanBytesPerStep * 1000) / msStep),
      },
      breakdown: bd,
      gpu_busy: {
        steps: timed.steps,
        gpu_ms_per_step: round(busy.ms / timed.steps, 3),
        passes_per_step: round(busy.passes / timed.steps, 2),
        record_ms_per_step: timed.record_ms_per_step,
        wait_ms_per_step: timed.wait_ms_per_step,
      },
      first_tokens: measured[0]?.firstSequence.slice(0, 32),
    };
    rows.push(row);
    console.error(
      `[gpu-decode] ${id} batch ${batch}: ${row.decode_tokens_per_second} tok/s, ${row.ms_per_step} ms/step ` +
        `(record ${bd.record_ms_per_step} + wait ${bd.wait_ms_per_step} ms, ${bd.dispatches_per_step} dispatches, ` +
        `GPU busy ${row.gpu_busy.gpu_ms_per_step} ms); ` +
        `roofline ${row.roofline.ceiling_tokens_per_second} tok/s, share ${(100 * row.roofline.share).toFixed(1)}%`,
    );
  }
  const profiles = [];
  if (profile) {
    for (const batch of batches) {
      const p = await profileRun(source, batch, Math.min(breakdownSteps, 32));
      profiles.push(p);
      console.error(`[gpu-decode] ${id} batch ${batch} profile: ${p.gpu_ms_per_step} ms of kernels a step`);
      for (const k of p.kinds.slice(0, 12))
        console.error(`  ${k.us_per_step} us  ${k.per_step} x ${k.us_each} us  ${k.kind}`);
    }
  }
  const stats = be.stats();
  emit(
    {
      benchmark: "gpu-decode",
      date: new Date().toISOString(),
      host: hostInfo(),
      adapter: device.adapter,
      features: [...device.features],
      // The size the subgroup kernels were built for (0: the workgroup-memory kernels ran).
      subgroup_size: device.subgroupSize,
      limits: {
        maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
        maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      },
      model: id,
      family: model.config.family,
      greedy: true,
      runs,
      submit_every: submitEvery,
      ids_on_device: !hostIds,
      few_rows: fewRows,
      skinny_splits: skinnySplits ?? 0,
      fused_argmax: fuseArgmax,
      prefetch,
      dawn_options: dawnOptions,
      read_seconds: round(readSeconds, 2),
      upload_seconds: round(uploadSeconds, 2),
      resident_weight_bytes: stats.weightBytes,
      pipelines: stats.pipelines,
      pool: stats.pool,
      results: rows,
      ...(profile ? { profiles } : {}),
    },
    args.get("out"),
  );
} finally {
  be.destroy();
}
