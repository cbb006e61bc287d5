#!/usr/bin/env python3
"""Collect the domain-labelled training corpus from what this machine has on disk.

Three domains:
  python  .py sources of the Python standard library and of the installed site-packages
  c       C/C++ headers and sources: the system include dirs and the include trees that Python
          packages ship (torch, numpy, pybind11, ...)
  prose   Markdown / reStructuredText / plain-text documentation, the long descriptions in the
          packages' METADATA, and docstrings extracted (with `ast`) from the Python sources

Nothing here downloads anything: the corpus is whatever the machine's image holds, which is why the
selection must be deterministic. Every document gets a logical key (for example
"site-packages/torch/nn/modules/linear.py" or "include/stdio.h") that does not depend on where the
interpreter happens to live; the train / held-out split and the order in which documents are taken
under a byte budget both come from a SHA-256 of that key, so the same image gives the same corpus.

Documents are de-duplicated by the SHA-256 of their text (vendored copies are common in
site-packages); the first key in sorted order wins. A Python file's docstrings share the file's split,
so no held-out code leaks into training through its own docstrings.

Licences: each site-packages file is attributed to its distribution through the dist-info RECORD
files, and the distribution's licence read from METADATA; system headers are attributed to their
Debian package through /var/lib/dpkg/info/*.list and the package's copyright file. Distributions and
files under proprietary terms (the NVIDIA CUDA wheels and toolkit headers, anything carrying an NVIDIA
licence-agreement notice) are left out. The summary goes to manifest.json, and from there into the
model card. The corpus itself is never committed.

Output (under --out):
  {domain}.train.jsonl / {domain}.heldout.jsonl   one {"key", "text"} per line
  prompts/{domain}.jsonl                          held-out prompts for benchmarks and the demo
  manifest.json                                   sources, licences, counts, bytes, the probe
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import gzip
import hashlib
import json
import multiprocessing as mp
import os
import platform
import random
import re
import site
import sys
import sysconfig
import time
from collections import defaultdict
from pathlib import Path

DOMAINS = ("python", "c", "prose")
C_EXTS = {".h", ".hh", ".hpp", ".hxx", ".h++", ".inl", ".c", ".cc", ".cpp", ".cxx", ".cuh"}
PROSE_EXTS = {".md", ".rst", ".txt", ".markdown"}
# Plain-text files that are data or legal boilerplate rather than prose.
PROSE_SKIP_NAMES = re.compile(
    r"^(license|licence|copying|copyright|notice|authors|contributors|record|top_level|entry_points|"
    r"requirements.*|installer|requested|wheel|metadata|sources|dependency_links|namespace_packages|"
    r"not-zip-safe|zip-safe|api_tests|cmakelists|third[-_]party.*|.*\.dist-info)(\..*)?$",
    re.I,
)
PROPRIETARY_NOTICE = re.compile(
    r"NVIDIA.{0,400}(proprietary|license agreement|EULA|retain all intellectual property)", re.I | re.S
)
PROPRIETARY_DIST = re.compile(r"nvidia|proprietary|cuda[-_]toolkit|cuda[-_]bindings|cuda[-_]core", re.I)

MIN_BYTES = 300
MAX_BYTES = 256 * 1024
HELDOUT_PERCENT = 4  # per domain, by hash of the key


def h(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()


def is_heldout(split_key: str) -> bool:
    return int(h("split:" + split_key)[:8], 16) % 100 < HELDOUT_PERCENT


def order_key(key: str) -> str:
    return h("order:" + key)


# ----------------------------------------------------------------------------------------------
# Roots, derived at run time (never hard-coded interpreter paths)


def python_roots() -> tuple[Path, list[Path]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    sp: list[Path] = []
    cands = list(site.getsitepackages()) + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    try:
        cands.append(site.getusersitepackages())
    except Exception:
        pass
    for c in cands:
        p = Path(c)
        if p.is_dir():
            p = p.resolve()
            if p not in sp:
                sp.append(p)
    return stdlib, sorted(sp)


SYSTEM_INCLUDE_ROOTS = [Path("/usr/include"), Path("/usr/local/include")]
SYSTEM_DOC_ROOT = Path("/usr/share/doc")


# ----------------------------------------------------------------------------------------------
# Licences


LICENCE_RULES = [
    # (pattern, family), matched as whole words, case-insensitive. Order matters: a match is blanked
    # out of the text before the next rule runs, so "LGPL" is not also counted as "GPL".
    (r"proprietary|nvidia software license", "Proprietary"),
    (r"lgpl|lesser general public|library general public", "LGPL"),
    (r"agpl|affero", "AGPL"),
    (r"gpl|general public licen[cs]e", "GPL"),
    (r"apache", "Apache-2.0"),
    (r"mpl(-[0-9.]+)?|mozilla public", "MPL-2.0"),
    (r"psf(-[0-9.]+)?|python software foundation|python", "PSF-2.0"),
    (r"0bsd", "0BSD"),
    (r"bsd-2(-clause)?|simplified bsd|bsd 2-clause", "BSD-2-Clause"),
    (r"bsd(-[0-9a-z.~-]+)?", "BSD-3-Clause"),
    (r"mit|expat|x11", "MIT"),
    (r"isc", "ISC"),
    (r"zlib", "Zlib"),
    (r"unlicense", "Unlicense"),
    (r"public[ -]domain", "Public-Domain"),
    (r"cc0(-1\.0)?", "CC0-1.0"),
    (r"bsl(-1\.0)?|boost(-1\.0)?|boost software licen[cs]e", "BSL-1.0"),
    (r"hpnd", "HPND"),
]
_LICENCE_RES = [(re.compile(r"(?<![a-z0-9])(?:" + pat + r")(?![a-z0-9])", re.I), fam) for pat, fam in LICENCE_RULES]


def classify_licence(text: str, proprietary: bool = True) -> str:
    """The licence families a licence string names, for the card's summary.

    `proprietary=False` for free-text copyright files, where the word shows up in exception clauses
    (the GCC runtime library exception talks about proprietary programs) rather than as the licence.
    """
    t = text
    fams: list[str] = []
    for rx, fam in _LICENCE_RES:
        if fam == "Proprietary" and not proprietary:
            continue
        if rx.search(t):
            t = rx.sub(" ", t)
            if fam not in fams:
                fams.append(fam)
    return ", ".join(fams) if fams else ("Other" if text.strip() else "Unknown")


def read_dist_infos(site_dirs: list[Path]) -> tuple[dict[str, dict], dict[str, str]]:
    """Distribution metadata, and a map from 'site-packages/<relpath>' to distribution name."""
    dists: dict[str, dict] = {}
    owner: dict[str, str] = {}
    for sp in site_dirs:
        for di in sorted(sp.glob("*.dist-info")) + sorted(sp.glob("*.egg-info")):
            meta_file = di / ("METADATA" if di.suffix == ".dist-info" else "PKG-INFO")
            if not meta_file.is_file():
                continue
            try:
                raw = meta_file.read_text("utf-8", errors="replace")
            except OSError:
                continue
            msg = email.parser.Parser().parsestr(raw)
            name = (msg.get("Name") or di.name.split("-")[0]).strip()
            lic_parts = []
            if msg.get("License-Expression"):
                lic_parts.append(msg["License-Expression"].strip())
            lic = (msg.get("License") or "").strip()
            if lic and lic.upper() != "UNKNOWN":
                lic_parts.append(lic.splitlines()[0][:120])
            for c in msg.get_all("Classifier") or []:
                if c.startswith("License ::"):
                    lic_parts.append(c.split("::")[-1].strip())
            licence = "; ".join(dict.fromkeys(lic_parts)) or "unknown"
            body = msg.get_payload() if not msg.is_multipart() else ""
            dists[name] = {
                "name": name,
                "version": (msg.get("Version") or "").strip(),
                "licence": licence,
                "family": classify_licence(licence),
                "description": body if isinstance(body, str) else "",
                "dist_info": f"site-packages/{di.name}",
            }
            record = di / ("RECORD" if di.suffix == ".dist-info" else "installed-files.txt")
            if record.is_file():
                for line in record.read_text("utf-8", errors="replace").splitlines():
                    rel = line.split(",")[0]
                    if rel and not rel.startswith(".."):
                        owner.setdefault(f"site-packages/{rel}", name)
    return dists, owner


def read_dpkg_owners() -> tuple[dict[str, str], dict[str, str]]:
    """Map absolute system paths to their Debian package, and each package to its licence names."""
    owner: dict[str, str] = {}
    info = Path("/var/lib/dpkg/info")
    if info.is_dir():
        for lst in sorted(info.glob("*.list")):
            pkg = lst.stem.split(":")[0]
            try:
                for line in lst.read_text("utf-8", errors="replace").splitlines():
                    if line.startswith(("/usr/include", "/usr/local/include", "/usr/share/doc")):
                        owner.setdefault(line, pkg)
            except OSError:
                pass
    licences: dict[str, str] = {}
    for pkg in sorted(set(owner.values())):
        cp = SYSTEM_DOC_ROOT / pkg / "copyright"
        names: list[str] = []
        try:
            for line in cp.read_text("utf-8", errors="replace").splitlines():
                if line.startswith("License:"):
                    n = line[len("License:") :].strip()
                    if n and n not in names:
                        names.append(n)
        except OSError:
            pass
        if names:
            licences[pkg] = ", ".join(names[:8])
        else:
            # not a machine-readable (DEP-5) copyright file: name the families its text mentions
            try:
                fams = classify_licence(cp.read_text("utf-8", errors="replace")[:20000], proprietary=False)
            except OSError:
                fams = "Unknown"
            licences[pkg] = f"copyright file mentions: {fams}"
    return owner, licences


# ----------------------------------------------------------------------------------------------
# Reading and filtering


def read_text(path: Path) -> str | None:
    try:
        st = path.stat()
        if not (MIN_BYTES <= st.st_size <= MAX_BYTES):
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if path.suffix == ".gz":
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    return text


def looks_like_code(text: str) -> bool:
    """Reject generated or data-like files: very long lines, tables of numbers, minified code."""
    lines = text.splitlines()
    if len(lines) < 5:
        return False
    longest = max(len(x) for x in lines)
    if longest > 1000:
        return False
    if len(text) / len(lines) > 120:
        return False
    digits = sum(ch.isdigit() for ch in text)
    if digits / len(text) > 0.35:
        return False
    return True


def looks_like_prose(text: str) -> bool:
    letters = sum(ch.isalpha() for ch in text)
    spaces = text.count(" ")
    if letters / max(1, len(text)) < 0.55 or spaces / max(1, len(text)) < 0.08:
        return False
    lines = [x for x in text.splitlines() if x.strip()]
    return len(lines) >= 3 and max(len(x) for x in lines) <= 2000


def normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text.strip("\n") + "\n"


def extract_docstrings(text: str) -> str | None:
    """The module, class and function docstrings of a Python file, as one prose document."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 200:
                parts.append(doc.strip())
    if not parts:
        return None
    doc = "\n\n".join(parts)
    return doc if len(doc) >= MIN_BYTES else None


def _docstring_job(item: tuple[str, str]) -> tuple[str, str | None]:
    key, text = item
    return key, extract_docstrings(text)


# ----------------------------------------------------------------------------------------------
# Walking


def walk_files(root: Path, exts: set[str], skip_dirs: set[str]):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not d.startswith("."))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.suffix.lower() in exts and not p.is_symlink():
                yield p


def collect(args) -> None:
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stdlib, site_dirs = python_roots()
    print(f"[collect] python {sys.version.split()[0]} stdlib={stdlib} site={site_dirs}", flush=True)
    dists, sp_owner = read_dist_infos(site_dirs)
    dpkg_owner, dpkg_licence = read_dpkg_owners()
    excluded_dists = sorted(
        n for n, d in dists.items() if PROPRIETARY_DIST.search(n) or d["family"] == "Proprietary"
    )
    excluded = set(excluded_dists)
    print(f"[collect] {len(dists)} distributions, excluded as proprietary: {excluded_dists}", flush=True)

    # candidates[domain] = list of (key, split_key, source_label, licence, text)
    cands: dict[str, list[tuple[str, str, str, str, str]]] = {d: [] for d in DOMAINS}
    skipped = defaultdict(int)

    def site_label(key: str) -> tuple[str, str] | None:
        dist = sp_owner.get(key)
        if dist is None:
            # Not in any RECORD (a package installed without one): attribute it to its top folder.
            top = key.split("/")[1]
            return f"site-packages:{top} (no RECORD)", "unknown"
        if dist in excluded:
            return None
        return f"site-packages:{dist}", dists[dist]["licence"]

    # --- Python: stdlib
    py_texts: list[tuple[str, str, str, str, str]] = []
    skip_std = {"site-packages", "dist-packages", "__pycache__", "idlelib", "lib2to3", "test", "tests"}
    for p in walk_files(stdlib, {".py"}, skip_std):
        text = read_text(p)
        if text is None or not looks_like_code(text):
            skipped["python-filter"] += 1
            continue
        key = "stdlib/" + p.relative_to(stdlib).as_posix()
        py_texts.append((key, key, "python-stdlib", "PSF-2.0", text))
    n_std = len(py_texts)
    # --- Python: site-packages (tests are kept out: they are large, repetitive and often generated)
    skip_sp = {"__pycache__", "tests", "test", "testing", "_vendor", "vendored", "nvidia"}
    for sp in site_dirs:
        for p in walk_files(sp, {".py"}, skip_sp):
            key = "site-packages/" + p.relative_to(sp).as_posix()
            lab = site_label(key)
            if lab is None:
                skipped["python-proprietary"] += 1
                continue
            text = read_text(p)
            if text is None or not looks_like_code(text):
                skipped["python-filter"] += 1
                continue
            py_texts.append((key, key, lab[0], lab[1], text))
    print(f"[collect] python files: stdlib {n_std}, site-packages {len(py_texts) - n_std} "
          f"({time.time() - t0:.1f}s)", flush=True)
    cands["python"] = py_texts

    # --- C / C++
    c_roots: list[tuple[Path, str]] = [(r, "include") for r in SYSTEM_INCLUDE_ROOTS if r.is_dir()]
    for sp in site_dirs:
        c_roots.append((sp, "site-packages"))
    skip_c = {"__pycache__", "nvidia", "cuda", "tests", "test"}
    for root, prefix in c_roots:
        for p in walk_files(root, C_EXTS, skip_c):
            if prefix == "include":
                key = ("include/" if root.as_posix() == "/usr/include" else "local-include/") + p.relative_to(
                    root
                ).as_posix()
                pkg = dpkg_owner.get(p.as_posix())
                label = f"debian:{pkg}" if pkg else "system-include (no package)"
                licence = dpkg_licence.get(pkg, "unknown") if pkg else "unknown"
            else:
                key = "site-packages/" + p.relative_to(root).as_posix()
                lab = site_label(key)
                if lab is None:
                    skipped["c-proprietary"] += 1
                    continue
                label, licence = lab
            text = read_text(p)
            if text is None or not looks_like_code(text):
                skipped["c-filter"] += 1
                continue
            if PROPRIETARY_NOTICE.search(text[:4000]):
                skipped["c-proprietary-notice"] += 1
                continue
            cands["c"].append((key, key, label, licence, text))
    print(f"[collect] c files: {len(cands['c'])} ({time.time() - t0:.1f}s)", flush=True)

    # --- Prose: documentation files
    doc_roots: list[tuple[Path, str]] = [(stdlib, "stdlib")] + [(sp, "site-packages") for sp in site_dirs]
    if SYSTEM_DOC_ROOT.is_dir():
        doc_roots.append((SYSTEM_DOC_ROOT, "doc"))
    for root, prefix in doc_roots:
        skip = {"__pycache__", "nvidia", "site-packages", "dist-packages"} if prefix == "stdlib" else {
            "__pycache__",
            "nvidia",
        }
        for p in walk_files(root, PROSE_EXTS | {""}, skip):
            name = p.name
            if p.suffix == "" and not name.upper().startswith("README"):
                continue
            if PROSE_SKIP_NAMES.match(name) or ".dist-info/" in p.as_posix():
                continue
            key = f"{prefix}/" + p.relative_to(root).as_posix()
            if prefix == "site-packages":
                lab = site_label(key)
                if lab is None:
                    continue
                label, licence = lab
            elif prefix == "doc":
                pkg = p.relative_to(root).parts[0]
                label, licence = f"debian:{pkg}", dpkg_licence.get(pkg, "see its copyright file")
            else:
                label, licence = "python-stdlib", "PSF-2.0"
            text = read_text(p)
            if text is None or not looks_like_prose(text):
                skipped["prose-filter"] += 1
                continue
            cands["prose"].append((key, key, label, licence, text))
    # --- Prose: the packages' long descriptions (their READMEs, as PyPI shows them)
    for name in sorted(dists):
        d = dists[name]
        if name in excluded:
            continue
        text = d["description"] or ""
        if len(text) >= MIN_BYTES and len(text) <= MAX_BYTES and looks_like_prose(text):
            key = d["dist_info"] + "/METADATA"
            cands["prose"].append((key, key, f"site-packages:{name}", d["licence"], text))
    n_doc_files = len(cands["prose"])
    # --- Prose: docstrings, in parallel (ast.parse is the slow part of the whole collection)
    with mp.Pool(max(1, min(16, os.cpu_count() or 1))) as pool:
        jobs = [(t[0], t[4]) for t in py_texts]
        meta = {t[0]: t for t in py_texts}
        for key, doc in pool.imap(_docstring_job, jobs, chunksize=64):
            if doc is None:
                continue
            _, split_key, label, licence, _ = meta[key]
            cands["prose"].append((key + "#docstrings", split_key, label, licence, doc))
    print(f"[collect] prose docs: files+metadata {n_doc_files}, docstrings {len(cands['prose']) - n_doc_files} "
          f"({time.time() - t0:.1f}s)", flush=True)

    # --- De-duplicate, split, select under budgets
    budgets = {"python": args.python_mb, "c": args.c_mb, "prose": args.prose_mb}
    manifest: dict = {
        "created_by": "tools/fixture-model/collect.py",
        "probe": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "stdlib": "sysconfig stdlib",
            "site_packages_count": len(site_dirs),
            "distributions": len(dists),
        },
        "heldout_percent": HELDOUT_PERCENT,
        "excluded_distributions": excluded_dists,
        "skipped": dict(skipped),
        "domains": {},
    }
    prompts_dir = out / "prompts"
    prompts_dir.mkdir(exist_ok=True)
    for dom in DOMAINS:
        seen: set[str] = set()
        docs = []
        for key, split_key, label, licence, text in sorted(cands[dom], key=lambda t: t[0]):
            text = normalise(text)
            digest = h(text)
            if digest in seen:
                continue
            seen.add(digest)
            docs.append((order_key(key), key, split_key, label, licence, text))
        n_unique = len(docs)
        docs.sort(key=lambda t: t[0])
        budget = int(budgets[dom] * 1e6)
        heldout_budget = int(args.heldout_mb * 1e6)
        train, held = [], []
        tb = hb = 0
        for _, key, split_key, label, licence, text in docs:
            if is_heldout(split_key):
                if hb < heldout_budget:
                    held.append((key, label, licence, text))
                    hb += len(text.encode())
            elif tb < budget:
                train.append((key, label, licence, text))
                tb += len(text.encode())
        for split, rows in (("train", train), ("heldout", held)):
            with open(out / f"{dom}.{split}.jsonl", "w", encoding="utf-8") as f:
                for key, _, _, text in rows:
                    f.write(json.dumps({"key": key, "text": text}, ensure_ascii=False) + "\n")
        sources: dict[str, dict] = {}
        for split, rows in (("train", train), ("heldout", held)):
            for _, label, licence, text in rows:
                s = sources.setdefault(label, {"licence": licence, "family": classify_licence(licence),
                                               "train_docs": 0, "train_bytes": 0, "heldout_docs": 0})
                if split == "train":
                    s["train_docs"] += 1
                    s["train_bytes"] += len(text.encode())
                else:
                    s["heldout_docs"] += 1
        prompts = make_prompts(dom, held, args.prompts, args.seed)
        with open(prompts_dir / f"{dom}.jsonl", "w", encoding="utf-8") as f:
            for p in prompts:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        manifest["domains"][dom] = {
            "candidates": len(cands[dom]),
            "unique": n_unique,
            "train_docs": len(train),
            "train_bytes": tb,
            "heldout_docs": len(held),
            "heldout_bytes": hb,
            "prompts": len(prompts),
            "sources": dict(sorted(sources.items(), key=lambda kv: -kv[1]["train_bytes"])),
        }
        print(f"[collect] {dom}: unique {n_unique}, train {len(train)} docs {tb / 1e6:.1f} MB, "
              f"held-out {len(held)} docs {hb / 1e6:.1f} MB, prompts {len(prompts)}", flush=True)
    manifest["seconds"] = round(time.time() - t0, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    print(f"[collect] done in {time.time() - t0:.1f}s", flush=True)


# ----------------------------------------------------------------------------------------------
# Prompts


LICENCE_LINE = re.compile(r"(copyright|licen[cs]e|warranty|redistribut|SPDX|all rights reserved)", re.I)


def body_start(dom: str, text: str) -> int:
    """Skip the leading licence / comment block so prompts show code and prose, not boilerplate."""
    lines = text.split("\n")
    i = 0
    if dom == "c":
        in_block = False
        while i < len(lines):
            s = lines[i].strip()
            if in_block:
                if "*/" in s:
                    in_block = False
                i += 1
                continue
            if s.startswith("/*"):
                in_block = "*/" not in s
                i += 1
                continue
            if s.startswith("//") or s == "":
                i += 1
                continue
            break
    elif dom == "python":
        while i < len(lines) and (lines[i].startswith("#") or lines[i].strip() == ""):
            i += 1
    else:
        while i < len(lines) and (lines[i].strip() == "" or LICENCE_LINE.search(lines[i])):
            i += 1
    return len("\n".join(lines[:i])) + (1 if i > 0 else 0)


def make_prompts(dom: str, held: list, n: int, seed: int) -> list[dict]:
    """Prefixes of held-out documents, a few hundred characters, cut at line (or sentence) ends.

    Each prompt starts at a line boundary inside the document's body (a seeded choice in its first
    half) and ends at the last line end (prose: sentence end) before a seeded length of 200-600
    characters. Documents are taken in their hash order; if a domain has fewer held-out documents
    than prompts wanted, a second pass takes a second window from each.
    """
    rng = random.Random(f"{seed}:{dom}")
    prompts: list[dict] = []
    seen_prompts: set[str] = set()
    passes = 0
    while len(prompts) < n and passes < 8 and held:
        for key, _, _, text in held:
            if len(prompts) >= n:
                break
            start0 = body_start(dom, text)
            body = text[start0:]
            if len(body) < 260:
                continue
            # candidate starts: line starts in the first half of the body
            starts = [0] + [m.end() for m in re.finditer("\n", body[: len(body) // 2])]
            starts = [s for s in starts if s < len(body) - 260 and body[s : s + 1].strip()]
            if not starts:
                continue
            s = starts[rng.randrange(len(starts))] if passes > 0 or dom != "prose" else starts[0]
            want = rng.randint(200, 600)
            window = body[s : s + want]
            if dom == "prose":
                # end after a full stop, else at a paragraph or line end
                cut = max(window.rfind(". "), window.rfind(".\n"), window.rfind("\n\n"))
                if cut < 150:
                    cut = window.rfind("\n")
                if cut < 120:
                    continue
                prompt = window[: cut + 1].rstrip()
            else:
                # code: end with the newline of the last whole line
                cut = window.rfind("\n")
                if cut < 120:
                    continue
                prompt = window[: cut + 1]
            if not prompt.strip() or LICENCE_LINE.search(prompt[:200]) and dom != "prose":
                continue
            if prompt in seen_prompts:
                continue
            seen_prompts.add(prompt)
            pid = f"{dom}-{len(prompts):04d}"
            prompts.append({"id": pid, "domain": dom, "prompt": prompt, "source": key, "offset": start0 + s})
        passes += 1
    return prompts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--python-mb", type=float, default=80)
    ap.add_argument("--c-mb", type=float, default=80)
    ap.add_argument("--prose-mb", type=float, default=60)
    ap.add_argument("--heldout-mb", type=float, default=6)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1234)
    collect(ap.parse_args())


if __name__ == "__main__":
    main()
