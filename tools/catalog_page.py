#!/usr/bin/env python3
"""Write book/catalog.md: every catalog entry, its chapter (or "planned") and the chapter's measured claims.

    python tools/catalog_page.py [--repo ROOT] [--out PATH]      (make catalog runs it)

Reads book/papers.yml and, for each chapter it names, the notebook's metadata.paperbook stamp
(`executed`) and `claims`, as written by the execute tool. The page is generated (gitignored): never edit
it by hand. It fails loudly (exit 1) when papers.yml names a chapter notebook that does not exist.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import OrderedDict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbcontract import code_sha256  # noqa: E402  (the one definition, shared with execute.py)

REPO = Path(__file__).resolve().parent.parent
PAGE = Path("book") / "catalog.md"

# Parts in reading order (chapters/NN-<part>/); a part not listed here is appended at the end.
PARTS = OrderedDict([
    ("foundations", "01 Foundations"),
    ("architectures", "02 Architectures"),
    ("pretrained-models", "03 Pre-trained models"),
    ("scaling", "04 Scaling"),
    ("systems", "05 Systems"),
    ("finetuning", "06 Fine-tuning"),
    ("alignment", "07 Alignment"),
    ("distillation", "08 Distillation"),
    ("retrieval", "09 Retrieval"),
    ("reasoning", "10 Reasoning"),
    ("code", "11 Code"),
    ("multimodal", "12 Multimodal"),
    ("interpretability", "13 Interpretability"),
    ("surveys", "14 Surveys"),
])
REQUIRED = ("id", "title", "year", "url", "kind", "part")
OPS = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "=", "!=": "≠"}

# text symbols (not emoji) so that they render with any font
VERIFIED, STALE, UNSTAMPED, FAILED, NO_CLAIMS = (
    "✔ verified", "⚠ stale stamp", "⚠ not executed", "✘ claim failed", "⚠ no claims")


class CatalogError(Exception):
    """papers.yml and the repository disagree; the message says what to fix."""


def md(text) -> str:
    """Escape text for a Markdown table cell (no emphasis, links, math or cell breaks)."""
    return re.sub(r"([\\`*_\[\]<>|$])", r"\\\1", " ".join(str(text).split()))


def num(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return md(v)


def notebook_title(nb: dict, fallback: str) -> str:
    for c in nb.get("cells", []):
        if c.get("cell_type") == "markdown":
            src = "".join(c.get("source", ""))
            m = re.search(r"^#\s+(.+?)\s*$", src, re.M)
            if m:
                return m.group(1)
    return fallback


def chapter_info(repo: Path, rel: str) -> dict:
    nb = json.loads((repo / rel).read_text(encoding="utf-8"))
    meta = nb.get("metadata", {}).get("paperbook", {}) or {}
    stamp = meta.get("executed") or {}
    claims = meta.get("claims") or []
    if not stamp:
        status = UNSTAMPED
    elif stamp.get("code_sha256") != code_sha256(nb):
        status = STALE
    elif not claims:
        status = NO_CLAIMS
    elif not all(c.get("passed") for c in claims):
        status = FAILED
    else:
        status = VERIFIED
    return {"path": rel, "title": notebook_title(nb, Path(rel).stem), "stamp": stamp,
            "claims": claims, "status": status}


def load_papers(repo: Path) -> list[dict]:
    path = repo / "book" / "papers.yml"
    if not path.exists():
        raise CatalogError(f"{path} not found (it is committed; see tools/make_papers.py)")
    papers = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    for i, p in enumerate(papers):
        missing = [k for k in REQUIRED if k not in p]
        if missing:
            raise CatalogError(f"book/papers.yml entry {i} ({p.get('id', '?')}) lacks {', '.join(missing)}")
    return papers


def load_chapters(repo: Path, papers: list[dict]) -> dict[str, dict]:
    chapters = {}
    for p in papers:
        rel = p.get("chapter")
        if rel and rel not in chapters:
            if not (repo / rel).is_file():
                raise CatalogError(
                    f"book/papers.yml: entry {p['id']!r} names chapter {rel}, which does not exist. "
                    "Fix the path, or set `chapter: null` while the chapter is planned.")
            chapters[rel] = chapter_info(repo, rel)
    return chapters


def link_to(rel: str, text: str) -> str:
    # relative to book/catalog.md; MyST turns a link to a source file into a document reference
    return f"[{md(text)}](../{rel})"


def claims_block(ch: dict) -> list[str]:
    s = ch["stamp"]
    out = [f"**{link_to(ch['path'], ch['title'])}** · {ch['status']}", ""]
    if s:
        secs = s.get("seconds")
        secs = f"{secs:.0f} s" if isinstance(secs, (int, float)) else "? s"
        out += [f"Stamp: scale `{s.get('scale', '?')}`, {secs}, {str(s.get('date', '?'))[:10]}, "
                f"device `{s.get('device', '?')}`, torch `{s.get('torch', '?')}`.", ""]
    else:
        out += ["Not executed yet: run `make execute NB=" + ch["path"] + "`.", ""]
    if ch["claims"]:
        out += ["| Claim | Measured | Threshold | Pass |", "| --- | --- | --- | :-: |"]
        for c in ch["claims"]:
            op = OPS.get(c.get("op"), md(c.get("op", "?")))
            out.append(f"| {md(c.get('claim', ''))} | {num(c.get('value'))} | {op} {num(c.get('threshold'))} "
                       f"| {'✔' if c.get('passed') else '✘'} |")
        out.append("")
    return out


def build_page(repo: Path) -> str:
    papers = load_papers(repo)
    chapters = load_chapters(repo, papers)
    by_id = {p["id"]: p for p in papers}
    implemented = [p for p in papers if p.get("chapter")]
    verified = [p for p in implemented if chapters[p["chapter"]]["status"] == VERIFIED]
    parts = list(PARTS) + sorted({p["part"] for p in papers} - set(PARTS))

    out = [
        "# Catalog of papers",
        "",
        "```{note}",
        "This page is generated by `tools/catalog_page.py` from `book/papers.yml` and the stamps inside the",
        "chapter notebooks (`make catalog`). Edit those, not this page.",
        "```",
        "",
        "Every entry of the course's reading list appears below, grouped by part. A paper is *implemented*",
        "when a chapter notebook rebuilds its key idea and checks its claim; companion entries (blog posts,",
        "explainers) are folded into their paper's chapter. For each chapter the table under its part shows",
        "the claims exactly as the last stamped run measured them: value, threshold and whether it held.",
        "",
        f"**{len(implemented)} of {len(papers)} entries implemented** by {len(chapters)} chapter notebooks "
        f"({len(verified)} entries with a verified stamp); **{len(papers) - len(implemented)} planned**.",
        "",
        f"Status: {VERIFIED}: a stamped run whose code matches the notebook and whose claims all held; "
        f"{STALE}: the code changed after the run; {UNSTAMPED}: no stamp yet; {FAILED}: a stamped claim "
        "did not hold; planned: no chapter yet.",
        "",
    ]
    for part in parts:
        entries = [p for p in papers if p["part"] == part]
        if not entries:
            continue
        done = sum(1 for p in entries if p.get("chapter"))
        out += [f"## {PARTS.get(part, part.replace('-', ' ').capitalize())}", "",
                f"{done} of {len(entries)} implemented.", "",
                "| Paper | Year | Kind | Chapter | Status |", "| --- | :-: | --- | --- | --- |"]
        shown = []
        for p in entries:
            title = f"[{md(p['title'])}](<{p['url']}>)"
            rel = p.get("chapter")
            parent = by_id.get(p.get("companion_of") or "")
            if parent is not None:
                target = link_to(rel, parent["title"]) if rel else md(parent["title"])
                chapter, status = f"folded into {target}", "companion" + ("" if rel else " (planned)")
            elif rel:
                chapter, status = link_to(rel, chapters[rel]["title"]), chapters[rel]["status"]
            else:
                chapter, status = "—", "planned"
            if rel and rel not in shown:
                shown.append(rel)
            out.append(f"| {title} | {p['year']} | {md(p['kind'])} | {chapter} | {status} |")
        out.append("")
        if shown:
            out += ["**Measured claims**", ""]
            for rel in shown:
                out += claims_block(chapters[rel])
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=REPO, help="repository root (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help="output file (default: REPO/book/catalog.md)")
    a = ap.parse_args(argv)
    repo = a.repo.resolve()
    try:
        page = build_page(repo)
    except CatalogError as e:
        print(f"catalog_page.py: ERROR: {e}", file=sys.stderr)
        return 1
    out = a.out or repo / PAGE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
