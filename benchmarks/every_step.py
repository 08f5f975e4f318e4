"""Every-step training with the paper's dropout: seqbench's TCN (full forward, FastDropout) against
the straightforward TCN (the reference block, nn.Dropout), issue 12.

    python benchmarks/every_step.py [--threads 2] [--rounds 5]

Configurations: seq-MNIST shape (8 levels x 25, k=7, batch 64, L=784, dropout 0.05, the loss read
at every step) and copy memory T=1000 (the paper's 16K TCN: 8 levels x 10, k=8, batch 32, L=1020,
dropout 0.0 in the paper: run with 0.05 here too, every step scored). One process, candidates
interleaved; training samples/s (forward + backward + Adam step); also seqbench with torch's own
nn.Dropout to show what the mask costs, and seqbench under bf16 autocast (`--precision bf16`; this
CPU has AVX-512 BF16). Also: the float32 matmul peak and each variant's achieved convolution GFLOP/s.
Target: seqbench >= 2.0x the straightforward TCN's samples/s (seq-MNIST), >= 1.5x (copy memory).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
import seqbench  # noqa: E402
from common import machine, matmul_peak, time_interleaved  # noqa: E402
from reference_tcn import reference_like  # noqa: E402

CONFIGS = {
    "seq-MNIST (8 x 25, k=7, B=64, L=784)": dict(hidden=25, levels=8, kernel_size=7, batch=64, length=784, d_in=1,
                                                 d_out=10),
    "copy memory T=1000 (8 x 10, k=8, B=32, L=1020)": dict(hidden=10, levels=8, kernel_size=8, batch=32, length=1020,
                                                           d_in=1, d_out=10),
}


def variants(cfg: dict) -> dict:
    torch.manual_seed(0)
    tcn = seqbench.create_model("tcn", cfg["d_in"], cfg["d_out"], hidden=cfg["hidden"], levels=cfg["levels"],
                                kernel_size=cfg["kernel_size"], dropout=0.05)
    ref = reference_like(tcn)  # the paper's block with nn.Dropout(0.05), the same weights
    torch_drop = seqbench.create_model("tcn", cfg["d_in"], cfg["d_out"], hidden=cfg["hidden"], levels=cfg["levels"],
                                       kernel_size=cfg["kernel_size"], dropout=0.05)
    for block in torch_drop.blocks:
        block.dropout = nn.Dropout(0.05)
    torch.manual_seed(0)
    bf16 = seqbench.create_model("tcn", cfg["d_in"], cfg["d_out"], hidden=cfg["hidden"], levels=cfg["levels"],
                                 kernel_size=cfg["kernel_size"], dropout=0.05)

    def bf16_forward(x):  # what --precision bf16 does: autocast, float32 weights and optimizer
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return bf16(x).float()
    return {"straightforward": (ref, lambda x: ref(x)), "seqbench": (tcn, lambda x: tcn(x)),
            "seqbench, nn.Dropout": (torch_drop, lambda x: torch_drop(x)),
            "seqbench, --precision bf16": (bf16, bf16_forward)}


def conv_flops(cfg: dict) -> float:
    """FLOPs of every convolution in one training step: forward, input gradient, weight gradient."""
    C, k, n = cfg["hidden"], cfg["kernel_size"], cfg["batch"] * cfg["length"]
    first = cfg["d_in"] * C * k + C * C * k + cfg["d_in"] * C  # block 1: conv1 from d_in, conv2, 1x1 downsample
    rest = (cfg["levels"] - 1) * 2 * C * C * k
    return 3 * 2 * n * (first + rest)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    peak = matmul_peak()
    print(f"float32 matmul peak (2048^3, {args.threads} threads): {peak:.0f} GFLOP/s")
    for name, cfg in CONFIGS.items():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(cfg["batch"], cfg["length"], cfg["d_in"], generator=g)
        y = torch.randint(0, cfg["d_out"], (cfg["batch"], cfg["length"]), generator=g)
        fns = {}
        for label, (model, fwd) in variants(cfg).items():
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step(model=model, fwd=fwd, opt=opt):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(fwd(x).reshape(-1, cfg["d_out"]), y.reshape(-1)).backward()  # every step scored
                opt.step()
            fns[label] = step
        times = time_interleaved(fns, rounds=args.rounds, min_time=0.5)
        base = cfg["batch"] / times["straightforward"]
        flops = conv_flops(cfg)
        print(f"\n{name}: {flops / 1e9:.1f} GFLOP of convolutions per step\n"
              "| variant | train samples/s | vs straightforward | conv GFLOP/s (% of fp32 matmul peak) |\n|---|---|---|---|")
        for label, t in times.items():
            sps = cfg["batch"] / t
            print(f"| {label} | {sps:.1f} | {sps / base:.2f}x | {flops / t / 1e9:.0f} ({100 * flops / t / 1e9 / peak:.0f}%) |")


if __name__ == "__main__":
    main()
