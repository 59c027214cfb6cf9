"""The repo's catalog (book/papers.yml), its bibliography, _toc.yml, the chapters and the catalog page agree.

Each check is a function that returns a list of problems for a repository root, so it runs on the real
repo (which must have none) and on a small synthetic repo in tmp_path that is broken one way at a time
(which must report exactly that). The design catalog ../shared/catalog.yml is compared when present;
without it, papers.yml is checked for consistency with itself.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DESIGN_CATALOG = REPO.parent / "shared" / "catalog.yml"
FACTS = ("id", "title", "year", "url", "kind", "part", "companion_of")
REQUIRED = ("id", "title", "year", "url", "kind", "part", "chapter")


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_papers = load_tool("make_papers")
catalog_page = load_tool("catalog_page")


# --------------------------------------------------------------------------- the checks

def read_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def strip_ext(entry: str) -> str:
    for suffix in (".ipynb", ".md"):
        if entry.endswith(suffix):
            return entry[: -len(suffix)]
    return entry


def toc_files(repo: Path) -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root") and isinstance(value, str):
                    found.add(strip_ext(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(read_yaml(repo / "_toc.yml"))
    return found


def notebooks(repo: Path) -> list[str]:
    root = repo / "chapters"
    return sorted(p.relative_to(repo).as_posix() for p in root.rglob("*.ipynb")
                  if not p.name.startswith("_") and ".ipynb_checkpoints" not in p.parts) if root.is_dir() else []


def self_problems(papers: list[dict]) -> list[str]:
    """papers.yml on its own: required fields, unique ids, companions that exist."""
    problems, seen = [], set()
    for i, p in enumerate(papers):
        missing = [k for k in REQUIRED if k not in p]
        if missing:
            problems.append(f"entry {i} ({p.get('id', '?')}) lacks {', '.join(missing)}")
        if p.get("id") in seen:
            problems.append(f"duplicate id {p.get('id')}")
        seen.add(p.get("id"))
        if not isinstance(p.get("year"), int):
            problems.append(f"{p.get('id')}: year {p.get('year')!r} is not an integer")
    ids = {p.get("id") for p in papers}
    for p in papers:
        parent = p.get("companion_of")
        if parent is not None and parent not in ids:
            problems.append(f"{p['id']}: companion_of {parent!r} is not an id")
        if parent is not None and p.get("chapter") != next((q.get("chapter") for q in papers if q.get("id") == parent), None):
            problems.append(f"{p['id']}: a companion's chapter must be its parent's ({parent})")
    return problems


def catalog_problems(papers: list[dict], catalog: list[dict]) -> list[str]:
    """papers.yml against the design catalog: the same ids in the same order, and equal facts."""
    ids, want = [p.get("id") for p in papers], [e["id"] for e in catalog]
    problems = []
    if set(ids) != set(want):
        if set(want) - set(ids):
            problems.append(f"ids missing from papers.yml: {sorted(set(want) - set(ids))}")
        if set(ids) - set(want):
            problems.append(f"ids not in the catalog: {sorted(set(ids) - set(want))}")
    elif ids != want:
        first = next(i for i, (a, b) in enumerate(zip(ids, want)) if a != b)
        problems.append(f"order differs from the catalog at position {first}: {ids[first]} vs {want[first]}")
    by_id = {p.get("id"): p for p in papers}
    for e in catalog:
        p = by_id.get(e["id"])
        if p is None:
            continue
        for key in FACTS:
            if p.get(key) != e.get(key):
                problems.append(f"{e['id']}: {key} is {p.get(key)!r} in papers.yml, {e.get(key)!r} in the catalog")
        extra = set(p) - set(FACTS) - {"chapter", "authors"}
        if extra:
            problems.append(f"{e['id']}: papers.yml holds facts only; drop {sorted(extra)}")
    return problems


def chapter_problems(repo: Path, papers: list[dict]) -> list[str]:
    """Chapters named in papers.yml exist and are in _toc.yml; every notebook is in _toc.yml and its
    metadata.paperbook.papers ids are in papers.yml, which points back at it."""
    problems, toc = [], toc_files(repo)
    by_id = {p["id"]: p for p in papers}
    for rel in sorted({p["chapter"] for p in papers if p.get("chapter")}):
        if not (repo / rel).is_file():
            problems.append(f"papers.yml names chapter {rel}, which does not exist")
        if strip_ext(rel) not in toc:
            problems.append(f"chapter {rel} (named in papers.yml) is not in _toc.yml")
    for rel in notebooks(repo):
        if strip_ext(rel) not in toc:
            problems.append(f"notebook {rel} is not in _toc.yml: add `- file: {strip_ext(rel)}` under its part")
        try:
            meta = json.loads((repo / rel).read_text(encoding="utf-8")).get("metadata", {})
        except ValueError as e:
            problems.append(f"notebook {rel} is not valid JSON: {e}")
            continue
        ids = (meta.get("paperbook") or {}).get("papers") or []
        if not ids:
            problems.append(f"notebook {rel} has no metadata.paperbook.papers")
        for pid in ids:
            if pid not in by_id:
                problems.append(f"notebook {rel} names unknown catalog id {pid!r}")
            elif by_id[pid].get("chapter") != rel:
                problems.append(f"papers.yml: {pid}.chapter is {by_id[pid].get('chapter')!r}, "
                                f"but {rel} implements it: set `chapter: {rel}`")
    return problems


BIB_KEY = re.compile(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", re.M)


def bib_problems(repo: Path, papers: list[dict]) -> list[str]:
    """references.bib: one entry per id (key = id), parseable, facts equal to papers.yml, and every entry
    renders with the book's pybtex style (so citing any id cannot break the site)."""
    import pybtex.database
    import pybtex.plugin

    text = (repo / "book" / "references.bib").read_text(encoding="utf-8")
    keys = [k for _, k in BIB_KEY.findall(text)]
    ids = [p["id"] for p in papers]
    problems = [f"duplicate BibTeX key {k}" for k in sorted({k for k in keys if keys.count(k) > 1})]
    if set(keys) - set(ids):
        problems.append(f"BibTeX keys that are not catalog ids: {sorted(set(keys) - set(ids))}")
    if set(ids) - set(keys):
        problems.append(f"catalog ids without a BibTeX entry: {sorted(set(ids) - set(keys))}")
    if problems:
        return problems
    try:
        data = pybtex.database.parse_string(text, "bibtex")
    except Exception as e:  # pybtex raises several error types
        return [f"references.bib does not parse: {e}"]
    by_id = {p["id"]: p for p in papers}
    for key, entry in data.entries.items():
        p = by_id[key]
        title = entry.fields.get("title", "").strip("{}")
        if title.replace("\\", "") != p["title"]:
            problems.append(f"{key}: title {title!r} differs from papers.yml {p['title']!r}")
        if entry.fields.get("year") != str(p["year"]):
            problems.append(f"{key}: year {entry.fields.get('year')} differs from papers.yml {p['year']}")
        if entry.fields.get("url") != p["url"]:
            problems.append(f"{key}: url differs from papers.yml")
    config = read_yaml(repo / "_config.yml") or {}
    style_name = ((config.get("sphinx") or {}).get("config") or {}).get("bibtex_default_style", "alpha")
    style = pybtex.plugin.find_plugin("pybtex.style.formatting", style_name)()
    for key, entry in data.entries.items():
        try:
            style.format_entry(key, entry).text.render_as("text")
        except Exception as e:
            problems.append(f"{key}: the {style_name!r} style cannot render it: {e}")
    return problems


# --------------------------------------------------------------------------- the real repository

PAPERS = read_yaml(REPO / "book" / "papers.yml")


def test_papers_yml_is_consistent():
    assert not self_problems(PAPERS), "\n".join(self_problems(PAPERS))


@pytest.mark.skipif(not DESIGN_CATALOG.exists(), reason="no ../shared/catalog.yml beside the repo")
def test_papers_yml_matches_the_design_catalog():
    catalog = read_yaml(DESIGN_CATALOG)
    problems = catalog_problems(PAPERS, catalog)
    assert not problems, "\n".join(problems)
    assert len(PAPERS) == len(catalog)


def test_chapters_agree_with_papers_yml_and_toc():
    problems = chapter_problems(REPO, PAPERS)
    assert not problems, "\n".join(problems)


def test_references_bib():
    problems = bib_problems(REPO, PAPERS)
    assert not problems, "\n".join(problems)


def test_catalog_page_lists_every_entry():
    page = catalog_page.build_page(REPO)
    for p in PAPERS:
        assert p["url"] in page, f"{p['id']} ({p['url']}) is missing from the catalog page"
    rows = [line for line in page.splitlines() if line.startswith("| [")]
    assert len(rows) == len(PAPERS)
    implemented = [p for p in PAPERS if p.get("chapter")]
    for p in implemented:
        row = next(r for r in rows if f"(<{p['url']}>)" in r)
        assert f"](../{p['chapter']})" in row, f"{p['id']}: no link to {p['chapter']} in {row}"
        assert "planned" not in row
    status = [r.rstrip(" |").rsplit("|", 1)[-1].strip() for r in rows]
    n_planned = sum(1 for s in status if "planned" in s)  # companions of planned papers too
    assert n_planned == len(PAPERS) - len(implemented)
    assert f"**{len(implemented)} of {len(PAPERS)} entries implemented**" in page


# --------------------------------------------------------------------------- a synthetic repository

STAMP = {"scale": "cpu", "seconds": 12.5, "device": "cpu (2 threads)", "torch": "2.13.0", "date": "2025-02-03T04:05:06"}


def synthetic_catalog() -> list[dict]:
    return [
        {"id": "alpha", "title": "Alpha: A Paper", "year": 2020, "kind": "paper", "url": "https://arxiv.org/abs/2001.00001",
         "part": "foundations", "chapter": "chapters/01-foundations/alpha.ipynb", "key_idea": "design text"},
        {"id": "alpha-blog", "title": "Alpha, Explained", "year": 2021, "kind": "blog", "url": "https://example.org/alpha",
         "part": "foundations", "companion_of": "alpha", "chapter": "fold-into: alpha"},
        {"id": "beta", "title": "Beta | With a Pipe", "year": 2019, "kind": "survey", "url": "https://example.org/beta",
         "part": "scaling", "chapter": "chapters/04-scaling/beta.ipynb"},
    ]


def write_notebook(path: Path, papers: list[str], claims: list[dict], stale: bool = False) -> None:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Alpha from scratch\n"},
             {"cell_type": "code", "metadata": {}, "execution_count": 1, "outputs": [], "source": "x = 1\n"}]
    nb = {"cells": cells, "metadata": {"paperbook": {"papers": papers, "claims": claims}}, "nbformat": 4,
          "nbformat_minor": 5}
    nb["metadata"]["paperbook"]["executed"] = dict(STAMP, code_sha256=catalog_page.code_sha256(nb))
    if stale:
        cells[1]["source"] = "x = 2\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.fixture
def repo(tmp_path):
    """A three-entry repo: alpha implemented (with its companion), beta planned."""
    catalog = synthetic_catalog()
    (tmp_path / "catalog.yml").write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    papers = make_papers.papers_from_catalog(catalog, implemented=("chapters/01-foundations/alpha.ipynb",))
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "papers.yml").write_text(make_papers.dump_papers(papers), encoding="utf-8")
    (tmp_path / "book" / "references.bib").write_text(make_papers.dump_bib(papers), encoding="utf-8")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({"sphinx": {"config": {"bibtex_default_style": "plain"}}}))
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({
        "format": "jb-book", "root": "book/intro",
        "parts": [{"caption": "01 Foundations", "chapters": [{"file": "chapters/01-foundations/alpha"}]}]}))
    write_notebook(tmp_path / "chapters/01-foundations/alpha.ipynb", ["alpha", "alpha-blog"],
                   [{"claim": "alpha beats *baseline*", "value": 0.8125, "op": ">=", "threshold": 0.5, "passed": True}])
    return tmp_path


def papers_of(repo: Path) -> list[dict]:
    return read_yaml(repo / "book" / "papers.yml")


def set_papers(repo: Path, papers: list[dict]) -> None:
    (repo / "book" / "papers.yml").write_text(make_papers.dump_papers(papers), encoding="utf-8")


def test_synthetic_repo_is_clean(repo):
    papers = papers_of(repo)
    assert papers[0]["chapter"] == papers[1]["chapter"] == "chapters/01-foundations/alpha.ipynb"
    assert papers[2]["chapter"] is None and "key_idea" not in papers[0]
    assert self_problems(papers) == []
    assert catalog_problems(papers, synthetic_catalog()) == []
    assert chapter_problems(repo, papers) == []
    assert bib_problems(repo, papers) == []


def test_catalog_check_catches_drift():
    papers = make_papers.papers_from_catalog(synthetic_catalog(), implemented=())
    swapped = [papers[1], papers[0], papers[2]]
    assert any("order differs" in p for p in catalog_problems(swapped, synthetic_catalog()))
    assert any("missing from papers.yml: ['beta']" in p for p in catalog_problems(papers[:2], synthetic_catalog()))
    edited = copy.deepcopy(papers)
    edited[0]["title"] = "Alpha: A Different Paper"
    assert any("alpha: title" in p for p in catalog_problems(edited, synthetic_catalog()))
    edited = copy.deepcopy(papers)
    edited[2]["claim"] = "design text leaked"
    assert any("facts only" in p for p in catalog_problems(edited, synthetic_catalog()))
    edited = copy.deepcopy(papers)
    edited[1]["companion_of"] = "gamma"
    assert any("companion_of 'gamma'" in p for p in self_problems(edited))


def test_chapter_check_catches_missing_file(repo):
    (repo / "chapters/01-foundations/alpha.ipynb").unlink()
    assert any("alpha.ipynb, which does not exist" in p for p in chapter_problems(repo, papers_of(repo)))


def test_chapter_check_catches_notebook_missing_from_toc(repo):
    write_notebook(repo / "chapters/04-scaling/beta.ipynb", ["beta"], [])
    problems = chapter_problems(repo, papers_of(repo))
    assert any("beta.ipynb is not in _toc.yml" in p for p in problems)
    assert any("beta.chapter is None" in p for p in problems)  # and papers.yml does not point back


def test_chapter_check_catches_unknown_id(repo):
    write_notebook(repo / "chapters/01-foundations/alpha.ipynb", ["alpha", "alpha-blog", "gamma"], [])
    assert any("unknown catalog id 'gamma'" in p for p in chapter_problems(repo, papers_of(repo)))


def test_chapter_check_catches_chapter_missing_from_toc(repo):
    (repo / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "book/intro"}))
    problems = chapter_problems(repo, papers_of(repo))
    assert any("(named in papers.yml) is not in _toc.yml" in p for p in problems)


def test_bib_check_catches_missing_duplicate_and_unrenderable_entries(repo):
    bib = repo / "book" / "references.bib"
    text = bib.read_text(encoding="utf-8")
    entries = text.split("\n@")
    bib.write_text("\n@".join(entries[:-1]) + "\n", encoding="utf-8")  # drop beta
    assert any("without a BibTeX entry: ['beta']" in p for p in bib_problems(repo, papers_of(repo)))
    bib.write_text(text + "\n@" + entries[-1], encoding="utf-8")
    assert any("duplicate BibTeX key beta" in p for p in bib_problems(repo, papers_of(repo)))
    # an @article needs author and journal; without them the book's style cannot render the entry
    assert "@misc{alpha," in text
    bib.write_text(text.replace("@misc{alpha,", "@article{alpha,"), encoding="utf-8")
    assert any("alpha: the 'plain' style cannot render it" in p for p in bib_problems(repo, papers_of(repo)))


def run_catalog_page(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "catalog_page.py"), "--repo", str(repo)],
                          capture_output=True, text=True, timeout=60)


def test_catalog_page_on_synthetic_repo(repo):
    r = run_catalog_page(repo)
    assert r.returncode == 0, r.stderr
    page = (repo / "book" / "catalog.md").read_text(encoding="utf-8")
    assert "**2 of 3 entries implemented** by 1 chapter notebooks" in page
    assert "| [Alpha: A Paper](<https://arxiv.org/abs/2001.00001>) | 2020 | paper | " \
           "[Alpha from scratch](../chapters/01-foundations/alpha.ipynb) | ✔ verified |" in page
    assert "folded into [Alpha: A Paper](../chapters/01-foundations/alpha.ipynb) | companion |" in page
    assert "| [Beta \\| With a Pipe](<https://example.org/beta>) | 2019 | survey | — | planned |" in page
    assert "| alpha beats \\*baseline\\* | 0.8125 | ≥ 0.5 | ✔ |" in page
    assert "Stamp: scale `cpu`, 12 s, 2025-02-03" in page
    assert page.index("## 01 Foundations") < page.index("## 04 Scaling")


def test_catalog_page_shows_stale_and_failed_chapters(repo):
    nb = repo / "chapters/01-foundations/alpha.ipynb"
    write_notebook(nb, ["alpha", "alpha-blog"], [{"claim": "c", "value": 0.1, "op": ">=", "threshold": 0.5,
                                                  "passed": False}])
    page = catalog_page.build_page(repo)
    assert "✘ claim failed" in page and "| c | 0.1 | ≥ 0.5 | ✘ |" in page
    write_notebook(nb, ["alpha", "alpha-blog"], [{"claim": "c", "value": 1, "op": ">=", "threshold": 0.5,
                                                  "passed": True}], stale=True)
    assert "⚠ stale stamp" in catalog_page.build_page(repo)


def test_catalog_page_fails_loudly_on_a_missing_chapter(repo):
    (repo / "chapters/01-foundations/alpha.ipynb").unlink()
    r = run_catalog_page(repo)
    assert r.returncode == 1
    assert "names chapter chapters/01-foundations/alpha.ipynb, which does not exist" in r.stderr
    assert not (repo / "book" / "catalog.md").exists()


# --------------------------------------------------------------------------- tools/make_papers.py

def test_make_papers_is_deterministic_and_refuses_to_overwrite(repo):
    out1, out2 = repo / "p1.yml", repo / "p2.yml"
    args = ["--catalog", str(repo / "catalog.yml"), "--bib", str(repo / "r.bib")]
    make_papers.main(args + ["--papers", str(out1)])
    first = (out1.read_bytes(), (repo / "r.bib").read_bytes())
    make_papers.main(args + ["--papers", str(out2), "--force"])
    assert out1.read_bytes() == out2.read_bytes() and (repo / "r.bib").read_bytes() == first[1]
    with pytest.raises(SystemExit, match="pass --force"):
        make_papers.main(args + ["--papers", str(out1)])
    assert out1.read_bytes() == first[0]


def test_committed_papers_yml_is_what_the_generator_makes():
    """Facts and order come from the generator; only `chapter` and `authors` are maintained by hand."""
    if not DESIGN_CATALOG.exists():
        pytest.skip("no ../shared/catalog.yml beside the repo")
    generated = make_papers.papers_from_catalog(read_yaml(DESIGN_CATALOG))
    strip = lambda ps: [{k: v for k, v in p.items() if k not in ("chapter", "authors")} for p in ps]  # noqa: E731
    assert strip(PAPERS) == strip(generated)
