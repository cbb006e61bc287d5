// CPU decode speed of a model on the `reference` backend (or `cpu`, which runs on reference until the
// WebAssembly backend exists: the result's backend_used and notes say so):
//   node --conditions=source --import tsx bench/cpu-decode.ts [--model models/tiny-code] [--backend reference]
//        [--batch 1,4] [--prompt 16] [--new 128] [--runs 3] [--out bench/results/cpu-decode-reference.json]
// Per batch size: one short warm-up (JIT), then `runs` full greedy decodes; the median decode tokens/s
// (aggregate over the batch) is the figure, the others are kept beside it.
import { isBackendChoice, Model, selectBackend } from "@specloop/engine";
import {
  emit,
  hostInfo,
  intArg,
  intListArg,
  loadBenchModel,
  median,
  parseArgs,
  round,
  weightBytesPerStep,
} from "./common.js";
import { decodeRun } from "./decode.js";

const args = parseArgs(process.argv.slice(2), new Set());
const modelDir = args.get("model") ?? "models/tiny-code";
const backendName = args.get("backend") ?? "reference";
if (!isBackendChoice(backendName) || backendName === "webgpu" || backendName === "auto") {
  throw new RangeError(
    `--backend ${backendName}: this benchmark takes reference or cpu (gpu-decode.ts: webgpu)`,
  );
}
const batches = intListArg(args, "batch", [1, 4]);
const promptLen = intArg(args, "prompt", 16);
const newTokens = intArg(args, "new", 128);
const runs = intArg(args, "runs", 3);

const { id, source } = await loadBenchModel(modelDir);
const selected = await selectBackend(backendName);
const model = Model.load(selected.backend, source);
const rows = [];
try {
  for (const batch of batches) {
    await decodeRun(model, batch, promptLen, 8);
    const measured = [];
    for (let r = 0; r < runs; r++) measured.push(await decodeRun(model, batch, promptLen, newTokens));
    const tps = measured.map((m) => m.stats.decodeTokensPerSecond);
    const ms = measured.map((m) => (1000 * m.stats.decodeSeconds) / m.stats.decodeSteps);
    rows.push({
      batch,
      decode_tokens_per_second: round(median(tps)),
      ms_per_step: round(median(ms), 3),
      runs_tokens_per_second: tps.map((x) => round(x)),
      prefill_seconds: round(median(measured.map((m) => m.stats.prefillSeconds)), 4),
      decode_steps: measured[0]?.stats.decodeSteps,
      first_tokens: measured[0]?.firstSequence.slice(0, 16),
    });
    console.error(
      `[cpu-decode] ${id} batch ${batch}: ${round(median(tps))} tok/s (runs ${tps.map((x) => round(x))})`,
    );
  }
} finally {
  selected.backend.destroy();
}

emit(
  {
    benchmark: "cpu-decode",
    date: new Date().toISOString(),
    host: hostInfo(),
    model: id,
    weight_bytes: weightBytesPerStep(source.config, source.tensors),
    backend_requested: selected.requested,
    backend_used: selected.used,
    backend_notes: selected.notes,
    prompt_tokens: promptLen,
    new_tokens: newTokens,
    runs,
    greedy: true,
    results: rows,
  },
  args.get("out"),
);
