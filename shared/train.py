"""One training loop for every chapter.

    cfg = TrainConfig(steps=2000, lr=1e-3, warmup=100, eval_every=200)
    history = train(model, batches(train_ids, 64, 128), cfg, evaluate=lambda m: {"val_loss": ...})

* AdamW with weight decay on matrices (>= 2-D parameters) only, not on biases, gains or embeddings' 1-D kin;
  fused on CUDA.
* Linear warmup, then cosine decay to ``min_lr_ratio * lr``.
* Gradient clipping and gradient accumulation; bf16 autocast on CUDA.
* `get_batch(step)` returns the step's *global* batch. The loop cuts it into ``accum * world_size`` equal
  micro-batches, so one process with accum=2 and two processes (``torchrun --nproc_per_node=2``) with accum=1
  compute the same update.
* Periodic evaluation, a tqdm bar, and a `History` for plots.
* Checkpoints are written atomically and hold the model, the optimizer, the step, the history and the RNG
  state, so a resumed run continues exactly where the interrupted one stopped (tested).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from tqdm import tqdm  # text bar: no ipywidgets needed, and clean in committed outputs


@dataclass
class TrainConfig:
    steps: int
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 0
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    accum: int = 1  # micro-batches per process per step
    eval_every: int = 0  # 0: evaluate only at the end
    log_every: int = 1
    checkpoint: str | None = None  # path; saved every `checkpoint_every` steps and at the end
    checkpoint_every: int = 0
    resume: bool = True  # continue from `checkpoint` if it exists
    amp: bool = True  # bf16 autocast on CUDA
    compile: bool = False
    progress: bool = True


@dataclass
class History:
    """What happened during training: one row per logged step, one row per evaluation."""
    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    evals: list = field(default_factory=list)  # dicts with "step" and the metrics
    seconds: float = 0.0

    def metric(self, name: str):
        """(steps, values) of an evaluation metric, for plotting."""
        rows = [r for r in self.evals if name in r]
        return [r["step"] for r in rows], [r[name] for r in rows]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at `step`: linear warmup over `warmup` steps, then cosine down to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW that decays only >= 2-D parameters (weight matrices, embeddings)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None)


def default_loss(model, batch):
    """Language-model loss: the model returns (logits, loss) for (inputs, targets)."""
    x, y = batch
    return model(x, y)[1]


def _distributed() -> tuple[int, int]:
    """(rank, world_size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _micro_batches(batch, n: int):
    """Cut every tensor of the batch into n equal parts along dim 0."""
    tensors = batch if isinstance(batch, (tuple, list)) else (batch,)
    size = tensors[0].shape[0]
    if size % n:
        raise ValueError(f"global batch of {size} does not split into {n} equal micro-batches (accum x processes)")
    parts = [t.chunk(n) for t in tensors]
    return [tuple(p[i] for p in parts) for i in range(n)]


def save_checkpoint(path: str, state: dict):
    """Write `state` with torch.save to a temporary file, then rename it: a crash never leaves half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(model: torch.nn.Module, get_batch, cfg: TrainConfig, evaluate=None, loss_fn=default_loss,
          until: int | None = None, optimizer=make_optimizer) -> History:
    """Train `model` for cfg.steps steps (or stop after step `until`, e.g. to simulate an interruption).

    `get_batch(step)` -> the global batch (a tensor or tuple of tensors, already on the model's device).
    `evaluate(model)` -> dict of metrics, called in eval mode without gradients every `eval_every` steps and
    at the end. `loss_fn(model, micro_batch)` -> scalar loss (default: language modelling).
    `optimizer(model, cfg)` -> a torch.optim.Optimizer (default: `make_optimizer`, AdamW); whichever it is, the
    loop sets every parameter group's "lr" to the schedule's `lr_at(step, cfg)` before each step."""
    rank, world = _distributed()
    device = next(model.parameters()).device
    module = model
    if world > 1:
        module = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward_model = torch.compile(module) if cfg.compile else module
    opt = optimizer(model, cfg)
    hist, start = History(), 0
    if cfg.checkpoint and cfg.resume and os.path.exists(cfg.checkpoint):
        state = torch.load(cfg.checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        hist = History(**state["history"])
        start = state["step"]
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def checkpoint(step):
        if cfg.checkpoint and rank == 0:
            save_checkpoint(cfg.checkpoint, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "history": asdict(hist), "config": asdict(cfg), "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None})

    def run_eval(step):
        if evaluate is None:
            return
        model.eval()
        with torch.no_grad():
            hist.evals.append({"step": step, **{k: float(v) for k, v in evaluate(model).items()}})
        model.train()

    use_amp = cfg.amp and device.type == "cuda"
    stop = cfg.steps if until is None else min(until, cfg.steps)
    bar = tqdm(range(start, stop), disable=not cfg.progress or rank != 0, desc="train", leave=False)
    began = time.perf_counter()
    model.train()
    for step in bar:
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        micro = _micro_batches(get_batch(step), cfg.accum * world)[rank * cfg.accum:(rank + 1) * cfg.accum]
        total = 0.0
        for i, mb in enumerate(micro):
            sync = i == len(micro) - 1
            # with DDP, gradients are averaged across processes only on the last micro-batch
            with module.no_sync() if world > 1 and not sync else contextlib.nullcontext():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    loss = loss_fn(forward_model, mb) / cfg.accum
                loss.backward()
            total += loss.item()
        if world > 1:  # report the global mean loss, the quantity the update descends
            t = torch.tensor([total], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            total = t.item() / world
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % cfg.log_every == 0 or step == stop - 1:
            hist.steps.append(step)
            hist.loss.append(total)
            hist.lr.append(lr)
            bar.set_postfix(loss=f"{total:.4f}")
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            run_eval(done)
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
            checkpoint(done)
    hist.seconds += time.perf_counter() - began
    if stop == cfg.steps and (not hist.evals or hist.evals[-1]["step"] != cfg.steps):
        run_eval(cfg.steps)
    checkpoint(stop)
    return hist


@torch.no_grad()
def estimate_loss(model, get_batch, n_batches: int, loss_fn=default_loss) -> float:
    """Mean loss over `n_batches` batches ``get_batch(0..n-1)`` (use a fixed-seed batcher for comparable numbers)."""
    was = model.training
    model.eval()
    losses = [loss_fn(model, get_batch(i)).item() for i in range(n_batches)]
    model.train(was)
    return sum(losses) / len(losses)


@torch.no_grad()
def loss_per_position(model, x: torch.Tensor, y: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Cross-entropy at each position, averaged over the rows of (B, T) inputs `x` and targets `y`: a (T,)
    tensor on the CPU. Rows are run `chunk` at a time to bound memory (default: all at once)."""
    was = model.training
    model.eval()
    chunk = chunk or len(x)
    total = torch.zeros(x.shape[1], device=x.device)
    for b in range(0, len(x), chunk):
        logits, _ = model(x[b:b + chunk])
        total += torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), y[b:b + chunk],
                                                   reduction="none").sum(0)
    model.train(was)
    return (total / len(x)).cpu()
