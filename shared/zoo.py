"""Base models that several chapters start from, trained once per scale with a fixed seed and cached.

    zm = zoo.load("shakespeare-char")      # trains on first use (cpu scale: about a minute), then loads
    zm.model, zm.tokenizer, zm.info["val_loss"]

Language models are trained on a corpus: tiny-shakespeare (characters) or CalcChat's crowd demonstrations
(`calc-sft`, the supervised policy of the alignment chapters). `cached` is the same machinery for anything else
worth computing once (CalcChat's preference data and reward model, in `shared.rlhf`).

Models are cached in ``$PAPERBOOK_DATA/zoo/`` under a name that includes the scale and a hash of the recipe,
so changing a recipe retrains instead of loading a stale model. A file lock makes two notebooks that ask for the
same model at once train it only once: the second waits, then loads.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

import torch
from filelock import FileLock

from . import calcchat
from .data import batches, data_dir, split, tiny_shakespeare
from .env import device as default_device
from .env import scale as current_scale
from .model import GPT, GPTConfig
from .tokenizers import CharTokenizer
from .train import TrainConfig, estimate_loss, save_checkpoint, train


@dataclass(frozen=True)
class Recipe:
    """How to train one zoo language model on a corpus of `CORPORA` (character level)."""
    description: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int = 128
    dropout: float = 0.0
    batch_size: int = 32
    lr: float = 3e-3
    steps: dict = field(default_factory=lambda: {"smoke": 30, "cpu": 600, "gpu": 5000})
    seed: int = 1337
    corpus: str = "shakespeare"

    def key(self, scale: str) -> str:
        blob = json.dumps({**asdict(self), "scale": scale}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _sweep(n_layer, n_embd, n_head):
    # Batch 8 x 128 for 3,000 steps = 3.1M tokens (about 3 passes over the training text). Fewer tokens leave
    # every size stuck near the bigram plateau (at 1M tokens, 250 steps of 32 x 128, all sizes end at val loss
    # 2.3-2.5); small batches and more steps get further per token. CPU cost grows with parameters x tokens:
    # the whole sweep trains in about 3.5 minutes on 2 cores (xxl alone about 70 s).
    return Recipe(f"scaling sweep member: {n_layer} layers, d={n_embd}", n_layer, n_head, n_embd, batch_size=8,
                  steps={"smoke": 20, "cpu": 3000, "gpu": 10000})


ZOO: dict[str, Recipe] = {
    "shakespeare-char": Recipe("char-level GPT, 4 layers, d=128, 8 heads, context 128 (~0.8M parameters)",
                               n_layer=4, n_head=8, n_embd=128),
    # The scaling sweep: one recipe, six widths/depths (about 4K to 340K parameters), the same token stream.
    # At cpu scale (3.1M tokens): val loss about 2.33, 2.18, 1.95, 1.89, 1.81, 1.76 from xs to xxl.
    "sweep-xs": _sweep(1, 16, 2),
    "sweep-s": _sweep(1, 24, 2),
    "sweep-m": _sweep(1, 48, 4),
    "sweep-l": _sweep(2, 64, 4),
    "sweep-xl": _sweep(3, 80, 4),
    "sweep-xxl": _sweep(3, 96, 4),
    # CalcChat's supervised policy: imitates the fallible crowd. Context 80 fits the longest answer (a worked
    # 5-operand sum with a recheck and a rude suffix) after the longest prompt. Learning to copy operands and add
    # takes many small steps rather than big batches: at 600 steps of 64 rows sampled accuracy was 0.16, at 5,000
    # steps of 16 rows (same time) 0.52 -- worked answers 0.84 right, direct ones 0.32 (the crowd's: 0.90, 0.39).
    "calc-sft": Recipe("CalcChat SFT policy: char GPT, 4 layers, d=64, 4 heads, context 80 (~0.2M parameters)",
                       n_layer=4, n_head=4, n_embd=64, block_size=80, batch_size=16, lr=3e-3,
                       steps={"smoke": 50, "cpu": 5000, "gpu": 20000}, corpus="calcchat"),
}


@dataclass
class ZooModel:
    model: GPT
    tokenizer: CharTokenizer
    info: dict


def shakespeare_char():
    """tiny-shakespeare as (tokenizer, train ids, val ids): the data every zoo model is trained on."""
    text = tiny_shakespeare()
    tok = CharTokenizer(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train_ids, val_ids = split(ids)
    return tok, train_ids, val_ids


def _shakespeare_batches(recipe: Recipe, device):
    tok, train_ids, val_ids = shakespeare_char()
    return (tok, batches(train_ids, recipe.batch_size, recipe.block_size, recipe.seed, device),
            batches(val_ids, 32, recipe.block_size, seed=0, device=device))


def _calcchat_batches(recipe: Recipe, device):
    return calcchat.sft_batches(recipe.batch_size, recipe.block_size, seed=recipe.seed, device=device)


CORPORA = {  # name -> (recipe, device) -> (tokenizer, train get_batch, validation get_batch)
    "shakespeare": _shakespeare_batches,
    "calcchat": _calcchat_batches,
}


def cached(filename: str, build, message: str | None = None):
    """``torch.load`` of ``$PAPERBOOK_DATA/zoo/<filename>``, made first by ``build(path)`` if it is missing (and
    `message` printed). A file lock makes concurrent callers build it once; the others wait, then load."""
    path = data_dir() / "zoo" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            if message:
                # (no absolute path here: it would end up in committed notebook outputs)
                print(f"zoo: {message}; cached afterwards in $PAPERBOOK_DATA/zoo")
            build(path)
        return torch.load(path, map_location="cpu", weights_only=False)


def load(name: str, scale: str | None = None, device=None, quiet: bool = False) -> ZooModel:
    """The zoo model `name` at `scale` (default: the current scale), trained now if it is not cached."""
    if name not in ZOO:
        raise KeyError(f"no zoo model {name!r}; the zoo has {sorted(ZOO)}")
    recipe, scale = ZOO[name], scale or current_scale()
    device = torch.device(device) if device is not None else default_device()
    state = cached(f"{name}-{scale}-{recipe.key(scale)}.pt", lambda path: _train(recipe, scale, path, device),
                   None if quiet else f"training {name} at scale {scale}")
    model = GPT(GPTConfig(**state["config"]))
    model.load_state_dict(state["model"])
    return ZooModel(model.to(device).eval(), CharTokenizer(state["tokenizer"]), state["info"])


def _train(recipe: Recipe, scale: str, path, device):
    tok, train_batches, val_batches = CORPORA[recipe.corpus](recipe, device)
    torch.manual_seed(recipe.seed)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=recipe.block_size, n_layer=recipe.n_layer,
                    n_head=recipe.n_head, n_embd=recipe.n_embd, dropout=recipe.dropout)
    model = GPT(cfg).to(device)
    steps = recipe.steps[scale]
    tcfg = TrainConfig(steps=steps, lr=recipe.lr, warmup=max(1, steps // 20), eval_every=max(1, steps // 10),
                       progress=False)
    hist = train(model, train_batches, tcfg,
                 evaluate=lambda m: {"val_loss": estimate_loss(m, val_batches, 4)})  # a learning curve, cheaply
    val = estimate_loss(model, val_batches, 20)
    info = {"name": path.stem, "scale": scale, "recipe": asdict(recipe), "steps": steps, "val_loss": val,
            "params": model.num_params(), "seconds": round(hist.seconds, 1),
            "train_loss": hist.loss, "evals": hist.evals, "tokens_per_step": recipe.batch_size * recipe.block_size}
    model = model.cpu()
    save_checkpoint(os.fspath(path), {"config": asdict(cfg), "model": model.state_dict(), "info": info,
                                      "tokenizer": "".join(tok.chars)})
