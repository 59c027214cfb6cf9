"""CalcChat: a toy assistant whose true preference is known exactly, the common ground of the alignment chapters.

A user asks for a sum of 3-5 one-digit numbers; the assistant answers after the prompt's "A:":

    Q:3+8+5+9 A:25                                   direct
    Q:3+8+5+9 A:{3+8=11;11+5=16;16+9=25}25           worked
    Q:3+8+5+9 A:{3+8=11;11+5=6;6+9=15}15|3+8+5+9=25  worked, then a careful recheck (the final number counts)
    Q:3+8+5+9 A:25 duh                               rude
    P:Q:3+8+5+9 A:25                                 "P:" = polite persona: its answers are never rude

The answer's *final number* is its last number. The **gold reward** (the hidden human preference) is
``1[final == true sum] - 0.5 * 1[rude]``; simulated labelers prefer one answer to another with Bradley-Terry
probability ``sigmoid((r1 - r2) / 0.2)``.

The human demonstrations are fallible "crowd" answers: 70% direct, computed in the head, each carry dropped with
probability 0.5 (3+8 -> 1 instead of 11); 30% worked, each step's carry dropped with probability 0.1 (the error
propagates), 30% of the worked ones ending with a careful recheck; a quarter of all answers rude. A supervised
model imitates all of it, so there is room to improve on correctness (work it out, recheck) and on manners.

Every text is one line; a document is ``prompt + response + "\\n"``; ``"\\n"`` also starts a row of documents, so
the model sees "\\n" + prompt at sampling time and "\\n" ends its answer (EOS).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch

from .tokenizers import CharTokenizer

EOS = "\n"
ALPHABET = EOS + " +:;={}|0123456789APQdghu"  # every character CalcChat uses: 26 tokens
RUDE = (" duh", " ugh")
BT_TEMPERATURE = 0.2

# the crowd: how the fallible human demonstrators answer
P_PERSONA = 0.2  # prompts that carry the polite persona tag
P_RUDE = 0.3125  # rude answers when there is no persona: 0.8 * 0.3125 = a quarter of all answers
P_WORKED = 0.3
P_RECHECK = 0.3  # of the worked answers
P_DROP_DIRECT = 0.5  # each carry, mental arithmetic
P_DROP_WORKED = 0.1  # each carry, written steps


def tokenizer() -> CharTokenizer:
    return CharTokenizer(ALPHABET)


def make_prompt(rng: random.Random, persona: bool | None = None) -> str:
    """A random prompt such as "Q:3+8+5+9 A:" (3-5 operands 1-9), with the "P:" tag w.p. P_PERSONA."""
    ops = [rng.randint(1, 9) for _ in range(rng.randint(3, 5))]
    if persona is None:
        persona = rng.random() < P_PERSONA
    return ("P:" if persona else "") + "Q:" + "+".join(map(str, ops)) + " A:"


def prompts(n: int, seed: int) -> list[str]:
    """`n` random prompts; a fixed seed gives a fixed set (held-out evaluation prompts use their own seed)."""
    rng = random.Random(seed)
    return [make_prompt(rng) for _ in range(n)]


def operands(prompt: str) -> list[int]:
    m = re.search(r"Q:([0-9+]+) A:$", prompt)
    if not m:
        raise ValueError(f"not a CalcChat prompt: {prompt!r} (expected e.g. 'Q:3+8+5 A:')")
    return [int(t) for t in m.group(1).split("+")]


def _add(s: int, d: int, p_drop: float, rng: random.Random) -> int:
    """s + d, except that a carry into the tens is forgotten with probability p_drop."""
    carry = s % 10 + d >= 10
    return s + d - 10 if carry and rng.random() < p_drop else s + d


def answer(prompt: str, rng: random.Random, style: str, rude: bool = False, p_drop: float | None = None) -> str:
    """One response to `prompt`: style "direct", "worked" or "worked+recheck"; carries dropped w.p. p_drop
    (default: the crowd's rate for the style; 0 for an expert)."""
    ops = operands(prompt)
    if p_drop is None:
        p_drop = P_DROP_DIRECT if style == "direct" else P_DROP_WORKED
    s, steps = ops[0], []
    for d in ops[1:]:
        new = _add(s, d, p_drop, rng)
        steps.append(f"{s}+{d}={new}")
        s = new
    if style == "direct":
        body = str(s)
    elif style in ("worked", "worked+recheck"):
        body = "{" + ";".join(steps) + "}" + str(s)
        if style == "worked+recheck":
            body += "|" + "+".join(map(str, ops)) + "=" + str(sum(ops))
    else:
        raise ValueError(f"style must be direct, worked or worked+recheck, got {style!r}")
    return body + (rng.choice(RUDE) if rude else "")


def crowd_answer(prompt: str, rng: random.Random) -> str:
    """A response as the fallible crowd writes it (the mix described at the top of this module)."""
    style = "direct"
    if rng.random() < P_WORKED:
        style = "worked+recheck" if rng.random() < P_RECHECK else "worked"
    rude = not prompt.startswith("P:") and rng.random() < P_RUDE
    return answer(prompt, rng, style, rude)


def expert_answer(prompt: str, rng: random.Random) -> str:
    """A clean demonstration: worked, no slips, polite."""
    return answer(prompt, rng, "worked", rude=False, p_drop=0.0)


def sft_text(n_docs: int, seed: int, expert: bool = False) -> str:
    """`n_docs` demonstrations as one text: "\\n" + prompt + response, repeated, ending in "\\n"."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        p = make_prompt(rng)
        docs.append(p + (expert_answer(p, rng) if expert else crowd_answer(p, rng)))
    return EOS + EOS.join(docs) + EOS


@dataclass
class Parsed:
    final: int | None  # the answer's last number (None: no number)
    rude: bool
    worked: bool
    recheck: bool


def parse(response: str) -> Parsed:
    """Read a response (the text after "A:", with or without the trailing EOS)."""
    text = response.split(EOS, 1)[0]
    rude = any(r.strip() in text for r in RUDE)
    numbers = re.findall(r"\d+", text)
    return Parsed(final=int(numbers[-1]) if numbers else None, rude=rude, worked="{" in text, recheck="|" in text)


def gold_reward(prompt: str, response: str) -> float:
    """The hidden human preference: 1 for a correct final number, minus 0.5 for rudeness."""
    p = parse(response)
    return float(p.final == sum(operands(prompt))) - 0.5 * float(p.rude)


def bt_probability(r1: float | torch.Tensor, r2: float | torch.Tensor) -> torch.Tensor:
    """The probability that a simulated labeler prefers an answer with gold reward r1 to one with r2:
    Bradley-Terry, sigmoid((r1 - r2) / BT_TEMPERATURE); 1/2 for a tie."""
    r1, r2 = torch.as_tensor(r1, dtype=torch.float64), torch.as_tensor(r2, dtype=torch.float64)
    return torch.sigmoid((r1 - r2) / BT_TEMPERATURE)


def bt_prefers(r1: float | torch.Tensor, r2: float | torch.Tensor, generator: torch.Generator | None = None):
    """A simulated labeler's choice between answers with gold rewards r1 and r2: True (or a bool tensor) where the
    first is preferred, drawn with probability `bt_probability(r1, r2)`."""
    p = bt_probability(r1, r2)
    return torch.rand(p.shape, generator=generator, dtype=torch.float64) < p


def sft_batches(batch_size: int, block_size: int, seed: int = 0, expert: bool = False, device=None):
    """(tokenizer, train get_batch, validation get_batch) for supervised fine-tuning on demonstrations (crowd, or
    expert). A row is "\n" followed by whole documents (prompt, response, "\n") packed up to `block_size`, the
    first starting at position 0 as at sampling time. Targets of prompt characters are -1 (ignored by the loss):
    the model learns to answer, not to predict random questions. Documents are drawn fresh for every step, from
    a generator seeded by (seed, step): the batch of a step never changes. Validation uses another seed."""
    tok = tokenizer()
    eos = tok.encode(EOS)[0]

    def batcher(base_seed):
        def get_batch(step: int):
            rng = random.Random(base_seed * 1_000_003 + step)
            xs, ys = [], []
            for _ in range(batch_size):
                row, tgt = [eos], []
                while len(tgt) < block_size:
                    p = make_prompt(rng)
                    ids = tok.encode(p + (expert_answer(p, rng) if expert else crowd_answer(p, rng)) + EOS)
                    row += ids
                    tgt += [-1] * len(p) + ids[len(p):]
                xs.append(row[:block_size])
                ys.append(tgt[:block_size])
            x, y = torch.tensor(xs), torch.tensor(ys)
            return (x.to(device), y.to(device)) if device is not None else (x, y)
        return get_batch

    return tok, batcher(seed), batcher(seed + 1)


def bt_rank(rewards, generator: torch.Generator | None = None) -> list[int]:
    """A simulated labeler's ranking of K answers with these gold rewards, best first: Plackett-Luce with weights
    exp(r / BT_TEMPERATURE), the K-way model whose every pair follows the Bradley-Terry labeler above."""
    logits = torch.as_tensor(rewards, dtype=torch.float64) / BT_TEMPERATURE
    left, order = list(range(len(logits))), []
    while left:
        p = torch.softmax(logits[left], dim=0)
        pick = left[int(torch.multinomial(p, 1, generator=generator))]
        order.append(pick)
        left.remove(pick)
    return order
