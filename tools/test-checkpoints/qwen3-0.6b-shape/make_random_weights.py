#!/usr/bin/env python3
"""Write model.safetensors with random bf16 weights for the Qwen3-0.6B-shaped config.json beside this file.

The GPU benchmark needs a checkpoint of a real model's shape (596 M parameters, 1.19 GB in bf16), and no
model hub is reachable, so it is made on the device machine when needed and never committed:

    python3 tools/test-checkpoints/qwen3-0.6b-shape/make_random_weights.py [--out DIR]

DIR (default: this folder) receives config.json (copied) and model.safetensors. Needs torch and
safetensors only, not transformers; draws on the GPU when there is one (a few seconds), else the CPU
(well under a minute). Tensor names and shapes are Hugging Face's Qwen3ForCausalLM ones ([out, in] for
linears; no lm_head.weight, the embeddings are tied).

Values matter only for being realistic enough to keep activations finite and the logits spread out:
linears std 1/sqrt(fan_in), norms 1 + noise (q/k norms a little larger so attention is not uniform),
embeddings std 0.05 (so tied logits spread by about 1.6).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def tensor_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    h, hd, i = c["hidden_size"], c["head_dim"], c["intermediate_size"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c["vocab_size"], h), "model.norm.weight": (h,)}
    if not c.get("tie_word_embeddings", False):
        out["lm_head.weight"] = (c["vocab_size"], h)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}"
        out.update({
            f"{p}.input_layernorm.weight": (h,),
            f"{p}.post_attention_layernorm.weight": (h,),
            f"{p}.self_attn.q_proj.weight": (q, h),
            f"{p}.self_attn.k_proj.weight": (kv, h),
            f"{p}.self_attn.v_proj.weight": (kv, h),
            f"{p}.self_attn.o_proj.weight": (h, q),
            f"{p}.self_attn.q_norm.weight": (hd,),
            f"{p}.self_attn.k_norm.weight": (hd,),
            f"{p}.mlp.gate_proj.weight": (i, h),
            f"{p}.mlp.up_proj.weight": (i, h),
            f"{p}.mlp.down_proj.weight": (h, i),
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--seed", type=int, default=20261124)
    args = ap.parse_args()
    t0 = time.time()
    cfg = json.loads((HERE / "config.json").read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != HERE:
        shutil.copyfile(HERE / "config.json", out / "config.json")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(args.seed)
    tensors = {}
    for name, shape in tensor_shapes(cfg).items():
        if name.endswith("norm.weight"):
            base, std = (1.5, 0.2) if ("q_norm" in name or "k_norm" in name) else (1.0, 0.1)
        elif name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            base, std = 0.0, 0.05
        else:
            base, std = 0.0, 1.0 / math.sqrt(shape[1])
        # Draw in float32 (bf16 randn is no faster and coarser), store bf16, contiguous on the CPU.
        t = torch.randn(shape, generator=g, device=dev, dtype=torch.float32).mul_(std).add_(base)
        tensors[name] = t.to(torch.bfloat16).cpu().contiguous()
    n = sum(t.numel() for t in tensors.values())
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    size = (out / "model.safetensors").stat().st_size
    print(f"[random-weights] {len(tensors)} tensors, {n / 1e6:.1f} M parameters, {size / 1e9:.3f} GB "
          f"in {time.time() - t0:.1f} s on {dev}", flush=True)


if __name__ == "__main__":
    main()
