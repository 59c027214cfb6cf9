"""Tokenizers: characters, GPT-2's byte-level BPE, and a trainer for your own BPE.

* `CharTokenizer` -- one id per character of a corpus (tiny-shakespeare has 65).
* `gpt2_encoding()` -- GPT-2's BPE as a ``tiktoken.Encoding``, built from the ``r50k_base.tiktoken`` ranks that
  `shared.data.fetch` downloads and checks, so it works offline once the file is cached.
* `bpe_merges` / `train_bpe` -- byte-level BPE (Sennrich et al. 2016 on bytes, as in GPT-2): repeatedly merge the
  most frequent adjacent pair. Pair counts are updated incrementally, only for the words a merge touches, which
  makes thousands of merges over tiny-shakespeare take seconds instead of minutes. The result is an ordinary
  ``tiktoken.Encoding``, so encoding is fast and behaves like any tiktoken tokenizer.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import regex
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from .data import fetch

# GPT-2's pre-tokenizer: contractions, letter runs, digit runs, other symbols, whitespace (each with one optional
# leading space). Merges never cross these pieces.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


class CharTokenizer:
    """Character-level tokenizer over a fixed alphabet (sorted, so the ids do not depend on text order)."""

    def __init__(self, text_or_chars):
        self.chars = sorted(set(text_or_chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in this tokenizer's alphabet") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def gpt2_encoding() -> tiktoken.Encoding:
    """GPT-2's tokenizer (50,257 tokens), identical to ``tiktoken.get_encoding("gpt2")``."""
    ranks = load_tiktoken_bpe(str(fetch("r50k_base.tiktoken")))
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: 50256}, explicit_n_vocab=50257)


def bpe_merges(text: str, n_merges: int, pattern: str = GPT2_PATTERN) -> list[tuple[bytes, bytes]]:
    """Learn `n_merges` byte-level BPE merges from `text`, in order. Ties go to the pair whose merged bytes sort
    first, so the result is deterministic. Stops early if no pair occurs twice."""
    # Word-frequency table: each pre-token is a tuple of symbols (bytes objects), counted once per occurrence.
    freqs = Counter(regex.findall(pattern, text))
    words = [[bytes([b]) for b in w.encode("utf-8")] for w in freqs]
    counts = list(freqs.values())
    pair_count: Counter = Counter()
    where = defaultdict(set)  # pair -> indices of words that contain it
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[a, b] += counts[i]
            where[a, b].add(i)
    merges = []
    for _ in range(n_merges):
        if not pair_count:
            break
        top = max(pair_count.values())
        if top < 2:
            break
        # among the most frequent pairs, the one whose merged bytes sort first (a plain scan: no key per pair)
        best = min((p for p, c in pair_count.items() if c == top), key=lambda p: p[0] + p[1])
        merges.append(best)
        a, b = best
        new = a + b
        for i in where.pop(best):
            w, c = words[i], counts[i]
            for p in zip(w, w[1:]):  # forget this word's old pairs...
                pair_count[p] -= c
                if pair_count[p] <= 0:
                    del pair_count[p]
            merged, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(w[j])
                    j += 1
            words[i] = merged
            for p in zip(merged, merged[1:]):  # ...and count its new ones
                pair_count[p] += c
                where[p].add(i)
    return merges


def encoding_from_merges(merges, pattern: str = GPT2_PATTERN, name: str = "paperbook-bpe",
                         special_tokens: dict[str, int] | None = None) -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` whose ranks are the 256 bytes followed by the merges in order."""
    ranks = {bytes([i]): i for i in range(256)}
    for a, b in merges:
        ranks.setdefault(a + b, len(ranks))
    special = special_tokens if special_tokens is not None else {ENDOFTEXT: len(ranks)}
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)


def train_bpe(text: str, n_merges: int, pattern: str = GPT2_PATTERN, name: str = "paperbook-bpe") -> tiktoken.Encoding:
    """Train a byte-level BPE tokenizer on `text`: 256 byte tokens + `n_merges` merges + ``<|endoftext|>``."""
    return encoding_from_merges(bpe_merges(text, n_merges, pattern), pattern, name)
