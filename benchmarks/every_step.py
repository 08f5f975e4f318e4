"""Every-step training with the paper's dropout: seqbench's TCN (full forward, FastDropout) against
the straightforward TCN (the reference block, nn.Dropout), issue 12.

    python benchmarks/every_step.py [--threads 2] [--rounds 5]

Configurations: seq-MNIST shape (8 levels x 25, k=7, batch 64, L=784, dropout 0.05, the loss read
at every step) and copy memory T=1000 (the paper's 16K TCN: 8 levels x 10, k=8, batch 32, L=1020,
dropout 0.0 in the paper: run with 0.05 here too, every step scored). One process, candidates
interleaved; training samples/s (forward + backward + Adam step); also seqbench with torch's own
nn.Dropout to show what the mask costs.
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
from common import machine, time_interleaved  # noqa: E402
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
    return {"straightforward": (ref, lambda x: ref(x)), "seqbench": (tcn, lambda x: tcn(x)),
            "seqbench, nn.Dropout": (torch_drop, lambda x: torch_drop(x))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
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
        print(f"\n{name}\n| variant | train samples/s | vs straightforward |\n|---|---|---|")
        for label, t in times.items():
            sps = cfg["batch"] / t
            print(f"| {label} | {sps:.1f} | {sps / base:.2f}x |")


if __name__ == "__main__":
    main()
