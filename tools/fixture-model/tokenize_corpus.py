#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer on the collected corpus, then encode every split.

Byte-level BPE (GPT-2 style pre-tokenisation) because it is lossless on any input, code with its
whitespace included, and because the engine's TypeScript tokenizer and `@huggingface/tokenizers`
both implement it. The tokenizer is trained on an equal byte share of each domain's training split
(taken in the corpus's deterministic order), so no domain dominates the merges.

Special tokens (fixed ids, in this order):
  0 <|endoftext|>  document separator; also bos and eos (GPT-2 convention)
  1 <|pad|>
  2 <|python|> 3 <|c|> 4 <|prose|>   domain tags: half of the training documents start with
                                        their domain's tag, so a client may pass one (optional)

Output (under --out): tokenizer.json, {domain}.train.bin, {domain}.heldout.bin (uint16 token
streams, every document as <|endoftext|> [tag] tokens...), unigram.json (per-domain token counts of
the training split, for the unigram baseline), stats.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

DOMAINS = ("python", "c", "prose")
SPECIALS = ["<|endoftext|>", "<|pad|>", "<|python|>", "<|c|>", "<|prose|>"]
EOT, PAD = 0, 1
TAG = {"python": 2, "c": 3, "prose": 4}


def read_docs(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [(o["key"], o["text"]) for o in map(json.loads, f)]


def with_tag(key: str) -> bool:
    """Seeded by the document's key: whether this training document starts with its domain tag."""
    return hashlib.sha256(("tag:" + key).encode()).digest()[0] % 2 == 0


def build_tokenizer(vocab_size: int) -> tuple[Tokenizer, trainers.BpeTrainer]:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tok, trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--train-sample-mb", type=float, default=12, help="per domain, for the BPE trainer")
    args = ap.parse_args()
    t0 = time.time()
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    docs = {(d, s): read_docs(corpus / f"{d}.{s}.jsonl") for d in DOMAINS for s in ("train", "heldout")}
    sample: list[str] = []
    for d in DOMAINS:
        budget = int(args.train_sample_mb * 1e6)
        for _, text in docs[(d, "train")]:
            if budget <= 0:
                break
            sample.append(text)
            budget -= len(text.encode())
    tok, trainer = build_tokenizer(args.vocab_size)
    tok.train_from_iterator(sample, trainer=trainer, length=len(sample))
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    tok.save(str(out / "tokenizer.json"))
    print(f"[tokenize] vocab {tok.get_vocab_size()} trained on {len(sample)} docs ({time.time() - t0:.1f}s)",
          flush=True)

    stats: dict = {"vocab_size": tok.get_vocab_size(), "domains": {}}
    unigram: dict[str, list[int]] = {}
    for d in DOMAINS:
        for split in ("train", "heldout"):
            rows = docs[(d, split)]
            stream: list[np.ndarray] = []
            n_bytes = 0
            for i in range(0, len(rows), 4096):
                chunk = rows[i : i + 4096]
                encs = tok.encode_batch_fast([t for _, t in chunk], add_special_tokens=False)
                for (key, text), e in zip(chunk, encs):
                    head = [EOT, TAG[d]] if split == "train" and with_tag(key) else [EOT]
                    stream.append(np.asarray(head + e.ids, dtype=np.uint16))
                    n_bytes += len(text.encode())
            arr = np.concatenate(stream) if stream else np.zeros(0, np.uint16)
            arr.tofile(out / f"{d}.{split}.bin")
            stats["domains"].setdefault(d, {})[split] = {
                "docs": len(rows),
                "tokens": int(arr.size),
                "bytes": n_bytes,
                "bytes_per_token": round(n_bytes / max(1, arr.size), 3),
            }
            if split == "train":
                unigram[d] = np.bincount(arr, minlength=tok.get_vocab_size()).tolist()
            print(f"[tokenize] {d}.{split}: {len(rows)} docs, {arr.size} tokens, "
                  f"{n_bytes / max(1, arr.size):.2f} bytes/token ({time.time() - t0:.1f}s)", flush=True)
    (out / "unigram.json").write_text(json.dumps(unigram))
    stats["seconds"] = round(time.time() - t0, 1)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
