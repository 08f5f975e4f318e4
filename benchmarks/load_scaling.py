"""Loading a user's CSV grows linearly with its rows: 10K, 100K and 1M rows (100 steps per series,
so 100 to 10,000 series), parse and grouping timed apart, best of three.

    python benchmarks/load_scaling.py [--rows 10000,100000,1000000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import machine  # noqa: E402
from seqbench.data.files import load_file, read_table  # noqa: E402

STEPS = 100


def write_csv(path: Path, rows: int) -> None:
    import pandas as pd
    rng = np.random.default_rng(0)
    series = np.arange(rows) // STEPS
    pd.DataFrame({"series": series, "step": np.arange(rows) % STEPS, "a": rng.normal(size=rows),
                  "b": rng.normal(size=rows), "label": series % 3}).to_csv(path, index=False)


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,100000,1000000")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"{'rows':>10} {'series':>8} {'parse (s)':>10} {'load (s)':>9} {'grouping (s)':>13} {'us/row':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (int(r) for r in args.rows.split(",")):
            path = Path(tmp) / f"{rows}.csv"
            write_csv(path, rows)
            parse = best_of(lambda: read_table(path))
            load = best_of(lambda: load_file(path, id_col="series", time_col="step", label_col="label",
                                             target_col="target", value_col=None, features=None))
            print(f"{rows:>10,} {rows // STEPS:>8,} {parse:>10.3f} {load:>9.3f} {load - parse:>13.3f} "
                  f"{load / rows * 1e6:>7.2f}")


if __name__ == "__main__":
    main()
