"""shared.zoo: trained once, cached, safe under concurrent requests."""
import subprocess
import sys

from shared import zoo


def test_zoo_trains_once_under_concurrency(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERBOOK_DATA", str(tmp_path))
    from shared.data import fetch  # copy the corpus into the fresh data dir first
    import os, shutil
    src = os.environ.get("PAPERBOOK_SEEDED_DATA")
    if src:
        shutil.copy(os.path.join(src, "tinyshakespeare.txt"), tmp_path)
    fetch("tinyshakespeare.txt")
    code = ("from shared import zoo; zm = zoo.load('sweep-xs', scale='smoke', device='cpu'); "
            "print('VAL', zm.info['val_loss'])")
    env = {**os.environ, "PAPERBOOK_DATA": str(tmp_path), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o.count("zoo: training") for o in outs) == 1  # one trained, the other waited and loaded
    vals = {line for o in outs for line in o.splitlines() if line.startswith("VAL")}
    assert len(vals) == 1
    zm = zoo.load("sweep-xs", scale="smoke", device="cpu")  # cached now
    assert zm.info["steps"] == zoo.ZOO["sweep-xs"].steps["smoke"] and zm.tokenizer.vocab_size == 65
    assert not zm.model.training
    assert len(list((tmp_path / "zoo").glob("*.pt"))) == 1
