"""`make demo` / `seqbench demo`: TCN vs LSTM vs GRU at a matched ~70K parameters on the adding
problem, a few minutes on 2 CPU cores.

The adding problem has a long plateau at the trivial MSE (~0.17) before a model "clicks". These
settings were measured on a 2-core machine (see README, "The demo") so that the TCN clicks well
inside the step budget; the recurrent baselines may or may not in that budget, which is the point
of the comparison.
"""
from __future__ import annotations

import time

import seqbench
from seqbench.tables import fmt, format_table
from seqbench.utils import seed_everything

SEQ_LEN = 100              # adding-problem length T
STEPS_PER_EPOCH = 200      # x batch 32 = 6,400 fresh sequences per epoch
EPOCHS = 8                 # 1,600 Adam steps per model
LR = 2e-3                  # the paper's Adam learning rate for the adding problem
TCN_SHAPE = {"levels": 6, "kernel_size": 6}  # receptive field 631 >= T; width solved to the budget


def run_demo(models: list[str], params: str = "70k", seed: int = 0) -> int:
    task = seqbench.create_task("adding", seq_len=SEQ_LEN, seed=seed,
                                n_train=STEPS_PER_EPOCH * 32 * EPOCHS, n_valid=1000, n_test=1000)
    cfg = seqbench.TrainConfig.for_task(task, epochs=EPOCHS, lr=LR, batch_size=32,
                                        steps_per_epoch=STEPS_PER_EPOCH, seed=seed)
    print(f"Adding problem, T={SEQ_LEN}: {EPOCHS * STEPS_PER_EPOCH} Adam steps (lr {LR}, batch 32) per model, "
          f"~{params} parameters each. Trivial baseline (predict 1): MSE {task.trivial_baseline}.")
    rows = []
    for name in models:
        seed_everything(seed)
        model = seqbench.create_model(name, task.d_in, task.d_out, params=params,
                                      **(TCN_SHAPE if name == "tcn" else {}))
        t0 = time.perf_counter()
        result = seqbench.train(model, task, cfg)
        elapsed = time.perf_counter() - t0
        mse = result.test["mse"]
        rf = model.receptive_field
        rows.append({"model": name, "shape": model.describe(), "params": f"{result.params:,}",
                     "receptive field": "unbounded" if rf is None else f"{rf:,}",
                     "test MSE": fmt(mse), "trivial": fmt(task.trivial_baseline),
                     "x better": f"{task.trivial_baseline / mse:.1f}", "train time": f"{elapsed:.0f}s"})
        print(f"  {name}: test MSE {fmt(mse)} in {elapsed:.0f}s", flush=True)
    print()
    print(format_table(rows, ["model", "shape", "params", "receptive field", "test MSE", "trivial",
                              "x better", "train time"],
                       align_right=["params", "receptive field", "test MSE", "trivial", "x better", "train time"]))
    return 0
