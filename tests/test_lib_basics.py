"""shared.env, shared.claims, shared.data, shared.tasks."""
import io
import json
import urllib.request

import pytest
import torch

import shared
from shared import claims, data, env, tasks


def test_scale_and_pick(monkeypatch):
    monkeypatch.setenv("PAPERBOOK_SCALE", "smoke")
    assert env.scale() == "smoke" and env.pick(1, 2, 3) == 1
    monkeypatch.setenv("PAPERBOOK_SCALE", "cpu")
    assert env.pick(1, 2, 3) == 2
    monkeypatch.setenv("PAPERBOOK_SCALE", "gpu")
    assert env.pick(1, 2, 3) == 3 and env.pick(1, 2) == 2
    monkeypatch.setenv("PAPERBOOK_SCALE", "huge")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        env.scale()
    monkeypatch.delenv("PAPERBOOK_SCALE")
    assert env.scale() == ("gpu" if torch.cuda.is_available() else "cpu")


def test_seed_env_override(monkeypatch):
    monkeypatch.delenv("PAPERBOOK_SEED", raising=False)
    assert env.seed_everything(7) == 7
    a = torch.rand(3)
    env.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    monkeypatch.setenv("PAPERBOOK_SEED", "99")
    assert env.seed_everything(7) == 99


def test_claim_asserts_at_cpu_and_reports_at_smoke(monkeypatch, tmp_path):
    f = tmp_path / "claims.jsonl"
    monkeypatch.setenv("PAPERBOOK_CLAIMS_FILE", str(f))
    monkeypatch.setenv("PAPERBOOK_SCALE", "cpu")
    assert shared.claim("big", 3, ">=", 2)["passed"]
    with pytest.raises(AssertionError, match="small"):
        shared.claim("small", 3, "<=", 2)
    monkeypatch.setenv("PAPERBOOK_SCALE", "smoke")
    assert not shared.claim("small at smoke", 3, "<", 2)["passed"]
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, False, False]
    assert rows[0] == {"claim": "big", "value": 3.0, "op": ">=", "threshold": 2.0, "passed": True}
    with pytest.raises(ValueError, match="NaN"):
        shared.claim("nan", float("nan"), ">=", 0)
    with pytest.raises(ValueError, match="op"):
        shared.claim("bad op", 1, "=>", 0)


def _fake_urlopen(payload=None, error=None):
    def fake(url, timeout=None):
        if error:
            raise error
        return io.BytesIO(payload)
    return fake


def test_fetch_offline_error_names_file_url_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPERBOOK_DATA", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", _fake_urlopen(error=OSError("no network")))
    with pytest.raises(FileNotFoundError) as e:
        data.fetch("tinyshakespeare.txt")
    msg = str(e.value)
    assert "tinyshakespeare.txt" in msg and data.FILES["tinyshakespeare.txt"][0] in msg and "PAPERBOOK_DATA" in msg


def test_fetch_verifies_and_writes_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPERBOOK_DATA", str(tmp_path))
    payload = b"hello"
    import hashlib
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(urllib.request, "urlopen", _fake_urlopen(b"tampered"))
    with pytest.raises(ValueError, match="sha256"):
        data.fetch("x.txt", "https://example.invalid/x.txt", sha)
    assert not (tmp_path / "x.txt").exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(urllib.request, "urlopen", _fake_urlopen(payload))
    p = data.fetch("x.txt", "https://example.invalid/x.txt", sha)
    assert p.read_bytes() == payload
    p.write_bytes(b"corrupt")  # a corrupt cached file is fetched again
    assert data.fetch("x.txt", "https://example.invalid/x.txt", sha).read_bytes() == payload
    with pytest.raises(KeyError, match="known files"):
        data.fetch("nope.bin")


def test_tiny_shakespeare_and_batches():
    text = data.tiny_shakespeare()
    assert len(text) == 1115394 and text.startswith("First Citizen")
    ids = torch.arange(1000)
    tr, va = data.split(ids)
    assert len(tr) == 900 and va[0] == 900
    get = data.batches(tr, 4, 16, seed=3)
    x, y = get(5)
    assert x.shape == (4, 16) and torch.equal(y, x + 1)  # targets are the next tokens
    assert torch.equal(get(5)[0], x) and not torch.equal(get(6)[0], x)  # a step's batch is reproducible
    with pytest.raises(ValueError, match="block_size"):
        data.random_batch(torch.arange(10), 2, 10)


def test_sequence_tasks():
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(16, generator=g)
    src, tgt = tasks.sequence_task("reverse", 8, 20, 16, g, mapping=perm)
    assert torch.equal(tgt, perm[src.flip(1)])
    src, tgt = tasks.sequence_task("sort", 8, 10, 16, g)
    assert (tgt.diff(dim=1) >= 0).all() and torch.equal(tgt.sort(1).values, src.sort(1).values)
    with pytest.raises(ValueError):
        tasks.sequence_task("shuffle", 1, 2, 3)


def test_arithmetic_and_preferences():
    pairs = tasks.arithmetic(200, 3, "+-*", seed=1)
    assert all(tasks.check_arithmetic(p, a) for p, a in pairs)
    assert not tasks.check_arithmetic("12+5=", "18") and not tasks.check_arithmetic("12+5=", "x")
    assert tasks.arithmetic(5, seed=2) == tasks.arithmetic(5, seed=2)
    for row in tasks.preference_pairs(50):
        assert tasks.check_arithmetic(row["prompt"], row["chosen"])
        assert not tasks.check_arithmetic(row["prompt"], row["rejected"])


def test_kv_recall():
    toks, ans = tasks.kv_recall(64, 4, 10, 5, torch.Generator().manual_seed(0))
    assert toks.shape == (64, 9)
    keys, vals = toks[:, 0:8:2], toks[:, 1:8:2]
    for i in range(64):
        assert len(set(keys[i].tolist())) == 4
        j = keys[i].tolist().index(toks[i, -1].item())
        assert vals[i, j] == ans[i]


def test_digits():
    xtr, ytr, xte, yte = data.digits()
    assert xtr.shape == (1438, 64) and xte.shape == (359, 64) and xtr.dtype == torch.float32
    assert 0 <= xtr.min() and xtr.max() <= 1 and set(ytr.tolist()) == set(range(10))
    assert torch.equal(data.digits()[0], xtr)  # a fixed split


def test_epoch_batches():
    x, y = torch.arange(23).float()[:, None], torch.arange(23)
    get = data.epoch_batches(x, y, 5, seed=3)  # 4 batches per epoch; 3 examples dropped each epoch
    epoch0 = torch.cat([get(s)[1] for s in range(4)])
    epoch1 = torch.cat([get(s)[1] for s in range(4, 8)])
    assert len(set(epoch0.tolist())) == 20 and len(set(epoch1.tolist())) == 20  # no repeats within an epoch
    assert not torch.equal(epoch0, epoch1)  # a fresh order each epoch
    xb, yb = get(6)
    assert torch.equal(xb[:, 0].long(), yb) and torch.equal(get(6)[1], yb)  # pairs kept, depends only on step
    assert not torch.equal(data.epoch_batches(x, y, 5, seed=4)(0)[1], get(0)[1])
    with pytest.raises(ValueError, match="larger than the dataset"):
        data.epoch_batches(x, y, 24)


def test_pig_latin():
    assert tasks.pig_latin("apple string rhythm") == "appleway ingstray ythmrhay"
    assert tasks.pig_latin("Romeo, KING of Verona!\nI'll go.") == "Omeoray, INGKAY ofway Eronavay!\nIway'llay ogay."
    text = data.tiny_shakespeare()[:5000]
    assert set(tasks.pig_latin(text)) <= set(text)  # same characters: the char tokenizer still covers it
