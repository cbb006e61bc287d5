#!/usr/bin/env python3
"""Greedy decode speed of Hugging Face transformers on the same checkpoint and prompts as bench/gpu-decode.ts.

    python3 bench/transformers_decode.py --model DIR [--attn eager,sdpa] [--batch 1,16] [--prompt 32]
        [--new 128] [--runs 2] [--out FILE]

bf16 weights as stored, `model.generate(do_sample=False, min_new_tokens=max_new_tokens)` so that every
sequence makes exactly --new tokens (as the engine's run with stop tokens off), default dynamic KV cache.
Prompts come from the same xorshift32 generator as bench/common.ts (benchPrompt), so both sides decode
identical inputs. Timing: a warm-up generate per (attention, batch), then per run torch.cuda.synchronize()
around two generate calls, one of max_new_tokens=1 (the prefill and its token) and one of --new: decode time
is the difference, over the --new - 1 decode steps, which is what the engine's decode figure counts too.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM


def bench_prompt(seq: int, length: int, vocab: int) -> list[int]:
    """bench/common.ts benchPrompt, word for word: xorshift32 into [16, min(vocab, 8192))."""
    m = 0xFFFFFFFF
    hi = min(vocab, 8192)
    x = (0x9E3779B9 + seq * 7919) & m or 1
    out = []
    for _ in range(length):
        x ^= (x << 13) & m
        x ^= x >> 17
        x ^= (x << 5) & m
        out.append(16 + x % (hi - 16))
    return out


def load(model_dir: str, attn: str):
    kwargs = {"attn_implementation": attn}
    try:  # transformers 5 names it dtype; 4.x torch_dtype
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, **kwargs)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, **kwargs)
    return model.to("cuda").eval()


def timed_generate(model, ids: torch.Tensor, new: int) -> tuple[float, torch.Tensor]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=new,
        min_new_tokens=new,
        pad_token_id=0,
    )
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()

    results = []
    for attn in args.attn.split(","):
        model = load(args.model, attn)
        # generate() would otherwise warn about, and stop at, the checkpoint's eos; min_new_tokens covers
        # stopping, this keeps sampling settings from generation_config.json from interfering.
        model.generation_config.do_sample = False
        model.generation_config.temperature = None
        model.generation_config.top_p = None
        model.generation_config.top_k = None
        vocab = model.config.vocab_size
        for batch in (int(b) for b in args.batch.split(",")):
            ids = torch.tensor([bench_prompt(s, args.prompt, vocab) for s in range(batch)], device="cuda")
            timed_generate(model, ids, 8)  # warm-up: kernels, allocator, cuBLAS handles
            decode_tps, step_ms, out = [], [], None
            for _ in range(args.runs):
                t_prefill, _ = timed_generate(model, ids, 1)
                t_all, out = timed_generate(model, ids, args.new)
                decode = max(t_all - t_prefill, 1e-9)
                decode_tps.append(batch * (args.new - 1) / decode)
                step_ms.append(1000 * decode / (args.new - 1))
            row = {
                "attn": attn,
                "batch": batch,
                "prompt_tokens": args.prompt,
                "new_tokens": args.new,
                "decode_tokens_per_second": round(statistics.median(decode_tps), 1),
                "ms_per_step": round(statistics.median(step_ms), 3),
                "runs_tokens_per_second": [round(x, 1) for x in decode_tps],
                "first_tokens": out[0, args.prompt:args.prompt + 32].tolist() if out is not None else [],
            }
            results.append(row)
            print(f"[transformers] {Path(args.model).name} {attn} batch {batch}: "
                  f"{row['decode_tokens_per_second']} tok/s, {row['ms_per_step']} ms/step", flush=True)
        del model
        torch.cuda.empty_cache()

    result = {
        "benchmark": "transformers-decode",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": Path(args.model).resolve().name,
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "dtype": "bfloat16",
        "greedy": True,
        "results": results,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
