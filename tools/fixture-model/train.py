#!/usr/bin/env python3
"""Train the bundled target model or its draft model, for a fixed wall-clock budget.

Both are plain `LlamaForCausalLM`s on the shared byte-level BPE vocabulary (see MODELS below), so
the engine's Llama family loads them with no special case, and `transformers`' assisted generation
can pair them.

Batches are random windows of 1024+1 tokens drawn from the three domains' token streams with equal
probability (numpy Generator, seeded), so each domain gets a third of the updates whatever its size.
Mixed precision: float32 master weights, bfloat16 autocast, fused AdamW (betas 0.9/0.95, weight decay
0.1 on matrices only), gradient clipping at 1.0. The learning rate warms up linearly over the first
steps and then follows a cosine over the *time* budget down to 10% of the peak: the budget is in
seconds (GPU minutes are what the project has), so the step count is whatever fits.

At the end the weights are cast to bfloat16 (what is committed) and saved with save_pretrained;
export.py evaluates and publishes them. Progress goes to stdout and to --log as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

DOMAINS = ("python", "c", "prose")

COMMON = dict(
    vocab_size=8192,
    max_position_embeddings=1024,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    hidden_act="silu",
    tie_word_embeddings=True,
    attention_bias=False,
    mlp_bias=False,
    bos_token_id=0,
    eos_token_id=0,
    pad_token_id=1,
    initializer_range=0.02,
)

MODELS = {
    # ~10.8M parameters (3.1M of them the tied embedding): 21.6 MB in bf16. The example has
    # intermediate 1024 (12.6M, 25 MB); 768 keeps target + draft + tokenizers under the 30 MB cap.
    "target": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=2,
                   intermediate_size=768, head_dim=64),
    # ~1.6M parameters: the classic two-model speculative-decoding draft.
    "draft": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=384, head_dim=32),
}

HPARAMS = {
    "target": dict(lr=3e-3, batch=64, warmup=150),
    "draft": dict(lr=5e-3, batch=64, warmup=100),
}


def make_config(which: str, vocab_size: int) -> LlamaConfig:
    cfg = LlamaConfig(**{**COMMON, **MODELS[which], "vocab_size": vocab_size})
    return cfg


class Windows:
    def __init__(self, tok_dir: Path, seq: int, seed: int):
        self.data = [np.fromfile(tok_dir / f"{d}.train.bin", dtype=np.uint16) for d in DOMAINS]
        self.seq = seq
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        doms = self.rng.integers(0, len(DOMAINS), size=n)
        out = np.empty((n, self.seq + 1), dtype=np.int64)
        for i, d in enumerate(doms):
            arr = self.data[d]
            off = int(self.rng.integers(0, arr.size - self.seq - 1))
            out[i] = arr[off : off + self.seq + 1]
        return out, doms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--which", choices=sorted(MODELS), required=True)
    ap.add_argument("--tok", required=True, help="tokenize_corpus.py output")
    ap.add_argument("--out", required=True, help="save_pretrained directory (bf16)")
    ap.add_argument("--seconds", type=float, required=True, help="training wall-clock budget")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=0, help="0: the model's default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", default="")
    args = ap.parse_args()

    hp = HPARAMS[args.which]
    batch = args.batch or hp["batch"]
    torch.manual_seed(args.seed + (0 if args.which == "target" else 1))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    tok_dir = Path(args.tok)
    vocab = json.loads((tok_dir / "stats.json").read_text())["vocab_size"]
    cfg = make_config(args.which, vocab)
    model = LlamaForCausalLM(cfg).to(dev)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp["lr"], betas=(0.9, 0.95), eps=1e-8, fused=(dev == "cuda"),
    )
    data = Windows(tok_dir, args.seq, seed=1000 + args.seed + (0 if args.which == "target" else 7))
    log = open(args.log, "a") if args.log else None

    def emit(rec: dict) -> None:
        rec = {"model": args.which, **rec}
        print(json.dumps(rec), flush=True)
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    emit({"event": "start", "params": n_params, "device": dev, "batch": batch, "seq": args.seq,
          "budget_s": args.seconds, "config": MODELS[args.which], **hp})
    model.train()
    t0 = time.time()
    step = 0
    tokens = 0
    dom_loss = torch.zeros(len(DOMAINS), device=dev)
    dom_count = torch.zeros(len(DOMAINS), device=dev)
    recent: list[float] = []
    while True:
        frac = (time.time() - t0) / args.seconds
        if frac >= 1.0:
            break
        if step < hp["warmup"]:
            lr = hp["lr"] * (step + 1) / hp["warmup"]
        else:
            lr = hp["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        xb, doms = data.batch(batch)
        x = torch.from_numpy(xb).to(dev, non_blocking=True)
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = model(input_ids=x[:, :-1]).logits
        per_tok = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1),
                                  reduction="none").view(batch, -1)
        loss = per_tok.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = torch.from_numpy(doms).to(dev)
            dom_loss.index_add_(0, d, per_tok.mean(dim=1).detach())
            dom_count.index_add_(0, d, torch.ones_like(d, dtype=torch.float32))
        step += 1
        tokens += batch * args.seq
        if step % 50 == 0 or step == 1:
            lv = loss.item()
            recent.append(lv)
            el = time.time() - t0
            per_dom = (dom_loss / dom_count.clamp(min=1)).tolist()
            emit({"event": "step", "step": step, "t": round(el, 1), "loss": round(lv, 4),
                  "loss_by_domain": {k: round(v, 4) for k, v in zip(DOMAINS, per_dom)},
                  "lr": round(lr, 6), "gnorm": round(float(gnorm), 3), "tok_per_s": round(tokens / el)})
            dom_loss.zero_()
            dom_count.zero_()
    elapsed = time.time() - t0
    final = float(np.mean(recent[-4:])) if recent else float("nan")
    out = Path(args.out)
    model.config.use_cache = True
    model.to(torch.bfloat16).save_pretrained(out, max_shard_size="10MB")
    emit({"event": "done", "steps": step, "tokens": tokens, "seconds": round(elapsed, 1),
          "final_train_loss": round(final, 4), "last_loss": round(float(loss.item()), 4),
          "tok_per_s": round(tokens / max(elapsed, 1e-9)), "params": n_params})


if __name__ == "__main__":
    main()
