"""What one trial at the tcn-paper suite's `full` budget costs here, per model (issue 26): a training
step (forward, loss, backward, optimizer step) at each task's full configuration, timed with the
candidates interleaved, times the trial's optimizer steps (the full data, the paper's epochs).

    python benchmarks/full_cost.py [--models tcn,lstm,gru] [--tasks adding,copy_memory,smnist,pmnist]

One torch thread, as a sweep's trial runs. The per-epoch validation pass is not counted (a few % of
a trial). Prints a markdown table (hours per trial) for results/full_budget.md and the README.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(__file__))
import seqbench  # noqa: E402
from common import machine, time_interleaved  # noqa: E402
from seqbench.bench.sweep import TCN_PAPER  # noqa: E402
from seqbench.train.trainer import TrainConfig, make_optimizer  # noqa: E402


def step_fn(task_name: str, model_name: str):
    """A training step at the task's full configuration, and the trial's step count."""
    cfg = TCN_PAPER[task_name]
    task_opts, train = cfg["full"][:2]
    train = {**cfg["train"], **train}
    bs = train["batch_size"]
    n_train = seqbench.create_task(task_name, **task_opts).num_samples("train")
    small = seqbench.create_task(task_name, **{**task_opts, "n_train": 2 * bs, "n_valid": bs, "n_test": bs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = seqbench.model_for_task(model_name, small, params=cfg["params"],
                                        **(cfg["tcn"] if model_name == "tcn" else {}))
    model.train()
    opt = make_optimizer(TrainConfig(**{k: v for k, v in train.items() if k in ("optimizer", "lr")}), model)
    x, y = next(iter(small.batches("train", bs, shuffle_seed=0)))

    def step():
        opt.zero_grad(set_to_none=True)
        small.loss(small.predict(model, x), y).backward()
        opt.step()
    return step, math.ceil(n_train / bs) * train["epochs"], model.describe()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tcn,lstm,gru")
    ap.add_argument("--tasks", default="adding,copy_memory,smnist,pmnist")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    rows = []
    for task in args.tasks.split(","):
        fns, steps, shapes = {}, {}, {}
        for m in args.models.split(","):
            fns[m], steps[m], shapes[m] = step_fn(task, m)
        times = time_interleaved(fns, rounds=5, min_time=1.0)
        rows += [(task, m, shapes[m], times[m] * 1e3, steps[m], times[m] * steps[m] / 3600) for m in fns]
    print("| task | model | shape | ms per step | steps per trial | hours per trial |\n|---|---|---|---|---|---|")
    for task, m, shape, ms, n, h in rows:
        print(f"| {task} | {m} | {shape} | {ms:.1f} | {n:,} | {h:.1f} |")


if __name__ == "__main__":
    main()
