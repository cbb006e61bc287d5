#!/usr/bin/env bash
# The whole GPU benchmark in one device call (see bench/README.md). Prepared here:
#   bash ../shared/device/prepare.sh          # .gpu/: Node, Dawn, the Vulkan loader
#   bash bench/gpu-run.sh --bundle            # bench/{gpu-decode,gpu-parity,spec-decode}.ts -> .gpu/app/*.mjs
# then on the device, with carry [".gpu"]:   bash bench/gpu-run.sh
# It runs the webgpu parity check on every checkpoint (gpu-parity), makes the random Qwen3-0.6B-shaped
# checkpoint, runs the webgpu engine (gpu-decode) and transformers (eager and sdpa) on the bundled tiny-code
# and on that checkpoint, batch 1 and 16, and leaves results.tgz (the JSON) and run.log in $OUT. Each step has its own time
# limit and a failing step does not stop the others, so one call yields whatever could be measured.
# BENCH_NEW=N shortens every run; BENCH_SUBMIT_EVERY=N adds an engine run on the 0.6B shape that submits every
# N dispatches (0: once per read; the default run uses the backend's default); BENCH_PROFILE=1 adds the
# per-kernel GPU times of the 0.6B shape (gpu-decode --profile); BENCH_SPEC=1 adds speculative decoding on the
# bundled tiny-code at batch 1 and 16 (spec-decode --backend webgpu); BENCH_ENGINE_ONLY=1 leaves transformers out.
# BENCH_CONFORMANCE=1 runs the conformance test's webgpu rows and the webgpu kernel tests on the device (bundled),
# after the timings;
# BENCH_BEFORE=1 also runs .gpu/before/gpu-decode.mjs (a bundle of an earlier engine, made by hand) on the 0.6B
# shape, for before/after on one card; BENCH_HOST_IDS=1 adds a run that reads every step's ids before the next
# step (gpu-decode --host-ids); BENCH_DAWN="OPTION ..." adds a run per Dawn option (gpu-decode --dawn);
# BENCH_8B=1 adds random Llama-3.1-8B-shaped weights at batch 1 (made on the device, about 16 GB);
# BENCH_FEW_ROWS="matvec skinny" adds a run per program for all products of 2-16 rows (gpu-decode --few-rows);
# BENCH_MATVEC=1 adds the few-row product microbenchmark (gpu-matvec --shapes all; BENCH_MATVEC_SHAPES=default:
# only the layouts matmul.ts picks). BENCH_SPLITS=1 adds a run of the 0.6B shape with the skinny products split
# over k (--skinny-splits auto; off by default until measured); BENCH_OFF=argmax one with the two-pass argmax
# (--no-fused-argmax, the engine before round 5); with BENCH_BEFORE and BENCH_SPEC the earlier engine's
# spec-decode (.gpu/before/spec-decode.mjs) runs too. BENCH_LLAMA_CPP=1 builds llama.cpp's CUDA backend from
# .gpu/llama-src.tar.xz and runs it on the same 0.6B-shaped weights (bench/gpu-llama-cpp.sh). BENCH_SKIP="parity
# tiny qwen" leaves out those default steps (a second call on a warm machine); the 0.6B-shaped weights are
# made only where they are not already. BENCH_PREFETCH=1 adds a 0.6B-shape run with --prefetch (and its
# batch-1 kernel profile with BENCH_PROFILE).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--bundle" ]; then
  # The engine and the speculation package import @specloop/errors, not @specloop/runtime (runtime's barrel
  # loads gRPC, which reads files at import time that a bundle does not carry). The banner gives the ES module bundle a
  # `require` for the CommonJS dependencies esbuild inlines.
  for src in bench/gpu-decode.ts bench/gpu-parity.ts bench/spec-decode.ts bench/gpu-matvec.ts \
    shared/engine/src/backends/conformance.test.ts shared/engine/src/backends/webgpu/skinny-split.test.ts \
    shared/engine/src/backends/webgpu/argmax-fused.test.ts shared/engine/src/backends/webgpu/prefetch.test.ts; do
    name=$(basename "$src" .ts)
    npx esbuild "$src" --bundle --platform=node --format=esm --target=node20 \
      --conditions=source --external:webgpu \
      --outfile=".gpu/app/$name.mjs" --log-level=warning --minify --keep-names \
      "--banner:js=import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" ||
      echo "bundle of $src failed: the device call runs without it"
  done
  exit 0
fi

OUT=${OUT:-$PWD/.bench-out}
# Results gather in RES and are archived into $OUT/results.tgz after every step (the device tool brings back
# at most 8 files, and a call cut off at its limit still brings back what the finished steps wrote).
RES=${TMPDIR:-/tmp}/gpu-run-results
mkdir -p "$OUT" "$RES"
exec > >(tee -a "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1
NEW=${BENCH_NEW:-128}
QWEN=${TMPDIR:-/tmp}/qwen3-0.6b-shape

# Writes to $1 a script that makes random Llama-3.1-8B-shaped bf16 weights in its argument's folder
# (config.json + shards under 1.5 GB each, since Node reads a file whole and a Buffer stops at 2 GB), drawn on
# the GPU as the 0.6B shape's are.
write_llama8b_script() {
  cat > "$1" <<'PY'
import json, math, sys, time
from pathlib import Path
import torch
from safetensors.torch import save_file

t0 = time.time()
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
h, inter, layers, heads, kv, hd, vocab = 4096, 14336, 32, 32, 8, 128, 128256
cfg = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h, "intermediate_size": inter,
    "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
    "vocab_size": vocab, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16",
}
(out / "config.json").write_text(json.dumps(cfg, indent=1))
shapes = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,), "lm_head.weight": (vocab, h)}
for l in range(layers):
    p = f"model.layers.{l}"
    shapes.update({
        f"{p}.input_layernorm.weight": (h,), f"{p}.post_attention_layernorm.weight": (h,),
        f"{p}.self_attn.q_proj.weight": (heads * hd, h), f"{p}.self_attn.k_proj.weight": (kv * hd, h),
        f"{p}.self_attn.v_proj.weight": (kv * hd, h), f"{p}.self_attn.o_proj.weight": (h, heads * hd),
        f"{p}.mlp.gate_proj.weight": (inter, h), f"{p}.mlp.up_proj.weight": (inter, h),
        f"{p}.mlp.down_proj.weight": (h, inter),
    })
g = torch.Generator(device="cuda").manual_seed(20261207)
shards, shard, size, total = [], {}, 0, 0
for name, shape in shapes.items():
    if name.endswith("norm.weight"):
        base, std = 1.0, 0.1
    elif name in ("model.embed_tokens.weight", "lm_head.weight"):
        base, std = 0.0, 0.05
    else:
        base, std = 0.0, 1.0 / math.sqrt(shape[1])
    t = torch.randn(shape, generator=g, device="cuda", dtype=torch.float32).mul_(std).add_(base)
    t = t.to(torch.bfloat16).cpu().contiguous()
    if shard and size + 2 * t.numel() > 1_500_000_000:
        shards.append(shard)
        shard, size = {}, 0
    shard[name] = t
    size += 2 * t.numel()
    total += 2 * t.numel()
shards.append(shard)
weight_map = {}
for i, s in enumerate(shards):
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(s, str(out / file), metadata={"format": "pt"})
    weight_map.update({name: file for name in s})
index = {"metadata": {"total_size": total}, "weight_map": weight_map}
(out / "model.safetensors.index.json").write_text(json.dumps(index))
print(f"[random-weights] llama-8b shape: {len(shapes)} tensors, {total / 1e9:.2f} GB in {len(shards)} shards, "
      f"{time.time() - t0:.1f} s", flush=True)
PY
}

step() { # step LIMIT_S NAME CMD...: one benchmark step, timed, never fatal
  local limit=$1 name=$2
  shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)"
  local t0=$SECONDS
  timeout "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - t0)) s"
  tar czf "$OUT/results.tgz" -C "$RES" .
}

source .gpu/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory --format=csv
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
grep -m1 'model name' /proc/cpuinfo
if [ -n "${BENCH_LLAMA_CPP:-}" ]; then # its build runs in the background until the engine's benchmarks start
  step 60 "llama.cpp: configure, start the build" bash bench/gpu-llama-cpp.sh start
fi
skipped() { [[ " ${BENCH_SKIP:-} " == *" $1 "* ]]; }
[ -f "$QWEN/config.json" ] || step 40 "random Qwen3-0.6B-shape weights" \
  python3 tools/test-checkpoints/qwen3-0.6b-shape/make_random_weights.py --out "$QWEN"
if [ -n "${BENCH_LLAMA_CPP:-}" ]; then
  step 400 "llama.cpp: wait for the build" bash bench/gpu-llama-cpp.sh wait
fi
skipped tiny || step 70 "engine webgpu: tiny-code" \
  node .gpu/app/gpu-decode.mjs --model models/tiny-code --new "$NEW" --budget-s 30 --out "$RES/gpu-tiny-code.json"
skipped qwen || step 170 "engine webgpu: qwen3-0.6b-shape" \
  node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --out "$RES/gpu-qwen3-0.6b-shape.json"
if [ -n "${BENCH_BEFORE:-}" ]; then # the earlier engine on the same card and weights
  echo "before: $(cat .gpu/before/COMMIT 2>/dev/null)"
  step 170 "engine webgpu (before): qwen3-0.6b-shape" \
    node .gpu/before/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --out "$RES/gpu-qwen3-0.6b-shape-before.json"
fi
if [ -n "${BENCH_SPLITS:-}" ]; then # skinny products split over k (off by default until measured)
  step 170 "engine webgpu: qwen3-0.6b-shape, split-k" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --skinny-splits auto \
    --out "$RES/gpu-qwen3-0.6b-shape-split-k.json"
fi
if [[ " ${BENCH_OFF:-} " == *" argmax "* ]]; then # the two-pass argmax after the LM head (before round 5)
  step 170 "engine webgpu: qwen3-0.6b-shape, two-pass argmax" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --no-fused-argmax \
    --out "$RES/gpu-qwen3-0.6b-shape-two-pass-argmax.json"
fi
if [ -n "${BENCH_PREFETCH:-}" ]; then # one-row products prefetching the next product's weights into L2
  step 170 "engine webgpu: qwen3-0.6b-shape, prefetch" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --prefetch \
    --out "$RES/gpu-qwen3-0.6b-shape-prefetch.json"
  if [ -n "${BENCH_PROFILE:-}" ]; then
    step 120 "engine webgpu: qwen3-0.6b-shape, prefetch, kernel profile" \
      node .gpu/app/gpu-decode.mjs --model "$QWEN" --new 32 --runs 1 --breakdown-steps 24 --profile --prefetch \
      --batch 1 --out "$RES/gpu-qwen3-0.6b-shape-prefetch-profile.json"
  fi
fi
if [ -n "${BENCH_HOST_IDS:-}" ]; then # every step's ids read before the next step is recorded
  step 170 "engine webgpu: qwen3-0.6b-shape, host ids" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --host-ids \
    --out "$RES/gpu-qwen3-0.6b-shape-host-ids.json"
fi
i=0
for opt in ${BENCH_DAWN:-}; do # Dawn options (toggles)
  i=$((i + 1))
  step 170 "engine webgpu: qwen3-0.6b-shape, dawn $opt" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --dawn "$opt" \
    --out "$RES/gpu-qwen3-0.6b-shape-dawn$i.json"
done
for fr in ${BENCH_FEW_ROWS:-}; do # products of 2-16 rows all through one program (gpu-decode --few-rows)
  step 170 "engine webgpu: qwen3-0.6b-shape, few rows $fr" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --few-rows "$fr" \
    --out "$RES/gpu-qwen3-0.6b-shape-few-$fr.json"
done
if [ -n "${BENCH_8B:-}" ]; then # a Llama-3.1-8B shape at batch 1, where the weights dominate
  LLAMA8B=${TMPDIR:-/tmp}/llama-8b-shape
  write_llama8b_script "$RES/make_llama8b.py"
  step 150 "random Llama-8B-shape weights" python3 "$RES/make_llama8b.py" "$LLAMA8B"
  step 170 "engine webgpu: llama-8b-shape, batch 1" \
    node --max-old-space-size=8192 .gpu/app/gpu-decode.mjs --model "$LLAMA8B" --batch 1 --new 64 --runs 2 \
    --warmup-new 8 --breakdown-steps 16 --budget-s 60 --out "$RES/gpu-llama-8b-shape.json"
  rm -rf "$LLAMA8B"
fi
if [ -n "${BENCH_MATVEC:-}" ]; then # the matrix-vector program alone, every layout
  step 200 "matrix-vector microbenchmark" \
    node .gpu/app/gpu-matvec.mjs --shapes "${BENCH_MATVEC_SHAPES:-all}" --out "$RES/gpu-matvec.json"
fi
if [ -n "${BENCH_SUBMIT_EVERY:-}" ]; then # the engine submitting every N dispatches too (recording overlaps the GPU)
  step 120 "engine webgpu: qwen3-0.6b-shape, submit every $BENCH_SUBMIT_EVERY" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 40 --submit-every "$BENCH_SUBMIT_EVERY" \
    --out "$RES/gpu-qwen3-0.6b-shape-submit$BENCH_SUBMIT_EVERY.json"
fi
if [ -n "${BENCH_PROFILE:-}" ]; then # GPU time per kernel (each dispatch timed in a pass of its own)
  step 120 "engine webgpu: qwen3-0.6b-shape, kernel profile" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new 32 --runs 1 --breakdown-steps 24 --profile \
    --out "$RES/gpu-qwen3-0.6b-shape-profile.json"
fi
# Correctness after the timings, so that a call cut short by its limit keeps the numbers.
skipped parity || step 60 "webgpu parity with transformers, every checkpoint" \
  node .gpu/app/gpu-parity.mjs --out "$RES/gpu-parity.json"
if [ -n "${BENCH_CONFORMANCE:-}" ]; then # every conformance case of the webgpu rows, on this adapter
  export SPECLOOP_CONFORMANCE_BACKENDS=webgpu,webgpu-skinny,webgpu-nosubgroups
  step 150 "conformance: webgpu rows" \
    sh -c 'node .gpu/app/conformance.test.mjs > "$0/conformance.tap" 2>&1; s=$?; grep -E "^# (tests|pass|fail)|^    not ok" "$0/conformance.tap"; exit $s' "$RES"
  for t in skinny-split argmax-fused prefetch; do
    step 60 "$t test" \
      sh -c 'node ".gpu/app/$1.test.mjs" > "$0/$1.tap" 2>&1; s=$?; grep -E "^# (tests|pass|fail)|not ok" "$0/$1.tap"; exit $s' "$RES" "$t"
  done
fi
if [ -n "${BENCH_SPEC:-}" ]; then # speculative decoding (suffix, draft model, oracle) against none, on the GPU
  step 300 "speculative decoding on webgpu: tiny-code, batch 1 and 16" \
    node .gpu/app/spec-decode.mjs --backend webgpu --batch 1,16 --runs 2 --min-prob 0.5 --measure 32 \
    --out "$RES/spec-decode-webgpu.json"
  if [ -n "${BENCH_BEFORE:-}" ] && [ -f .gpu/before/spec-decode.mjs ]; then
    step 300 "speculative decoding on webgpu (before): tiny-code, batch 1 and 16" \
      node .gpu/before/spec-decode.mjs --backend webgpu --batch 1,16 --runs 2 --min-prob 0.5 --measure 32 \
      --out "$RES/spec-decode-webgpu-before.json"
  fi
fi
if [ -n "${BENCH_LLAMA_CPP:-}" ]; then # on the same card and weights as the engine's runs above
  step 240 "llama.cpp CUDA: qwen3-0.6b-shape, batch 1 and 16" bash bench/gpu-llama-cpp.sh run "$QWEN" "$RES"
fi
if [ -n "${BENCH_ENGINE_ONLY:-}" ]; then # transformers' side unchanged since its last recording
  echo "=== done $(date -u +%T)"
  exit 0
fi
step 70 "transformers: tiny-code" \
  python3 bench/transformers_decode.py --model models/tiny-code --new "$NEW" --runs 1 --out "$RES/hf-tiny-code.json"
step 140 "transformers: qwen3-0.6b-shape" \
  python3 bench/transformers_decode.py --model "$QWEN" --new "$NEW" --runs 1 --out "$RES/hf-qwen3-0.6b-shape.json"
echo "=== done $(date -u +%T)"
