#!/usr/bin/env python3
"""The chapter contract, as code.

Every chapter notebook `chapters/NN-part/<slug>.ipynb` must

- name its catalog ids in `metadata.paperbook.papers`, each of them listed in `book/papers.yml`;
- be listed in `_toc.yml` (as `file: chapters/NN-part/<slug>`);
- carry committed outputs from a cpu- or gpu-scale run made by `tools/execute.py`, which stamps
  `metadata.paperbook.executed` and `metadata.paperbook.claims`; the stamp must match the code cells
  as they are now, the claims must all have passed, and a cpu run must have taken at most 300 s;
- have no error outputs, execution counts 1..n in order, at least one plot, and no absolute paths of
  the machine (the repository, the home directory) in its outputs.

`check_notebook(path, repo_root)` returns the problems of one notebook (an empty list when it meets the
contract); `check_repo(repo_root)` checks every chapter. tests/test_contract.py and tools/execute.py use
these functions; /work/shared/tools/course_audit.py is the independent auditor they agree with.

Command line:  python tools/nbcontract.py [NB ...] [--repo DIR]   (exit 1 when a notebook has problems)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STAMP_SCALES = ("cpu", "gpu")
MAX_CPU_SECONDS = 300
STAMP_FIELDS = ("scale", "code_sha256", "seconds", "device", "torch", "date")
IMAGE_MIMES = ("image/png", "image/svg+xml")
NOTEBOOK_SUFFIXES = (".ipynb", ".md", ".rst")


# --------------------------------------------------------------------------- notebooks and their code

def code_sha256(nb: dict) -> str:
    """sha256 of json.dumps([source of each code cell, in order]); the auditor's exact definition."""
    srcs = []
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code":
            s = c.get("source", "")
            srcs.append("".join(s) if isinstance(s, list) else s)
    return hashlib.sha256(json.dumps(srcs).encode()).hexdigest()


def chapter_notebooks(repo_root: Path = REPO_ROOT) -> list[Path]:
    """Every chapter notebook under chapters/, skipping drafts (`_name.ipynb`) and checkpoints."""
    chapters = Path(repo_root) / "chapters"
    if not chapters.is_dir():
        return []
    return sorted(p for p in chapters.rglob("*.ipynb")
                  if not p.name.startswith("_") and ".ipynb_checkpoints" not in p.parts)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def code_cells(nb: dict):
    """(index in nb.cells, cell) for each code cell."""
    return [(i, c) for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == "code"]


# --------------------------------------------------------------------------- book files

def _load_yaml(path: Path):
    import yaml
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _strip_suffix(entry: str) -> str:
    entry = entry.strip().replace("\\", "/")
    while entry.startswith("./"):
        entry = entry[2:]
    for suffix in NOTEBOOK_SUFFIXES:
        if entry.endswith(suffix):
            return entry[: -len(suffix)]
    return entry


def toc_entries(repo_root: Path = REPO_ROOT) -> set[str]:
    """Every `file:` (and the `root:`) of _toc.yml, without extension. Raises FileNotFoundError."""
    data = _load_yaml(Path(repo_root) / "_toc.yml")
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root") and isinstance(value, str):
                    found.add(_strip_suffix(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


def catalog_ids(repo_root: Path = REPO_ROOT) -> set[str]:
    """Paper ids of book/papers.yml: a list of entries with `id`, a {papers: [...]} mapping, or {id: entry}.

    Raises FileNotFoundError when the file is missing.
    """
    data = _load_yaml(Path(repo_root) / "book" / "papers.yml")
    if isinstance(data, dict) and isinstance(data.get("papers"), list):
        data = data["papers"]
    if isinstance(data, list):
        return {str(e["id"]) for e in data if isinstance(e, dict) and "id" in e}
    if isinstance(data, dict):
        return {str(k) for k in data}
    return set()


# --------------------------------------------------------------------------- absolute paths in outputs

# Paths that give away someone's machine, wherever the notebook was run.
_GENERIC_PATHS = [r"/home/[A-Za-z0-9_.-]+", r"/Users/[A-Za-z0-9_.-]+", r"[A-Za-z]:\\\\?Users\\\\?[A-Za-z0-9_.-]+"]


def machine_path_patterns(repo_root=REPO_ROOT) -> list[re.Pattern]:
    """Regexes for this machine's repository (one root or several) and home paths, and user directories."""
    roots = repo_root if isinstance(repo_root, (list, tuple, set)) else [repo_root]
    literal = set()
    for root in roots:
        literal |= {str(Path(root).resolve()), str(Path(root).absolute())}
    home = os.path.expanduser("~")
    if home not in ("", "/", "~"):
        literal.add(home.rstrip("/"))
    pats = [re.escape(p) for p in sorted(literal, key=len, reverse=True) if len(p) > 1] + _GENERIC_PATHS
    # A path starts and ends where no name character touches it: /work/main matches, /work/mainline and
    # https://example.org/home/page do not.
    return [re.compile(r"(?<![A-Za-z0-9_.-])" + p + r"(?![A-Za-z0-9_.-])") for p in pats]


def _output_texts(output: dict):
    """The human-readable text of one output (images and other binary payloads are skipped)."""
    kind = output.get("output_type")
    if kind == "stream":
        yield _text(output.get("text", ""))
    elif kind == "error":
        yield _text(output.get("evalue", ""))
        yield "\n".join(_text(t) for t in output.get("traceback", []))
    for mime, value in (output.get("data") or {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            yield value if isinstance(value, str) else (_text(value) if isinstance(value, list)
                                                        else json.dumps(value))


def absolute_path_problems(nb: dict, repo_root=REPO_ROOT) -> list[str]:
    """One problem per code cell whose outputs show an absolute path of the machine (see above)."""
    patterns = machine_path_patterns(repo_root)
    problems = []
    for index, cell in code_cells(nb):
        hits = []
        for out in cell.get("outputs", []):
            for text in _output_texts(out):
                for pat in patterns:
                    for m in pat.finditer(text):
                        line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
                        hits.append((m.group(0), re.sub(r"\x1b\[[0-9;]*m", "", line).strip()[:120]))
        if hits:
            path, line = hits[0]
            more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
            problems.append(f"absolute path {path!r} in the output of cell {index}{more}: {line!r}; "
                            "print paths relative to the repo or data dir, or silence the warning that shows it")
    return problems


# --------------------------------------------------------------------------- stamp and claims

def claim_problems(claims, scale) -> list[str]:
    """Problems with the claims of a run at `scale` (cpu/gpu runs must record claims and pass them all)."""
    if not isinstance(claims, list):
        return ["metadata.paperbook.claims is not a list"]
    problems = []
    malformed = [i for i, c in enumerate(claims) if not (isinstance(c, dict) and "claim" in c and "passed" in c)]
    if malformed:
        problems.append(f"malformed claim record(s) at position {malformed}: need at least 'claim' and 'passed'")
    if scale in STAMP_SCALES and not claims:
        problems.append("no claims recorded: call shared.claim(text, value, op, threshold) for the paper's claim")
    failed = [c for c in claims if isinstance(c, dict) and "passed" in c and not c["passed"]]
    for c in failed:
        problems.append("claim failed: {claim!r}: value {value} {op} {threshold} is false".format(
            claim=c.get("claim"), value=c.get("value"), op=c.get("op"), threshold=c.get("threshold")))
    return problems


def stamp_refusals(scale: str, seconds: float, claims: list) -> list[str]:
    """Why execute.py must not stamp a successful run (empty list: stamp it)."""
    problems = []
    if scale in STAMP_SCALES:
        problems += claim_problems(claims, scale)
    if scale == "cpu" and seconds > MAX_CPU_SECONDS:
        problems.append(f"cpu run took {seconds:.1f} s > {MAX_CPU_SECONDS} s: make the cpu-scale experiment smaller")
    return problems


def check_notebook(path, repo_root=REPO_ROOT, *, toc: set[str] | None = None,
                   ids: set[str] | None = None) -> list[str]:
    """Problems of one chapter notebook; [] when it meets the contract.

    `toc` and `ids` (the _toc.yml entries and book/papers.yml ids) may be passed in to check many
    notebooks without re-reading the book files.
    """
    path, repo_root = Path(path), Path(repo_root)
    try:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
    except (OSError, ValueError) as e:
        return [f"unreadable notebook: {e}"]
    problems: list[str] = []
    meta = (nb.get("metadata") or {}).get("paperbook") or {}

    # papers, and whether the book knows them
    papers = meta.get("papers")
    if not papers or not isinstance(papers, list):
        problems.append("no metadata.paperbook.papers (a list of catalog ids)")
        papers = []
    if ids is None:
        try:
            ids = catalog_ids(repo_root)
        except FileNotFoundError:
            problems.append("book/papers.yml not found, so the paper ids cannot be checked")
    if ids is not None:
        unknown = [p for p in papers if p not in ids]
        if unknown:
            problems.append(f"paper id(s) not in book/papers.yml: {', '.join(map(str, unknown))}")

    # the table of contents
    try:
        rel = path.resolve().relative_to(repo_root.resolve()).with_suffix("").as_posix()
    except ValueError:
        rel = None
    if toc is None:
        try:
            toc = toc_entries(repo_root)
        except FileNotFoundError:
            problems.append("_toc.yml not found at the repository root")
    if toc is not None and rel is not None and rel not in toc:
        problems.append(f"not listed in _toc.yml (add `- file: {rel}`)")

    # the stamp
    ex = meta.get("executed") or {}
    if not ex:
        problems.append("not stamped (no metadata.paperbook.executed): run `make execute NB=...`")
    else:
        missing = [k for k in STAMP_FIELDS if k not in ex]
        if missing:
            problems.append(f"stamp lacks {', '.join(missing)}")
        if ex.get("code_sha256") != code_sha256(nb):
            problems.append("stale stamp: the code changed since the notebook was executed; re-run `make execute`")
        if ex.get("scale") not in STAMP_SCALES:
            problems.append(f"stamped at scale {ex.get('scale')!r}, not cpu/gpu")
        secs = ex.get("seconds")
        if not isinstance(secs, (int, float)):
            problems.append(f"stamp has no number of seconds ({secs!r})")
        elif ex.get("scale") == "cpu" and secs > MAX_CPU_SECONDS:
            problems.append(f"cpu run took {secs:.1f} s > {MAX_CPU_SECONDS} s")

    # outputs
    cells = code_cells(nb)
    errors = [i for i, c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        problems.append(f"{len(errors)} error output(s), in cell(s) {sorted(set(errors))}")
    counts = [c.get("execution_count") for _, c in cells]
    if ex and counts and counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts not 1..n in order: {counts}")
    images = sum(1 for _, c in cells for o in c.get("outputs", [])
                 if any(m in (o.get("data") or {}) for m in IMAGE_MIMES))
    if images == 0:
        problems.append("no plot (no image output)")
    problems += absolute_path_problems(nb, repo_root)

    # claims
    claims = meta.get("claims")
    if not claims:
        problems.append("no claims recorded")
    else:
        problems += [p for p in claim_problems(claims, ex.get("scale")) if not p.startswith("no claims")]
    return problems


def check_repo(repo_root=REPO_ROOT) -> dict[str, list[str]]:
    """{notebook path relative to the repo: problems} for every chapter notebook."""
    repo_root = Path(repo_root)
    try:
        toc = toc_entries(repo_root)
    except FileNotFoundError:
        toc = None
    try:
        ids = catalog_ids(repo_root)
    except FileNotFoundError:
        ids = None
    return {p.relative_to(repo_root).as_posix(): check_notebook(p, repo_root, toc=toc, ids=ids)
            for p in chapter_notebooks(repo_root)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Check chapter notebooks against the paperbook contract.")
    ap.add_argument("notebooks", nargs="*", help="notebooks to check (default: every chapter)")
    ap.add_argument("--repo", default=str(REPO_ROOT), help="repository root (default: this checkout)")
    a = ap.parse_args(argv)
    repo = Path(a.repo)
    if a.notebooks:
        results = {nb: check_notebook(nb, repo) for nb in a.notebooks}
    else:
        results = check_repo(repo)
    bad = {nb: probs for nb, probs in results.items() if probs}
    for nb, probs in bad.items():
        print(f"{nb}:")
        for p in probs:
            print(f"  - {p}")
    print(f"{len(results)} notebook(s) checked, {len(results) - len(bad)} meet the contract")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
