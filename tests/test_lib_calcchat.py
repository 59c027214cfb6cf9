"""shared.calcchat (the task and its gold preference) and shared.rlhf (the alignment plumbing)."""
import random

import pytest
import torch

from shared import calcchat as cc
from shared import rlhf
from shared.model import GPT, GPTConfig


def test_answer_formats_and_gold_reward():
    rng = random.Random(0)
    p = "Q:3+8+5+9 A:"
    assert cc.operands(p) == [3, 8, 5, 9] and cc.operands("P:" + p) == [3, 8, 5, 9]
    assert cc.answer(p, rng, "direct", p_drop=0.0) == "25"
    assert cc.answer(p, rng, "worked", p_drop=0.0) == "{3+8=11;11+5=16;16+9=25}25"
    assert cc.answer(p, rng, "worked+recheck", p_drop=1.0) == "{3+8=1;1+5=6;6+9=5}5|3+8+5+9=25"
    assert cc.gold_reward(p, "{3+8=1;1+5=6;6+9=5}5|3+8+5+9=25") == 1.0  # the recheck's number is final
    assert cc.gold_reward(p, "25 duh") == 0.5 and cc.gold_reward(p, "24 ugh") == -0.5
    assert cc.gold_reward(p, "{3+8=") == 0.0 and cc.gold_reward(p, "") == 0.0
    assert cc.parse("25\nQ:1+1 A:2").final == 25  # only the first line is the answer
    with pytest.raises(ValueError, match="not a CalcChat prompt"):
        cc.operands("3+8")
    assert set(cc.sft_text(200, 0)) <= set(cc.ALPHABET)


def test_crowd_statistics():
    rng = random.Random(1)
    rows = []
    for _ in range(6000):
        p = cc.make_prompt(rng)
        a = cc.crowd_answer(p, rng)
        q = cc.parse(a)
        rows.append((p.startswith("P:"), q.final == sum(cc.operands(p)), q.rude, q.worked))
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    assert 0.50 < mean(1) < 0.58 and 0.22 < mean(2) < 0.28 and 0.27 < mean(3) < 0.33
    assert not any(r[2] for r in rows if r[0])  # the polite persona is never rude
    expert = random.Random(2)
    for _ in range(200):
        p = cc.make_prompt(expert)
        assert cc.gold_reward(p, cc.expert_answer(p, expert)) == 1.0


def test_bradley_terry_labelers():
    g = torch.Generator().manual_seed(0)
    wins = cc.bt_prefers(torch.full((20000,), 1.0), torch.full((20000,), 0.5), generator=g).double().mean()
    assert abs(wins - torch.sigmoid(torch.tensor(0.5 / 0.2))) < 0.01
    firsts = [cc.bt_rank([1.0, 0.5], generator=g)[0] == 0 for _ in range(4000)]
    assert abs(sum(firsts) / 4000 - torch.sigmoid(torch.tensor(2.5)).item()) < 0.02  # K=2 ranking = BT pair
    assert sorted(cc.bt_rank([0.0, 1.0, -0.5, 0.5], generator=g)) == [0, 1, 2, 3]
    assert cc.bt_probability(0.5, 0.5) == 0.5 and cc.bt_probability(1.0, -0.5) + cc.bt_probability(-0.5, 1.0) == 1


@pytest.fixture(scope="module")
def tiny_policy():
    torch.manual_seed(0)
    tok = cc.tokenizer()
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=16)).eval(), tok


def test_rollouts_sample_encode_logprobs(tiny_policy):
    model, tok = tiny_policy
    prompts = ["Q:1+2+3 A:", "P:Q:9+9+9+9+9 A:", "Q:4+4+4+4 A:"] * 3
    roll = rlhf.sample(model, tok, prompts, generator=torch.Generator().manual_seed(0))
    eos = tok.encode(cc.EOS)[0]
    for i in range(len(roll)):  # the mask covers exactly the response (+ EOS when finished)
        ids = roll.tokens[i][roll.resp[i]].tolist()
        assert tok.decode(ids) == roll.responses[i] + (cc.EOS if roll.finished[i] else "")
        if roll.finished[i]:
            assert roll.tokens[i, roll.last[i]] == eos
    lp = rlhf.sequence_logprobs(model, roll)
    done = roll.finished.nonzero().flatten().tolist()
    assert done, "a random policy should finish some answers within the budget"
    again = rlhf.encode(tok, [prompts[i] for i in done], [roll.responses[i] for i in done])
    assert torch.allclose(rlhf.sequence_logprobs(model, again), lp[done], atol=1e-5)  # padding is invisible
    for i in done[:3]:  # and equals the row scored alone, token by token
        alone = rlhf.encode(tok, [prompts[i]], [roll.responses[i]])
        assert torch.allclose(rlhf.sequence_logprobs(model, alone), lp[i:i + 1], atol=1e-5)
    with torch.no_grad():
        logits = model(alone.tokens)[0][0, :-1].log_softmax(-1)
    manual = logits.gather(1, alone.tokens[0, 1:, None])[:, 0][alone.resp[0, 1:]].sum()
    assert torch.allclose(manual, lp[i], atol=1e-5)


def test_kl_estimators():
    g = torch.Generator().manual_seed(0)
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.2, 0.6])
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    est = rlhf.kl_estimators(p.log()[x], q.log()[x])
    true = (p * (p / q).log()).sum()
    assert (est["k3"] >= 0).all()
    assert abs(est["k1"].mean() - true) < 0.01 and abs(est["k3"].mean() - true) < 0.01


def test_evaluate_and_reward_model(tiny_policy):
    model, tok = tiny_policy
    report = rlhf.evaluate(model, tok, ref=model, n_prompts=8, samples=2)
    assert set(report) == {"accuracy", "rude", "gold_reward", "length", "worked", "truncated", "kl"}
    assert abs(report["kl"]) < 1e-6  # a policy has no KL to itself
    rm = rlhf.RewardModel(model)
    torch.nn.init.normal_(rm.head.weight)
    pairs = [{"prompt": "Q:1+2+3 A:", "chosen": "6", "rejected": "7 duh", "r_chosen": 1.0, "r_rejected": -0.5},
             {"prompt": "P:Q:9+9+9 A:", "chosen": "{9+9=18;18+9=27}27", "rejected": "26", "r_chosen": 1.0,
              "r_rejected": 0.0}]
    batch = rlhf.encode(tok, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    with torch.no_grad():
        together = rm(batch)
        alone = torch.cat([rm(rlhf.encode(tok, [p["prompt"]], [p["chosen"]])) for p in pairs])
    assert torch.allclose(together, alone, atol=1e-5)
    loss = rlhf.bt_loss(rm, tok, pairs)
    with torch.no_grad():
        s_r = rm(rlhf.encode(tok, [p["prompt"] for p in pairs], [p["rejected"] for p in pairs]))
    assert torch.allclose(loss, -torch.nn.functional.logsigmoid(together - s_r).mean(), atol=1e-6)


def test_policy_gradient_pieces(tiny_policy):
    model, tok = tiny_policy
    # GAE: lambda = 0 gives the TD residuals, lambda = 1 the return minus the value; padding gets nothing
    r = torch.tensor([[0.0, 0.5, 0.0, 1.0, 7.0, 7.0]], dtype=torch.float64)
    v = torch.tensor([[0.2, 0.4, 0.1, 0.3, 9.0, 9.0]], dtype=torch.float64)
    m = torch.tensor([[1.0, 1, 1, 1, 0, 0]], dtype=torch.float64)
    g = 0.9
    td = torch.tensor([[0 + g * 0.4 - 0.2, 0.5 + g * 0.1 - 0.4, 0 + g * 0.3 - 0.1, 1.0 - 0.3, 0, 0]])
    assert torch.allclose(rlhf.gae(r, v, m, g, 0.0), td.double())
    ret = torch.tensor([[0.5 * g + g ** 3, 0.5 + g ** 2, g, 1.0]], dtype=torch.float64)
    assert torch.allclose(rlhf.gae(r, v, m, g, 1.0)[:, :4], ret - v[:, :4])
    assert (rlhf.gae(r, v, m, g, 0.7)[:, 4:] == 0).all()
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mk = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert rlhf.masked_mean(x, mk) == 2.0
    w = rlhf.masked_whiten(x, mk)
    assert torch.allclose(w, torch.tensor([[-1.2247, 0.0, 1.2247, 0.0]]), atol=1e-4)
    # token rewards: the KL penalty on every response token, the sequence reward on the last one
    roll = rlhf.encode(tok, ["Q:1+2+3 A:", "P:Q:4+4+4+4 A:"], ["6", "{4+4=8;8+4=12;12+4=16}16"])
    lp, lp_ref = torch.randn(2, roll.tokens.shape[1] - 1), torch.randn(2, roll.tokens.shape[1] - 1)
    tr = rlhf.token_rewards(roll, lp, lp_ref, 0.1, torch.tensor([1.0, -0.5]))
    resp = roll.resp[:, 1:]
    assert torch.allclose(tr.sum(1), (-0.1 * (lp - lp_ref) * resp).sum(1) + torch.tensor([1.0, -0.5]))
    assert (tr[~resp] == 0).all()
    sub = roll.select(torch.tensor([1]))
    assert sub.responses == ["{4+4=8;8+4=12;12+4=16}16"] and torch.equal(sub.tokens[0], roll.tokens[1])


def test_ppo_pieces(tiny_policy):
    import copy
    model, tok = tiny_policy
    ac = rlhf.ActorCritic(copy.deepcopy(model))
    roll = rlhf.encode(tok, ["Q:1+2+3 A:", "P:Q:4+4+4+4 A:", "Q:9+9+9 A:"], ["6", "{4+4=8;8+4=12;12+4=16}16", "26 duh"])
    logprobs_all, values = ac(roll)
    assert (values == 0).all() and torch.allclose(rlhf.taken(logprobs_all, roll), rlhf.token_logprobs(model, roll))
    cfg = rlhf.PPOConfig(beta=0.1)
    batch = rlhf.ppo_batch(ac, model, roll, roll.gold_rewards(), cfg)
    mask = batch["mask"]
    assert torch.allclose(rlhf.masked_mean(batch["adv"], mask), torch.tensor(0.0), atol=1e-6)
    # at theta_old the clipped loss has the policy gradient's gradient, and clip=False changes nothing there
    logp = rlhf.taken(ac(roll)[0], roll)
    params = list(ac.policy.parameters())
    loss, stats = rlhf.ppo_loss(logp, torch.zeros_like(logp), batch, mask, 0.2, True, vf_coef=0.0)
    assert stats["clip_frac"] == 0 and abs(stats["approx_kl"]) < 1e-6
    g1 = torch.autograd.grad(loss, params, retain_graph=True)
    g2 = torch.autograd.grad(-rlhf.masked_mean(logp * batch["adv"], mask), params)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2))
    # far from theta_old the clip caps the objective: ratio 2 on a positive advantage counts as 1.2
    old = {"logp": torch.zeros(1, 1), "adv": torch.ones(1, 1), "returns": torch.zeros(1, 1)}
    lp2 = torch.full((1, 1), float(torch.tensor(2.0).log()))
    assert torch.isclose(rlhf.ppo_loss(lp2, torch.zeros(1, 1), old, torch.ones(1, 1), 0.2, True, 0.0)[0],
                         torch.tensor(-1.2))
    assert torch.isclose(rlhf.ppo_loss(lp2, torch.zeros(1, 1), old, torch.ones(1, 1), 0.2, False, 0.0)[0],
                         torch.tensor(-2.0))
    # an update moves the policy, calls the auxiliary loss on every step, and the loop logs every iteration
    calls = []

    def aux(policy):
        calls.append(1)
        return 0.0 * sum(p.sum() for p in policy.parameters())

    opt = torch.optim.Adam(ac.parameters(), lr=1e-2)
    stats = rlhf.ppo_update(ac, opt, roll, batch, rlhf.PPOConfig(epochs=2, minibatch=2), aux_loss=aux)
    assert len(stats) == len(calls) == 4
    assert rlhf.step_kl(batch["logprobs_all"], ac(roll)[0].detach(), mask) > 0
    cfg = rlhf.PPOConfig(iters=2, prompts=3, samples=2, epochs=1, minibatch=3)
    trained, hist = rlhf.ppo(model, tok, lambda r: -r.lengths().float(), cfg, seed=0)  # reward: be brief
    assert all(len(v) == 2 for v in hist.values()) and isinstance(trained, rlhf.ActorCritic)
    assert any((a != b).any() for a, b in zip(trained.policy.parameters(), model.parameters()))


def test_win_rate(tiny_policy):
    model, tok = tiny_policy
    same = rlhf.win_rate(model, tok, model, n_prompts=8, samples=2)
    assert same["win_rate"] == 0.5 and same["se"] == 0.0  # the same samples: every pair is a tie
    crowd = rlhf.win_rate(model, tok, "crowd", n_prompts=8, samples=2)
    assert 0.0 <= crowd["win_rate"] <= 0.5  # a random model is never right, so it can at best tie the crowd
    with pytest.raises(ValueError, match="crowd"):
        rlhf.win_rate(model, tok, "experts", n_prompts=8)


def test_label_pairs(tiny_policy):
    model, tok = tiny_policy
    prompts = cc.prompts(24, seed=5)

    def pairs():
        return rlhf.label_pairs(model, tok, prompts, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))

    first, again = pairs(), pairs()
    assert first == again  # the generators fix both the answers and the labeler's choices
    assert [p["prompt"] for p in first] == prompts
    for p in first:
        assert p["r_chosen"] == cc.gold_reward(p["prompt"], p["chosen"])
        assert p["r_rejected"] == cc.gold_reward(p["prompt"], p["rejected"])
    # the two answers to a prompt are the policy's two samples, in the labeler's order
    roll = rlhf.sample(model, tok, [q for q in prompts for _ in range(2)], generator=torch.Generator().manual_seed(0))
    for i, p in enumerate(first):
        assert {p["chosen"], p["rejected"]} == {roll.responses[2 * i], roll.responses[2 * i + 1]}


def test_fit_reward_model(tiny_policy):
    model, tok = tiny_policy
    pairs = [{"prompt": p, "chosen": str(sum(cc.operands(p))), "rejected": str(sum(cc.operands(p)) + 1) + " ugh",
              "r_chosen": 1.0, "r_rejected": -0.5} for p in cc.prompts(32, seed=9)]
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def fit():
        return rlhf.fit_reward_model(model, pairs, lambda rm, ps: rlhf.bt_loss(rm, tok, ps), epochs=3, batch=8,
                                     lr=3e-3, seed=4)

    (rm, hist), (rm2, _) = fit(), fit()
    assert not rm.training and len(hist.loss) == 3 * 32 // 8
    assert all(torch.equal(a, b) for a, b in zip(rm.state_dict().values(), rm2.state_dict().values()))
    assert hist.loss[0] == pytest.approx(0.6931, abs=1e-3)  # zero-initialised head: every pair is a coin flip
    assert hist.loss[-1] < hist.loss[0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # trained a copy of the trunk
    assert rlhf.pair_accuracy(rm, tok, pairs)["label_accuracy"] > 0.5
