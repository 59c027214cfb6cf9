"""shared.tokenizers: char, GPT-2 BPE, the BPE trainer."""
from collections import Counter

import pytest
import regex

from shared import data
from shared.tokenizers import GPT2_PATTERN, CharTokenizer, bpe_merges, gpt2_encoding, train_bpe


def test_char_tokenizer():
    tok = CharTokenizer("hello world")
    assert tok.vocab_size == 8 and tok.decode(tok.encode("low hel")) == "low hel"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("z")


def test_gpt2_encoding_matches_known_ids():
    enc = gpt2_encoding()
    assert enc.n_vocab == 50257
    assert enc.encode("Hello world") == [15496, 995]  # GPT-2's ids for these words
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]
    text = data.tiny_shakespeare()[:5000]
    assert enc.decode(enc.encode(text)) == text


def naive_merges(text, n):
    """Reference BPE: recount every pair after every merge (slow, obviously right)."""
    words = Counter(tuple(bytes([b]) for b in w.encode()) for w in regex.findall(GPT2_PATTERN, text))
    merges = []
    for _ in range(n):
        pairs = Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], tuple(-x for x in kv[0][0] + kv[0][1]) + (1,)))
        if best[1] < 2:
            break
        a, b = best[0]
        merges.append((a, b))
        new = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] += c
        words = new
    return merges


def test_incremental_bpe_equals_naive():
    text = data.tiny_shakespeare()[:20000]
    assert bpe_merges(text, 150) == naive_merges(text, 150)


def test_trained_bpe_roundtrip_and_compression():
    text = data.tiny_shakespeare()
    enc = train_bpe(text[:200000], 300)
    assert enc.n_vocab == 256 + 300 + 1
    held = text[-20000:]
    ids = enc.encode(held)
    assert enc.decode(ids) == held
    assert len(held) / len(ids) > 1.8  # merges compress unseen text
    assert bpe_merges("abab", 10) == [(b"a", b"b")]  # stops when no pair occurs twice
