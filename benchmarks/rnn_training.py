"""Why the GRU trains slower than the LSTM on CPU (issue 12): one training step (forward + backward)
of torch's LSTM, GRU and RNN at ~70K parameters, with torch's oneDNN (mkldnn) backend on and off.

    python benchmarks/rnn_training.py [--threads 1] [--length 600] [--batch 32]

Candidates interleaved in one process (medians). The adding problem's shape by default (d_in=2).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(__file__))
import seqbench  # noqa: E402
from common import machine, time_interleaved  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--length", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="TF32 acceleration")  # printed by mkldnn.flags on CPU builds
    print(f"machine: {machine()}")
    x = torch.randn(args.batch, args.length, 2)
    models = {name: seqbench.create_model(name, 2, 1, params="70k") for name in ("lstm", "gru", "rnn")}
    fns = {}
    for name, m in models.items():
        for onednn in (True, False):
            def step(m=m, onednn=onednn):
                with torch.backends.mkldnn.flags(enabled=onednn):
                    m.zero_grad(set_to_none=True)
                    m.forward_last(x).sum().backward()
            fns[(name, onednn)] = step
    times = time_interleaved(fns, rounds=5, min_time=0.5)
    lstm = times[("lstm", True)]
    print(f"B={args.batch}, L={args.length}, {args.threads} thread(s): one training step (forward + backward)\n"
          "| model | oneDNN | ms per step | vs LSTM (oneDNN) |\n|---|---|---|---|")
    for (name, onednn), t in times.items():
        print(f"| {name} ({models[name].describe()}) | {'on' if onednn else 'off'} | {t * 1e3:.0f} | {t / lstm:.2f}x |")


if __name__ == "__main__":
    main()
