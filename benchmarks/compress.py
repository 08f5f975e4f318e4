"""Compression that pays? Trained seq-MNIST (digits variant: 8x8 images as 64-step sequences)
TCN and LSTM teachers, then `seqbench compress`:

* int8 (LSTM): B=1 step latency vs the float step (interleaved, 1 thread), test accuracy;
* pruning (TCN, half the channels) + fine-tuning;
* distillation into a student at 1/4 of the teacher's parameters vs the same student from
  scratch with the same budget and schedule, over several seeds.

    python benchmarks/compress.py [--epochs 30] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, time_interleaved  # noqa: E402

import seqbench  # noqa: E402
from seqbench.compress import DistillTask, compress_run, compression_table, quantize_int8  # noqa: E402

TEACHERS = {"lstm": "268k", "tcn": "40k"}  # the LSTM: hidden 256, where int8 starts to pay (see the size scan)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    task = seqbench.create_task("smnist:digits")
    cfg = seqbench.TrainConfig.for_task(task, epochs=args.epochs, device="cpu")
    work = Path(tempfile.mkdtemp(prefix="seqbench-compress-"))
    for name, size in TEACHERS.items():
        torch.manual_seed(0)
        teacher = seqbench.create_model(name, task.d_in, task.d_out, params=size)
        seqbench.train(teacher, task, cfg, out_dir=work / name, progress=False)
        teacher = seqbench.load_model(work / name).eval()
        student = f"{name}:{int(size.rstrip('k')) // 4}k"  # 1/4 of the teacher's parameters
        opts = {"quantize": "int8"} if name == "lstm" else {"prune": 0.5}
        rows = compress_run(work / name, work / f"{name}-small", distill_into=student, progress=False, **opts)
        print(f"\n## {name} teacher ({size}), {args.epochs} epochs\n")
        print(compression_table(rows, task))
        if name == "lstm":  # the int8 step against the float step, interleaved in one process
            q = quantize_int8(teacher)
            x = torch.randn(1, 1)
            sf, sq = teacher.init_state(1), q.init_state(1)
            t = time_interleaved({"float": lambda: teacher.step(x, sf), "int8": lambda: q.step(x, sq)})
            acc = (rows[1]["accuracy"] - rows[0]["accuracy"]) * 100
            print(f"\nint8 step: {t['float'] * 1e3:.4f} ms float vs {t['int8'] * 1e3:.4f} ms int8 "
                  f"({t['float'] / t['int8']:.2f}x faster), accuracy {acc:+.1f} points")
        # the student comparison over seeds: distilled vs from scratch, same budget and schedule
        s_name, s_size = student.split(":")
        res = {"distilled": [], "scratch": []}
        for seed in seeds:
            for tag in res:
                torch.manual_seed(seed)
                m = seqbench.create_model(s_name, task.d_in, task.d_out, params=s_size)
                t_ = DistillTask(task, teacher) if tag == "distilled" else task
                r = seqbench.train(m, t_, dataclasses.replace(cfg, seed=seed), progress=False)
                res[tag].append(r.test["accuracy"])
        mean = {k: sum(v) / len(v) for k, v in res.items()}
        print(f"\nstudent {student} over seeds {seeds}: distilled "
              + ", ".join(f"{a:.3f}" for a in res["distilled"]) + f" (mean {mean['distilled']:.3f}); from scratch "
              + ", ".join(f"{a:.3f}" for a in res["scratch"]) + f" (mean {mean['scratch']:.3f}); "
              f"distilled - scratch = {(mean['distilled'] - mean['scratch']) * 100:+.1f} points")
    int8_scan()
    return 0


def int8_scan() -> None:
    """int8 vs float LSTM step and full sequence (784 steps) at B=1 over sizes, interleaved."""
    print("\n## int8 vs float LSTM by size (B=1, 1 thread; untrained weights, latency only)\n")
    print("| hidden | params | float step | int8 step | speed-up | float 784 steps | int8 784 steps | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for h in (64, 128, 256, 512):
        m = seqbench.create_model("lstm", 1, 10, hidden=h).eval()
        q = quantize_int8(m)
        x, xs = torch.randn(1, 1), torch.randn(1, 784, 1)
        sf, sq = m.init_state(1), q.init_state(1)
        t = time_interleaved({"f": lambda: m.step(x, sf), "q": lambda: q.step(x, sq)}, rounds=5)
        with torch.inference_mode():
            s = time_interleaved({"f": lambda: m(xs), "q": lambda: q(xs)}, rounds=3)
        print(f"| {h} | {seqbench.count_params(m):,} | {t['f'] * 1e3:.3f} ms | {t['q'] * 1e3:.3f} ms | "
              f"{t['f'] / t['q']:.2f}x | {s['f'] * 1e3:.2f} ms | {s['q'] * 1e3:.2f} ms | {s['f'] / s['q']:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
