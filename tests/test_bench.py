"""The backbone bench runs end to end at a tiny size (no timing is asserted: CI machines are noisy)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_backbone_bench_tiny(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench.backbone", "--tiny", "--threads", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "identical tokens" in proc.stdout and "DIFFERENT" not in proc.stdout
    report = json.loads(out.read_text())
    assert report["logit_diff"] < 1e-4
    assert {(r["impl"], r["compiled"]) for r in report["results"]} == {
        ("shared", False), ("shared", True), ("hf", False), ("hf", True)}
    assert all(r["tokens_per_s"] > 0 and r["gen_b1_tokens_per_s"] > 0 for r in report["results"])
