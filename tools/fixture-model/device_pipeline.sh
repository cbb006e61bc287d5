#!/usr/bin/env bash
# The whole build in one command on the lent GPU machine, sized to fit one 10-minute call:
#   collect -> tokenizer + encode -> train target and draft concurrently -> export + references.
# Everything is written under $FM_WORK (default /tmp/fm); what must come back is packed into $OUT as
# fixture-model.tar split into 15 MB pieces (the device tool returns files of 16 MiB at most):
#   stage1/  tokenizer, held-out token streams, unigram counts, corpus manifest, prompts, trained
#            checkpoints, logs (enough to run export.py again elsewhere: see README.md)
#   models/  the published tiny-code and tiny-code-draft directories and metrics.json
# Training gets whatever is left of FM_TRAIN_END seconds (counted from the start) once the corpus and
# tokenizer are done, clamped to [FM_TRAIN_MIN, FM_TRAIN_MAX]; both models train for that long.
set -euo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
HERE="$(cd "$(dirname "$0")" && pwd)"
W="${FM_WORK:-/tmp/fm}"
OUTDIR="${OUT:-$W/out}"
PY="${PYTHON:-python3}"
T0=$(date +%s)
since() { echo $(($(date +%s) - T0)); }
mkdir -p "$W" "$OUTDIR" "$W/stage1/ckpt" "$W/stage1/logs"
LOG="$W/stage1/logs/pipeline.log"
exec > >(tee -a "$LOG") 2>&1

echo "== probe"
"$PY" - <<'EOF'
import sys, sysconfig, site, torch, transformers, tokenizers, safetensors
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__, "safetensors", safetensors.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("stdlib", sysconfig.get_paths()["stdlib"], "site", site.getsitepackages())
EOF
du -sh /usr/include 2>/dev/null || true
nproc

pack() {
  # $1: what to pack (relative to $W); the previous pack is replaced.
  rm -f "$OUTDIR"/fixture-model.tar.*
  tar -C "$W" -cf - "$@" | split -b 15M -d - "$OUTDIR/fixture-model.tar."
  ls -la "$OUTDIR"
}

echo "== collect ($(since)s)"
"$PY" "$HERE/collect.py" --out "$W/corpus" --python-mb "${FM_PY_MB:-100}" --c-mb "${FM_C_MB:-80}" \
  --prose-mb "${FM_PROSE_MB:-80}"
echo "== tokenize ($(since)s)"
"$PY" "$HERE/tokenize_corpus.py" --corpus "$W/corpus" --out "$W/tok"

# What export.py needs besides the checkpoints: keep the held-out streams to the evaluated prefix.
EVAL_WINDOWS="${FM_EVAL_WINDOWS:-256}"
mkdir -p "$W/stage1/tok" "$W/stage1/corpus"
cp "$W/tok/tokenizer.json" "$W/tok/stats.json" "$W/tok/unigram.json" "$W/stage1/tok/"
for d in python c prose; do
  head -c $((2 * (EVAL_WINDOWS * 1024 + 1))) "$W/tok/$d.heldout.bin" >"$W/stage1/tok/$d.heldout.bin"
done
cp -r "$W/corpus/prompts" "$W/corpus/manifest.json" "$W/stage1/corpus/"

BUDGET=$(("${FM_TRAIN_END:-440}" - $(since)))
BUDGET=$((BUDGET < "${FM_TRAIN_MIN:-90}" ? "${FM_TRAIN_MIN:-90}" : BUDGET))
BUDGET=$((BUDGET > "${FM_TRAIN_MAX:-360}" ? "${FM_TRAIN_MAX:-360}" : BUDGET))
echo "== train target and draft for ${BUDGET}s each, concurrently ($(since)s)"
"$PY" "$HERE/train.py" --which target --tok "$W/tok" --out "$W/stage1/ckpt/target" --seconds "$BUDGET" \
  --log "$W/stage1/logs/train.jsonl" ${FM_TRAIN_ARGS:-} >"$W/stage1/logs/target.out" 2>&1 &
PT=$!
"$PY" "$HERE/train.py" --which draft --tok "$W/tok" --out "$W/stage1/ckpt/draft" --seconds "$BUDGET" \
  --log "$W/stage1/logs/train.jsonl" ${FM_TRAIN_ARGS:-} >"$W/stage1/logs/draft.out" 2>&1 &
PD=$!
while kill -0 $PT 2>/dev/null || kill -0 $PD 2>/dev/null; do
  sleep 30
  echo "-- $(since)s: $(grep -h '"step"' "$W/stage1/logs/target.out" | tail -1 | cut -c1-160)"
  echo "-- $(since)s: $(grep -h '"step"' "$W/stage1/logs/draft.out" | tail -1 | cut -c1-160)"
done
wait $PT
wait $PD
grep -h '"done"' "$W/stage1/logs/target.out" "$W/stage1/logs/draft.out"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
pack stage1

echo "== export ($(since)s)"
"$PY" "$HERE/export.py" --tok "$W/stage1/tok" --corpus "$W/stage1/corpus" --target "$W/stage1/ckpt/target" \
  --draft "$W/stage1/ckpt/draft" --models "$W/models" --eval-windows "$EVAL_WINDOWS" --threads "$(nproc)" \
  2>&1 | grep -v -e "Loading weights" -e "Writing model shards"
pack stage1 models
echo "== done ($(since)s)"
