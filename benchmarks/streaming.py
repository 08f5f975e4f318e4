"""Streaming latency: one new sample through every causal model at ~70K parameters, vs recomputing
the model over its receptive window for each new sample (what a model without a step mode must do).

    python benchmarks/streaming.py [--threads 1] [--params 70k]

Targets (issue 3): the TCN streams >= 100x faster than window recompute, and its step costs no
more than 2x an LSTM step of equal parameter count. Issue 12: every causal model's B=1 step within
4x of the fastest model's (a stream from its start: 50 warm-up steps, then 1,000 timed, so the
Transformer attends over 50-1,050 cached steps), all models interleaved. Issue 27 (``--runtimes``):
every model's B=1 step on each runtime (its own step, seqbench's torch and NumPy engines, and the
exported streaming graph in onnxruntime), mid-stream of a 1,024-step stream, all interleaved; the
spread between the fastest and slowest model per runtime (target: own steps within 3x), and which
own steps are slower than their onnxruntime export.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import seqbench  # noqa: E402
from common import machine, time_interleaved  # noqa: E402

WINDOW_FOR_UNBOUNDED = 3061  # window recomputed for models without a finite receptive field


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", default="70k")
    ap.add_argument("--models", default="", help="comma-separated subset (tcn and lstm are always run)")
    ap.add_argument("--runtimes", action="store_true", help="only the per-runtime step table (issue 27)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    d_in, d_out = 1, 10
    models = {name: seqbench.create_model(name, d_in, d_out, params=args.params).eval()
              for name in seqbench.list_models()
              if not args.models or name in {"tcn", "lstm", *args.models.split(",")}}
    if args.runtimes:
        return runtime_table(models, d_in)
    # a TCN with receptive field >= 3,000: the 70K seq-MNIST shape (8 levels, k=7) has 3,061
    assert models["tcn"].receptive_field >= 3000

    results = {}
    print(f"{'model':12} {'params':>7} {'window':>6} | {'B=1 step':>10} {'B=1 window':>11} {'ratio':>7} |"
          f" {'B=32 step':>10} {'B=32 window':>11} {'ratio':>7}")
    for name, m in models.items():
        window = m.receptive_field or WINDOW_FOR_UNBOUNDED
        row = {}
        for B in (1, 32):
            state = m.init_state(B)
            x_hist = torch.randn(B, window, d_in)
            with torch.inference_mode():
                m.step(x_hist, state)  # fill the history (a real stream's past)
            x_t = torch.randn(B, d_in)
            if name == "transformer":  # keep the KV cache at the window length: step on a copy each time
                step = lambda: m.step(x_t, dict(state, k=list(state["k"]), v=list(state["v"])))  # noqa: E731
            else:
                step = lambda: m.step(x_t, state)  # noqa: E731
            with torch.inference_mode():
                t = time_interleaved({"step": step, "window": lambda: m(x_hist)[:, -1]})
            row[B] = (t["step"], t["window"])
        results[name] = row
        n = seqbench.count_params(m)
        print(f"{name:12} {n:>7,} {window:>6} | {row[1][0] * 1e3:>8.3f}ms {row[1][1] * 1e3:>9.2f}ms "
              f"{row[1][1] / row[1][0]:>6.0f}x | {row[32][0] * 1e3:>8.3f}ms {row[32][1] * 1e3:>9.2f}ms "
              f"{row[32][1] / row[32][0]:>6.0f}x", flush=True)

    tcn, lstm = results["tcn"], results["lstm"]
    print()
    for B in (1, 32):
        speedup = tcn[B][1] / tcn[B][0]
        vs_lstm = tcn[B][0] / lstm[B][0]
        print(f"batch {B:>2}: TCN (RF {models['tcn'].receptive_field}) streaming is {speedup:.0f}x faster than "
              f"window recompute [target >= 100x: {'PASS' if speedup >= 100 else 'FAIL'}]; "
              f"TCN step / LSTM step = {vs_lstm:.2f} [target <= 2: {'PASS' if vs_lstm <= 2 else 'FAIL'}]")

    print()
    step_table(models)


def step_table(models: dict, rounds: int = 3, warmup: int = 50, steps: int = 1000) -> None:
    """B=1 step of every model over a fresh stream, interleaved by rounds; median ms per step."""
    xs = torch.randn(1, warmup + steps, 1)

    def stream(m) -> float:
        state = m.init_state(1)
        for i in range(warmup):
            m.step(xs[:, i], state)
        t0 = time.perf_counter()
        for i in range(warmup, warmup + steps):
            m.step(xs[:, i], state)
        return (time.perf_counter() - t0) / steps

    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, m in models.items():
            times[name].append(stream(m))
    med = {name: statistics.median(v) for name, v in times.items()}
    fastest = min(med.values())
    worst = max(med, key=med.get)
    print(f"B=1 step from a stream's start ({warmup} warm-up, {steps} timed, median of {rounds} rounds):")
    for name, t in med.items():
        print(f"  {name:12} {t * 1e3:.3f} ms  {t / fastest:.1f}x the fastest")
    ratio = med[worst] / fastest
    print(f"slowest ({worst}) / fastest = {ratio:.1f}x [target <= 4: {'PASS' if ratio <= 4 else 'FAIL'}]")


def runtime_table(models: dict, d_in: int, runtimes=("auto", "torch", "numpy", "onnxruntime")) -> None:
    """B=1 step of every model on every runtime (recommend --runtime's timing: mid-stream of a
    1,024-step stream), interleaved; median ms. "auto" is the model's own step (its default engine)."""
    import tempfile
    import types
    from pathlib import Path

    from threadpoolctl import threadpool_limits

    from seqbench.recommend.costs import step_runner
    task = types.SimpleNamespace(d_in=d_in, seq_len=1024, input_kind="features")  # what step_runner reads
    rounds, steps = 7, 256
    times = {(name, rt): [] for name in models for rt in runtimes}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(torch.get_num_threads()), torch.inference_mode():
        ort = {name: step_runner(m, task, 1, "onnxruntime", Path(tmp)) for name, m in models.items()}
        order, rng = list(times), random.Random(0)
        for _ in range(rounds):
            rng.shuffle(order)  # a new order each round: no runner always follows the same one
            for name, rt in order:  # each round a fresh stream: steps 512-767 of 1,024
                ts = times[name, rt]
                step = ort[name] if rt == "onnxruntime" else step_runner(models[name], task, 1, rt, None)
                for _ in range(5):
                    step()
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                ts.append((time.perf_counter() - t0) / steps)
    t = {k: statistics.median(v) for k, v in times.items()}
    print(f"B=1 step, ms (median of {rounds} interleaved rounds of {steps} steps), from the middle of a 1,024-step "
          "stream; own: the model's default engine; onnxruntime: the exported streaming graph")
    names = {"auto": "own"}
    print("| model | " + " | ".join(names.get(rt, rt) for rt in runtimes) + " | fastest |\n|---|"
          + "---|" * (len(runtimes) + 1))
    best = {}
    for name in models:
        row = {rt: t[name, rt] * 1e3 for rt in runtimes}
        best[name] = min(row, key=row.get)
        print(f"| {name} | " + " | ".join(f"{row[rt]:.3f}" for rt in runtimes) + f" | {names.get(best[name], best[name])} |")
    for rt in runtimes:
        col = [t[name, rt] for name in models]
        target = " [target <= 3]" if rt == "auto" else ""
        print(f"{names.get(rt, rt)}: slowest / fastest model = {max(col) / min(col):.1f}x{target}")
    slower = [f"{name} ({t[name, 'auto'] / t[name, 'onnxruntime']:.1f}x)" for name in models
              if t[name, "auto"] > t[name, "onnxruntime"]]
    print("own step slower than its onnxruntime export (recommend/profile --runtime best times both and keeps "
          f"the faster): {', '.join(slower) or 'none'}")
    col = [t[name, best[name]] for name in models]
    print(f"each model on its fastest runtime: slowest / fastest = {max(col) / min(col):.1f}x")


if __name__ == "__main__":
    main()
