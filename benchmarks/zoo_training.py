"""Training cost of every zoo model on the seq-MNIST shape (issue 27): FLOPs or overhead?

    python benchmarks/zoo_training.py [--threads 2] [--params 70k] [--batch 16] [--rounds 3]

Every model at ~70K parameters, seq-MNIST's input (L=784, 1 -> 10, the loss on the last step as the
task trains it), one training step (forward, backward, Adam) timed interleaved in one process;
beside it the FLOPs that step computes (torch's FlopCounterMode: matmuls, convolutions and attention,
forward and backward; attention as computed, the full L x L), the achieved GFLOP/s and their share of the float32 matmul peak measured in
the same run. A model far below the peak spends its time on something other than arithmetic
(per-op overhead, sequential steps, element-wise work); one near it can only get faster by doing
fewer FLOPs.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(__file__))
import seqbench  # noqa: E402
from common import machine, matmul_peak, time_interleaved  # noqa: E402

L, D_IN, D_OUT = 784, 1, 10


def training_step(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model.forward_last(x)[:, -1], y).backward()
        opt.step()
    return step


def _rnn_layer(input, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    """oneDNN's fused LSTM layer (which FlopCounterMode does not count): both matmuls at every step."""
    tokens = math.prod(input) // input[-1]
    return 2 * tokens * (math.prod(w_ih) + math.prod(w_hh))


def _rnn_layer_backward(input, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    return 2 * _rnn_layer(input, w_ih, w_hh)  # gradients of the inputs and of the weights


def _attention(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(q, k, v)  # torch's formula: the full L x S products


def _attention_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, q, k, v)


# ops the counter has no formula for on the CPU: attention (torch's formulas) and the LSTM's fused layer
UNCOUNTED = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention,
             torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward,
             torch.ops.aten.mkldnn_rnn_layer: _rnn_layer,
             torch.ops.aten.mkldnn_rnn_layer_backward: _rnn_layer_backward}


def flops_of(step) -> int:
    """FLOPs of one call (forward and backward; Adam's element-wise update is not counted)."""
    counter = FlopCounterMode(display=False, custom_mapping=UNCOUNTED)
    with counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params", default="70k")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    peak = matmul_peak()
    torch.manual_seed(0)
    x, y = torch.randn(args.batch, L, D_IN), torch.randint(0, D_OUT, (args.batch,))
    models = {name: seqbench.create_model(name, D_IN, D_OUT, params=args.params).train()
              for name in seqbench.list_models()}
    steps = {name: training_step(m, x, y) for name, m in models.items()}
    flops = {name: flops_of(step) for name, step in steps.items()}
    t = time_interleaved(steps, rounds=args.rounds, min_time=0.5)
    base = t["tcn"]
    print(f"\nseq-MNIST shape (L={L}), batch {args.batch}, {args.threads} threads, float32 matmul peak "
          f"{peak:.0f} GFLOP/s; one training step, median of {args.rounds} interleaved rounds:\n")
    print("| model | shape | params | step | x the TCN | GFLOP per step | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in models.items():
        rate = flops[name] / t[name] / 1e9
        print(f"| {name} | {m.describe()} | {seqbench.count_params(m):,} | {t[name] * 1e3:.0f} ms | "
              f"{t[name] / base:.1f}x | {flops[name] / 1e9:.2f} | {rate:.0f} | {100 * rate / peak:.0f}% |")


if __name__ == "__main__":
    main()
