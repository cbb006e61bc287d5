#!/usr/bin/env python3
"""Write MODEL_CARD.md for models/tiny-code and models/tiny-code-draft from a build's artifacts.

Runs on any machine (no GPU, no torch): it reads what device_pipeline.sh packed,
  <run>/stage1/corpus/manifest.json   sources, licences, counts (collect.py)
  <run>/stage1/tok/stats.json         tokens and bytes per token (tokenize_corpus.py)
  <run>/stage1/logs/train.jsonl       training configuration, progress and final losses (train.py)
  <run>/stage1/logs/pipeline.log      stage timings
  <run>/models/metrics.json           perplexities, agreement, samples, sizes (export.py)
and the published reference.json files, and writes the two cards.

    python3 tools/fixture-model/make_card.py --run .fm/run1 --models models
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect import classify_licence  # noqa: E402

DOMAINS = ("python", "c", "prose")

# System packages whose copyright file is not machine-readable (no "License:" fields): their licence
# as their copyright files state it in prose.
DEBIAN_LICENCES = {
    "libstdc++-12-dev": "GPL-3.0-or-later WITH GCC-exception-3.1",
    "libstdc++-13-dev": "GPL-3.0-or-later WITH GCC-exception-3.1",
    "linux-libc-dev": "GPL-2.0 WITH Linux-syscall-note",
    "libc6-dev": "LGPL-2.1-or-later",
    "libhwloc-dev": "BSD-3-Clause",
    "libnl-3-dev": "LGPL-2.1",
    "libnccl-dev": "BSD-3-Clause",
    "libnuma-dev": "LGPL-2.1",
    "libaec-dev": "BSD-2-Clause",
    "libpython3.12-dev": "PSF-2.0",
}


def source_licence(label: str, declared: str) -> tuple[str, str]:
    """(licence as declared, family) for one source label of the manifest."""
    if label.startswith("debian:"):
        pkg = label.split(":", 1)[1]
        if pkg in DEBIAN_LICENCES:
            lic = DEBIAN_LICENCES[pkg]
            return lic, classify_licence(lic)
        if declared.startswith("copyright file mentions"):
            return "see the package's copyright file", "Unknown"
        return declared, classify_licence(declared, proprietary=False)
    if label == "python-stdlib":
        return "PSF-2.0", "PSF-2.0"
    return declared, classify_licence(declared)


def md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def fence(text: str, lang: str = "") -> str:
    ticks = "````"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def read_run(run: Path) -> dict:
    stage1 = run / "stage1"
    train = [json.loads(x) for x in (stage1 / "logs" / "train.jsonl").read_text().splitlines() if x.strip()]
    timings = {}
    for line in (stage1 / "logs" / "pipeline.log").read_text().splitlines():
        m = re.match(r"^== (\w+).*\((\d+)s\)$", line)
        if m:
            timings[m.group(1)] = int(m.group(2))
    return {
        "manifest": json.loads((stage1 / "corpus" / "manifest.json").read_text()),
        "stats": json.loads((stage1 / "tok" / "stats.json").read_text()),
        "metrics": json.loads((run / "models" / "metrics.json").read_text()),
        "train": train,
        "timings": timings,
        "probe": [x for x in (stage1 / "logs" / "pipeline.log").read_text().splitlines()[:4] if x.startswith(("python", "cuda"))],
    }


def train_events(r: dict, which: str) -> tuple[dict, dict, list[dict]]:
    ev = [e for e in r["train"] if e["model"] == which]
    start = next(e for e in ev if e["event"] == "start")
    done = next(e for e in ev if e["event"] == "done")
    steps = [e for e in ev if e["event"] == "step"]
    return start, done, steps


def data_section(r: dict) -> str:
    man, stats = r["manifest"], r["stats"]
    out = ["## Training data", ""]
    out.append(
        "Collected by `tools/fixture-model/collect.py` from the disk of the GPU machine it was built on (an Ubuntu image "
        "with glibc 2.39, Python 3.12, PyTorch and about 200 Python distributions); nothing was downloaded. "
        "Three domains:"
    )
    out.append("")
    out.append("- **python**: `.py` files of the Python standard library (`sysconfig`'s stdlib, test folders left out) "
               "and of site-packages (test and vendored folders left out);")
    out.append("- **c**: C and C++ headers and sources under `/usr/include`, `/usr/local/include` and the include "
               "trees that Python packages ship (torch, numpy, pyarrow, cupy, ...);")
    out.append("- **prose**: Markdown / reStructuredText / plain-text documentation (site-packages, the stdlib, "
               "`/usr/share/doc`), the packages' long descriptions from their METADATA, and the docstrings of the "
               "Python files (module, class and function docstrings of 200 characters or more, joined per file).")
    out.append("")
    out.append(
        "Selection is deterministic: files are read in sorted order, filtered (UTF-8, 300 B to 256 KiB, no line "
        "over 1000 characters, not mostly digits; prose needs mostly letters and spaces), de-duplicated by the "
        "SHA-256 of their normalised text, and split by a SHA-256 of a machine-independent key (for example "
        f"`site-packages/torch/nn/modules/linear.py`): {man['heldout_percent']}% of keys are held out. A Python "
        "file's docstrings go with the file, so held-out code does not leak into training through them. "
        "Training documents are taken in the order of another hash of the key until the domain's byte budget "
        "(python 100 MB, c 80 MB, prose 80 MB) is filled. The corpus itself is not committed."
    )
    out.append("")
    out.append("| domain | unique files | train docs | train MB | train tokens | held-out docs | held-out MB | held-out tokens | bytes/token |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in DOMAINS:
        m = man["domains"][d]
        s = stats["domains"][d]
        out.append(
            f"| {d} | {m['unique']:,} | {m['train_docs']:,} | {m['train_bytes'] / 1e6:.1f} | {s['train']['tokens'] / 1e6:.1f} M "
            f"| {m['heldout_docs']:,} | {m['heldout_bytes'] / 1e6:.1f} | {s['heldout']['tokens'] / 1e6:.2f} M "
            f"| {s['train']['bytes_per_token']:.2f} |"
        )
    out.append("")
    out.append(
        "Left out on purpose: the NVIDIA CUDA wheels and toolkit headers and any file that carries an NVIDIA "
        "licence-agreement notice (proprietary terms), i.e. the distributions "
        + ", ".join(f"`{x}`" for x in man["excluded_distributions"])
        + f", and {man['skipped'].get('c-proprietary-notice', 0)} headers with such a notice; licence, copying "
        "and author files (legal boilerplate, not prose)."
    )
    out.append("")
    # Licence families, by training bytes.
    fam_bytes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows: dict[str, list] = {d: [] for d in DOMAINS}
    for d in DOMAINS:
        for label, s in man["domains"][d]["sources"].items():
            lic, fam = source_licence(label, s["licence"])
            fam_bytes[fam][d] += s["train_bytes"]
            rows[d].append((label, lic, fam, s["train_docs"], s["train_bytes"], s["heldout_docs"]))
    out.append("### Licences")
    out.append("")
    out.append(
        "Each site-packages file is attributed to its distribution through the dist-info `RECORD` files and "
        "takes the licence its METADATA declares (License-Expression, License, or the licence classifiers); "
        "system headers are attributed to their Debian package through `/var/lib/dpkg/info/*.list` and take "
        "the `License:` fields of the package's copyright file. The standard library is under the PSF licence. "
        "Most of the corpus is under permissive licences (Apache-2.0, BSD, MIT, PSF, BSL-1.0); the system "
        "headers add copyleft ones: glibc (`libc6-dev`, LGPL-2.1+), the Linux UAPI headers (`linux-libc-dev`, "
        "GPL-2.0 WITH Linux-syscall-note), libstdc++ (GPL-3.0+ WITH GCC-exception-3.1) and smaller GPL/LGPL "
        "packages. Training bytes by the licence family (or families) a source declares:"
    )
    out.append("")
    out.append("| licence family | python MB | c MB | prose MB |")
    out.append("|---|---:|---:|---:|")
    for fam, per in sorted(fam_bytes.items(), key=lambda kv: -sum(kv[1].values())):
        out.append(f"| {fam} | " + " | ".join(f"{per.get(d, 0) / 1e6:.2f}" for d in DOMAINS) + " |")
    out.append("")
    out.append(
        "The weights are a statistical summary of these sources and are released with the project (Apache-2.0) "
        "as a test and benchmark fixture; whether a model trained on copyleft headers is a derivative work is "
        "not settled, so anyone redistributing it outside that use should check the sources below."
    )
    out.append("")
    out.append("<details><summary>Every source, with its declared licence and its share of the training data</summary>")
    out.append("")
    for d in DOMAINS:
        out.append(f"#### {d}")
        out.append("")
        out.append("| source | declared licence | family | train docs | train MB | held-out docs |")
        out.append("|---|---|---|---:|---:|---:|")
        for label, lic, fam, td, tb, hd in sorted(rows[d], key=lambda x: -x[4]):
            out.append(f"| {md_escape(label)} | {md_escape(lic[:160])} | {fam} | {td:,} | {tb / 1e6:.2f} | {hd:,} |")
        out.append("")
    out.append("</details>")
    out.append("")
    return "\n".join(out)


def eval_table(r: dict, which: str) -> str:
    ev = r["metrics"]["eval"]
    stats = r["stats"]["domains"]
    out = [
        "| domain | held-out tokens | tiny-code ppl | tiny-code-draft ppl | unigram ppl (all domains) | unigram ppl (same domain) "
        f"| {which} bits/byte | draft top-1 agreement with target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in DOMAINS:
        e = ev[d]
        nll = e["target_nll"] if which == "tiny-code" else e["draft_nll"]
        bpb = nll / math.log(2) / stats[d]["heldout"]["bytes_per_token"]
        out.append(
            f"| {d} | {e['tokens']:,} | **{e['target_ppl']:.2f}** | {e['draft_ppl']:.2f} | {e['unigram_all_ppl']:.0f} "
            f"| {e['unigram_domain_ppl']:.0f} | {bpb:.3f} | {e['draft_top1_agreement']:.1%} |"
        )
    return "\n".join(out)


def eval_section(r: dict, which: str) -> str:
    m = r["metrics"]
    out = ["## Evaluation", ""]
    out.append(
        f"Per-token perplexity on the held-out split of each domain: the first {m['eval_windows']} windows of "
        f"{m['seq']} tokens of the held-out token stream (documents joined with `<|endoftext|>`, no domain tag), "
        "computed with `transformers` in float32 from the committed bf16 weights; positions whose target is a "
        "special token are not counted. The unigram baselines are add-one-smoothed token frequencies of the "
        "training split, over all domains (one model for everything, as the neural models are) and per domain "
        "(a stronger baseline). Bits per byte divide by the held-out bytes per token, so they compare across "
        "tokenizers."
    )
    out.append("")
    out.append(eval_table(r, which))
    out.append("")
    out.append(
        "Caveat: the split is by file, not by near-duplicate cluster. Much of this corpus is repetitive "
        "(PyTorch's generated ATen operator headers, Boost's preprocessor headers, transformers' per-model "
        "files written from templates), so the held-out perplexities, C's above all, are lower than on "
        "code from elsewhere would be. The prompts in `prompts/` come from the same held-out files."
    )
    out.append("")
    a = m["assisted_generation"]
    out.append(
        f"`transformers`' assisted generation (this target with tiny-code-draft as the assistant, greedy, 48 new "
        f"tokens) gave exactly the target's own greedy output on {a['same']} of {a['total']} held-out prompts."
    )
    out.append("")
    return "\n".join(out)


def samples_section(r: dict, which: str, ref: dict, tok_decode) -> str:
    key = "target" if which == "tiny-code" else "draft"
    out = ["## Sample greedy continuations", ""]
    out.append(
        "Greedy decoding (48 new tokens, stopping at `<|endoftext|>`) from the first held-out prompts of each "
        "domain in `prompts/`; the input is `<|endoftext|>` followed by the prompt. The prompt is shown up to "
        "the marker line, the model's continuation after it. Small models repeat themselves; these are here to "
        "show that the model has learnt each domain's surface form."
    )
    out.append("")
    for s in r["metrics"]["samples"]:
        out.append(f"**{s['id']}** ({s['domain']})")
        out.append("")
        body = s["prompt"].rstrip("\n") + "\n" + "⟪ continuation ⟫\n" + s[key]
        out.append(fence(body))
        out.append("")
    out.append("Hand-written prompts, with the 32-token greedy continuation recorded in `reference.json`:")
    out.append("")
    for rec in ref["inputs"]:
        if rec.get("kind") == "text" and not rec["name"].startswith("heldout"):
            out.append(f"**{rec['name']}**")
            out.append("")
            out.append(fence(rec["text"].rstrip("\n") + "\n⟪ continuation ⟫\n" + tok_decode(rec["greedy"])))
            out.append("")
    return "\n".join(out)


def training_section(r: dict, which: str) -> str:
    start, done, steps = train_events(r, "target" if which == "tiny-code" else "draft")
    out = ["## Training", ""]
    out.append(
        f"`tools/fixture-model/train.py --which {start['model']}`: {done['steps']:,} steps of {start['batch']} "
        f"windows x {start['seq']} tokens ({done['tokens'] / 1e6:.0f} M tokens, about "
        f"{done['tokens'] / sum(r['stats']['domains'][d]['train']['tokens'] for d in DOMAINS):.1f} passes over the "
        f"training tokens), {done['seconds']:.0f} s on one NVIDIA H100 80GB (sharing the GPU with the other "
        f"model's run), {done['tok_per_s'] / 1e3:.0f} k tokens/s."
    )
    out.append("")
    out.append("| setting | value |")
    out.append("|---|---|")
    out.append(f"| parameters | {done['params']:,} ({done['params'] * 2 / 1e6:.1f} MB in bf16) |")
    for k, v in start["config"].items():
        out.append(f"| {k} | {v} |")
    out.append("| vocab_size / context | 8192 / 1024, tied input and output embeddings |")
    out.append("| data mix | each window from python, c or prose with probability 1/3, uniform offset |")
    out.append(f"| optimiser | AdamW, betas 0.9/0.95, weight decay 0.1 on matrices, clip 1.0, peak lr {start['lr']} |")
    out.append(f"| schedule | linear warm-up {start['warmup']} steps, cosine over the time budget to 10% |")
    out.append("| precision | float32 master weights, bf16 autocast; published in bf16 |")
    out.append(f"| seed | numpy / torch seeded (`--seed 0`); the step count depends on the time budget |")
    out.append(f"| final training loss | {done['final_train_loss']:.3f} (mean of the last logged steps) |")
    out.append("")
    marks = [s for s in steps if s["step"] in (1, 500, 1000, 2000, 3000, 5000, 7000)] + steps[-1:]
    out.append("| step | seconds | loss | loss python | loss c | loss prose |")
    out.append("|---:|---:|---:|---:|---:|---:|")
    seen = set()
    for s in marks:
        if s["step"] in seen:
            continue
        seen.add(s["step"])
        ld = s["loss_by_domain"]
        out.append(f"| {s['step']} | {s['t']:.0f} | {s['loss']:.3f} | {ld['python']:.3f} | {ld['c']:.3f} | {ld['prose']:.3f} |")
    out.append("")
    out.append("(Per-domain losses are averages over the batches since the previous log line.)")
    out.append("")
    return "\n".join(out)


def files_section(r: dict, which: str) -> str:
    sizes = r["metrics"]["sizes"][which]
    out = ["## Files", ""]
    out.append("| file | bytes | what |")
    out.append("|---|---:|---|")
    what = {
        "config.json": "LlamaConfig (transformers 5 writes `rope_parameters`; `rope_theta` and `torch_dtype` are kept too)",
        "generation_config.json": "bos = eos = 0 (`<|endoftext|>`), pad = 1, greedy by default",
        "tokenizer.json": "byte-level BPE, 8192 ids (identical in both model folders)",
        "tokenizer_config.json": "special tokens; no bos/eos added by the tokenizer",
        "model.safetensors.index.json": "tensor -> shard map (written for a single shard too)",
        "reference.json": "float32 reference outputs of `transformers` (see below)",
        "c.jsonl": "prompts/: held-out prompts, c",
        "python.jsonl": "prompts/: held-out prompts, python",
        "prose.jsonl": "prompts/: held-out prompts, prose",
    }
    for name, size in sizes.items():
        w = what.get(name, "bf16 weights" if name.endswith(".safetensors") else "")
        out.append(f"| {name} | {size:,} | {w} |")
    out.append("| MODEL_CARD.md | | this file |")
    out.append("")
    return "\n".join(out)


def reference_section(ref: dict) -> str:
    names = ", ".join(f"`{x['name']}` ({len(x['input_ids'])})" for x in ref["inputs"])
    return "\n".join([
        "## Reference outputs (`reference.json`)",
        "",
        f"Computed by `export.py` with transformers {ref['computed_with']['transformers']} / torch "
        f"{ref['computed_with']['torch']} on the CPU, float32, eager attention, after loading the committed bf16 "
        "weights. For each input (name and length in tokens): " + names + ".",
        "",
        "- `input_ids`: what the model was given; for text inputs `[0] + text_ids`, and `text_ids` is the "
        "tokenizer's encoding of `text` without special tokens;",
        f"- `topk`: the top-{ref['top_k']} `[id, logit]` pairs at every position (logits rounded to 1e-5);",
        f"- `greedy`: {ref['greedy_new_tokens']} greedy tokens (full forward pass per step; `<|endoftext|>` does "
        "not stop it) and `greedy_margin`, the top-1 minus top-2 logit at each step, so a test can tell a real "
        "mismatch from a near tie;",
        "- `last_logits`: the full last-position logits, for a few inputs.",
        "",
        "`tools/fixture-model/verify_reference.py` recomputes all of it on any CPU; with transformers 5.18 / "
        "torch 2.13 the logits agreed to within 2e-5 and every greedy continuation matched.",
        "",
    ])


def reproduce_section() -> str:
    return "\n".join([
        "## How to reproduce",
        "",
        "See `tools/fixture-model/README.md`. In short, on a machine with a CUDA GPU, PyTorch, transformers and "
        "tokenizers (the project's lent GPU machine), from the repository root:",
        "",
        "```",
        "bash tools/fixture-model/device_pipeline.sh      # collect, tokenizer, train both, export (~9 min)",
        "```",
        "",
        "then, anywhere, unpack what it wrote to `$OUT`, copy `models/tiny-code*` into `models/`, and run "
        "`python3 tools/fixture-model/make_card.py --run <unpacked> --models models` and "
        "`node scripts/run-tests.mjs tools/fixture-model/bundled-model.test.ts`. The corpus depends on the "
        "machine image it is collected from, and training is bounded by wall-clock time on a GPU, so a rebuild "
        "gives a model of the same quality, not the same bytes.",
        "",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--models", required=True)
    args = ap.parse_args()
    r = read_run(Path(args.run))
    models = Path(args.models)
    vocab = json.loads((models / "tiny-code" / "tokenizer.json").read_text())["model"]["vocab"]
    inv = {v: k for k, v in vocab.items()}
    added = {t["id"]: t["content"] for t in json.loads((models / "tiny-code" / "tokenizer.json").read_text())["added_tokens"]}
    byte_dec = _bytes_to_unicode_inverse()

    def decode(ids: list[int]) -> str:
        out, buf = [], bytearray()
        for i in ids:
            if i in added:
                out.append(buf.decode("utf-8", "replace"))
                buf = bytearray()
                out.append(added[i])
            else:
                buf.extend(byte_dec[c] for c in inv[i])
        out.append(buf.decode("utf-8", "replace"))
        return "".join(out)

    ev = r["metrics"]["eval"]
    t_start, t_done, _ = train_events(r, "target")
    d_start, d_done, _ = train_events(r, "draft")
    for which in ("tiny-code", "tiny-code-draft"):
        ref = json.loads((models / which / "reference.json").read_text())
        is_target = which == "tiny-code"
        done = t_done if is_target else d_done
        title = "tiny-code: the bundled default target model" if is_target else "tiny-code-draft: the draft model for tiny-code"
        head = [f"# {title}", ""]
        if is_target:
            head.append(
                f"A {done['params'] / 1e6:.1f} M-parameter `LlamaForCausalLM` trained from scratch by the project on "
                "Python, C/C++ and prose (documentation) found on a machine's disk, with its own 8192-token "
                "byte-level BPE tokenizer. It is specloop's default target model: what `npm start`, the tests and "
                "the CPU benchmarks load, since no model hub is reachable here or in CI. It is small enough to "
                "run on 2 CPU cores and good enough that a speculator has something to predict: held-out "
                "perplexity "
                + ", ".join(f"{d} {ev[d]['target_ppl']:.1f}" for d in DOMAINS)
                + " against about 1000 for a unigram model."
            )
            head.append("")
            head.append(
                "Its draft model for classic two-model speculative decoding is `../tiny-code-draft` "
                f"({d_done['params'] / 1e6:.1f} M parameters, same tokenizer). Held-out prompts per domain, the "
                "workload of the benchmarks, the demo and the domain-shift experiments, are in `prompts/` "
                "(JSONL: `id`, `domain`, `prompt`, plus the `source` file and character `offset` they came from)."
            )
        else:
            head.append(
                f"A {done['params'] / 1e6:.2f} M-parameter `LlamaForCausalLM` trained on the same data and tokenizer as "
                "`../tiny-code`, for classic two-model speculative decoding and for side-by-side runs against "
                "`transformers`' assisted generation. Its greedy top-1 agrees with the target's at "
                + ", ".join(f"{ev[d]['draft_top1_agreement']:.0%} ({d})" for d in DOMAINS)
                + " of held-out positions. The data, tokenizer and licence sections of `../tiny-code/MODEL_CARD.md` "
                "apply to it unchanged."
            )
        head.append("")
        head.append("## Format")
        head.append("")
        head.append(
            "Hugging Face layout, loadable with `LlamaForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`. "
            "Special tokens: 0 `<|endoftext|>` (document separator, bos and eos), 1 `<|pad|>`, 2 `<|python|>`, "
            "3 `<|c|>`, 4 `<|prose|>`. Half of the training documents began with their domain tag "
            "(`<|endoftext|><|python|>...`), the other half with `<|endoftext|>` alone, so a client may pass a tag or "
            "not; the evaluation below uses none. Prompts should start with `<|endoftext|>` (id 0), as every "
            "training document did; the tokenizer does not add it."
        )
        head.append("")
        parts = [
            "\n".join(head),
            files_section(r, which),
            eval_section(r, which),
            samples_section(r, which, ref, decode),
            training_section(r, which),
        ]
        if is_target:
            parts.append(data_section(r))
        parts.append(reference_section(ref))
        parts.append(reproduce_section())
        parts.append(
            "## Build record\n\n"
            + "\n".join(f"- {x}" for x in r["probe"])
            + f"\n- stages (seconds from the start of the device command): {json.dumps(r['timings'])}; "
            f"export took {r['metrics']['seconds']:.0f} s\n"
        )
        (models / which / "MODEL_CARD.md").write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")
        print(f"wrote {models / which / 'MODEL_CARD.md'}")


def _bytes_to_unicode_inverse() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table, inverted (what the ByteLevel decoder does)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


if __name__ == "__main__":
    main()
