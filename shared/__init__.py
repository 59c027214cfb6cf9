"""paperbook's shared library: the pieces every chapter stands on.

Modules: `env` (scale, seed, device), `claims` (assert a paper's claim), `data` (downloads, tiny-shakespeare,
batches), `tokenizers` (char, GPT-2 BPE, BPE trainer), `model` (GPT-2), `train` (the training loop), `tasks`
(synthetic tasks), `zoo` (cached base models), `plot`.
"""
from . import data, env, model, plot, tasks, tokenizers, train, zoo
from .claims import claim
from .env import device, pick, scale, seed_everything
from .model import GPT, GPTConfig, KVCache, generate

__all__ = ["claim", "data", "device", "env", "generate", "GPT", "GPTConfig", "KVCache", "model", "pick", "plot",
           "scale", "seed_everything", "tasks", "tokenizers", "train", "zoo"]
