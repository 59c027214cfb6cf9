"""shared.model: GPT-2 equivalence with Hugging Face, KV cache, sampling, weight loading."""
import pytest
import torch

from shared.model import GPT, GPTConfig, KVCache, generate, sample_next

transformers = pytest.importorskip("transformers", reason="transformers is in requirements.txt; install it")

CFG = GPTConfig(vocab_size=101, block_size=32, n_layer=2, n_head=4, n_embd=64)


def hf_model(seed=0):
    torch.manual_seed(seed)
    hc = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=101, n_positions=32,
                                 bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(hc).eval()


def test_same_logits_as_huggingface_gpt2():
    hf = hf_model()
    ours = GPT(CFG).eval().load_hf_state_dict(hf.state_dict())
    x = torch.randint(101, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (hf(x).logits - ours(x)[0]).abs().max().item()
    assert diff < 1e-4
    # and the loss matches HF's shifted cross-entropy
    with torch.no_grad():
        hf_loss = hf(x, labels=x).loss
        our_loss = ours(x[:, :-1], x[:, 1:])[1]
    assert abs(hf_loss.item() - our_loss.item()) < 1e-5


def test_from_pretrained_reads_safetensors(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    hf = hf_model(3)
    # the hub's model.safetensors has no "transformer." prefix and no lm_head (it is tied)
    sd = {k.removeprefix("transformer."): v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    save_file(sd, tmp_path / "model.safetensors")
    monkeypatch.setitem(__import__("shared.model").model.PRESETS, "test-tiny",
                        dict(vocab_size=101, block_size=32, n_layer=2, n_head=4, n_embd=64))
    ours = GPT.from_pretrained("test-tiny", path=tmp_path / "model.safetensors").eval()
    x = torch.randint(101, (2, 16))
    with torch.no_grad():
        assert (hf(x).logits - ours(x)[0]).abs().max() < 1e-4
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)  # read at import time, so patch the constant
    with pytest.raises(FileNotFoundError, match="huggingface.co/openai-community/test-tiny"):
        GPT.from_pretrained("test-tiny")
    with pytest.raises(KeyError, match="lacks"):
        GPT(CFG).load_hf_state_dict({k: v for k, v in sd.items() if "ln_f" not in k})


def test_gpt2_init_and_tying():
    cfg = GPTConfig(vocab_size=500, block_size=64, n_layer=8, n_head=4, n_embd=256)
    m = GPT(cfg)
    assert m.lm_head.weight is m.transformer.wte.weight
    std = m.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / (2 * 8) ** 0.5) < 1e-3
    assert abs(m.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 1e-3
    assert GPT(GPTConfig.preset("gpt2")).num_params() == 124439808 - 1024 * 768  # the published 124M


def test_cache_equals_full_recompute():
    torch.manual_seed(0)
    m = GPT(CFG).eval()
    x = torch.randint(101, (2, 20))
    full, _ = m(x)
    cache = KVCache(CFG, 2, 20)
    # prefill 7 tokens, then a chunk of 5 (needs the offset mask), then one at a time
    parts = [m(x[:, :7], cache=cache)[0], m(x[:, 7:12], cache=cache)[0]]
    parts += [m(x[:, i:i + 1], cache=cache)[0] for i in range(12, 20)]
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
    with pytest.raises(ValueError, match="full"):
        m(x[:, :1], cache=cache)


@pytest.mark.parametrize("kw", [dict(temperature=0), dict(temperature=1.0, top_k=7), dict(temperature=0.8, top_p=0.9)])
def test_cached_generation_equals_uncached(kw):
    torch.manual_seed(0)
    m = GPT(CFG)
    prompt = torch.randint(101, (3, 4))
    a = generate(m, prompt, 25, generator=torch.Generator().manual_seed(1), **kw)
    b = generate(m, prompt, 25, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
    assert a.shape == (3, 29) and torch.equal(a, b)
    assert m.training  # generate restores the mode it found
    longer = generate(m, prompt, 40, generator=torch.Generator().manual_seed(1), **kw)  # beyond block_size
    assert longer.shape == (3, 44)


def test_sampling_filters():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    assert sample_next(logits, 0).item() == 0
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {0, 1}
    p = logits.softmax(-1)[0]  # p0 = 0.64, p0 + p1 = 0.88
    draws = {sample_next(logits, 1.0, top_p=0.5, generator=g).item() for _ in range(100)}
    assert draws == {0} and p[0] > 0.5
    draws = {sample_next(logits, 1.0, top_p=0.8, generator=g).item() for _ in range(300)}
    assert draws == {0, 1}
