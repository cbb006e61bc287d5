#!/usr/bin/env python3
"""Publish the trained models in Hugging Face layout, evaluate them, and compute reference outputs.

For each of tiny-code (target) and tiny-code-draft:
  config.json, generation_config.json      bos = eos = <|endoftext|> (0), pad = <|pad|> (1)
  tokenizer.json, tokenizer_config.json    the shared byte-level BPE tokenizer
  model-0000N-of-0000M.safetensors         bf16, shards of 10 MB or less
  model.safetensors.index.json             written for a single shard too, so every reader can
                                           start from the index
  reference.json                           see below

Everything evaluated here is computed from the *published* files: the directory is loaded back with
`transformers` in float32 (the bf16 weights upcast exactly), so the references describe the committed
weights, not the float32 training state.

reference.json, per input (token-id inputs and text prompts, including an odd length and one of a few
hundred tokens):
  input_ids             what the model was given ([<|endoftext|>] + text_ids for text prompts)
  text, text_ids        for text prompts: the prompt and the tokenizer's ids for it (no special tokens)
  topk                  at every position, the top-8 [token id, logit] pairs (logits rounded to 1e-5)
  greedy                the greedy continuation of 32 tokens (argmax of a full forward pass at each
                        step, on CPU, eager attention; EOS does not stop it)
  greedy_margin         top-1 minus top-2 logit at each greedy step, so a test can tell a genuine
                        mismatch from a near tie
  last_logits           the full last-position logits (for two inputs of the target, one of the draft)

metrics.json (for the model card): per-domain held-out perplexity of both models and of unigram
baselines, the draft's top-1 agreement with the target, sample greedy continuations, and a check that
transformers' assisted generation (target + draft) reproduces plain greedy decoding.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open
from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM, PreTrainedTokenizerFast

DOMAINS = ("python", "c", "prose")
SPECIAL_IDS = 5  # ids below this are special tokens (see tokenize_corpus.py)
EOT, PAD = 0, 1
TOPK = 8
GREEDY = 32
MAX_SHARD = "10MB"

# Text prompts for the references: short hand-written ones per domain, then held-out prompts.
HANDWRITTEN = [
    ("py-def", "python", "def fibonacci(n):\n"),
    ("py-class", "python", "import os\nimport sys\n\n\nclass Config:\n    def __init__(self, path):\n"),
    ("c-main", "c", "#include <stdio.h>\n#include <stdlib.h>\n\nint main(int argc, char **argv)\n{\n"),
    ("c-struct", "c", "/* A doubly linked list. */\nstruct list_head {\n"),
    ("prose-intro", "prose", "This module provides functions for reading and writing"),
    ("prose-unicode", "prose", "Ünïcödé — naïve café, 日本語 and emoji 🚀 are encoded as bytes. Returns"),
]


def publish(ckpt: Path, tok_file: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    model = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=EOT, eos_token_id=EOT, pad_token_id=PAD, do_sample=False, max_new_tokens=128
    )
    model.save_pretrained(dest, max_shard_size=MAX_SHARD)
    single = dest / "model.safetensors"
    if single.exists():
        # One shard: give it the sharded name and write the index all the same.
        name = "model-00001-of-00001.safetensors"
        single.rename(dest / name)
        weight_map, total = {}, 0
        with safe_open(dest / name, framework="pt") as f:
            for k in f.keys():
                t = f.get_slice(k)
                weight_map[k] = name
                total += math.prod(t.get_shape()) * 2
        n_params = sum(p.numel() for p in model.parameters())
        index = {"metadata": {"total_parameters": n_params, "total_size": total},
                 "weight_map": dict(sorted(weight_map.items()))}
        (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    # Older readers look for rope_theta / torch_dtype at the top level; transformers 5 writes
    # rope_parameters and dtype. Keep both spellings.
    cfg_path = dest / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["rope_theta"] = cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)
    cfg["torch_dtype"] = "bfloat16"
    cfg_path.write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tok_file),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        unk_token=None,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    tok.save_pretrained(dest)
    shutil.copyfile(tok_file, dest / "tokenizer.json")  # byte-identical to what was trained
    # transformers 5 names the class TokenizersBackend; PreTrainedTokenizerFast is what older
    # transformers and the JS tokenizers read, and transformers 5 still maps it to the same backend.
    tc_path = dest / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc.update({"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "add_eos_token": False})
    tc_path.write_text(json.dumps(dict(sorted(tc.items())), indent=2) + "\n")
    for f in dest.iterdir():
        f.chmod(0o644)


def load(dest: Path, attn: str = "eager") -> LlamaForCausalLM:
    m = LlamaForCausalLM.from_pretrained(dest, dtype=torch.float32, attn_implementation=attn)
    m.eval()
    return m


@torch.no_grad()
def held_out_eval(target, draft, tok_dir: Path, dev: str, max_windows: int, seq: int) -> dict:
    """Per-domain NLL on held-out token streams, in 1024-token windows; special-token targets are
    left out (they are separators, not text). Also the draft's top-1 agreement with the target."""
    res = {}
    for d in DOMAINS:
        arr = np.fromfile(tok_dir / f"{d}.heldout.bin", dtype=np.uint16).astype(np.int64)
        n_win = min(max_windows, (arr.size - 1) // seq)
        nll_t = nll_d = 0.0
        count = agree = 0
        for i in range(0, n_win, 8):
            rows = [arr[j * seq : j * seq + seq + 1] for j in range(i, min(n_win, i + 8))]
            x = torch.from_numpy(np.stack(rows)).to(dev)
            inp, tgt = x[:, :-1], x[:, 1:]
            mask = tgt >= SPECIAL_IDS
            lt = target(input_ids=inp).logits.float()
            ld = draft(input_ids=inp).logits.float()
            nt = torch.nn.functional.cross_entropy(lt.transpose(1, 2), tgt, reduction="none")
            nd = torch.nn.functional.cross_entropy(ld.transpose(1, 2), tgt, reduction="none")
            nll_t += float(nt[mask].sum())
            nll_d += float(nd[mask].sum())
            agree += int(((lt.argmax(-1) == ld.argmax(-1)) & mask).sum())
            count += int(mask.sum())
        res[d] = {
            "tokens": count,
            "target_nll": nll_t / count,
            "target_ppl": math.exp(nll_t / count),
            "draft_nll": nll_d / count,
            "draft_ppl": math.exp(nll_d / count),
            "draft_top1_agreement": agree / count,
        }
    return res


def unigram_baselines(tok_dir: Path, max_windows: int, seq: int) -> dict:
    """Add-one-smoothed unigram models from the training split: one over all domains (the same single
    model for every domain, as the neural models are) and one per domain (a stronger baseline)."""
    counts = {d: np.asarray(c, dtype=np.float64) for d, c in json.loads((tok_dir / "unigram.json").read_text()).items()}
    allc = sum(counts.values())

    def ppl(c: np.ndarray, tokens: np.ndarray) -> float:
        c = c.copy()
        c[:SPECIAL_IDS] = 0
        p = (c + 1) / (c.sum() + (c.size - SPECIAL_IDS))
        return float(math.exp(-np.log(p[tokens]).mean()))

    res = {}
    for d in DOMAINS:
        arr = np.fromfile(tok_dir / f"{d}.heldout.bin", dtype=np.uint16).astype(np.int64)
        n_win = min(max_windows, (arr.size - 1) // seq)
        toks = arr[1 : n_win * seq + 1]  # the same predicted positions as held_out_eval
        toks = toks[toks >= SPECIAL_IDS]
        res[d] = {"unigram_all_ppl": ppl(allc, toks), "unigram_domain_ppl": ppl(counts[d], toks)}
    return res


@torch.no_grad()
def reference_for(model, name: str, ids: list[int], extra: dict, full_last: bool) -> dict:
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0].float()
    vals, idx = logits.topk(TOPK, dim=-1)
    topk = [[[int(i), round(float(v), 5)] for i, v in zip(ri, rv)] for ri, rv in zip(idx.tolist(), vals.tolist())]
    seq = list(ids)
    greedy, margins = [], []
    for _ in range(GREEDY):
        last = model(input_ids=torch.tensor([seq])).logits[0, -1].float()
        v2, i2 = last.topk(2)
        greedy.append(int(i2[0]))
        margins.append(round(float(v2[0] - v2[1]), 5))
        seq.append(int(i2[0]))
    rec = {"name": name, **extra, "input_ids": ids, "topk": topk, "greedy": greedy, "greedy_margin": margins}
    if full_last:
        rec["last_logits"] = [round(float(v), 5) for v in logits[-1].tolist()]
    return rec


def build_inputs(tok, prompts: dict[str, list[dict]]) -> list[tuple[str, dict, list[int]]]:
    rng = np.random.default_rng(20261123)
    out: list[tuple[str, dict, list[int]]] = []
    # Token-id inputs: a lone bos, odd lengths, ids across the whole vocabulary.
    out.append(("ids-bos", {"kind": "ids"}, [EOT]))
    out.append(("ids-7", {"kind": "ids"}, [EOT] + rng.integers(SPECIAL_IDS, tok.vocab_size, 6).tolist()))
    out.append(("ids-33", {"kind": "ids"}, [EOT] + rng.integers(SPECIAL_IDS, tok.vocab_size, 32).tolist()))
    out.append(("ids-tagged-python", {"kind": "ids"}, [EOT, 2] + tok.encode("import ", add_special_tokens=False)))
    texts = [(n, d, t) for n, d, t in HANDWRITTEN]
    for d in DOMAINS:
        texts.append((f"heldout-{d}", d, prompts[d][0]["prompt"]))
    # One long input of a few hundred tokens: held-out prompts of the python domain, joined.
    long_text = ""
    for p in prompts["python"][1:]:
        if len(tok.encode(long_text, add_special_tokens=False)) >= 300:
            break
        long_text += p["prompt"]
    texts.append(("heldout-python-long", "python", long_text))
    for n, d, t in texts:
        ids = tok.encode(t, add_special_tokens=False)
        out.append((n, {"kind": "text", "domain": d, "text": t, "text_ids": ids}, [EOT] + ids))
    return out


@torch.no_grad()
def greedy_generate(model, ids: list[int], n: int, assistant=None) -> list[int]:
    x = torch.tensor([ids])
    kw = {"assistant_model": assistant} if assistant is not None else {}
    y = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
                       eos_token_id=EOT, pad_token_id=PAD, **kw)
    return y[0, len(ids) :].tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tok", required=True)
    ap.add_argument("--corpus", required=True, help="collect.py output (prompts/)")
    ap.add_argument("--target", required=True, help="train.py output for the target")
    ap.add_argument("--draft", required=True, help="train.py output for the draft")
    ap.add_argument("--models", required=True, help="where models/tiny-code{,-draft} go")
    ap.add_argument("--eval-windows", type=int, default=256)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here
    torch.backends.cudnn.allow_tf32 = False
    tok_dir, models = Path(args.tok), Path(args.models)
    tdir, ddir = models / "tiny-code", models / "tiny-code-draft"
    publish(Path(args.target), tok_dir / "tokenizer.json", tdir)
    publish(Path(args.draft), tok_dir / "tokenizer.json", ddir)
    (tdir / "prompts").mkdir()
    prompts: dict[str, list[dict]] = {}
    for d in DOMAINS:
        shutil.copyfile(Path(args.corpus) / "prompts" / f"{d}.jsonl", tdir / "prompts" / f"{d}.jsonl")
        prompts[d] = [json.loads(x) for x in (tdir / "prompts" / f"{d}.jsonl").read_text().splitlines()]
    print(f"[export] published ({time.time() - t0:.1f}s)", flush=True)

    # The tokenizer as transformers loads it from the published directory must agree with the raw one.
    tok = AutoTokenizer.from_pretrained(tdir)
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tdir / "tokenizer.json"))
    for d in DOMAINS:
        for p in prompts[d][:50]:
            a = tok.encode(p["prompt"], add_special_tokens=False)
            assert a == raw.encode(p["prompt"], add_special_tokens=False).ids, p["id"]
            assert tok.decode(a) == p["prompt"], p["id"]

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    target_gpu, draft_gpu = load(tdir, "sdpa").to(dev), load(ddir, "sdpa").to(dev)
    ev = held_out_eval(target_gpu, draft_gpu, tok_dir, dev, args.eval_windows, args.seq)
    uni = unigram_baselines(tok_dir, args.eval_windows, args.seq)
    for d in DOMAINS:
        ev[d].update(uni[d])
        print(f"[export] {d}: target ppl {ev[d]['target_ppl']:.2f}  draft ppl {ev[d]['draft_ppl']:.2f}  "
              f"unigram(all) {ev[d]['unigram_all_ppl']:.1f}  unigram(domain) {ev[d]['unigram_domain_ppl']:.1f}  "
              f"draft top-1 agreement {ev[d]['draft_top1_agreement']:.3f}", flush=True)
    del target_gpu, draft_gpu
    print(f"[export] evaluated ({time.time() - t0:.1f}s)", flush=True)

    # References, on the CPU in float32 with eager attention (the plainest reading of the weights).
    target, draft = load(tdir), load(ddir)
    inputs = build_inputs(tok, prompts)
    for mdir, model, full_last_names, keep in (
        (tdir, target, {"ids-7", "heldout-python"}, None),
        (ddir, draft, {"ids-7"}, {"ids-bos", "ids-7", "ids-33", "py-def", "c-main", "prose-intro",
                                   "heldout-python", "heldout-c", "heldout-prose"}),
    ):
        recs = [reference_for(model, n, ids, extra, n in full_last_names)
                for n, extra, ids in inputs if keep is None or n in keep]
        ref = {
            "model": mdir.name,
            "weights_dtype": "bfloat16",
            "compute_dtype": "float32",
            "computed_with": {"transformers": transformers.__version__, "torch": torch.__version__,
                              "device": "cpu", "attn_implementation": "eager"},
            "top_k": TOPK,
            "greedy_new_tokens": GREEDY,
            "notes": "text inputs: input_ids = [bos(0)] + text_ids; greedy continues past eos; "
                     "logits rounded to 1e-5",
            "inputs": recs,
        }
        (mdir / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    print(f"[export] references ({time.time() - t0:.1f}s)", flush=True)

    # Samples for the model card, and the assisted-generation check.
    samples = []
    assisted_same = assisted_total = 0
    for d in DOMAINS:
        for p in prompts[d][:3]:
            ids = [EOT] + tok.encode(p["prompt"], add_special_tokens=False)
            out_t = greedy_generate(target, ids, 48)
            out_a = greedy_generate(target, ids, 48, assistant=draft)
            out_d = greedy_generate(draft, ids, 48)
            assisted_total += 1
            assisted_same += int(out_a == out_t)
            samples.append({"id": p["id"], "domain": d, "prompt": p["prompt"],
                            "target": tok.decode(out_t), "draft": tok.decode(out_d),
                            "assisted_equals_greedy": out_a == out_t})
    metrics = {
        "eval": ev,
        "eval_windows": args.eval_windows,
        "seq": args.seq,
        "samples": samples,
        "assisted_generation": {"same": assisted_same, "total": assisted_total},
        "sizes": {m.name: {f.name: f.stat().st_size for f in sorted(m.rglob("*")) if f.is_file()}
                  for m in (tdir, ddir)},
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "seconds": round(time.time() - t0, 1),
    }
    (models / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
    print(f"[export] assisted generation equals greedy on {assisted_same}/{assisted_total}; "
          f"done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
