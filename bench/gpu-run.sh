#!/usr/bin/env bash
# The whole GPU benchmark in one device call (see bench/README.md). Prepared here:
#   bash ../shared/device/prepare.sh          # .gpu/: Node, Dawn, the Vulkan loader
#   bash bench/gpu-run.sh --bundle            # bench/{gpu-decode,gpu-parity,spec-decode}.ts -> .gpu/app/*.mjs
# then on the device, with carry [".gpu"]:   bash bench/gpu-run.sh
# It runs the webgpu parity check on every checkpoint (gpu-parity), makes the random Qwen3-0.6B-shaped
# checkpoint, runs the webgpu engine (gpu-decode) and transformers (eager and sdpa) on the bundled tiny-code
# and on that checkpoint, batch 1 and 16, and leaves JSON and one log in $OUT. Each step has its own time
# limit and a failing step does not stop the others, so one call yields whatever could be measured.
# BENCH_NEW=N shortens every run; BENCH_SUBMIT_EVERY=N adds an engine run on the 0.6B shape that submits every
# N dispatches (0: once per read; the default run uses the backend's default); BENCH_PROFILE=1 adds the
# per-kernel GPU times of the 0.6B shape (gpu-decode --profile); BENCH_SPEC=1 adds speculative decoding on the
# bundled tiny-code at batch 1 and 16 (spec-decode --backend webgpu); BENCH_ENGINE_ONLY=1 leaves transformers out.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--bundle" ]; then
  # The engine and the speculation package import @specloop/errors, not @specloop/runtime (runtime's barrel
  # loads gRPC, which reads files at import time that a bundle does not carry). The banner gives the ES module bundle a
  # `require` for the CommonJS dependencies esbuild inlines.
  for name in gpu-decode gpu-parity spec-decode; do
    npx esbuild "bench/$name.ts" --bundle --platform=node --format=esm --target=node20 \
      --conditions=source --external:webgpu \
      --outfile=".gpu/app/$name.mjs" --log-level=warning --minify --keep-names \
      "--banner:js=import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" ||
      exit 1
  done
  exit 0
fi

OUT=${OUT:-$PWD/.bench-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1
NEW=${BENCH_NEW:-128}
QWEN=${TMPDIR:-/tmp}/qwen3-0.6b-shape

step() { # step LIMIT_S NAME CMD...: one benchmark step, timed, never fatal
  local limit=$1 name=$2
  shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)"
  local t0=$SECONDS
  timeout "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - t0)) s"
}

source .gpu/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory --format=csv
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
grep -m1 'model name' /proc/cpuinfo
step 60 "webgpu parity with transformers, every checkpoint" \
  node .gpu/app/gpu-parity.mjs --out "$OUT/gpu-parity.json"
step 40 "random Qwen3-0.6B-shape weights" \
  python3 tools/test-checkpoints/qwen3-0.6b-shape/make_random_weights.py --out "$QWEN"
step 70 "engine webgpu: tiny-code" \
  node .gpu/app/gpu-decode.mjs --model models/tiny-code --new "$NEW" --budget-s 30 --out "$OUT/gpu-tiny-code.json"
step 170 "engine webgpu: qwen3-0.6b-shape" \
  node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 60 --out "$OUT/gpu-qwen3-0.6b-shape.json"
if [ -n "${BENCH_SUBMIT_EVERY:-}" ]; then # the engine submitting every N dispatches too (recording overlaps the GPU)
  step 120 "engine webgpu: qwen3-0.6b-shape, submit every $BENCH_SUBMIT_EVERY" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new "$NEW" --budget-s 40 --submit-every "$BENCH_SUBMIT_EVERY" \
    --out "$OUT/gpu-qwen3-0.6b-shape-submit$BENCH_SUBMIT_EVERY.json"
fi
if [ -n "${BENCH_PROFILE:-}" ]; then # GPU time per kernel (each dispatch timed in a pass of its own)
  step 120 "engine webgpu: qwen3-0.6b-shape, kernel profile" \
    node .gpu/app/gpu-decode.mjs --model "$QWEN" --new 32 --runs 1 --breakdown-steps 24 --profile \
    --out "$OUT/gpu-qwen3-0.6b-shape-profile.json"
fi
if [ -n "${BENCH_SPEC:-}" ]; then # speculative decoding (suffix, draft model, oracle) against none, on the GPU
  step 300 "speculative decoding on webgpu: tiny-code, batch 1 and 16" \
    node .gpu/app/spec-decode.mjs --backend webgpu --batch 1,16 --runs 2 --min-prob 0.5 --measure 32 \
    --out "$OUT/spec-decode-webgpu.json"
fi
if [ -n "${BENCH_ENGINE_ONLY:-}" ]; then # transformers' side unchanged since its last recording
  echo "=== done $(date -u +%T)"
  exit 0
fi
step 70 "transformers: tiny-code" \
  python3 bench/transformers_decode.py --model models/tiny-code --new "$NEW" --runs 1 --out "$OUT/hf-tiny-code.json"
step 140 "transformers: qwen3-0.6b-shape" \
  python3 bench/transformers_decode.py --model "$QWEN" --new "$NEW" --runs 1 --out "$OUT/hf-qwen3-0.6b-shape.json"
echo "=== done $(date -u +%T)"
