"""shared.model options used by later chapters: MQA/GQA, positions (sinusoidal, RoPE, ALiBi), RMSNorm, post-LN."""
import math

import pytest
import torch
import torch.nn.functional as F

from shared.model import (GPT, GPTConfig, KVCache, alibi_bias, alibi_slopes, apply_rope, generate, rope_tables,
                          sinusoidal_table)

BASE = dict(vocab_size=61, block_size=48, n_layer=2, n_head=8, n_embd=64)
VARIANTS = [dict(n_kv_head=1), dict(n_kv_head=2), dict(pos="rope"), dict(pos="alibi"), dict(pos="sinusoidal"),
            dict(pos="none"), dict(norm="rmsnorm"), dict(norm_first=False), dict(pos="rope", n_kv_head=2, norm="rmsnorm")]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_every_variant_caches_exactly(kw):
    torch.manual_seed(0)
    m = GPT(GPTConfig(**BASE, **kw)).eval()
    x = torch.randint(61, (2, 30))
    full = m(x)[0]
    cache = KVCache(m.cfg, 2, 30)
    parts = [m(x[:, :9], cache=cache)[0], m(x[:, 9:16], cache=cache)[0]]
    parts += [m(x[:, i:i + 1], cache=cache)[0] for i in range(16, 30)]
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
    g = lambda: torch.Generator().manual_seed(3)
    assert torch.equal(generate(m, x[:, :5], 20, top_k=10, generator=g()),
                       generate(m, x[:, :5], 20, top_k=10, generator=g(), use_cache=False))


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_query_attention_is_mha_with_shared_kv_heads(groups):
    """A GQA model equals the MHA model whose K/V heads are copies of the group's head."""
    torch.manual_seed(0)
    gqa = GPT(GPTConfig(**BASE, n_kv_head=groups)).eval()
    mha = GPT(GPTConfig(**BASE)).eval()
    sd = gqa.state_dict()
    C, hd, rep = 64, 8, 8 // groups
    for k, v in list(sd.items()):
        if k.endswith("attn.c_attn.weight") or k.endswith("attn.c_attn.bias"):
            q, kk, vv = v.split([C, groups * hd, groups * hd])
            expand = lambda t: t.reshape(groups, hd, *t.shape[1:]).repeat_interleave(rep, 0).reshape(C, *t.shape[1:])
            sd[k] = torch.cat([q, expand(kk), expand(vv)])
    mha.load_state_dict(sd)
    x = torch.randint(61, (2, 20))
    assert (gqa(x)[0] - mha(x)[0]).abs().max() < 1e-5
    cache = KVCache(gqa.cfg, 2, 20)
    assert cache.k.shape[2] == groups  # the cache holds only the K/V heads: n_head / groups times smaller


def test_rope_rotation():
    cos, sin = rope_tables(40, 16)
    x = torch.randn(3, 40, 16, dtype=torch.float64)
    rot = apply_rope(x, cos.double(), sin.double())
    # the same rotation as multiplying complex numbers (x_i + i x_{i+8}) by e^{i p theta_i}
    angles = torch.arange(40, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    z = torch.complex(x[..., :8], x[..., 8:]) * torch.polar(torch.ones_like(angles), angles)
    assert (torch.cat([z.real, z.imag], -1) - rot).abs().max() < 1e-6
    assert torch.allclose(rot.norm(dim=-1), x.norm(dim=-1))  # rotations keep lengths
    # q_m . k_n depends only on m - n
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    qs = apply_rope(q.expand(40, 16), cos.double(), sin.double())
    ks = apply_rope(k.expand(40, 16), cos.double(), sin.double())
    s = qs @ ks.T
    assert abs(s[10, 3] - s[30, 23]) < 1e-6 and abs(s[5, 5] - s[39, 39]) < 1e-6  # float32 tables


def test_alibi():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert len(alibi_slopes(12)) == 12
    bias = alibi_bias(alibi_slopes(4), 2, 3)
    assert bias.shape == (4, 3, 5) and bias[0, 0, 3] == float("-inf") and bias[0, 0, 0] == -0.25 * 2
    # the model's attention equals an explicit softmax(QK^T/sqrt(d) + bias) V
    torch.manual_seed(0)
    m = GPT(GPTConfig(**{**BASE, "n_layer": 1, "pos": "alibi"})).eval()
    att, x = m.transformer.h[0].attn, torch.randn(2, 12, 64)
    q, k, v = (t.view(2, 12, 8, 8).transpose(1, 2) for t in att.c_attn(x).split(64, dim=2))
    w = (q @ k.transpose(-1, -2) / math.sqrt(8) + alibi_bias(alibi_slopes(8), 0, 12)).softmax(-1)
    ref = att.c_proj((w @ v).transpose(1, 2).reshape(2, 12, 64))
    assert (att(x, bias=alibi_bias(m.alibi_slopes, 0, 12)) - ref).abs().max() < 1e-5


def test_sinusoidal_table():
    t = sinusoidal_table(50, 16)
    assert t[7, 4] == pytest.approx(math.sin(7 / 10000 ** (4 / 16)), abs=1e-6)
    assert t[7, 5] == pytest.approx(math.cos(7 / 10000 ** (4 / 16)), abs=1e-6)
    m = GPT(GPTConfig(**{**BASE, "pos": "sinusoidal"}))  # balanced against the 0.02-std token embeddings
    assert torch.allclose(m.pos_table, sinusoidal_table(48, 64) / 8)


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_equals_torch_encoder_layer(norm_first):
    """Pre-LN and post-LN blocks equal nn.TransformerEncoderLayer(norm_first=...) with a causal mask."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(**BASE, norm_first=norm_first)).eval()
    b = m.transformer.h[0]
    ref = torch.nn.TransformerEncoderLayer(64, 8, 256, dropout=0.0, activation=lambda t: F.gelu(t, approximate="tanh"),
                                           batch_first=True, norm_first=norm_first).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(b.attn.c_attn.weight)
        ref.self_attn.in_proj_bias.copy_(b.attn.c_attn.bias)
        ref.self_attn.out_proj.weight.copy_(b.attn.c_proj.weight)
        ref.self_attn.out_proj.bias.copy_(b.attn.c_proj.bias)
        for mine, theirs in [(b.mlp.c_fc, ref.linear1), (b.mlp.c_proj, ref.linear2), (b.ln_1, ref.norm1), (b.ln_2, ref.norm2)]:
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    x = torch.randn(2, 10, 64)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(10)
    assert (b(x) - ref(x, src_mask=mask, is_causal=True)).abs().max() < 1e-5
    assert isinstance(m.transformer.ln_f, torch.nn.Identity) != norm_first


def test_config_validation_and_hf_guard():
    with pytest.raises(ValueError, match="multiple"):
        GPTConfig(**BASE, n_kv_head=3)
    with pytest.raises(ValueError, match="pos"):
        GPTConfig(**BASE, pos="relative")
    with pytest.raises(ValueError, match="GPT-2 architecture"):
        GPT(GPTConfig(**BASE, pos="rope")).load_hf_state_dict({})
    m = GPT(GPTConfig(**{**BASE, "pos": "rope", "block_size": 16}))
    longer = GPT(GPTConfig(**{**BASE, "pos": "rope", "block_size": 64}))
    longer.load_state_dict(m.state_dict())  # position tables are not saved: extend the context freely
    assert "wpe" not in m.transformer and m.num_params() == m.num_params(non_embedding=False)


def test_with_block_size_and_loss_per_position():
    from shared.train import loss_per_position
    torch.manual_seed(0)
    m = GPT(GPTConfig(**{**BASE, "pos": "alibi", "block_size": 16})).eval()
    longer = m.with_block_size(40)
    x = torch.randint(61, (5, 40))
    assert longer.cfg.block_size == 40 and torch.equal(longer(x[:, :16])[0], m(x[:, :16])[0])
    per = loss_per_position(longer, x[:, :-1], x[:, 1:], chunk=2)
    full = torch.nn.functional.cross_entropy(longer(x[:, :-1])[0].transpose(1, 2), x[:, 1:], reduction="none")
    assert per.shape == (39,) and torch.allclose(per, full.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="learned"):
        GPT(GPTConfig(**BASE)).with_block_size(100)


def test_deep_mlp():
    from shared.model import deep_mlp
    torch.manual_seed(0)
    plain = deep_mlp(64, 32, 3, 10)
    torch.manual_seed(0)
    normed = deep_mlp(64, 32, 3, 10, norm=torch.nn.LayerNorm)
    assert [type(m).__name__ for m in normed] == ["Linear", "LayerNorm", "ReLU"] * 3 + ["Linear"]
    lin_plain = [m for m in plain if isinstance(m, torch.nn.Linear)]
    lin_normed = [m for m in normed if isinstance(m, torch.nn.Linear)]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(lin_plain, lin_normed))  # same start
    assert normed(torch.randn(5, 64)).shape == (5, 10)
    assert len(deep_mlp(4, 8, 0, 2)) == 1


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi"])
def test_left_padding_is_invisible(pos):
    """A left-padded row computes what it computes alone: logits, cached decoding and sampled tokens."""
    from shared.model import generate
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=4, n_embd=16, pos=pos)
    model = GPT(cfg).eval()
    rows = [torch.randint(13, (n,)) for n in (5, 9, 7)]
    width = max(len(r) for r in rows)
    pad = torch.tensor([width - len(r) for r in rows])
    idx = torch.stack([torch.cat([torch.full((width - len(r),), 3), r]) for r in rows])
    with torch.no_grad():
        logits = model(idx, pad=pad)[0]
        for i, r in enumerate(rows):
            alone = model(r[None])[0][0]
            assert (logits[i, pad[i]:] - alone).abs().max() < 1e-5
    greedy = generate(model, idx, 8, temperature=0, pad=pad)
    uncached = generate(model, idx, 8, temperature=0, pad=pad, use_cache=False)
    assert torch.equal(greedy, uncached)
    for i, r in enumerate(rows):
        assert torch.equal(greedy[i, width:], generate(model, r[None], 8, temperature=0)[0, len(r):])


def test_generate_stops_at_eos():
    from shared.model import generate
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=64, n_layer=1, n_head=1, n_embd=8)).eval()
    idx = torch.zeros(4, 3, dtype=torch.long)
    g = torch.Generator().manual_seed(1)
    out = generate(model, idx, 50, eos=2, generator=g)
    new = out[:, 3:]
    assert (new == 2).any(dim=1).all() and out.shape[1] < 53  # every row has its EOS, and it stopped early
    assert not (new[:, :-1] == 2).any(dim=1).all()  # ...as soon as the last row got there
    g = torch.Generator().manual_seed(1)
    assert torch.equal(generate(model, idx, 50, eos=2, generator=g, use_cache=False), out)
