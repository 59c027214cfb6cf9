"""Run settings every chapter shares: the scale, the seed and the device.

`PAPERBOOK_SCALE` picks how big a chapter's experiment is:

* ``smoke`` -- a few seconds, used by CI to prove the notebook runs; claims are reported, not asserted.
* ``cpu``   -- the default without a GPU; a few minutes on a 2-core laptop; claims are asserted.
* ``gpu``   -- the default when CUDA is available; the paper's effect at a larger size.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

SCALES = ("smoke", "cpu", "gpu")
DEFAULT_SEED = 1337


def scale() -> str:
    """The current scale: `PAPERBOOK_SCALE` if set, else ``gpu`` with CUDA and ``cpu`` without."""
    value = os.environ.get("PAPERBOOK_SCALE", "").strip().lower()
    if not value:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if value not in SCALES:
        raise ValueError(f"PAPERBOOK_SCALE={value!r} is not one of {', '.join(SCALES)}")
    return value


def pick(smoke, cpu, gpu=None):
    """Choose a setting by scale: ``steps = pick(smoke=20, cpu=1500, gpu=5000)``. ``gpu`` defaults to ``cpu``."""
    s = scale()
    if s == "smoke":
        return smoke
    if s == "gpu" and gpu is not None:
        return gpu
    return cpu


def seed_everything(seed: int | None = None) -> int:
    """Seed Python, NumPy and torch. `PAPERBOOK_SEED` overrides `seed`; returns the seed used."""
    env = os.environ.get("PAPERBOOK_SEED", "").strip()
    if env:
        seed = int(env)
    elif seed is None:
        seed = DEFAULT_SEED
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def device(prefer: str | None = None) -> torch.device:
    """The best available device: `prefer`, else `PAPERBOOK_DEVICE`, else cuda, mps, cpu in that order."""
    name = prefer or os.environ.get("PAPERBOOK_DEVICE", "").strip()
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe() -> str:
    """One line about where this runs, for a chapter's scale cell."""
    dev = device()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    return f"scale={scale()}  device={dev} ({where})  torch={torch.__version__}"
