"""The plumbing every alignment chapter shares; each chapter writes its own algorithm (PPO, DPO, GRPO, ...).

* `Rollout` -- prompts and responses as one left-padded token batch, with the mask of the response tokens.
  `encode` builds one from texts, `sample` by sampling a policy (batched, KV cache, stops at EOS).
* `token_logprobs` / `sequence_logprobs` -- log-probabilities of the response tokens under a model (with grad).
* `kl_estimators` -- Schulman's k1, k2, k3 per-token estimates of KL(policy || reference).
* `evaluate` -- the CalcChat report every chapter prints, so methods compare across chapters: accuracy, rude
  rate, gold reward, response length, worked rate, KL to the SFT policy, on fixed held-out prompts.
* `RewardModel`, `fit_reward_model` (train one on any list of pairs or rankings with any loss), and the cached
  `preference_data()` / `reward_model()` built from the zoo's `calc-sft`.
* For policy-gradient chapters: `token_rewards` (KL penalty on every token, the sequence reward on the last),
  `gae` over a padded batch, `clipped_surrogate`, `masked_mean` / `masked_whiten`, and `Rollout.select` for
  minibatches. The GAE and PPO chapters derive these.
* PPO for a language model, as the PPO chapter builds it: `ActorCritic` (value head on the policy trunk),
  `PPOConfig`, `ppo_batch`, `ppo_loss`, `ppo_update`, `step_kl`, and `ppo`, the whole loop against any reward
  function (the gold reward, or a reward model in the RLHF chapters).
* `win_rate` -- how often the gold labeler prefers one policy's answers to another's, or to the crowd's.
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import calcchat, zoo
from .env import scale as current_scale
from .model import GPT, generate
from .tokenizers import CharTokenizer

EVAL_SEED = 10_000  # the held-out evaluation prompts; training prompts use other seeds


@dataclass
class Rollout:
    """A batch of (prompt, response) pairs as tokens: row i is EOS (as BOS) + prompt + response + EOS, padded on
    the left to a common width; sampled rows may carry filler after their EOS. `resp` marks the response tokens
    (their EOS included): the only tokens whose log-probabilities or rewards count."""
    prompts: list[str]
    responses: list[str]  # text, without the EOS
    tokens: torch.Tensor  # (B, L)
    pad: torch.Tensor  # (B,) left padding
    resp: torch.Tensor  # (B, L) bool
    finished: torch.Tensor  # (B,) bool: the response ended with EOS within the length budget

    def __len__(self):
        return len(self.prompts)

    @property
    def last(self) -> torch.Tensor:
        """(B,) column of each row's last response token (its EOS when finished): where a reward model reads."""
        L = self.resp.shape[1]
        return L - 1 - self.resp.flip(1).int().argmax(dim=1)

    def gold_rewards(self) -> torch.Tensor:
        """(B,) the gold reward of each response; an unfinished (truncated) response scores as it reads."""
        return torch.tensor([calcchat.gold_reward(p, r) for p, r in zip(self.prompts, self.responses)])

    def lengths(self) -> torch.Tensor:
        """(B,) response length in tokens, EOS included."""
        return self.resp.sum(dim=1)

    def select(self, idx: torch.Tensor) -> "Rollout":
        """The rows `idx` (a 1-D index tensor), e.g. a PPO minibatch."""
        pick = idx.tolist()
        return Rollout([self.prompts[i] for i in pick], [self.responses[i] for i in pick], self.tokens[idx],
                       self.pad[idx], self.resp[idx], self.finished[idx])

    def to(self, device) -> "Rollout":
        return Rollout(self.prompts, self.responses, self.tokens.to(device), self.pad.to(device),
                       self.resp.to(device), self.finished.to(device))


def encode(tok: CharTokenizer, prompts: list[str], responses: list[str], device=None) -> Rollout:
    """Given texts as a Rollout (each response gets its EOS), e.g. demonstrations or preference pairs."""
    eos = tok.encode(calcchat.EOS)[0]
    rows = [tok.encode(calcchat.EOS + p + r + calcchat.EOS) for p, r in zip(prompts, responses)]
    starts = [1 + len(p) for p in prompts]  # index of the first response token in each unpadded row
    L = max(len(r) for r in rows)
    tokens = torch.full((len(rows), L), eos, dtype=torch.long)
    resp = torch.zeros(len(rows), L, dtype=torch.bool)
    pad = torch.tensor([L - len(r) for r in rows])
    for i, (row, s) in enumerate(zip(rows, starts)):
        tokens[i, pad[i]:] = torch.tensor(row)
        resp[i, pad[i] + s:] = True
    return Rollout(list(prompts), list(responses), tokens, pad, resp,
                   torch.ones(len(rows), dtype=torch.bool)).to(device)


@torch.no_grad()
def sample(model: GPT, tok: CharTokenizer, prompts: list[str], temperature: float = 1.0,
           max_new: int | None = None, generator: torch.Generator | None = None) -> Rollout:
    """One response per prompt from `model`, sampled in one batch with the KV cache: prompts are left-padded so
    that all rows continue at the same column; sampling stops when every row has produced EOS (or after
    `max_new` tokens, by default as many as the context leaves). Repeat a prompt in the list for several samples."""
    device = next(model.parameters()).device
    eos = tok.encode(calcchat.EOS)[0]
    rows = [tok.encode(calcchat.EOS + p) for p in prompts]
    P = max(len(r) for r in rows)
    idx = torch.full((len(rows), P), eos, dtype=torch.long)
    pad = torch.tensor([P - len(r) for r in rows])
    for i, row in enumerate(rows):
        idx[i, pad[i]:] = torch.tensor(row)
    max_new = max_new or model.cfg.block_size - P
    out = generate(model, idx.to(device), max_new, temperature=temperature, generator=generator,
                   pad=pad.to(device), eos=eos).cpu()
    new = out[:, P:]
    is_eos = new == eos
    finished = is_eos.any(dim=1)
    n_resp = torch.where(finished, is_eos.int().argmax(dim=1) + 1, torch.full_like(pad, new.shape[1]))
    resp = torch.zeros_like(out, dtype=torch.bool)
    resp[:, P:] = torch.arange(new.shape[1])[None, :] < n_resp[:, None]
    responses = [tok.decode(new[i, :n - int(finished[i])]) for i, n in enumerate(n_resp.tolist())]
    return Rollout(list(prompts), responses, out, pad, resp, finished).to(device)


def token_logprobs(model: GPT, roll: Rollout) -> torch.Tensor:
    """(B, L - 1) log-probability of each token given the ones before it (column j: token j + 1); multiply by
    ``roll.resp[:, 1:]`` to keep the response tokens. Differentiable: call under no_grad for a frozen model."""
    logits, _ = model(roll.tokens[:, :-1], pad=roll.pad)
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, roll.tokens[:, 1:, None]).squeeze(-1)


def sequence_logprobs(model: GPT, roll: Rollout) -> torch.Tensor:
    """(B,) log pi(response | prompt): the sum of the response tokens' log-probabilities."""
    return (token_logprobs(model, roll) * roll.resp[:, 1:]).sum(dim=1)


def kl_estimators(logp: torch.Tensor, logp_ref: torch.Tensor) -> dict:
    """Per-token estimates of KL(pi || ref) from tokens sampled from pi (Schulman, "Approximating KL divergence"):
    with log r = log ref - log pi, k1 = -log r (unbiased, can be negative), k2 = (log r)^2 / 2 (low variance,
    biased), k3 = (r - 1) - log r (unbiased and never negative; GRPO's penalty)."""
    log_r = logp_ref - logp
    return {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": torch.expm1(log_r) - log_r}


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is true (e.g. response tokens)."""
    return (x * mask).sum() / mask.sum()


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x shifted and scaled to mean 0, std 1 over the masked positions; 0 elsewhere (advantage normalisation)."""
    mu = masked_mean(x, mask)
    return (x - mu) / masked_mean((x - mu) ** 2, mask).sqrt().clamp(min=eps) * mask


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """PPO's per-token objective min(r A, clip(r, 1 - eps, 1 + eps) A), r = pi / pi_old (derived in the PPO
    chapter; GRPO uses it too)."""
    return torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)


def token_rewards(roll: Rollout, logp: torch.Tensor, logp_ref: torch.Tensor, beta: float,
                  reward: torch.Tensor) -> torch.Tensor:
    """(B, L - 1) per-token rewards aligned with `token_logprobs`: -beta * (log pi - log ref) on every response
    token (a sampled estimate of the KL penalty), plus the sequence reward (B,) on the last response token."""
    rewards = -beta * (logp - logp_ref) * roll.resp[:, 1:]
    rows = torch.arange(len(roll), device=rewards.device)
    rewards[rows, roll.last - 1] += reward.to(rewards)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalized advantage estimates of a padded batch (..., T), by one backward scan:
    A_t = delta_t + gamma * lam * A_{t+1}, delta_t = r_t + gamma * V_{t+1} - V_t. The value after a row's last
    masked step is 0 (the episode ended); steps outside the mask get advantage 0."""
    next_values = torch.nn.functional.pad((values * mask)[..., 1:], (0, 1))
    delta = (rewards + gamma * next_values - values) * mask
    adv, running = torch.zeros_like(delta), torch.zeros_like(delta[..., 0])
    for t in reversed(range(delta.shape[-1])):
        running = delta[..., t] + gamma * lam * running
        adv[..., t] = running
    return adv * mask


# --------------------------------------------------------------------------------------------------------------
# PPO for a language model, derived in the PPO chapter; the GAE, reward-model and InstructGPT chapters import it.

class ActorCritic(nn.Module):
    """PPO's learner: the policy GPT and a value head on its trunk (a linear layer, zero-initialised so that V = 0
    at the start). One trunk pass gives both."""

    def __init__(self, policy: GPT):
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(policy.cfg.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, roll: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi of every vocabulary token (B, L - 1, V), values (B, L - 1)); column j is the state after token j,
        whose action is token j + 1 (aligned with `token_logprobs`)."""
        h = self.policy.features(roll.tokens[:, :-1], pad=roll.pad)
        return torch.log_softmax(self.policy.lm_head(h).float(), dim=-1), self.value_head(h).squeeze(-1).float()


def taken(logprobs_all: torch.Tensor, roll: Rollout) -> torch.Tensor:
    """(B, L - 1) the log-probability of the token actually taken at each column, from (B, L - 1, V)."""
    return logprobs_all.gather(-1, roll.tokens[:, 1:, None]).squeeze(-1)


@dataclass
class PPOConfig:
    """Everything a PPO run on CalcChat needs; the defaults are the PPO chapter's cpu-scale settings."""
    iters: int = 30  # iterations: sample a batch, then `epochs` passes of minibatch updates on it
    prompts: int = 32  # fresh training prompts per iteration (seeds prompt_seed + iteration)
    samples: int = 4  # responses per prompt
    lr: float = 5e-5  # Adam, policy and value head together
    beta: float = 0.05  # KL penalty towards the reference (SFT) policy, per token
    gamma: float = 1.0
    lam: float = 0.95  # GAE
    epochs: int = 8
    minibatch: int = 32  # responses per gradient step
    clip: bool = True  # False: the unclipped surrogate L_CPI
    clip_eps: float = 0.2
    vf_coef: float = 0.1
    grad_clip: float = 1.0
    target_kl: float | None = None  # Spinning Up's early stop on approximate KL; None: every epoch runs
    temperature: float = 1.0  # sampling temperature of the rollouts
    prompt_seed: int = 1_000  # training prompts; the evaluation uses EVAL_SEED


@torch.no_grad()
def ppo_batch(ac: ActorCritic, ref: GPT, roll: Rollout, reward: torch.Tensor, cfg: PPOConfig) -> dict:
    """What the update needs from one rollout, computed once at theta_old: the response mask, log pi_old (all
    tokens and taken), the per-token rewards (KL penalty plus the sequence `reward` (B,) at the last token), GAE
    advantages whitened over the response tokens, and the value targets (advantage + V)."""
    mask = roll.resp[:, 1:].float()
    logprobs_all, values = ac(roll)
    logp, logp_ref = taken(logprobs_all, roll), token_logprobs(ref, roll)
    rewards = token_rewards(roll, logp, logp_ref, cfg.beta, reward)
    values = values * mask
    adv = gae(rewards, values, mask, cfg.gamma, cfg.lam)
    return {"mask": mask, "logprobs_all": logprobs_all, "logp": logp, "logp_ref": logp_ref, "rewards": rewards,
            "adv": masked_whiten(adv, mask), "returns": (adv + values) * mask}


def ppo_loss(logp: torch.Tensor, values: torch.Tensor, old: dict, mask: torch.Tensor, clip_eps: float = 0.2,
             clip: bool = True, vf_coef: float = 0.1) -> tuple[torch.Tensor, dict]:
    """-L_CLIP (or -L_CPI with clip=False) averaged over the response tokens, plus vf_coef times the value loss
    (half the squared error to the returns). `old` holds the rollout's logp, adv and returns. Returns the loss and
    the diagnostics: clip fraction (tokens with |ratio - 1| > eps) and approximate KL E[log pi_old - log pi]."""
    ratio = torch.exp(logp - old["logp"])
    surrogate = clipped_surrogate(ratio, old["adv"], clip_eps) if clip else ratio * old["adv"]
    value_loss = 0.5 * masked_mean((values - old["returns"]) ** 2, mask)
    loss = -masked_mean(surrogate, mask) + vf_coef * value_loss
    with torch.no_grad():
        stats = {"clip_frac": masked_mean(((ratio - 1).abs() > clip_eps).float(), mask).item(),
                 "approx_kl": masked_mean(old["logp"] - logp, mask).item(), "value_loss": value_loss.item()}
    return loss, stats


def ppo_update(ac: ActorCritic, opt: torch.optim.Optimizer, roll: Rollout, batch: dict, cfg: PPOConfig,
               generator: torch.Generator | None = None, aux_loss=None) -> list[dict]:
    """`cfg.epochs` passes of shuffled minibatches over one rollout (Spinning Up's PPO-clip loop, with its optional
    early stop). `aux_loss(policy)`, if given, is added to every minibatch's loss (InstructGPT's PPO-ptx term).
    Returns the diagnostics of every step."""
    params = [p for group in opt.param_groups for p in group["params"]]
    stats = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(roll), generator=generator).to(roll.tokens.device)
        for idx in order.split(cfg.minibatch):
            mb = roll.select(idx)
            logprobs_all, values = ac(mb)
            old = {k: batch[k][idx] for k in ("logp", "adv", "returns")}
            loss, st = ppo_loss(taken(logprobs_all, mb), values, old, batch["mask"][idx], cfg.clip_eps, cfg.clip,
                                cfg.vf_coef)
            if cfg.target_kl is not None and st["approx_kl"] > 1.5 * cfg.target_kl:
                return stats
            if aux_loss is not None:
                aux = aux_loss(ac.policy)
                loss = loss + aux
                st["aux_loss"] = aux.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            stats.append(st)
    return stats


@torch.no_grad()
def step_kl(logprobs_old: torch.Tensor, logprobs_new: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over response tokens of the exact KL(pi_old(.|s) || pi_new(.|s)) over the whole vocabulary."""
    return masked_mean((logprobs_old.exp() * (logprobs_old - logprobs_new)).sum(-1), mask).item()


def ppo(ref: GPT, tok: CharTokenizer, reward_fn, cfg: PPOConfig, seed: int = 0, aux_loss=None):
    """PPO from the reference policy `ref` (copied; `ref` stays frozen as the KL anchor). Every iteration samples
    `cfg.samples` responses to `cfg.prompts` fresh prompts, scores them with `reward_fn(rollout) -> (B,)` (the gold
    reward, a reward model, ...), and runs `ppo_update`. Returns (the trained ActorCritic, its history): per
    iteration the batch's mean reward, gold reward, accuracy, rude rate, length, KL to `ref` per response (summed
    k1), the exact step KL(pi_old || pi_new), clip fraction, approximate KL, value loss and seconds."""
    torch.manual_seed(seed)
    device = next(ref.parameters()).device
    ac = ActorCritic(copy.deepcopy(ref).eval()).to(device)  # eval(): no dropout, so ratios start at exactly 1
    opt = torch.optim.Adam(ac.parameters(), lr=cfg.lr)
    g_sample = torch.Generator(device=device).manual_seed(seed)
    g_order = torch.Generator().manual_seed(seed + 1)
    keys = ("reward", "gold", "accuracy", "rude", "length", "kl", "step_kl", "clip_frac", "approx_kl", "value_loss",
            "seconds")
    hist = {k: [] for k in keys}
    for it in range(cfg.iters):
        began = time.perf_counter()
        prompts = [p for p in calcchat.prompts(cfg.prompts, seed=cfg.prompt_seed + it) for _ in range(cfg.samples)]
        roll = sample(ac.policy, tok, prompts, cfg.temperature, generator=g_sample)
        with torch.no_grad():
            reward = reward_fn(roll).float()
        batch = ppo_batch(ac, ref, roll, reward, cfg)
        stats = ppo_update(ac, opt, roll, batch, cfg, generator=g_order, aux_loss=aux_loss)
        with torch.no_grad():
            new_logprobs_all, _ = ac(roll)
        parsed = [calcchat.parse(r) for r in roll.responses]
        hist["reward"].append(reward.mean().item())
        hist["gold"].append(roll.gold_rewards().mean().item())
        hist["accuracy"].append(sum(p.final == sum(calcchat.operands(q)) for p, q in zip(parsed, prompts)) / len(roll))
        hist["rude"].append(sum(p.rude for p in parsed) / len(roll))
        hist["length"].append(roll.lengths().float().mean().item())
        hist["kl"].append(((batch["logp"] - batch["logp_ref"]) * batch["mask"]).sum(1).mean().item())
        hist["step_kl"].append(step_kl(batch["logprobs_all"], new_logprobs_all, batch["mask"]))
        for k in ("clip_frac", "approx_kl", "value_loss"):
            hist[k].append(sum(s[k] for s in stats) / max(1, len(stats)))
        hist["seconds"].append(time.perf_counter() - began)
    return ac, hist


@torch.no_grad()
def evaluate(policy: GPT, tok: CharTokenizer, ref: GPT | None = None, n_prompts: int | None = None,
             samples: int = 4, temperature: float = 1.0, seed: int = 0, batch: int = 512) -> dict:
    """The shared CalcChat report: `samples` responses at `temperature` to each of `n_prompts` held-out prompts
    (default 512; 64 at smoke scale). Returns accuracy, rude rate, gold reward, mean length (tokens, EOS
    included), worked rate, truncated rate and, given `ref` (the SFT policy), KL(policy || ref) per response
    (the mean over samples of the summed k1, an unbiased estimate of the sequence KL)."""
    n_prompts = n_prompts or (64 if current_scale() == "smoke" else 512)
    prompts = [p for p in calcchat.prompts(n_prompts, EVAL_SEED) for _ in range(samples)]
    g = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    rows = {"accuracy": [], "rude": [], "gold_reward": [], "length": [], "worked": [], "truncated": [], "kl": []}
    for b in range(0, len(prompts), batch):
        roll = sample(policy, tok, prompts[b:b + batch], temperature, generator=g)
        parsed = [calcchat.parse(r) for r in roll.responses]
        rows["accuracy"] += [float(p.final == sum(calcchat.operands(q))) for p, q in zip(parsed, roll.prompts)]
        rows["rude"] += [float(p.rude) for p in parsed]
        rows["worked"] += [float(p.worked) for p in parsed]
        rows["gold_reward"] += roll.gold_rewards().tolist()
        rows["length"] += roll.lengths().float().tolist()
        rows["truncated"] += (~roll.finished).float().tolist()
        if ref is not None:
            k1 = kl_estimators(token_logprobs(policy, roll), token_logprobs(ref, roll))["k1"]
            rows["kl"] += (k1 * roll.resp[:, 1:]).sum(dim=1).tolist()
    return {k: sum(v) / len(v) for k, v in rows.items() if v}


@torch.no_grad()
def win_rate(policy: GPT, tok: CharTokenizer, baseline: GPT | str, n_prompts: int | None = None, samples: int = 4,
             temperature: float = 1.0, seed: int = 0) -> dict:
    """How often the gold labeler prefers `policy`'s answers to `baseline`'s on the held-out evaluation prompts
    (default 512; 64 at smoke scale), `samples` answers from each per prompt. `baseline` is another policy, sampled
    the same way, or "crowd": the human demonstrators' own answers (`calcchat.crowd_answer`). The win rate is the
    mean Bradley-Terry probability of preferring the policy's answer (a tie counts 1/2), the labeler's expected
    vote without its coin flips; "se" is its standard error over prompts."""
    n_prompts = n_prompts or (64 if current_scale() == "smoke" else 512)
    prompts = [p for p in calcchat.prompts(n_prompts, EVAL_SEED) for _ in range(samples)]
    device = next(policy.parameters()).device

    def answers(model):
        g = torch.Generator(device=device).manual_seed(seed)
        return [r for b in range(0, len(prompts), 512)
                for r in sample(model, tok, prompts[b:b + 512], temperature, generator=g).responses]

    ours = answers(policy)
    if isinstance(baseline, str):
        if baseline != "crowd":
            raise ValueError(f'baseline must be a GPT policy or "crowd", got {baseline!r}')
        rng = random.Random(seed)
        theirs = [calcchat.crowd_answer(p, rng) for p in prompts]
    else:
        theirs = answers(baseline)
    gold = [torch.tensor([calcchat.gold_reward(p, r) for p, r in zip(prompts, rs)]) for rs in (ours, theirs)]
    per_prompt = calcchat.bt_probability(*gold).view(n_prompts, samples).mean(dim=1)
    return {"win_rate": per_prompt.mean().item(), "se": (per_prompt.std() / math.sqrt(n_prompts)).item()}


def format_report(name: str, report: dict) -> str:
    """One line of `evaluate`'s numbers, aligned for a table."""
    kl = f"{report['kl']:6.3f}" if "kl" in report else "     -"
    return (f"{name:14s} acc {report['accuracy']:.3f}  rude {report['rude']:.3f}  gold {report['gold_reward']:+.3f}"
            f"  len {report['length']:5.1f}  worked {report['worked']:.2f}  KL {kl}")


class RewardModel(nn.Module):
    """A scalar score for (prompt, response): a GPT trunk (initialised from the SFT policy) and a linear head that
    reads the final hidden state of the response's last token (its EOS), as in Stiennon et al. and InstructGPT."""

    def __init__(self, trunk: GPT):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk.cfg.n_embd, 1)
        nn.init.zeros_(self.head.weight)  # every response scores 0 at the start
        nn.init.zeros_(self.head.bias)

    def forward(self, roll: Rollout) -> torch.Tensor:
        h = self.trunk.features(roll.tokens, pad=roll.pad)  # (B, L, d)
        return self.head(h[torch.arange(len(h), device=h.device), roll.last]).squeeze(-1)


# (train pairs, held-out pairs, K-way ranking prompts) per scale; K = 4 answers per ranking prompt
PREFERENCE_SIZES = {"smoke": (64, 32, 16), "cpu": (4000, 500, 1000), "gpu": (16000, 2000, 4000)}
RANKING_K = 4


def label_pairs(policy: GPT, tok: CharTokenizer, prompts: list[str], generator: torch.Generator | None = None,
                label_generator: torch.Generator | None = None) -> list[dict]:
    """Comparisons as calc-prefs makes them: two answers of `policy` (temperature 1) to each prompt, labelled by
    the simulated Bradley-Terry labeler. Returns pairs {prompt, chosen, rejected, r_chosen, r_rejected} (the r's
    are the gold rewards, for analysis; a reward model must never see them)."""
    roll = sample(policy, tok, [p for p in prompts for _ in range(2)], generator=generator)
    r = roll.gold_rewards().view(-1, 2)
    first = calcchat.bt_prefers(r[:, 0], r[:, 1], generator=label_generator)
    pairs = []
    for i, p in enumerate(prompts):
        a, b = roll.responses[2 * i], roll.responses[2 * i + 1]
        c, j = (0, 1) if first[i] else (1, 0)
        pairs.append({"prompt": p, "chosen": (a, b)[c], "rejected": (a, b)[j],
                      "r_chosen": float(r[i, c]), "r_rejected": float(r[i, j])})
    return pairs


def preference_data(scale: str | None = None, device=None) -> dict:
    """calc-prefs: answers sampled from calc-sft (temperature 1) and labelled by the simulated Bradley-Terry
    labeler. Returns {"train": pairs, "test": pairs, "rankings": ...}; a pair is a dict with prompt, chosen,
    rejected and their gold rewards (r_chosen, r_rejected); a ranking has prompt, K responses best first and
    their gold rewards. Built once per scale and cached in the zoo (cpu scale: 4,000 + 500 pairs, 1,000 rankings)."""
    scale = scale or current_scale()
    sft = zoo.load("calc-sft", scale, device=device)
    n_train, n_test, n_rank = PREFERENCE_SIZES[scale]

    def build(path):
        dev = next(sft.model.parameters()).device
        g_sample, g_label = torch.Generator(device=dev).manual_seed(1), torch.Generator().manual_seed(2)
        data = {"train": label_pairs(sft.model, sft.tokenizer, calcchat.prompts(n_train, seed=1), g_sample, g_label),
                "test": label_pairs(sft.model, sft.tokenizer, calcchat.prompts(n_test, seed=2), g_sample, g_label),
                "rankings": []}
        rank_prompts = calcchat.prompts(n_rank, seed=3)
        roll = sample(sft.model, sft.tokenizer, [p for p in rank_prompts for _ in range(RANKING_K)],
                      generator=g_sample)
        r = roll.gold_rewards().view(-1, RANKING_K)
        for i, p in enumerate(rank_prompts):
            order = calcchat.bt_rank(r[i], generator=g_label)
            data["rankings"].append({"prompt": p,
                                     "responses": [roll.responses[RANKING_K * i + k] for k in order],
                                     "rewards": [float(r[i, k]) for k in order]})
        torch.save(data, path)

    return zoo.cached(f"calc-prefs-{scale}-{zoo.ZOO['calc-sft'].key(scale)}.pt", build,
                      f"sampling and labelling calc-prefs at scale {scale}")


def bt_loss(rm: RewardModel, tok: CharTokenizer, pairs: list[dict]) -> torch.Tensor:
    """Bradley-Terry loss of a batch of pairs: -log sigmoid(score(chosen) - score(rejected)), averaged."""
    device = next(rm.parameters()).device
    prompts = [p["prompt"] for p in pairs]
    scores = rm(encode(tok, prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
                       device))
    return -F.logsigmoid(scores[:len(pairs)] - scores[len(pairs):]).mean()


@torch.no_grad()
def pair_accuracy(rm: RewardModel, tok: CharTokenizer, pairs: list[dict]) -> dict:
    """How often the reward model orders held-out pairs as the labeler did, and as the gold reward does (pairs
    whose gold rewards differ)."""
    was = rm.training
    rm.eval()
    device = next(rm.parameters()).device
    prompts = [p["prompt"] for p in pairs]
    s_c = rm(encode(tok, prompts, [p["chosen"] for p in pairs], device)).cpu()
    s_r = rm(encode(tok, prompts, [p["rejected"] for p in pairs], device)).cpu()
    gold = torch.tensor([p["r_chosen"] - p["r_rejected"] for p in pairs])
    differ = gold != 0
    rm.train(was)
    return {"label_accuracy": (s_c > s_r).float().mean().item(),
            "gold_accuracy": ((s_c - s_r).sign() == gold.sign())[differ].float().mean().item()}


RM_EPOCHS, RM_BATCH, RM_LR = 2, 32, 3e-4


def fit_reward_model(sft: GPT, items: list, loss_fn, epochs: int = RM_EPOCHS, batch: int = RM_BATCH,
                     lr: float = RM_LR, seed: int = 0):
    """A fresh `RewardModel` on a copy of `sft`'s trunk, trained on `items` (pairs, rankings, ...) for `epochs`
    shuffled epochs of `batch` items: AdamW at `lr`, warmup, cosine decay (`shared.train`). `loss_fn(rm, items)`
    is the loss of a list of items, e.g. `lambda rm, pairs: bt_loss(rm, tok, pairs)`. Returns (the reward model
    in eval mode, the training History)."""
    from .data import epoch_batches
    from .train import TrainConfig, train
    device = next(sft.parameters()).device
    torch.manual_seed(seed)
    rm = RewardModel(copy.deepcopy(sft)).to(device)
    index = torch.arange(len(items))
    steps = epochs * (len(items) // batch)
    cfg = TrainConfig(steps=steps, lr=lr, warmup=min(10, steps), weight_decay=0.0, progress=False)
    hist = train(rm, epoch_batches(index, index, batch, seed=seed), cfg,
                 loss_fn=lambda model, b: loss_fn(model, [items[i] for i in b[0].tolist()]))
    return rm.eval(), hist


def reward_model(scale: str | None = None, device=None) -> RewardModel:
    """calc-rm: calc-sft's trunk plus a scalar head, trained with the Bradley-Terry loss on calc-prefs' training
    pairs (2 epochs, batch 32, AdamW 3e-4). Cached in the zoo; ``.info`` holds its held-out pair accuracy."""
    scale = scale or current_scale()
    sft = zoo.load("calc-sft", scale, device=device)
    dev = next(sft.model.parameters()).device

    def build(path):
        prefs = preference_data(scale, device=dev)
        rm, hist = fit_reward_model(sft.model, prefs["train"], lambda m, pairs: bt_loss(m, sft.tokenizer, pairs))
        info = {"steps": len(hist.loss), "seconds": round(hist.seconds, 1), "train_loss": hist.loss,
                **pair_accuracy(rm, sft.tokenizer, prefs["test"])}
        torch.save({"model": rm.cpu().state_dict(), "info": info}, path)

    state = zoo.cached(f"calc-rm-{scale}-{zoo.ZOO['calc-sft'].key(scale)}.pt", build,
                       f"training calc-rm at scale {scale}")
    rm = RewardModel(GPT(sft.model.cfg))
    rm.load_state_dict(state["model"])
    rm.info = state["info"]
    return rm.to(dev).eval()
