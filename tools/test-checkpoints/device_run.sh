#!/usr/bin/env bash
# The one device call that builds the test checkpoints (run from the repository root, $OUT set by the
# device tool): make_checkpoints.py on the CPU, a GPU float32/sdpa cross-check of the references, and a
# timing + transformers load check of the Qwen3-0.6B-shaped random weights (which are not brought back).
# Back here: `tar -xf testing.tar` and copy testing/<name>/ into models/testing/ (summary.json stays out).
set -u
export PYTHONUNBUFFERED=1
T=tools/test-checkpoints
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
timeout 210 python3 $T/make_checkpoints.py --out /tmp/testing 2>&1 | tee $OUT/make.log
echo "make rc ${PIPESTATUS[0]}"
tar -C /tmp -cf $OUT/testing.tar testing
timeout 60 python3 $T/verify_reference.py /tmp/testing/*/ --device cuda --attn sdpa 2>&1 | tee $OUT/verify_cuda.log
timeout 60 python3 $T/qwen3-0.6b-shape/make_random_weights.py --out /tmp/q06 2>&1 | tee $OUT/q06.log
timeout 60 python3 - <<'PY' 2>&1 | tee -a $OUT/q06.log
import time, torch
from transformers import AutoModelForCausalLM
t0 = time.time()
m, info = AutoModelForCausalLM.from_pretrained("/tmp/q06", dtype=torch.bfloat16, output_loading_info=True)
m = m.cuda().eval()
print("loading info", {k: v for k, v in info.items() if v})
with torch.no_grad():
    lg = m(input_ids=torch.arange(1, 65, device="cuda")[None] * 997).logits.float()
print(f"q06 load+forward {time.time() - t0:.1f}s params {sum(p.numel() for p in m.parameters())/1e6:.1f}M "
      f"logits std {lg.std():.3f} finite {bool(torch.isfinite(lg).all())} argmax {lg[0, -8:].argmax(-1).tolist()}")
PY
ls -la $OUT
