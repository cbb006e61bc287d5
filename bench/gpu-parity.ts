// Parity of the webgpu backend with transformers on every checkpoint that ships a reference.json:
//   node --conditions=source --import tsx bench/gpu-parity.ts [--models DIR,DIR] [--max-prompt N]
//        [--greedy-tokens N] [--out FILE]
// On the GPU machine it runs as an esbuild bundle (.gpu/app/gpu-parity.mjs, built with gpu-run.sh's flags).
// Per checkpoint: a fresh backend from the engine's selectBackend("webgpu") (the adapter is recorded), then
// runParity (model/parity-support.ts) on every reference input: one batched prefill with the logits of every
// position against transformers' float32 top-8 (and full last-position logits where the reference has
// them), and one batched greedy generation against the reference continuations. --max-prompt and
// --greedy-tokens cut the work for a smoke run on lavapipe; by default every input and the full continuation.
import { selectBackend, type WebGpuBackend } from "@specloop/engine";
import { runParity } from "../shared/engine/src/model/parity-support.js";
import { emit, hostInfo, intArg, parseArgs } from "./common.js";

/** The bound of the engine issue: max |logit diff| on webgpu. */
const BOUND = 5e-3;
const CHECKPOINTS = [
  "models/tiny-code",
  "models/tiny-code-draft",
  "models/testing/llama-tiny",
  "models/testing/llama-bias-f16",
  "models/testing/qwen2-tiny",
  "models/testing/qwen3-tiny",
];

const args = parseArgs(process.argv.slice(2), new Set());
const models = args.get("models")?.split(",") ?? CHECKPOINTS;
const maxPrompt = intArg(args, "max-prompt", 0);
const greedyTokens = intArg(args, "greedy-tokens", 0);

// runParity prints its two summary lines with console.log: keep stdout for the JSON.
console.log = (...xs: unknown[]) => console.error(...xs);

const rows = [];
let adapter: unknown;
let features: string[] = [];
for (const dir of models) {
  const t0 = performance.now();
  const selected = await selectBackend("webgpu");
  const be = selected.backend as WebGpuBackend;
  adapter ??= be.gpu.adapter;
  features = [...be.gpu.features];
  try {
    const r = await runParity(be, `${dir}/`, {
      inputs: maxPrompt > 0 ? (i) => i.input_ids.length <= maxPrompt : undefined,
      greedyTokens: greedyTokens > 0 ? greedyTokens : undefined,
      label: `${dir} on webgpu (${be.gpu.adapter.description || be.gpu.adapter.device})`,
    });
    rows.push({
      checkpoint: dir,
      maxDiff: r.maxDiff,
      where: r.where,
      positions: r.total,
      inputs: r.greedy.length,
      greedyTokens: r.greedy[0]?.tokens.length ?? 0,
      greedyMatched: r.greedyMatched,
      greedyTotal: r.greedy.length,
      greedyMismatches: r.greedy
        .filter((g) => g.tokens.join() !== g.expected.join())
        .map((g) => ({ name: g.name, tokens: g.tokens, expected: g.expected })),
      pass: r.maxDiff <= BOUND,
      seconds: Math.round(performance.now() - t0) / 1000,
    });
  } catch (err) {
    console.error(`[gpu-parity] ${dir}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    rows.push({ checkpoint: dir, error: err instanceof Error ? err.message : String(err), pass: false });
  } finally {
    be.destroy();
  }
}

emit(
  {
    benchmark: "gpu-parity",
    date: new Date().toISOString(),
    host: hostInfo(),
    adapter,
    features,
    bound: BOUND,
    maxPrompt: maxPrompt > 0 ? maxPrompt : null,
    pass: rows.every((r) => r.pass),
    results: rows,
  },
  args.get("out"),
);
