"""Runner overhead of a sweep of tiny trials: per trial (process start, data, store) and the speed-up
from 1 to 2 workers (issue 5).

    python benchmarks/sweep_overhead.py [--trials 100]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import machine  # noqa: E402
from seqbench.bench import Store, grid_trials, run_sweep  # noqa: E402


def tiny(n: int, tag: int) -> list[dict]:
    # distinct trials: seeds; the task is trivial so the runner dominates
    return grid_trials(["adding"], ["gru"], list(range(tag * n, tag * n + n)), [None],
                       {"seq_len": 10, "n_train": 32, "n_valid": 16, "n_test": 16}, {"hidden": 4}, {"epochs": 1})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    for _ in range(3):
        subprocess.run([sys.executable, "-c", "import seqbench.bench.worker"], check=True)
    start = (time.perf_counter() - t0) / 3
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, workers in enumerate((1, 2)):
            db = Path(tmp) / f"w{workers}.db"
            t0 = time.perf_counter()
            s = run_sweep(tiny(args.trials, i), db, workers=workers, progress=False)
            walls[workers] = time.perf_counter() - t0
            assert s.done == args.trials, s
            with Store(db) as store:
                rows = store.rows()
                inside = statistics.fmean(r["train_time"] for r in rows)
                t1 = time.perf_counter()
                for r in rows[:20]:
                    store.finish(r["key"], {"test_metric": r["test_metric"]})
                write = (time.perf_counter() - t1) / 20
            per = walls[workers] * workers / args.trials
            print(f"{workers} worker(s): {args.trials} trials in {walls[workers]:.1f}s = {per:.2f} s per trial per "
                  f"worker; training inside a trial {inside * 1e3:.0f} ms; runner overhead ~{per - inside:.2f} s/trial")
    print(f"python + torch + seqbench import in a fresh process: {start:.2f} s; one store write (fsync'd "
          f"transaction): {write * 1e3:.1f} ms")
    print(f"speed-up from 1 to 2 workers: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
