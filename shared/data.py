"""Data files with a sha256 check, tiny-shakespeare, the digits images, splits and batches.

Files are cached in `PAPERBOOK_DATA` (default ``~/.cache/paperbook``). A missing file is downloaded from its
canonical URL, checked against its sha256 and written atomically; offline, you get an error that names the file,
its URL and the variable to set.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import torch

FILES = {
    "tinyshakespeare.txt": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
    "r50k_base.tiktoken": (  # GPT-2's byte-level BPE ranks
        "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
}


def data_dir() -> Path:
    """The cache folder: `PAPERBOOK_DATA`, else ``~/.cache/paperbook``."""
    return Path(os.environ.get("PAPERBOOK_DATA") or Path.home() / ".cache" / "paperbook").expanduser()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, url: str | None = None, sha256: str | None = None) -> Path:
    """Path to the cached file `name`, downloading and verifying it first if needed."""
    if name in FILES:
        url, sha256 = url or FILES[name][0], sha256 or FILES[name][1]
    if url is None or sha256 is None:
        raise KeyError(f"unknown data file {name!r}: known files are {sorted(FILES)}, or pass url= and sha256=")
    path = data_dir() / name
    if path.exists():
        if sha256_of(path) == sha256:
            return path
        bad = "is corrupt (sha256 mismatch)"
    else:
        bad = "is not cached"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            payload = r.read()
    except OSError as e:
        raise FileNotFoundError(
            f"{name} {bad} in {path.parent} and could not be downloaded from {url} ({e}). "
            f"Download it yourself into that folder, or set PAPERBOOK_DATA to a folder that holds it."
        ) from e
    got = hashlib.sha256(payload).hexdigest()
    if got != sha256:
        raise ValueError(f"{name} downloaded from {url} has sha256 {got}, expected {sha256}; not saved")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return path


def tiny_shakespeare() -> str:
    """The 1.1 MB tiny-shakespeare corpus (Karpathy's char-rnn) as one string."""
    return fetch("tinyshakespeare.txt").read_text(encoding="utf-8")


def digits(test_frac: float = 0.2, seed: int = 0):
    """The 8x8 handwritten digits (1,797 images, 10 classes) that ship with scikit-learn, no download needed:
    (x_train, y_train, x_test, y_test) with pixels scaled to [0, 1], x as float32 (n, 64), y as int64.
    The split is random but fixed by `seed`."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * test_frac)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def split(data, frac: float = 0.9):
    """First `frac` for training, the rest held out (no shuffling: the held-out text is unseen prose)."""
    n = int(len(data) * frac)
    return data[:n], data[n:]


def random_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None,
                 device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of a 1-D token tensor: inputs ``x`` and next-token targets ``y``."""
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, fewer than block_size+1={block_size + 1}")
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = data[ix[:, None] + offsets]
    x, y = windows[:, :-1], windows[:, 1:]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


def batches(data: torch.Tensor, batch_size: int, block_size: int, seed: int = 0, device=None):
    """A `get_batch(step)` function for `shared.train`: the batch of a step depends only on (seed, step), so
    a resumed run or a run on several processes sees exactly the same data."""
    def get_batch(step: int):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return random_batch(data, batch_size, block_size, g, device)
    return get_batch


def epoch_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0, device=None):
    """A `get_batch(step)` for a small labelled dataset (x, y): each epoch visits every example once in a fresh
    order fixed by (seed, epoch), in ``len(x) // batch_size`` batches (the incomplete last batch is dropped, so
    every step sees the same number of examples). Step s falls in epoch ``s // (len(x) // batch_size)``."""
    per_epoch = len(x) // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the dataset ({len(x)} examples)")

    def get_batch(step: int):
        epoch, i = divmod(step, per_epoch)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx = order[i * batch_size:(i + 1) * batch_size]
        xb, yb = x[idx.to(x.device)], y[idx.to(y.device)]
        return (xb.to(device), yb.to(device)) if device is not None else (xb, yb)
    return get_batch
