#!/usr/bin/env python3
"""Recompute a published model's reference.json with the local transformers and compare.

Runs on a CPU (no GPU needed): loads the committed bf16 weights in float32, recomputes every input's
top-k logits and 32-token greedy continuation exactly as export.py does, and reports the largest logit
difference and whether each greedy continuation matches. Used to check that the references are a
property of the committed weights and not of one machine's transformers / torch versions.

    python3 tools/fixture-model/verify_reference.py models/tiny-code models/tiny-code-draft
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export import load, reference_for  # noqa: E402


def main() -> int:
    torch.backends.cuda.matmul.allow_tf32 = False
    bad = 0
    for d in sys.argv[1:]:
        mdir = Path(d)
        ref = json.loads((mdir / "reference.json").read_text())
        model = load(mdir)
        worst = 0.0
        for rec in ref["inputs"]:
            extra = {k: rec[k] for k in ("kind", "domain", "text", "text_ids") if k in rec}
            got = reference_for(model, rec["name"], rec["input_ids"], extra, "last_logits" in rec)
            diff = max(
                abs(a[1] - b[1])
                for ra, rb in zip(rec["topk"], got["topk"])
                for a, b in zip(ra, rb)
            )
            ids_same = all([a[0] for a in ra] == [b[0] for b in rb] for ra, rb in zip(rec["topk"], got["topk"]))
            greedy_same = got["greedy"] == rec["greedy"]
            worst = max(worst, diff)
            if not greedy_same:
                bad += 1
            print(f"{mdir.name:16s} {rec['name']:22s} len {len(rec['input_ids']):4d}  max|dlogit| {diff:.2e}  "
                  f"top-k ids {'same' if ids_same else 'DIFFER'}  greedy {'same' if greedy_same else 'DIFFERS'}")
        print(f"{mdir.name}: worst top-k logit difference {worst:.2e} "
              f"(transformers {transformers.__version__}, torch {torch.__version__} vs {ref['computed_with']})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
