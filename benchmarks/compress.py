"""Compression that pays? Trained seq-MNIST (digits variant: 8x8 images as 64-step sequences)
TCN and LSTM teachers, then `seqbench compress`:

* int8 (LSTM): B=1 step latency vs the float step (interleaved, 1 thread), test accuracy;
* pruning (TCN, half the channels) + fine-tuning;
* distillation into a student at 1/4 of the teacher's parameters vs the same student from
  scratch with the same budget and schedule, over several seeds.

* distillation on the full seq-MNIST (50K training sequences of 784 steps): a 70K TCN teacher
  (5 epochs) into a 1/4-size TCN student (3 epochs), distilled vs from scratch, paired by seed
  (``--full-seeds``, 12 by default; ~2 min per seed pair on 2 threads, ``--full-seeds none`` skips it).

    python benchmarks/compress.py [--epochs 30] [--seeds 0,1,2] [--full-seeds 0,...,11]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, time_interleaved  # noqa: E402

import seqbench  # noqa: E402
from seqbench.compress import DistillTask, compress_run, compression_table, quantize_int8  # noqa: E402

TEACHERS = {"lstm": "268k", "tcn": "40k"}  # the LSTM: hidden 256, where int8 starts to pay (see the size scan)


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; 'none' -> []."""
    try:
        return [] if text == "none" else [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are comma-separated integers (or 'none'), got {text!r}") from None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", default=[0, 1, 2], type=seed_list)
    ap.add_argument("--full-seeds", default=list(range(12)), type=seed_list,
                    help="seeds for the full seq-MNIST distillation, or 'none'")
    args = ap.parse_args()
    seeds = args.seeds
    if not seeds:
        ap.error("--seeds needs at least one seed")
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
        res = student_accuracies(task, teacher, s_name, s_size, cfg, seeds)
        mean = {k: sum(v) / len(v) for k, v in res.items()}
        print(f"\nstudent {student} over seeds {seeds}: distilled "
              + ", ".join(f"{a:.3f}" for a in res["distilled"]) + f" (mean {mean['distilled']:.3f}); from scratch "
              + ", ".join(f"{a:.3f}" for a in res["scratch"]) + f" (mean {mean['scratch']:.3f}); "
              f"distilled - scratch = {(mean['distilled'] - mean['scratch']) * 100:+.1f} points")
    int8_scan()
    tcn_int8_scan()
    if args.full_seeds:
        distill_full_smnist(args.full_seeds, work)
    return 0


def student_accuracies(task, teacher, model: str, size, cfg, seeds: list[int]) -> dict[str, list[float]]:
    """Test accuracy of a student per seed, distilled from ``teacher`` and from scratch: the same
    seed, schedule and budget (``cfg``) for both."""
    res = {"distilled": [], "scratch": []}
    for seed in seeds:
        for tag in res:
            torch.manual_seed(seed)
            m = seqbench.create_model(model, task.d_in, task.d_out, params=size)
            t_ = DistillTask(task, teacher) if tag == "distilled" else task
            res[tag].append(seqbench.train(m, t_, dataclasses.replace(cfg, seed=seed), progress=False).test["accuracy"])
    return res


def distill_full_smnist(seeds: list[int], work: Path, teacher_epochs: int = 5, student_epochs: int = 3) -> None:
    """Distilled vs from-scratch students on the full seq-MNIST, same budget (epochs, schedule, seed)."""
    import math
    torch.set_num_threads(2)
    task = seqbench.create_task("smnist")
    cfg = seqbench.TrainConfig.for_task(task, epochs=teacher_epochs, device="cpu")
    torch.manual_seed(0)
    teacher = seqbench.create_model("tcn", task.d_in, task.d_out, params="70k")
    t_acc = seqbench.train(teacher, task, cfg, out_dir=work / "smnist-teacher", progress=False).test["accuracy"]
    teacher = seqbench.load_model(work / "smnist-teacher").eval()
    student = seqbench.count_params(teacher) // 4
    print(f"\n## distillation on the full seq-MNIST: tcn teacher ({seqbench.count_params(teacher):,} params, "
          f"{teacher_epochs} epochs, test {t_acc:.4f}) into tcn:{student} ({student_epochs} epochs), 2 threads\n")
    print("| seed | distilled | from scratch | difference (points) |\n|---|---|---|---|")
    diffs = []
    for seed in seeds:
        acc = student_accuracies(task, teacher, "tcn", student, dataclasses.replace(cfg, epochs=student_epochs), [seed])
        diffs.append(100 * (acc["distilled"][0] - acc["scratch"][0]))
        print(f"| {seed} | {acc['distilled'][0]:.4f} | {acc['scratch'][0]:.4f} | {diffs[-1]:+.2f} |", flush=True)
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) if len(diffs) > 1 else float("nan")
    print(f"\ndistilled - scratch: {mean:+.2f} +- {se:.2f} points (mean +- standard error over {len(diffs)} seeds)")


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


def tcn_int8_scan() -> None:
    """Could int8 pay for the TCN's step at any width? A TCN step is one matmul per conv, (1, k*C) @
    (k*C, C) at B=1, plus fixed overhead: the float one in NumPy (what `model.step` runs) against
    torch's dynamic int8 linear (fbgemm, per-channel int8 weights), interleaved."""
    import numpy as np
    print("\n## one TCN conv's step matmul, float (NumPy) vs dynamic int8 (B=1, 1 thread, k=7)\n")
    print("| channels | weights per conv | float (NumPy) | int8 (torch dynamic) | int8 speed-up |\n|---|---|---|---|---|")
    for c in (25, 64, 128, 256, 512):
        w, b, x = torch.randn(c, 7 * c) * 0.05, torch.randn(c), torch.randn(1, 7 * c)
        with warnings.catch_warnings():  # torch deprecates its quantized tensors in favour of torchao
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, w.abs().amax(1) / 127, torch.zeros(c, dtype=torch.long), 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(q, b)
        wn, xn, out = np.ascontiguousarray(w.t().numpy()), x.numpy(), np.empty((1, c), np.float32)
        t = time_interleaved({"f": lambda: np.dot(xn, wn, out=out),
                              "q": lambda: torch.ops.quantized.linear_dynamic(x, packed, True)}, rounds=5)
        print(f"| {c} | {w.numel():,} | {t['f'] * 1e6:.1f} us | {t['q'] * 1e6:.1f} us | {t['f'] / t['q']:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
