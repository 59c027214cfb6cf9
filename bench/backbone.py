"""Backbone speed: the course's GPT (`shared.model.GPT`) against Hugging Face's `GPT2LMHeadModel`, in one run.

    python -m bench.backbone --device cpu      # 4 layers, d=128, T=128, vocab 65, B=32, float32
    python -m bench.backbone --device cuda     # GPT-2 124M, B=16, T=1024, bf16 autocast, fused AdamW
    python -m bench.backbone --tiny            # a few seconds: proves the bench runs (CI)

Both models get the same configuration, the same initial weights (Hugging Face's init, copied into ours with
`load_hf_state_dict`, then checked equal on one batch), the same batches and the same optimizer. For each
implementation, eager and `torch.compile`d, it measures a training step (forward, cross-entropy, backward, AdamW)
and greedy generation with the KV cache (batch 1 and 8, 256 new tokens). Every variant runs in its own process,
so compile caches and peak memory do not leak between them. It prints a table and writes JSON to
``bench/results/backbone-<device>.json`` (or ``--out``).

MFU = tokens/s x FLOPs per token / peak FLOP/s, with FLOPs per token = 6 N + 12 L d T (N: parameters without the
position table; the second term is attention's score and value matmuls, forward and backward). The peak is
989 TFLOP/s (dense bf16) on an H100/H200; elsewhere pass ``--peak-tflops`` or MFU is not reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

SETUPS = {
    # name: model shape, batch, sequence length, timed steps, generation lengths
    "cuda": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024, batch=16, seq=1024,
                 warmup=10, steps=30, prompt=16, new_tokens=256, gen_batches=(1, 8)),
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, vocab_size=65, block_size=512, batch=32, seq=128,
                warmup=5, steps=30, prompt=16, new_tokens=256, gen_batches=(1, 8)),
    "tiny": dict(n_layer=1, n_head=2, n_embd=32, vocab_size=65, block_size=64, batch=4, seq=32,
                 warmup=1, steps=2, prompt=4, new_tokens=8, gen_batches=(1, 2)),
}
VARIANTS = [("shared", False), ("shared", True), ("hf", False), ("hf", True)]


def build(impl: str, s: dict, device):
    """(model, forward) for one implementation; forward(x) -> logits. Weights: HF's init with seed 0."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from shared.model import GPT, GPTConfig

    torch.manual_seed(0)
    hf_cfg = GPT2Config(vocab_size=s["vocab_size"], n_positions=s["block_size"], n_embd=s["n_embd"],
                        n_layer=s["n_layer"], n_head=s["n_head"], activation_function="gelu_new",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                        bos_token_id=0, eos_token_id=0, attn_implementation="sdpa")
    hf = GPT2LMHeadModel(hf_cfg)
    assert hf.config._attn_implementation == "sdpa", hf.config._attn_implementation
    if impl == "hf":
        return hf.to(device), lambda m, x: m(input_ids=x, use_cache=False).logits
    ours = GPT(GPTConfig(vocab_size=s["vocab_size"], block_size=s["block_size"], n_layer=s["n_layer"],
                         n_head=s["n_head"], n_embd=s["n_embd"]))
    ours.load_hf_state_dict(hf.state_dict())
    return ours.to(device), lambda m, x: m(x)[0]


def flops_per_token(s: dict, n_params: int) -> float:
    return 6 * n_params + 12 * s["n_layer"] * s["n_embd"] * s["seq"]


def measure(impl: str, compiled: bool, setup: str, device_name: str) -> dict:
    """One variant, in this process: training throughput, generation throughput, peak memory."""
    import torch
    import torch.nn.functional as F

    from shared.model import generate

    s = SETUPS[setup]
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model, forward = build(impl, s, device)
    # parameters() counts the tied embedding / output matrix once; leave out the position table
    n_params = sum(p.numel() for p in model.parameters()) - s["block_size"] * s["n_embd"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda or None)
    step_model = torch.compile(model) if compiled else model
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(s["vocab_size"], (s["batch"], s["seq"] + 1), generator=g).to(device) for _ in range(4)]

    def train_step(i):
        xy = batches[i % len(batches)]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = forward(step_model, xy[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), xy[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize()

    began = time.perf_counter()
    for i in range(s["warmup"]):
        first_loss = train_step(i).item()
    sync()
    warmup_s = time.perf_counter() - began
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(s["steps"]):
        t0 = time.perf_counter()
        train_step(i)
        sync()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1000
    tokens = s["batch"] * s["seq"]
    result = {"impl": impl, "compiled": compiled, "ms_per_iter": ms, "tokens_per_s": tokens / ms * 1000,
              "first_loss": first_loss, "warmup_s": warmup_s, "n_params": n_params,
              "flops_per_token": flops_per_token(s, n_params)}
    if cuda:
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30

    # greedy generation with the KV cache (eager model: generation is latency-bound, not what compile targets)
    model.eval()
    for b in s["gen_batches"]:
        prompt = torch.randint(s["vocab_size"], (b, s["prompt"]), generator=g).to(device)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            def run():
                if impl == "hf":
                    return model.generate(prompt, max_new_tokens=s["new_tokens"], min_new_tokens=s["new_tokens"],
                                          do_sample=False, use_cache=True, pad_token_id=0,
                                          attention_mask=torch.ones_like(prompt))
                return generate(model, prompt, s["new_tokens"], temperature=0)
            run()  # warm-up
            sync()
            t0 = time.perf_counter()
            out = run()
            sync()
            dt = time.perf_counter() - t0
        result[f"gen_b{b}_tokens_per_s"] = b * s["new_tokens"] / dt
        result[f"gen_b{b}_tokens"] = out[:, s["prompt"]:].tolist()
    if not cuda:
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def equal_start(setup: str, device_name: str) -> float:
    """Max |logit difference| between the two implementations on one batch, with the shared weights."""
    import torch
    s = SETUPS[setup]
    x = torch.randint(s["vocab_size"], (2, s["seq"]), generator=torch.Generator().manual_seed(2)).to(device_name)
    with torch.no_grad():
        outs = [fwd(m.eval(), x).float() for m, fwd in (build(i, s, device_name) for i in ("shared", "hf"))]
    return (outs[0] - outs[1]).abs().max().item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run that proves the bench works")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU")
    ap.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/backbone-<device>.json)")
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = ap.parse_args(argv)

    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    setup = "tiny" if args.tiny else device
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        impl, mode = args.variant.split(":")
        print("RESULT " + json.dumps(measure(impl, mode == "compiled", setup, device)))
        return

    peak = args.peak_tflops
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    if peak is None and device == "cuda" and ("H100" in name or "H200" in name):
        peak = 989.0
    diff = equal_start(setup, device)
    print(f"same weights, same batch: max |logits(shared) - logits(HF)| = {diff:.1e}")
    if diff > (5e-2 if device == "cuda" else 1e-4):
        raise SystemExit("the two models disagree: the comparison would not be fair")

    results = []
    for impl, compiled in VARIANTS:
        cmd = [sys.executable, "-m", "bench.backbone", "--device", device, "--variant",
               f"{impl}:{'compiled' if compiled else 'eager'}"] + (["--tiny"] if args.tiny else []) + (
              ["--threads", str(args.threads)] if args.threads else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            raise SystemExit(f"variant {impl} compiled={compiled} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[0][len("RESULT "):]))

    by = {(r["impl"], r["compiled"]): r for r in results}
    for b in SETUPS[setup]["gen_batches"]:
        same = by[("shared", False)][f"gen_b{b}_tokens"] == by[("hf", False)][f"gen_b{b}_tokens"]
        print(f"greedy generation, batch {b}: {'identical' if same else 'DIFFERENT'} tokens from the two models")
    s = SETUPS[setup]
    print(f"\n{device} ({name}), torch {torch.__version__}, {date.today()}: {s['n_layer']} layers, d={s['n_embd']}, "
          f"vocab {s['vocab_size']}, B={s['batch']}, T={s['seq']}" + (", bf16 autocast" if device == "cuda" else ""))
    head = f"{'model':27s} {'ms/iter':>9s} {'tokens/s':>11s} {'MFU':>6s}" + "".join(
        f" {'gen b' + str(b) + ' tok/s':>14s}" for b in s["gen_batches"]) + f" {'peak mem':>10s}"
    print(head)
    for r in results:
        mfu = f"{r['tokens_per_s'] * r['flops_per_token'] / (peak * 1e12):6.1%}" if peak else "     -"
        mem = f"{r['peak_mem_gib']:6.2f} GiB" if "peak_mem_gib" in r else f"{r['peak_rss_mib']:6.0f} MiB"
        r["mfu"] = r["tokens_per_s"] * r["flops_per_token"] / (peak * 1e12) if peak else None
        label = f"{'shared' if r['impl'] == 'shared' else 'HF GPT2LMHeadModel'} {'compiled' if r['compiled'] else 'eager'}"
        print(f"{label:27s} {r['ms_per_iter']:9.2f} {r['tokens_per_s']:11,.0f} {mfu}" + "".join(
            f" {r[f'gen_b{b}_tokens_per_s']:14,.0f}" for b in s["gen_batches"]) + f" {mem}")
    ratios = {
        "train eager, shared/HF": by[("shared", False)]["tokens_per_s"] / by[("hf", False)]["tokens_per_s"],
        "train compiled, shared/HF": by[("shared", True)]["tokens_per_s"] / by[("hf", True)]["tokens_per_s"],
        **{f"generate b{b}, shared/HF": by[("shared", False)][f"gen_b{b}_tokens_per_s"]
           / by[("hf", False)][f"gen_b{b}_tokens_per_s"] for b in s["gen_batches"]},
    }
    print("\n" + "   ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()))
    for r in results:
        for b in s["gen_batches"]:
            r.pop(f"gen_b{b}_tokens")
    out = Path(args.out or Path(__file__).resolve().parent / "results" / f"backbone-{'tiny' if args.tiny else device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "device_name": name, "torch": torch.__version__,
                               "date": str(date.today()), "setup": s, "peak_tflops": peak,
                               "logit_diff": diff, "results": results, "ratios": ratios}, indent=1) + "\n")
    print(f"written: {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
