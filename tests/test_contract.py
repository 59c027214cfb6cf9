"""The chapter contract: every chapter meets it, each check can fire, and tools/execute.py stamps runs.

The unit tests build a tiny book in tmp_path (_toc.yml, book/papers.yml, one notebook that meets the
contract) and break one thing at a time. The end-to-end tests run tools/execute.py on tiny notebooks whose
cells write claim lines themselves, so they do not depend on the chapters or on `shared`.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import execute  # noqa: E402  (tools/execute.py)
import nbcontract  # noqa: E402  (tools/nbcontract.py)

EXECUTE = REPO / "tools" / "execute.py"
AUDITOR = REPO.parent / "shared" / "tools" / "course_audit.py"
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
NB_REL = "chapters/01-x/demo.ipynb"


# --------------------------------------------------------------------------- the real chapters

CHAPTERS = nbcontract.chapter_notebooks(REPO)


def test_the_book_has_chapters():
    assert CHAPTERS, "no chapter notebooks under chapters/ yet: the contract tests below have nothing to check"


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.relative_to(REPO).as_posix() for p in CHAPTERS])
def test_chapter_meets_the_contract(nb):
    problems = nbcontract.check_notebook(nb, REPO)
    assert not problems, f"{nb.relative_to(REPO)}:\n  - " + "\n  - ".join(problems)


# --------------------------------------------------------------------------- a synthetic book

def write_book(root: Path, toc_files=("chapters/01-x/demo",), ids=("demo-paper", "other-paper")):
    (root / "book").mkdir(parents=True, exist_ok=True)
    toc = ["format: jb-book", "root: book/intro", "parts:", "  - caption: Part one", "    chapters:"]
    toc += [f"      - file: {f}" for f in toc_files]
    (root / "_toc.yml").write_text("\n".join(toc) + "\n")
    (root / "book" / "papers.yml").write_text("".join(f"- id: {i}\n  title: {i}\n" for i in ids))


def good_notebook() -> nbformat.NotebookNode:
    """A notebook that meets the contract: stamped at cpu scale, counts 1..n, a plot, passed claims."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    code1 = nbformat.v4.new_code_cell("x = 2\nprint('x is', x)", execution_count=1,
                                      outputs=[nbformat.v4.new_output("stream", name="stdout", text="x is 2\n")])
    code2 = nbformat.v4.new_code_cell("show(x)", execution_count=2, outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": PNG_1PX, "text/plain": "<Figure>"})])
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo"), code1, code2]
    nb.metadata["paperbook"] = {
        "papers": ["demo-paper"],
        "executed": {"scale": "cpu", "code_sha256": nbcontract.code_sha256(nb), "seconds": 12.3,
                     "device": "cpu (2 threads)", "torch": "2.13.0", "date": "2026-01-01"},
        "claims": [{"claim": "x is big", "value": 2.0, "op": ">", "threshold": 1.0, "passed": True}],
    }
    return nb


@pytest.fixture
def book(tmp_path):
    write_book(tmp_path)
    path = tmp_path / NB_REL
    path.parent.mkdir(parents=True)
    nbformat.write(good_notebook(), path)
    return tmp_path


def rewrite(path: Path, change) -> None:
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)


def meta(nb):
    return nb.metadata["paperbook"]


def test_the_synthetic_notebook_meets_the_contract(book):
    assert nbcontract.check_notebook(book / NB_REL, book) == []
    assert nbcontract.check_repo(book) == {NB_REL: []}


# Each change breaks exactly one rule, and exactly that problem is reported.
BREAKS = {
    "stale stamp": (lambda nb: setattr(nb.cells[1], "source", "x = 3"), "stale stamp"),
    "error output": (lambda nb: nb.cells[1].outputs.append(nbformat.v4.new_output(
        "error", ename="ValueError", evalue="boom", traceback=["ValueError: boom"])), "1 error output(s)"),
    "counts out of order": (lambda nb: [setattr(nb.cells[1], "execution_count", 2),
                                        setattr(nb.cells[2], "execution_count", 1)], "execution counts not 1..n"),
    "count missing": (lambda nb: setattr(nb.cells[2], "execution_count", None), "execution counts not 1..n"),
    "failed claim": (lambda nb: meta(nb)["claims"][0].update(passed=False), "claim failed: 'x is big'"),
    "no claims": (lambda nb: meta(nb).update(claims=[]), "no claims recorded"),
    "cpu seconds 301": (lambda nb: meta(nb)["executed"].update(seconds=301), "cpu run took 301.0 s > 300 s"),
    "smoke stamp": (lambda nb: meta(nb)["executed"].update(scale="smoke"), "stamped at scale 'smoke'"),
    "not stamped": (lambda nb: meta(nb).pop("executed"), "not stamped"),
    "stamp lacks device": (lambda nb: meta(nb)["executed"].pop("device"), "stamp lacks device"),
    "no papers": (lambda nb: meta(nb).update(papers=[]), "no metadata.paperbook.papers"),
    "unknown id": (lambda nb: meta(nb).update(papers=["demo-paper", "made-up-2031"]),
                   "not in book/papers.yml: made-up-2031"),
    "no plot": (lambda nb: nb.cells[2].outputs.clear(), "no plot"),
    "home path": (lambda nb: nb.cells[1].outputs.append(nbformat.v4.new_output(
        "stream", name="stderr", text=f"warning from {Path.home() / '.cache/x.py'}:3\n")), "absolute path"),
    "someone's home": (lambda nb: nb.cells[1].outputs.append(nbformat.v4.new_output(
        "execute_result", data={"text/plain": "'/home/alice/data.txt'"}, execution_count=1)), "'/home/alice'"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_check_fires(book, name):
    change, expected = BREAKS[name]
    rewrite(book / NB_REL, change)
    problems = nbcontract.check_notebook(book / NB_REL, book)
    assert len(problems) == 1 and expected in problems[0], problems


def test_repo_path_in_an_output_fires(book):
    rewrite(book / NB_REL, lambda nb: nb.cells[1].outputs.append(nbformat.v4.new_output(
        "stream", name="stdout", text=f"saved to {book / 'chapters' / 'fig.png'}\n")))
    problems = nbcontract.check_notebook(book / NB_REL, book)
    assert len(problems) == 1 and f"absolute path {str(book.resolve())!r} in the output of cell 1" in problems[0]


def test_paths_that_are_not_the_machines_do_not_fire(book):
    text = f"chapters/01-x/fig.png {book}-other/x /usr/lib/python3 https://example.org/home/page\n"
    rewrite(book / NB_REL, lambda nb: nb.cells[1].outputs.append(
        nbformat.v4.new_output("stream", name="stdout", text=text)))
    assert nbcontract.check_notebook(book / NB_REL, book) == []


def test_gpu_runs_may_take_longer(book):
    rewrite(book / NB_REL, lambda nb: meta(nb)["executed"].update(scale="gpu", seconds=1800))
    assert nbcontract.check_notebook(book / NB_REL, book) == []


def test_missing_from_the_toc(tmp_path):
    write_book(tmp_path, toc_files=("chapters/01-x/another",))
    (tmp_path / "chapters" / "01-x").mkdir(parents=True)
    nbformat.write(good_notebook(), tmp_path / NB_REL)
    problems = nbcontract.check_notebook(tmp_path / NB_REL, tmp_path)
    assert problems == ["not listed in _toc.yml (add `- file: chapters/01-x/demo`)"]


def test_toc_entries_with_extension_and_nesting_count(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro.md\nparts:\n- chapters:\n  - file: a/b.ipynb\n    sections:\n"
        "    - file: ./a/c\n")
    assert nbcontract.toc_entries(tmp_path) == {"intro", "a/b", "a/c"}


def test_missing_book_files_are_problems_not_crashes(tmp_path):
    (tmp_path / "chapters" / "01-x").mkdir(parents=True)
    nbformat.write(good_notebook(), tmp_path / NB_REL)
    problems = nbcontract.check_notebook(tmp_path / NB_REL, tmp_path)
    assert any("book/papers.yml not found" in p for p in problems)
    assert any("_toc.yml not found" in p for p in problems)


def test_check_repo_skips_drafts_and_checkpoints(book):
    good = (book / NB_REL).read_text()
    (book / "chapters" / "01-x" / "_draft.ipynb").write_text(good)
    (book / "chapters" / "01-x" / ".ipynb_checkpoints").mkdir()
    (book / "chapters" / "01-x" / ".ipynb_checkpoints" / "demo-checkpoint.ipynb").write_text(good)
    (book / "chapters" / "02-y").mkdir()
    (book / "chapters" / "02-y" / "unlisted.ipynb").write_text(good)
    result = nbcontract.check_repo(book)
    assert list(result) == [NB_REL, "chapters/02-y/unlisted.ipynb"]
    assert result[NB_REL] == [] and "not listed in _toc.yml" in result["chapters/02-y/unlisted.ipynb"][0]


def test_stamp_refusals():
    ok = [{"claim": "c", "value": 1, "op": ">", "threshold": 0, "passed": True}]
    assert nbcontract.stamp_refusals("cpu", 299.9, ok) == []
    assert "300.5 s > 300 s" in nbcontract.stamp_refusals("cpu", 300.5, ok)[0]
    assert nbcontract.stamp_refusals("gpu", 5000, ok) == []
    assert "no claims" in nbcontract.stamp_refusals("gpu", 1, [])[0]
    assert "claim failed" in nbcontract.stamp_refusals("cpu", 1, [dict(ok[0], passed=False)])[0]
    assert nbcontract.stamp_refusals("smoke", 1, []) == []  # smoke claims are reported, not required


# --------------------------------------------------------------------------- agreement with the auditor

@pytest.fixture(scope="module")
def auditor():
    if not AUDITOR.exists():
        pytest.skip(f"the course auditor is not at {AUDITOR}")
    spec = importlib.util.spec_from_file_location("course_audit", AUDITOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_code_hash_matches_the_auditor(auditor):
    nb = json.loads(nbformat.writes(good_notebook()))  # sources as lists of lines, as on disk
    assert isinstance(nb["cells"][1]["source"], list)
    assert nbcontract.code_sha256(nb) == auditor.code_sha256(nb)


@pytest.mark.parametrize("name", ["stale stamp", "error output", "counts out of order", "failed claim",
                                  "no claims", "cpu seconds 301", "smoke stamp", "not stamped", "no papers",
                                  "no plot"])
def test_the_auditor_agrees(book, auditor, name):
    assert auditor.audit_notebook(book / NB_REL)[1] == []
    rewrite(book / NB_REL, BREAKS[name][0])
    assert auditor.audit_notebook(book / NB_REL)[1] != []


# --------------------------------------------------------------------------- tidying (no kernel)

def test_tidy_numbers_code_cells_and_drops_widgets():
    nb = good_notebook()
    nb.cells.insert(2, nbformat.v4.new_code_cell("   ", execution_count=7, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="stale\n")]))
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="epoch 1\repoch 2\repoch 3\n"),
                           nbformat.v4.new_output("stream", name="stdout", text="done\n"),
                           nbformat.v4.new_output("display_data", data={execute.WIDGET_MIME: {"model_id": "a"}}),
                           nbformat.v4.new_output("execute_result", execution_count=9, data={
                               execute.WIDGET_MIME: {"model_id": "b"}, "text/plain": "3"})]
    nb.metadata["widgets"] = {"state": {}}
    execute.tidy(nb)
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == [1, 2, 3]
    assert nb.cells[2].outputs == []
    assert [o.output_type for o in nb.cells[1].outputs] == ["stream", "execute_result"]
    assert nb.cells[1].outputs[0].text == "epoch 3\ndone\n"
    assert nb.cells[1].outputs[1].execution_count == 1 and execute.WIDGET_MIME not in nb.cells[1].outputs[1].data
    assert "widgets" not in nb.metadata


# --------------------------------------------------------------------------- tools/execute.py end to end

CLAIM_CELL = ("import json, os\n"
              "print('scale', os.environ['PAPERBOOK_SCALE'])\n"
              "with open(os.environ['PAPERBOOK_CLAIMS_FILE'], 'a') as f:\n"
              "    f.write(json.dumps({{'claim': 'two beats one', 'value': 2.0, 'op': '>', 'threshold': 1.0,"
              " 'passed': {passed}}}) + '\\n')")
PLOT_CELL = "import matplotlib.pyplot as plt\nplt.figure(figsize=(1, 1))\nplt.plot([0, 1])\nplt.show()"


def source_notebook(*cells, papers=("demo-paper",)) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["paperbook"] = {"papers": list(papers)}
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny chapter")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


@pytest.fixture
def tiny_book(tmp_path):
    names = ["good", "smoke", "raises", "failed", "silent", "leaky", "slow", "edits-itself"]
    write_book(tmp_path, toc_files=[f"chapters/01-x/{n}" for n in names])
    (tmp_path / "chapters" / "01-x").mkdir(parents=True)

    def make(name, *cells) -> Path:
        path = tmp_path / "chapters" / "01-x" / f"{name}.ipynb"
        nbformat.write(source_notebook(*cells), path)
        return path
    return make


def run_execute(*args):
    return subprocess.run([sys.executable, str(EXECUTE), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_execute_stamps_a_cpu_run_and_refuses_an_erroring_one(tiny_book):
    good = tiny_book("good", CLAIM_CELL.format(passed=True), "", PLOT_CELL, "40 + 2")
    bad = tiny_book("raises", "x = 1", "def f():\n    raise ValueError('boom: fix the thing')\nf()", PLOT_CELL)
    before_good, before_bad = nbformat.read(good, as_version=4), bad.read_bytes()

    r = run_execute(bad, good, "--scale", "cpu")
    assert r.returncode == 1, r.stdout + r.stderr
    # the erroring notebook: refused, the error named, the file byte-identical
    assert bad.read_bytes() == before_bad
    assert "cell 2 (code cell 2) raised ValueError: boom: fix the thing" in r.stderr
    assert "raise ValueError" in r.stderr
    # the good one: stamped in place
    nb = nbformat.read(good, as_version=4)
    stamp, claims = nb.metadata.paperbook.executed, nb.metadata.paperbook.claims
    assert stamp.scale == "cpu" and stamp.code_sha256 == nbcontract.code_sha256(before_good)
    assert isinstance(stamp.seconds, float) and 0 < stamp.seconds < 60 and stamp.seconds == round(stamp.seconds, 1)
    assert stamp.device.startswith(("cpu (", "cuda: ")) and stamp.torch[:1].isdigit()
    assert stamp.date == datetime.date.today().isoformat()
    assert claims == [{"claim": "two beats one", "value": 2.0, "op": ">", "threshold": 1.0, "passed": True}]
    assert nb.metadata.paperbook.papers == ["demo-paper"] and nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    assert [c.id for c in nb.cells] == [c.id for c in before_good.cells]
    assert code[0].outputs[0].text == "scale cpu\n"  # the kernel saw PAPERBOOK_SCALE
    assert "image/png" in code[2].outputs[0].data  # inline plots even though pytest sets MPLBACKEND=Agg
    assert code[3].outputs[0].data["text/plain"] == "42" and code[3].outputs[0].execution_count == 4
    text = good.read_text()
    assert text.endswith("}\n") and text.startswith('{\n "cells": [\n  {\n')  # nbformat layout, indent 1
    assert text == nbformat.writes(nbformat.reads(text, as_version=4)) + "\n"
    assert nbcontract.check_notebook(good, good.parents[2]) == []  # the whole contract, end to end
    assert "stamped" in r.stdout and "1/1 claims passed" in r.stdout


def test_execute_at_smoke_scale_stamps_smoke(tiny_book):
    path = tiny_book("smoke", CLAIM_CELL.format(passed=False))
    stamp = execute.execute_notebook(path, "smoke")
    nb = nbformat.read(path, as_version=4)
    assert stamp["scale"] == nb.metadata.paperbook.executed.scale == "smoke"
    assert nb.cells[1].outputs[0].text == "scale smoke\n"
    assert nb.metadata.paperbook.claims[0]["passed"] is False  # reported, not required, at smoke scale
    problems = nbcontract.check_notebook(path, path.parents[2])
    assert any("stamped at scale 'smoke'" in p for p in problems)


@pytest.mark.parametrize("name, cells, timeout, message", [
    ("failed", [CLAIM_CELL.format(passed=False)], None, "claim failed: 'two beats one'"),
    ("silent", ["x = 1"], None, "no claims recorded"),
    ("leaky", [CLAIM_CELL.format(passed=True), "import os\nprint(os.getcwd())"], None,
     "absolute path"),
    ("slow", [CLAIM_CELL.format(passed=True), "import time\ntime.sleep(30)"], 2,
     "timed out after 2 s (whole run) while running cell 2 (code cell 2)"),
    ("edits-itself", [CLAIM_CELL.format(passed=True), "open('edits-itself.ipynb', 'a').write(' ')"], None,
     "changed on disk while it ran"),
])
def test_execute_refuses_and_leaves_the_file(tiny_book, name, cells, timeout, message):
    path = tiny_book(name, *cells)
    before = path.read_bytes()
    with pytest.raises(execute.Refused, match=None) as e:
        execute.execute_notebook(path, "cpu", timeout=timeout)
    assert message in str(e.value)
    expected = before + b" " if name == "edits-itself" else before
    assert path.read_bytes() == expected


# --------------------------------------------------------------------------- the nbval smoke run

def test_the_smoke_run_times_notebooks_and_fails_past_the_limit(tmp_path):
    nbdir = tmp_path / "chapters" / "01-x"
    nbdir.mkdir(parents=True)
    env_cell = ("import json, os\n"
                "json.dump({k: os.environ.get(k) for k in ('PAPERBOOK_SCALE', 'MPLBACKEND', 'PAPERBOOK_DATA')},"
                " open('env.json', 'w'))\n" + CLAIM_CELL.format(passed=True))
    nbformat.write(source_notebook(env_cell), nbdir / "fast.ipynb")
    nbformat.write(source_notebook("import time\ntime.sleep(1.2)"), nbdir / "slow.ipynb")
    nbformat.write(source_notebook("raise SystemExit('drafts are not run')"), nbdir / "_draft.ipynb")
    before = {p.name: p.read_bytes() for p in nbdir.iterdir()}
    env = {k: v for k, v in os.environ.items() if k not in ("PAPERBOOK_SCALE", "PAPERBOOK_CLAIMS_FILE")}
    env["PAPERBOOK_SMOKE_LIMIT"] = "0.8"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                        "--nbval-lax", "--nbval-current-env", "-q", "--rootdir", str(tmp_path),
                        str(tmp_path / "chapters")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 failed, 3 passed" in out and "slow.ipynb::smoke-time-budget" in out
    assert "limit 0.8 s of cells per notebook" in out and "OVER THE LIMIT" in out
    rows = {cols[5]: cols for cols in map(str.split, out.splitlines())
            if len(cols) >= 6 and cols[5].endswith(".ipynb") and cols[0].replace(".", "").isdigit()}
    assert rows["chapters/01-x/fast.ipynb"][4] == "1/1" and rows["chapters/01-x/slow.ipynb"][4] == "0/0"
    assert "_draft" not in out
    seen = json.loads((nbdir / "env.json").read_text())
    assert seen["PAPERBOOK_SCALE"] == "smoke" and seen["MPLBACKEND"] == "Agg"
    assert seen["PAPERBOOK_DATA"] == os.environ.get("PAPERBOOK_DATA")  # this session's copy of the mirror
    (nbdir / "env.json").unlink()
    assert {p.name: p.read_bytes() for p in nbdir.iterdir()} == before  # nbval wrote nothing back
