"""Trains a tiny GPT for a few steps; run under torchrun by tests/test_lib_train.py. Writes the final
parameters and losses (rank 0) to the path in argv[1]."""
import sys

import torch

from shared.model import GPT, GPTConfig
from shared.train import TrainConfig, train


def make():
    torch.manual_seed(0)  # float64, so that the comparison is not blurred by summation order
    return GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)).double()


def get_batch(step):
    g = torch.Generator().manual_seed(step)
    x = torch.randint(17, (8, 16), generator=g)
    return x, (x * 3 + 1) % 17  # a learnable map


def run(accum, out=None):
    model = make()
    hist = train(model, get_batch, TrainConfig(steps=6, lr=1e-2, warmup=2, accum=accum, progress=False))
    result = {"loss": hist.loss, "params": [p.detach().clone() for p in model.parameters()]}
    if out is not None and (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0):
        torch.save(result, out)
    return result


if __name__ == "__main__":
    run(accum=1, out=sys.argv[1])
    torch.distributed.destroy_process_group()
