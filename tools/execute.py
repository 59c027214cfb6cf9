#!/usr/bin/env python3
"""Execute chapter notebooks and stamp them; the only way committed outputs are made.

Usage:  python tools/execute.py NB [NB ...] [--scale cpu|smoke|gpu] [--timeout SECONDS]
        (make execute NB=chapters/NN-part/slug.ipynb [SCALE=cpu])

Each notebook runs top to bottom in a fresh python3 kernel of this interpreter's environment, with the
notebook's folder as working directory and PAPERBOOK_SCALE=<scale>, PAPERBOOK_CLAIMS_FILE=<a temp file>
in its environment. If a cell raises, the run times out or the kernel dies, the error is printed (cell
index and the end of the traceback) and the notebook file is left exactly as it was.

A successful run is written back in place, with
  metadata.paperbook.executed = {scale, code_sha256, seconds, device, torch, date}
  metadata.paperbook.claims   = the claims recorded by shared.claim(...), in order
unless the run breaks the contract: at scale cpu or gpu it must record at least one claim and all must
pass, a cpu run must take at most 300 s, and no output may show an absolute path of this machine.
The written file is nbformat-normalised (indent 1, trailing newline) with execution counts 1..n, cell ids
kept and no widget state, so that re-running an unchanged notebook gives a small diff.

Exit status: 0 when every notebook was stamped, 1 when one was refused, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbcontract  # noqa: E402  (tools/nbcontract.py)

SCALES = ("cpu", "smoke", "gpu")
DEFAULT_TIMEOUT = {"smoke": 120, "cpu": 600, "gpu": 1800}  # whole run, seconds
TRACEBACK_LINES = 25
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BACKSPACE = re.compile("[^\n]\x08")
_CARRIAGE_RETURN = re.compile(r"^.*\r(?!\n)", re.MULTILINE)

DEVICE_PROBE = (
    "import json, torch\n"
    "cuda = torch.cuda.is_available()\n"
    "dev = 'cuda: ' + torch.cuda.get_device_name(0) if cuda else 'cpu (%d threads)' % torch.get_num_threads()\n"
    "print(json.dumps({'device': dev, 'torch': torch.__version__}))\n"
)


class Refused(Exception):
    """The notebook was not stamped; the message says why and what to do."""


# --------------------------------------------------------------------------- kernel of this environment

def _kernel_manager_class():
    """An AsyncKernelManager whose python3 kernel is always `sys.executable -m ipykernel_launcher`.

    Installed kernelspecs (in ~/.local/share/jupyter, say) may point at another Python; chapters must
    run against the environment that runs this tool.
    """
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentEnvKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    class CurrentEnvKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self):
            return CurrentEnvKernelSpecs(data_dir=self.data_dir)

    return CurrentEnvKernelManager


def kernel_env(scale: str, claims_file: str) -> dict:
    env = dict(os.environ)
    env["PAPERBOOK_SCALE"] = scale
    env["PAPERBOOK_CLAIMS_FILE"] = claims_file
    env.pop("MPLBACKEND", None)  # let ipykernel use the inline backend, so that plots become outputs
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet the debugger's frozen-modules warning
    return env


class DeviceProbe:
    """Asks torch, in a subprocess of this interpreter, which device and version the kernel will see."""

    def __init__(self, env: dict):
        self._proc = subprocess.Popen([sys.executable, "-c", DEVICE_PROBE], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._result = None

    def close(self) -> None:
        """Stop the probe if its answer was never needed (a refused run)."""
        if self._result is None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.communicate()

    def result(self) -> dict:
        if self._result is None:
            out, err = self._proc.communicate(timeout=120)
            try:
                self._result = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                tail = err.strip().splitlines()[-1:] or ["no output"]
                self._result = {"device": "unknown", "torch": f"unavailable ({tail[0]})"}
        return self._result


# --------------------------------------------------------------------------- tidying the executed notebook

def _tidy_streams(outputs: list) -> list:
    """Merge consecutive stream outputs of one name and resolve \\r and \\b (progress bars) in them."""
    merged = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            text, old = out["text"], None
            while text != old:
                old, text = text, _BACKSPACE.sub("", text)
            out["text"] = _CARRIAGE_RETURN.sub("", text)
    return merged


def tidy(nb) -> None:
    """Execution counts 1..n over all code cells, no widget state, tidy streams."""
    nb.metadata.pop("widgets", None)
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        n += 1
        cell.metadata.pop("execution", None)
        if not cell.source.strip():
            cell.outputs = []
        cell.execution_count = n
        outputs = []
        for out in cell.outputs:
            if "data" in out:
                out["data"].pop(WIDGET_MIME, None)
                if not out["data"]:
                    continue
            if out.get("output_type") == "execute_result":
                out["execution_count"] = n
            outputs.append(out)
        cell.outputs = _tidy_streams(outputs)


def _cell_label(nb, index) -> str:
    """'cell 5 (code cell 3)': the index among all cells, then the position among code cells."""
    if index is None:
        return "a cell"
    k = sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")
    return f"cell {index} (code cell {k})"


def _traceback_tail(cell, lines: int = TRACEBACK_LINES) -> str:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            text = _ANSI.sub("", "\n".join(out.get("traceback", [])))
            tail = text.strip().splitlines()[-lines:]
            return "\n".join("    " + t for t in tail)
    return ""


def _log_tail(log, lines: int = 15) -> str:
    log.seek(0)
    tail = [t for t in log.read().splitlines() if "without encryption" not in t][-lines:]
    return ("\n  kernel stderr:\n" + "\n".join("    " + t for t in tail)) if tail else ""


def repo_root_of(path: Path) -> Path:
    """The nearest folder above `path` holding _toc.yml (the book's root); this checkout otherwise."""
    for parent in path.resolve().parents:
        if (parent / "_toc.yml").exists():
            return parent
    return nbcontract.REPO_ROOT


def read_claims(claims_file: str) -> list:
    claims = []
    with open(claims_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    claims.append(json.loads(line))
                except ValueError as e:
                    raise Refused(f"the claims file has a line that is not JSON (line {lineno}: {e}); "
                                  "record claims only through shared.claim(...)") from None
    return claims


def write_notebook(nb, path: Path) -> None:
    import nbformat
    text = nbformat.writes(nb)
    if not text.endswith("\n"):
        text += "\n"
    tmp = path.with_name(f".{path.name}.executing")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- one notebook

def execute_notebook(path, scale: str = "cpu", timeout: float | None = None,
                     probe: DeviceProbe | None = None) -> dict:
    """Execute and stamp one notebook; returns the stamp. Raises Refused (file untouched) on failure."""
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise Refused(f"no such notebook: {path}")
    timeout = timeout or DEFAULT_TIMEOUT[scale]
    original = path.read_bytes()
    try:
        nb = nbformat.reads(original.decode("utf-8"), as_version=4)
    except Exception as e:  # noqa: BLE001 - any parse failure is reported the same way
        raise Refused(f"cannot read the notebook: {e}") from None

    fd, claims_file = tempfile.mkstemp(prefix="paperbook-claims-", suffix=".jsonl")
    os.close(fd)
    env = kernel_env(scale, claims_file)
    own_probe = probe is None
    probe = probe or DeviceProbe(env)
    try:
        return _execute(path, nb, original, scale, timeout, env, claims_file, probe)
    finally:
        if own_probe:
            probe.close()
        if os.path.exists(claims_file):
            os.unlink(claims_file)


def _execute(path, nb, original, scale, timeout, env, claims_file, probe) -> dict:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if scale == "gpu" and not probe.result()["device"].startswith("cuda"):
        raise Refused(f"scale gpu needs a CUDA device; torch sees {probe.result()['device']}")

    work = copy.deepcopy(nb)
    clock = {"start": None, "end": None, "cell": None}
    deadline = {"t": None}

    def on_start(**_):
        clock["start"] = clock["end"] = time.monotonic()
        deadline["t"] = clock["start"] + timeout

    def on_cell(cell, cell_index, **_):
        clock["cell"] = cell_index

    def on_done(**_):
        clock["end"] = time.monotonic()

    def cell_timeout(cell):
        if deadline["t"] is None:
            return math.ceil(timeout)
        return max(1, math.ceil(deadline["t"] - time.monotonic()))

    client = NotebookClient(
        work, kernel_name="python3", kernel_manager_class=_kernel_manager_class(),
        resources={"metadata": {"path": str(path.resolve().parent)}},
        timeout_func=cell_timeout, record_timing=False, allow_errors=False,
        on_notebook_start=on_start, on_cell_execute=on_cell, on_cell_executed=on_done,
        ipython_hist_file=":memory:",
    )
    # The kernel's own stderr (warnings of ipykernel, a crash message) goes to a temp file, shown on failure.
    kernel_log = tempfile.TemporaryFile(mode="w+", prefix="paperbook-kernel-")
    try:
        try:
            client.execute(env=env, stderr=kernel_log)
        except CellTimeoutError:
            raise Refused(f"timed out after {timeout:.0f} s (whole run) while running "
                          f"{_cell_label(work, clock['cell'])}; "
                          "make the experiment smaller or pass --timeout") from None
        except CellExecutionError as e:
            i = clock["cell"]
            tail = _traceback_tail(work.cells[i]) if i is not None else ""
            raise Refused(f"{_cell_label(work, i)} raised {e.ename}: {e.evalue}\n{tail or e}") from None
        except DeadKernelError as e:
            raise Refused(f"the kernel died while running {_cell_label(work, clock['cell'])} "
                          f"(out of memory? os._exit?): {e}"
                          f"{_log_tail(kernel_log)}") from None
        except Exception as e:  # noqa: BLE001 - kernel start failures and the like
            raise Refused(f"execution failed before or between cells: {type(e).__name__}: {e}"
                          f"{_log_tail(kernel_log)}") from None
        seconds = round(clock["end"] - clock["start"], 1) if clock["start"] is not None else 0.0
        claims = read_claims(claims_file)
    finally:
        kernel_log.close()

    errors = [i for i, c in nbcontract.code_cells(work) for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    if errors:  # cells tagged raises-exception run on, but the book shows no errors
        raise Refused(f"error output(s) in cell(s) {sorted(set(errors))}; chapters must run without errors")
    refusals = nbcontract.stamp_refusals(scale, seconds, claims)
    refusals += nbcontract.absolute_path_problems(work, [repo_root_of(path), nbcontract.REPO_ROOT])
    if refusals:
        raise Refused("not stamped:\n" + "\n".join("  - " + r for r in refusals))

    tidy(work)
    if "kernelspec" not in work.metadata:
        work.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                       "name": "python3"}
    dev = probe.result()
    stamp = {"scale": scale, "code_sha256": nbcontract.code_sha256(work), "seconds": seconds,
             "device": dev["device"], "torch": dev["torch"], "date": datetime.date.today().isoformat()}
    pb = work.metadata.setdefault("paperbook", {})
    pb["executed"] = stamp
    pb["claims"] = claims
    if path.read_bytes() != original:
        raise Refused("the notebook changed on disk while it ran; save your edits and run again")
    write_notebook(work, path)
    return stamp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Execute chapter notebooks in place and stamp them.")
    ap.add_argument("notebooks", nargs="+", metavar="NB", help="notebook(s) to execute")
    ap.add_argument("--scale", choices=SCALES, default="cpu", help="PAPERBOOK_SCALE for the run (default cpu)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds for the whole run of one notebook (default: smoke 120, cpu 600, gpu 1800)")
    a = ap.parse_args(argv)

    probe = DeviceProbe(kernel_env(a.scale, os.devnull))
    refused = []
    for nb in a.notebooks:
        print(f"execute: {nb} (scale {a.scale}) ...", flush=True)
        try:
            stamp = execute_notebook(nb, a.scale, a.timeout, probe=probe)
        except Refused as e:
            refused.append(nb)
            print(f"execute: {nb}: REFUSED, file left unchanged: {e}", file=sys.stderr, flush=True)
            continue
        claims = json.loads(Path(nb).read_text(encoding="utf-8"))["metadata"]["paperbook"]["claims"]
        passed = sum(1 for c in claims if c.get("passed"))
        print(f"execute: {nb}: stamped, {stamp['seconds']} s on {stamp['device']}, "
              f"{passed}/{len(claims)} claims passed")
        for c in claims:
            mark = "ok  " if c.get("passed") else "FAIL"
            print(f"    {mark} {c.get('claim')}: {c.get('value')} {c.get('op')} {c.get('threshold')}")
        for p in nbcontract.check_notebook(nb, repo_root_of(Path(nb))):
            print(f"    contract: {p}")
    probe.close()
    if len(a.notebooks) > 1:
        print(f"execute: {len(a.notebooks) - len(refused)} stamped, {len(refused)} refused")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
