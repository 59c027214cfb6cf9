"""A GPT-2 decoder, small enough to read in one sitting.

The defaults are GPT-2; `GPTConfig` options switch on what later chapters introduce from scratch:
grouped/multi-query attention (`n_kv_head`), positions (`pos`: learned, sinusoidal, rope, alibi, none),
RMSNorm (`norm`) and post-LN blocks (`norm_first=False`).

The parameter names follow Hugging Face's ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn.weight`` ...), so
the real GPT-2 weights load with a transpose and nothing else. Attention uses
``torch.nn.functional.scaled_dot_product_attention`` (flash/memory-efficient kernels where available);
chapters write attention out by hand and check it against this.

    cfg = GPTConfig.preset("gpt2")                      # 124M
    cfg = GPTConfig(vocab_size=65, block_size=128, n_layer=4, n_head=8, n_embd=128)
    model = GPT(cfg)
    logits, loss = model(x, y)
    out = generate(model, prompt, max_new_tokens=100, temperature=0.8, top_k=40)
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    # the four released GPT-2 sizes (vocab 50257, 1024 positions)
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    # tiny models for the cpu scale (set vocab_size/block_size to the tokenizer and task)
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, vocab_size=65, block_size=64),
    "char-small": dict(n_layer=4, n_head=8, n_embd=128, vocab_size=65, block_size=128),
}


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # the longest sequence the position table covers
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    layer_norm_eps: float = 1e-5
    # Options that later chapters switch on; the defaults are GPT-2.
    n_kv_head: int | None = None  # key/value heads: None = n_head (multi-head), 1 = multi-query, else grouped
    pos: str = "learned"  # position information: learned | sinusoidal | rope | alibi | none
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_first: bool = True  # pre-LN (GPT-2); False = post-LN, as in the original Transformer
    rope_base: float = 10000.0

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.kv_heads}")
        if self.pos not in POSITIONS:
            raise ValueError(f"pos={self.pos!r} is not one of {POSITIONS}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm={self.norm!r} is not layernorm or rmsnorm")
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(f"rope needs an even head_dim, got {self.head_dim}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes) -> "GPTConfig":
        return replace(self, **changes)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def is_gpt2(self) -> bool:
        """True when the architecture is exactly GPT-2's (so Hugging Face GPT-2 weights fit)."""
        return (self.kv_heads == self.n_head and self.pos == "learned" and self.norm == "layernorm"
                and self.norm_first and self.bias)


POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """The Transformer's fixed positions: PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(same)."""
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(n_pos, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def rope_tables(n_pos: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the RoPE angles p * theta_i, theta_i = base^(-2i/head_dim), each (n_pos, head_dim / 2)."""
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(n_pos, dtype=torch.float64)[:, None] * theta  # float64: p * theta is large for far p
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs of x (..., T, head_dim) by their position's angles. Pairs are (i, i + head_dim/2),
    the "rotate-half" layout of GPT-NeoX and Hugging Face LLaMA (a fixed permutation of RoFormer's adjacent pairs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... (for a power-of-two n; otherwise
    the paper's recipe: the slopes of the nearest power of two, then every other slope of twice that)."""
    def geometric(n):
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]
    p = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(p) if p == n_head else geometric(p) + geometric(2 * p)[0::2][: n_head - p]
    return torch.tensor(slopes)


def alibi_bias(slopes: torch.Tensor, start: int, T: int, device=None) -> torch.Tensor:
    """(heads, T, start + T) additive attention bias: -slope * distance to each earlier key, -inf for later keys."""
    q = torch.arange(start, start + T, device=device)[:, None]
    k = torch.arange(start + T, device=device)[None, :]
    dist = (q - k).float()
    bias = -slopes.to(device)[:, None, None] * dist
    return bias.masked_fill(dist < 0, float("-inf"))


def padding_bias(pad: torch.Tensor, start: int, T: int) -> torch.Tensor:
    """(B, 1, T, start + T) additive attention bias for left-padded rows: 0 where a query may look (its own
    row's real tokens up to itself), -inf elsewhere. A padding query sees only itself, so no row is all -inf."""
    q = torch.arange(start, start + T, device=pad.device)[:, None]
    k = torch.arange(start + T, device=pad.device)[None, :]
    allowed = ((k <= q) & (k >= pad[:, None, None])) | (k == q)
    return torch.zeros(allowed.shape, device=pad.device).masked_fill(~allowed, float("-inf"))[:, None]


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)


class KVCache:
    """Keys and values of the tokens seen so far, for every layer, in preallocated tensors.

    ``k[l]`` has shape (batch, heads, max_len, head_dim); ``pos`` tokens are filled. Each new token's keys and
    values are written in place, so a decoding step costs one token's work instead of the whole prefix's.
    """

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        if max_len > cfg.block_size:
            raise ValueError(f"max_len={max_len} exceeds the model's block_size={cfg.block_size}")
        shape = (cfg.n_layer, batch_size, cfg.kv_heads, max_len, cfg.head_dim)  # only the K/V heads
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this step's (B, H, T, D) keys/values; return all keys/values so far (views, not copies)."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} tokens > max_len={self.max_len}")
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        kv_dim = cfg.kv_heads * cfg.head_dim
        self.sizes = [cfg.n_embd, kv_dim, kv_dim]
        self.c_attn = nn.Linear(cfg.n_embd, sum(self.sizes), bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, rope=None, bias=None):
        """`rope`: (cos, sin) of the new tokens' positions; `bias`: an additive attention bias, (heads, T, keys)
        or (B, heads or 1, T, keys), that already masks future keys (ALiBi, left padding)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.sizes, dim=2)
        # (B, T, heads * head_dim) -> (B, heads, T, head_dim); K and V may have fewer heads than Q (MQA/GQA)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.update(layer, k, v)
        if bias is not None:
            mask, causal = bias.to(q.dtype), False
        elif past == 0:  # plain causal attention over the T new tokens
            mask, causal = None, True
        elif T == 1:  # one new token sees every cached one
            mask, causal = None, False
        else:  # several new tokens after a cached prefix: token i sees the prefix and new tokens <= i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal,
                                           enable_gqa=self.n_kv_head != self.n_head)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Residual block. Pre-LN (GPT-2): x + attn(LN(x)), then x + mlp(LN(x)).
    Post-LN (the original Transformer): LN(x + attn(x)), then LN(x + mlp(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.ln_1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, cache=None, layer=0, rope=None, bias=None):
        if self.norm_first:
            x = x + self.attn(self.ln_1(x), cache, layer, rope, bias)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, cache, layer, rope, bias))
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        parts = dict(wte=nn.Embedding(cfg.vocab_size, cfg.n_embd))
        if cfg.pos == "learned":
            parts["wpe"] = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.transformer = nn.ModuleDict(dict(
            **parts,
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
            ln_f=make_norm(cfg) if cfg.norm_first else nn.Identity(),  # post-LN blocks already end in a norm
        ))
        # fixed tables are not parameters and not saved: a model can be rebuilt with a longer block_size
        if cfg.pos == "sinusoidal":
            # Vaswani et al. scale the embeddings by sqrt(d) to balance them against the unit-amplitude table;
            # with GPT-2's 0.02 embedding init (and tied output weights) we scale the table by 1/sqrt(d) instead
            table = sinusoidal_table(cfg.block_size, cfg.n_embd) / math.sqrt(cfg.n_embd)
            self.register_buffer("pos_table", table, persistent=False)
        if cfg.pos == "rope":
            cos, sin = rope_tables(cfg.block_size, cfg.head_dim, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if cfg.pos == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_head), persistent=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying: one matrix embeds and un-embeds
        self.apply(self._init_weights)
        # GPT-2: residual projections start smaller, so the residual stream's variance does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position table (and the tied token table counted once)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def features(self, idx, cache: KVCache | None = None, pad: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's normalised hidden states (B, T, n_embd): what the LM head (or a reward head) reads.

        `pad` (B,) = how many tokens at the left of each row are padding (batched prompts of different lengths,
        left-aligned so that every row's next token comes at the same column). Padding is invisible: no token
        attends to it, and each row's positions start at 0 on its first real token, so a padded row computes
        exactly what it would alone."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.cfg.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size={self.cfg.block_size}")
        positions = torch.arange(start, start + T, device=idx.device)  # (T,), or (B, T) with padding
        bias = None
        if pad is not None:
            pad = pad.to(idx.device)
            positions = (positions[None, :] - pad[:, None]).clamp(min=0)
            bias = padding_bias(pad, start, T)  # (B, 1, T, start + T)
        x = self.transformer.wte(idx)
        rope = None
        if self.cfg.pos == "learned":
            x = x + self.transformer.wpe(positions)
        elif self.cfg.pos == "sinusoidal":
            x = x + self.pos_table[positions]
        elif self.cfg.pos == "rope":
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
            rope = (cos, sin) if pad is None else (cos[:, None], sin[:, None])  # (B, 1, T, D/2) per row
        elif self.cfg.pos == "alibi":  # relative distances; padding only adds its mask
            alibi = alibi_bias(self.alibi_slopes, start, T, idx.device)
            bias = alibi if bias is None else alibi + bias
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i, rope, bias)
        if cache is not None:
            cache.pos += T
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, cache: KVCache | None = None, pad: torch.Tensor | None = None):
        """Logits (B, T, vocab) and, with `targets`, the mean cross-entropy (targets == -1 are ignored).
        `pad`: left padding per row, see `features`."""
        logits = self.lm_head(self.features(idx, cache, pad))
        loss = None
        if targets is not None:
            # (under bf16 autocast, cross_entropy runs in float32 by itself)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    # ---- real GPT-2 weights -------------------------------------------------------------------------------
    def load_hf_state_dict(self, sd: dict) -> "GPT":
        """Copy a Hugging Face GPT-2 state dict (either ``transformer.``-prefixed or not) into this model.

        HF stores its Linear layers as ``Conv1D`` with the weight transposed; everything else maps one to one.
        Raises if any of our parameters is missing or has the wrong shape."""
        if not self.cfg.is_gpt2:
            raise ValueError("Hugging Face GPT-2 weights fit only the GPT-2 architecture (the config defaults)")
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        sd = {k: v for k, v in sd.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        own = self.state_dict()
        missing = []
        with torch.no_grad():
            for name, param in own.items():
                key = name.removeprefix("transformer.")
                if name == "lm_head.weight":  # tied to wte
                    continue
                if key not in sd:
                    missing.append(key)
                    continue
                src = sd[key].t() if key.endswith(transposed) else sd[key]
                if src.shape != param.shape:
                    raise ValueError(f"{key}: checkpoint shape {tuple(src.shape)} != model shape {tuple(param.shape)}")
                param.copy_(src)
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} parameters, e.g. {missing[:3]}")
        return self

    @classmethod
    def from_pretrained(cls, name: str = "gpt2", path: str | None = None, **overrides) -> "GPT":
        """Real GPT-2 weights (gpu scale). `name` is a preset; the ``model.safetensors`` comes from `path` if
        given, else from the Hugging Face hub (repo ``openai-community/<name>``, cached by huggingface_hub)."""
        from safetensors.torch import load_file

        if path is None:
            repo = f"openai-community/{name}"
            try:
                from huggingface_hub import hf_hub_download
                path = hf_hub_download(repo, "model.safetensors")
            except Exception as e:  # ImportError, offline, ...
                raise FileNotFoundError(
                    f"could not get model.safetensors of {repo} from https://huggingface.co/{repo} ({e}). "
                    f"Install huggingface_hub and go online once (it caches under HF_HOME), or download the file "
                    f"and pass path=... ."
                ) from e
        model = cls(GPTConfig.preset(name, **overrides))
        return model.load_hf_state_dict(load_file(os.fspath(path)))

    def with_block_size(self, block_size: int) -> "GPT":
        """A model with the same weights for sequences of up to `block_size` tokens. Computed positions
        (sinusoidal, rope, alibi, none) are rebuilt for any length; a learned table cannot grow."""
        if self.cfg.pos == "learned" and block_size > self.cfg.block_size:
            raise ValueError(f"learned positions stop at {self.cfg.block_size}; cannot extend to {block_size}")
        longer = GPT(self.cfg.replace(block_size=block_size)).to(next(self.parameters()).device)
        longer.load_state_dict(self.state_dict())
        return longer.train(self.training)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


# ---- sampling ---------------------------------------------------------------------------------------------
def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token from (B, vocab) logits: greedy at temperature 0, else sample after scaling by the
    temperature and keeping the `top_k` most likely tokens and/or the smallest set with probability >= `top_p`."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass (the top one always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None, pad: torch.Tensor | None = None,
             eos: int | None = None) -> torch.Tensor:
    """Continue the (B, T) prompt `idx` by `max_new_tokens` tokens; returns (B, T + max_new_tokens).

    With `use_cache` the prompt is run once and each new token costs one position (KV cache); without it, or when
    the result would not fit in block_size, every step reruns the last block_size tokens. Both give the same
    tokens for the same `generator` state (tested). `pad` (B,): left padding of each prompt row (see
    `GPT.features`), for a batch of prompts of different lengths. `eos`: stop early once every row has produced
    this token (rows that finished first go on sampling filler; the result is then shorter than T + max_new)."""
    was_training = model.training
    model.eval()
    T, limit = idx.shape[1], model.cfg.block_size
    if use_cache and T + max_new_tokens <= limit:
        p = next(model.parameters())
        cache = KVCache(model.cfg, idx.shape[0], T + max_new_tokens, device=idx.device, dtype=p.dtype)
        logits, _ = model(idx, cache=cache, pad=pad)
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for i in range(max_new_tokens):
            nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, nxt], dim=1)
            if eos is not None:
                done |= nxt[:, 0] == eos
                if done.all():
                    break
            if i + 1 < max_new_tokens:
                logits, _ = model(nxt, cache=cache, pad=pad)
    else:
        for _ in range(max_new_tokens):
            cut = max(0, idx.shape[1] - limit)  # the window drops `cut` tokens from the left
            window_pad = None if pad is None else (pad - cut).clamp(min=0)
            logits, _ = model(idx[:, cut:], pad=window_pad)
            nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, nxt], dim=1)
            if eos is not None and (idx[:, T:] == eos).any(dim=1).all():
                break
    model.train(was_training)
    return idx


def deep_mlp(d_in: int, width: int, depth: int, d_out: int, norm=None, act=nn.ReLU) -> nn.Sequential:
    """A plain classifier MLP: `depth` hidden layers of Linear(width) -> norm(width) -> act, then Linear(d_out).
    `norm` is a factory ``norm(width) -> nn.Module`` (e.g. ``nn.LayerNorm``) or None. Norm layers draw no random
    numbers, so for a given torch seed the Linear weights are the same whatever the norm: variants of an
    experiment start from identical weights."""
    layers = []
    for i in range(depth):
        layers.append(nn.Linear(d_in if i == 0 else width, width))
        if norm is not None:
            layers.append(norm(width))
        layers.append(act())
    return nn.Sequential(*layers, nn.Linear(width if depth else d_in, d_out))
