"""paperbook's shared library: the pieces every chapter stands on.

Modules: `env` (scale, seed, device), `claims` (assert a paper's claim), `data` (downloads, tiny-shakespeare,
batches), `tokenizers` (char, GPT-2 BPE, BPE trainer), `model` (GPT-2), `train` (the training loop), `tasks`
(synthetic tasks), `zoo` (cached base models), `plot`.
"""
import warnings

# tqdm.auto (imported by transformers and huggingface_hub) warns that ipywidgets is missing, and the warning
# prints this machine's install path into notebook outputs. The course uses plain text progress bars.
warnings.filterwarnings("ignore", message="IProgress not found")

from . import data, env, model, plot, tasks, tokenizers, train, zoo  # noqa: E402
from .claims import claim  # noqa: E402
from .env import device, pick, scale, seed_everything  # noqa: E402
from .model import GPT, GPTConfig, KVCache, generate  # noqa: E402

__all__ = ["claim", "data", "device", "env", "generate", "GPT", "GPTConfig", "KVCache", "model", "pick", "plot",
           "scale", "seed_everything", "tasks", "tokenizers", "train", "zoo"]
