#!/usr/bin/env bash
# llama.cpp's CUDA backend on the lent GPU, on the same random Qwen3-0.6B-shaped weights as the engine
# (called by bench/gpu-run.sh with BENCH_LLAMA_CPP=1; see ../shared/device/README.md for the recipe).
#   bash bench/gpu-llama-cpp.sh start CHECKPOINT_DIR    configures and starts the build in the background
#   bash bench/gpu-llama-cpp.sh wait                    waits for the build (so that it does not share the CPUs
#                                                       with a benchmark)
#   bash bench/gpu-llama-cpp.sh run CHECKPOINT_DIR RES  waits for the build, converts, runs the benchmarks
# The source is .gpu/llama-src.tar.xz, made on the development machine from the git bundle that npm
# node-llama-cpp ships (llama/gitRelease.bundle) without docs/, models/, tests/, examples/, the other GPU
# backends and the tools but llama-bench and batched-bench; its converter's unrecognised-pre-tokenizer error
# is turned into "qwen2", since random weights come with a stand-in tokenizer (the bundled tiny-code's,
# padded to the vocabulary: the benchmarks run random token ids anyway). Nothing of it is in the repository.
set -uo pipefail
cd "$(dirname "$0")/.."
LL=${TMPDIR:-/tmp}/llama
mode=$1
ckpt=${2:-}

if [ "$mode" = "start" ]; then
  if [ -x "$LL/build/bin/llama-bench" ]; then
    echo "llama.cpp: already built in $LL/build"
    exit 0
  fi
  rm -rf "$LL" && mkdir -p "$LL" && tar xJf .gpu/llama-src.tar.xz -C "$LL" || exit 1
  cat "$LL/llama-slim/SOURCE"
  cmake -S "$LL/llama-slim" -B "$LL/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF \
    > "$LL/configure.log" 2>&1 || {
    tail -20 "$LL/configure.log"
    exit 1
  }
  # In the background (its own session), so that a device call's time limit is not the build's.
  setsid sh -c "ninja -C '$LL/build' llama-bench llama-batched-bench ggml-cuda ggml-cpu > '$LL/build.log' 2>&1; echo \$? > '$LL/build.rc'" \
    < /dev/null > /dev/null 2>&1 &
  echo "llama.cpp: build started"
  exit 0
fi

res=${3:-}
while [ ! -f "$LL/build.rc" ] && [ ! -x "$LL/build/bin/llama-bench" ]; do sleep 5; done
if [ -f "$LL/build.rc" ] && [ "$(cat "$LL/build.rc")" != 0 ]; then
  tail -30 "$LL/build.log"
  exit 1
fi
tail -2 "$LL/build.log"
[ "$mode" = "wait" ] && exit 0
# The checkpoint with the stand-in tokenizer beside its weights (links), converted once.
gguf="$LL/qwen3-0.6b-shape-bf16.gguf"
if [ ! -f "$gguf" ]; then
  tok="$LL/checkpoint"
  rm -rf "$tok" && mkdir -p "$tok"
  for f in "$ckpt"/*; do ln -s "$(readlink -f "$f")" "$tok/"; done
  cp models/tiny-code/tokenizer.json models/tiny-code/tokenizer_config.json "$tok/"
  python3 "$LL/llama-slim/convert_hf_to_gguf.py" "$tok" --outtype bf16 --outfile "$gguf" > "$LL/convert.log" 2>&1 || {
    tail -20 "$LL/convert.log"
    exit 1
  }
fi
ls -la "$gguf"
bin="$LL/build/bin"
# Decode: tg128 at batch 1 (llama-bench, flash attention, all layers on the GPU), then 1 and 16 sequences
# of 32-token prompts and 128 new tokens each (llama-batched-bench), as the engine's gpu-decode runs.
"$bin/llama-bench" -m "$gguf" -ngl 99 -fa 1 -p 0 -n 128 -r 3 -o json > "$res/llama-bench.json" 2> "$LL/bench.log" ||
  tail -20 "$LL/bench.log"
cat "$res/llama-bench.json" | grep -E '"(n_gen|avg_ts|stddev_ts|gpu_info|model_type|backends)"'
"$bin/llama-batched-bench" -m "$gguf" -ngl 99 -fa on -c 8192 -b 2048 -ub 512 -npp 32 -ntg 128 -npl 1,16 \
  --output-format jsonl > "$res/llama-batched-bench.jsonl" 2> "$LL/batched.log" || tail -20 "$LL/batched.log"
cat "$res/llama-batched-bench.jsonl"
