"""shared.train: schedule, optimizer groups, accumulation, exact resume, DDP."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.model import GPT, GPTConfig
from shared.train import TrainConfig, lr_at, make_optimizer, train

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402


def test_warmup_cosine():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.55)  # halfway down the cosine
    lrs = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_weight_decay_only_on_matrices():
    m = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    decay, no_decay = make_optimizer(m, TrainConfig(steps=1, weight_decay=0.3)).param_groups
    assert decay["weight_decay"] == 0.3 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_accumulation_equals_one_big_batch():
    a, b = ddp_worker.run(accum=1), ddp_worker.run(accum=4)
    assert max((p - q).abs().max().item() for p, q in zip(a["params"], b["params"])) < 1e-10
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-10)


def _dropout_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.2))


def test_resume_is_exact(tmp_path):
    evaluate = lambda m: {"val": m(*ddp_worker.get_batch(999))[1]}
    cfg = TrainConfig(steps=12, lr=1e-2, warmup=3, eval_every=4, progress=False)
    ref = _dropout_model()
    h_ref = train(ref, ddp_worker.get_batch, cfg, evaluate)

    ck = tmp_path / "ck.pt"
    cfg_ck = TrainConfig(**{**cfg.__dict__, "checkpoint": str(ck)})
    part = _dropout_model()
    train(part, ddp_worker.get_batch, cfg_ck, evaluate, until=7)  # "interrupted" after 7 steps
    assert ck.exists() and not list(tmp_path.glob("*.tmp*"))
    torch.manual_seed(12345)  # a fresh process would have another RNG state: the checkpoint must restore it
    resumed = _dropout_model()
    h = train(resumed, ddp_worker.get_batch, cfg_ck, evaluate)
    for p, q in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert h.loss == h_ref.loss and h.steps == list(range(12))
    assert h.evals == h_ref.evals and [e["step"] for e in h.evals] == [4, 8, 12]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_ddp_two_processes_equal_one(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the interpreter"
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(Path(__file__).parent / "ddp_worker.py"),
                           str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = torch.load(out)
    one = ddp_worker.run(accum=2)  # one process, the same global batch of 8 in two micro-batches
    assert max((p - q).abs().max().item() for p, q in zip(one["params"], two["params"])) < 1e-10
    assert one["loss"] == pytest.approx(two["loss"], abs=1e-10)


def test_custom_optimizer_follows_the_schedule():
    """train(optimizer=...) uses the given optimizer, with the lr set by the schedule at every step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    seen = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    x, y = torch.randn(8, 3), torch.randn(8, 1)
    cfg = TrainConfig(steps=6, lr=0.1, warmup=2, min_lr_ratio=0.5, grad_clip=None, progress=False)
    hist = train(model, lambda s: (x, y), cfg, loss_fn=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
                 optimizer=lambda m, c: Recording(m.parameters(), lr=123.0))
    assert seen == pytest.approx([lr_at(s, cfg) for s in range(6)])
    assert hist.loss[-1] < hist.loss[0]
