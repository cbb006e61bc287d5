#!/usr/bin/env python3
"""Recompute the test checkpoints' reference.json with the local transformers and compare.

    python3 tools/test-checkpoints/verify_reference.py models/testing/* [--device cuda --attn sdpa]

Loads each folder's weights in float32 and recomputes every input's top-8 logits and greedy continuation
as make_checkpoints.py does; reports the largest logit difference and whether the top-8 ids and greedy
tokens match. On another device or attention implementation this shows how far an independent float32
implementation lands from the references (the tolerance an engine parity test can expect to need).
Exit status 1 when any greedy continuation differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

GREEDY = 32


@torch.no_grad()
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--attn", default="eager")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here
    torch.backends.cudnn.allow_tf32 = False
    bad = 0
    for d in args.dirs:
        mdir = Path(d)
        ref = json.loads((mdir / "reference.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation=args.attn)
        model = model.to(args.device).eval()
        worst = 0.0
        for rec in ref["inputs"]:
            ids = rec["input_ids"]
            logits = model(input_ids=torch.tensor([ids], device=args.device)).logits[0].float().cpu()
            # Compare the recorded top-8 ids' logits (a near tie may reorder, a real error moves values).
            diff = max(abs(float(logits[p, i]) - v) for p, row in enumerate(rec["topk"]) for i, v in row)
            ids_same = all([int(i) for i in logits[p].topk(len(row)).indices] == [i for i, _ in row]
                           for p, row in enumerate(rec["topk"]))
            seq, greedy = list(ids), []
            for _ in range(GREEDY):
                nxt = int(model(input_ids=torch.tensor([seq], device=args.device)).logits[0, -1].argmax())
                greedy.append(nxt)
                seq.append(nxt)
            same = greedy == rec["greedy"]
            bad += 0 if same else 1
            worst = max(worst, diff)
            print(f"{mdir.name:16s} {rec['name']:8s} len {len(ids):4d}  max|dlogit| {diff:.2e}  "
                  f"top-8 ids {'same' if ids_same else 'DIFFER'}  greedy {'same' if same else 'DIFFERS'}")
        print(f"{mdir.name}: worst top-8 logit difference {worst:.2e} on {args.device}/{args.attn} "
              f"(reference: {ref['computed_with']})", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
