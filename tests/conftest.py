"""pytest set-up for paperbook: the unit tests in tests/ and the smoke run of the chapters under nbval.

At import time (before any kernel starts, so nbval's kernels inherit it):
- PAPERBOOK_DATA: when unset and the offline mirror ../shared/data exists, a session copy of the mirror;
- PAPERBOOK_SCALE=smoke unless already set; MPLBACKEND=Agg.

For notebook items (nbval, `--nbval-lax`), a plugin
- skips draft notebooks (`_name.ipynb`) and gives each notebook's kernel its own PAPERBOOK_CLAIMS_FILE;
- adds one test per notebook, `<nb>::smoke-time-budget`, after its cells: it fails when the notebook's
  cells took longer than PAPERBOOK_SMOKE_LIMIT seconds in total (default 20; at PAPERBOOK_SCALE=cpu
  the contract's 300 s; no limit at gpu), so the session exits non-zero;
- prints a table of seconds per notebook (and the smoke-scale claims, reported, not asserted) at the end.

This file is found by `pytest tests/`. For the chapters, load it as a plugin:
    python -m pytest -p tests.conftest --nbval-lax --nbval-current-env -p no:cacheprovider chapters/
(`python -m` puts the repository on sys.path so `tests.conftest` imports; a second import as the
tests/ conftest, when both are collected, is harmless.)
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_MIRROR = REPO.parent / "shared" / "data"
PLUGIN_NAME = "paperbook-notebooks"
BUDGET_ITEM = "smoke-time-budget"
SCALE_LIMITS = {"cpu": 300.0, "gpu": None}


def _setup_environment() -> None:
    if not os.environ.get("PAPERBOOK_DATA") and DATA_MIRROR.is_dir():
        data = tempfile.mkdtemp(prefix="paperbook-data-")
        shutil.copytree(DATA_MIRROR, data, dirs_exist_ok=True)
        os.environ["PAPERBOOK_DATA"] = data
        atexit.register(shutil.rmtree, data, True)
    os.environ.setdefault("PAPERBOOK_SCALE", "smoke")
    os.environ["MPLBACKEND"] = "Agg"


_setup_environment()


def time_limit() -> float | None:
    """Seconds allowed for one notebook's cells at the current PAPERBOOK_SCALE (None: no limit)."""
    scale = os.environ.get("PAPERBOOK_SCALE", "smoke")
    if scale in SCALE_LIMITS:
        return SCALE_LIMITS[scale]
    raw = os.environ.get("PAPERBOOK_SMOKE_LIMIT", "20")
    try:
        return float(raw)
    except ValueError:
        raise pytest.UsageError(f"PAPERBOOK_SMOKE_LIMIT={raw!r} is not a number of seconds") from None


class NotebookRecord:
    def __init__(self, nodeid: str):
        self.nodeid = nodeid
        self.cells = 0.0       # sum of the cells' call durations
        self.overhead = 0.0    # setup/teardown: mostly the kernel start
        self.n_cells = 0
        self.failed_cells = 0
        self.claims_file: str | None = None

    def claims(self) -> list[dict]:
        if not self.claims_file or not os.path.exists(self.claims_file):
            return []
        out = []
        with open(self.claims_file, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append({"claim": f"(unreadable line {line.strip()[:40]!r})", "passed": False})
        return out


class SmokeBudget(pytest.Item):
    """Fails when the notebook's cells, summed, took longer than the scale allows."""

    def __init__(self, *, record: NotebookRecord, limit: float, **kw):
        super().__init__(**kw)
        self.record, self.limit = record, limit

    def runtest(self):
        r = self.record
        if r.cells > self.limit:
            raise SmokeBudgetExceeded(
                f"{r.nodeid}: cells took {r.cells:.1f} s > {self.limit:g} s at "
                f"PAPERBOOK_SCALE={os.environ.get('PAPERBOOK_SCALE')}; make the smoke settings smaller "
                "(fewer steps, a smaller model or dataset)")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, SmokeBudgetExceeded):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.record.nodeid}::{BUDGET_ITEM}"


class SmokeBudgetExceeded(Exception):
    pass


class NotebookTimer:
    """Per-notebook accounting for nbval items; registered once per session by pytest_configure."""

    def __init__(self, config):
        self.config = config
        self.records: dict[str, NotebookRecord] = {}
        self.claims_dir = tempfile.mkdtemp(prefix="paperbook-claims-")
        self._n_files = 0
        self.limit = time_limit()

    @staticmethod
    def _is_notebook(nodeid: str) -> bool:
        return nodeid.split("::", 1)[0].endswith(".ipynb")

    def _record(self, nodeid: str) -> NotebookRecord:
        key = nodeid.split("::", 1)[0]
        if key not in self.records:
            self.records[key] = NotebookRecord(key)
        return self.records[key]

    def pytest_ignore_collect(self, collection_path, config):
        if collection_path.suffix == ".ipynb" and collection_path.name.startswith("_"):
            return True  # drafts and templates, as the contract and the auditor skip them
        return None

    def pytest_collection_modifyitems(self, session, config, items):
        if self.limit is None:
            return
        out, last_parent = [], None
        for item in items:
            parent = item.parent
            if last_parent is not None and parent is not last_parent:
                out.append(self._budget_item(last_parent))
                last_parent = None
            out.append(item)
            if self._is_notebook(item.nodeid) and not isinstance(item, SmokeBudget):
                last_parent = parent
        if last_parent is not None:
            out.append(self._budget_item(last_parent))
        items[:] = out

    def _budget_item(self, notebook):
        return SmokeBudget.from_parent(notebook, name=BUDGET_ITEM, limit=self.limit,
                                       record=self._record(notebook.nodeid))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):
        # nbval starts a notebook's kernel in the setup of its first cell: give that kernel its own
        # claims file, and keep the variable out of the rest of the session.
        if not self._is_notebook(item.nodeid) or isinstance(item, SmokeBudget):
            return (yield)
        rec = self._record(item.nodeid)
        if rec.claims_file is None:
            self._n_files += 1
            rec.claims_file = os.path.join(self.claims_dir, f"{self._n_files}.jsonl")
        before = os.environ.get("PAPERBOOK_CLAIMS_FILE")
        os.environ["PAPERBOOK_CLAIMS_FILE"] = rec.claims_file
        try:
            return (yield)
        finally:
            if before is None:
                os.environ.pop("PAPERBOOK_CLAIMS_FILE", None)
            else:
                os.environ["PAPERBOOK_CLAIMS_FILE"] = before

    def pytest_runtest_logreport(self, report):
        if not self._is_notebook(report.nodeid) or report.nodeid.endswith("::" + BUDGET_ITEM):
            return
        rec = self._record(report.nodeid)
        if report.when == "call":
            rec.cells += report.duration
            rec.n_cells += 1
        else:
            rec.overhead += report.duration
        if report.failed:
            rec.failed_cells += 1

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        if not self.records:
            return
        scale = os.environ.get("PAPERBOOK_SCALE")
        limit = "no limit" if self.limit is None else f"limit {self.limit:g} s of cells per notebook"
        tr = terminalreporter
        tr.section(f"paperbook notebooks at PAPERBOOK_SCALE={scale} ({limit})")
        tr.write_line(f"{'cells s':>8} {'kernel s':>8} {'cells':>5} {'failed':>6} {'claims ok':>9}  notebook")
        for rec in sorted(self.records.values(), key=lambda r: -r.cells):
            claims = rec.claims()
            ok = f"{sum(1 for c in claims if c.get('passed'))}/{len(claims)}"
            over = self.limit is not None and rec.cells > self.limit
            tr.write_line(f"{rec.cells:8.1f} {rec.overhead:8.1f} {rec.n_cells:5d} {rec.failed_cells:6d} "
                          f"{ok:>9}  {rec.nodeid}{'  OVER THE LIMIT' if over else ''}",
                          red=over, bold=over)
        failed_claims = [(rec.nodeid, c) for rec in self.records.values() for c in rec.claims()
                         if not c.get("passed")]
        for nodeid, c in failed_claims:
            tr.write_line(f"claim not met at this scale (reported, not asserted): {nodeid}: "
                          f"{c.get('claim')}: {c.get('value')} {c.get('op')} {c.get('threshold')}")
        total = sum(r.cells + r.overhead for r in self.records.values())
        tr.write_line(f"{len(self.records)} notebook(s), {total:.1f} s in all")

    def pytest_unconfigure(self, config):
        shutil.rmtree(self.claims_dir, ignore_errors=True)


def pytest_configure(config):
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(NotebookTimer(config), PLUGIN_NAME)
