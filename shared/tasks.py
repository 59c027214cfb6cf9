"""Synthetic tasks whose right answers are known exactly, so a chapter can measure what a model learned.

* `sequence_task` -- copy, reverse or sort a random sequence, optionally through a fixed symbol mapping
  (the "translation" toy of the attention chapter).
* `arithmetic` / `check_arithmetic` -- "123+45=" style problems with a verifier.
* `kv_recall` -- associative recall: a list of key/value pairs, then a query key; answer its value.
* `preference_pairs` -- toy preference data: the same prompt with a preferred and a rejected answer.
* `pig_latin` -- a deterministic rewrite of English text in the same characters: a new "domain" for
  fine-tuning a model trained on the original text.
"""
from __future__ import annotations

import random
import re

import torch


def sequence_task(kind: str, n: int, length: int, n_symbols: int, generator: torch.Generator | None = None,
                  mapping: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` source sequences of `length` symbols in [0, n_symbols) and their targets.

    kind: ``copy`` (target = source), ``reverse`` or ``sort``. If `mapping` (a permutation of the symbols) is
    given, each target symbol s becomes mapping[s]: reversal + mapping is a tiny "translation" task whose every
    output token depends on a distant input token."""
    src = torch.randint(n_symbols, (n, length), generator=generator)
    if kind == "copy":
        tgt = src.clone()
    elif kind == "reverse":
        tgt = src.flip(1)
    elif kind == "sort":
        tgt = src.sort(dim=1).values
    else:
        raise ValueError(f"kind must be copy, reverse or sort, got {kind!r}")
    if mapping is not None:
        if sorted(mapping.tolist()) != list(range(n_symbols)):
            raise ValueError("mapping must be a permutation of range(n_symbols)")
        tgt = mapping[tgt]
    return src, tgt


def arithmetic(n: int, n_digits: int = 3, ops: str = "+-", seed: int = 0) -> list[tuple[str, str]]:
    """`n` (prompt, answer) pairs such as ("123+45=", "168"); operands have 1..n_digits digits."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = (rng.randint(0, 10 ** rng.randint(1, n_digits) - 1) for _ in range(2))
        op = rng.choice(ops)
        out.append((f"{a}{op}{b}=", str(_apply(a, op, b))))
    return out


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


def check_arithmetic(prompt: str, answer: str) -> bool:
    """True if `answer` (leading/trailing spaces ignored) is the value of the expression in `prompt`."""
    expr = prompt.rstrip("=")
    for op in "+-*":
        left, sep, right = expr[1:].partition(op)  # skip a leading sign
        if sep:
            a, b = int(expr[0] + left), int(right)
            try:
                return int(answer.strip()) == _apply(a, op, b)
            except ValueError:
                return False
    raise ValueError(f"no operator in prompt {prompt!r}")


def kv_recall(n: int, n_pairs: int, n_keys: int, n_values: int, generator: torch.Generator | None = None):
    """Associative recall. Returns (tokens, answer): tokens = k1 v1 k2 v2 ... kP vP q with distinct keys, the
    query q one of them, answer its value. Keys use ids [0, n_keys), values [n_keys, n_keys + n_values)."""
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs={n_pairs} needs at least that many keys, got n_keys={n_keys}")
    keys = torch.rand(n, n_keys, generator=generator).argsort(dim=1)[:, :n_pairs]
    values = n_keys + torch.randint(n_values, (n, n_pairs), generator=generator)
    pick = torch.randint(n_pairs, (n, 1), generator=generator)
    tokens = torch.stack([keys, values], dim=2).reshape(n, 2 * n_pairs)
    query = keys.gather(1, pick)
    return torch.cat([tokens, query], dim=1), values.gather(1, pick).squeeze(1)


def preference_pairs(n: int, n_digits: int = 2, seed: int = 0) -> list[dict]:
    """Toy preference data: {"prompt", "chosen", "rejected"}; the chosen answer is right, the rejected one is
    off by 1-9 (a labeler who checks the arithmetic prefers the right answer)."""
    rng = random.Random(seed)
    out = []
    for prompt, answer in arithmetic(n, n_digits, "+-", seed):
        wrong = int(answer) + rng.choice([-1, 1]) * rng.randint(1, 9)
        out.append({"prompt": prompt, "chosen": answer, "rejected": str(wrong)})
    return out


_VOWELS = set("aeiouAEIOU")


def _pig_word(word: str) -> str:
    if word[0] in _VOWELS:
        out = word + "way"
    else:
        i = next((k for k, ch in enumerate(word) if ch in _VOWELS or (k > 0 and ch in "yY")), len(word))
        out = word[i:] + word[:i] + "ay"
    if word.isupper() and len(word) > 1:
        return out.upper()
    if word[0].isupper():
        return out[0].upper() + out[1:].lower()
    return out.lower()


def pig_latin(text: str) -> str:
    """Pig Latin, word by word: a word starting with a vowel gets "way" appended ("apple" -> "appleway"); otherwise
    its leading consonants move to the end, followed by "ay" ("string" -> "ingstray"; "y" after the first letter
    counts as a vowel: "rhythm" -> "ythmrhay"). Capitalised words stay capitalised ("Romeo" -> "Omeoray"),
    all-caps words stay all-caps ("KING" -> "INGKAY"); everything that is not a letter is kept as it is, so the
    output uses only characters of the input and a char tokenizer of the original text covers it."""
    return re.sub(r"[A-Za-z]+", lambda m: _pig_word(m.group()), text)
