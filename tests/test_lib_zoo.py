"""shared.zoo: trained once, cached, safe under concurrent requests."""
import os
import shutil
import subprocess
import sys

from shared import zoo
from shared.data import data_dir


def test_zoo_trains_once_under_concurrency(tmp_path, monkeypatch):
    corpus = data_dir() / "tinyshakespeare.txt"  # the session's data dir (seeded by conftest when offline)
    if corpus.exists():
        shutil.copy(corpus, tmp_path)
    monkeypatch.setenv("PAPERBOOK_DATA", str(tmp_path))  # an empty zoo
    code = ("from shared import zoo; zm = zoo.load('sweep-xs', scale='smoke', device='cpu'); "
            "print('VAL', zm.info['val_loss'])")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("zoo: training") for o in outs) == 1  # one trained, the other waited and loaded
    assert len({line for o in outs for line in o.splitlines() if line.startswith("VAL")}) == 1
    zm = zoo.load("sweep-xs", scale="smoke", device="cpu")  # cached now: no training
    assert zm.info["steps"] == zoo.ZOO["sweep-xs"].steps["smoke"] and zm.tokenizer.vocab_size == 65
    assert not zm.model.training
    assert len(list((tmp_path / "zoo").glob("*.pt"))) == 1


def test_unknown_zoo_model():
    import pytest
    with pytest.raises(KeyError, match="shakespeare-char"):
        zoo.load("nope")
