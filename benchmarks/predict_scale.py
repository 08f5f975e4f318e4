"""`seqbench predict` at scale (issue 27): 1,000,000 short sequences and 10,000 sequences of length
10,000 (NPZ), through a small trained TCN run; throughput beside the model's own forward over the
same batches (the ceiling), and the peak memory of `seqbench predict` run alone (the CLI, its own
process) beside the input's size.

    python benchmarks/predict_scale.py [--n-short 1000000] [--n-long 10000]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def make_run(tmp: Path, L: int) -> Path:
    import seqbench
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, L, 1)).astype(np.float32)
    np.savez(tmp / "train.npz", x=x, y=(x[:, -1, 0] > 0).astype(np.int64))
    task = seqbench.create_task("custom", path=str(tmp / "train.npz"))
    model = seqbench.model_for_task("tcn", task, params=5_000)
    seqbench.train(model, task, seqbench.TrainConfig(epochs=1), out_dir=tmp / f"run{L}", progress=False)
    return tmp / f"run{L}"


def case(tmp: Path, n: int, L: int, batch: int) -> dict:
    import seqbench
    from seqbench.predict import predict
    run = make_run(tmp, L)
    x = np.random.default_rng(1).normal(size=(n, L, 1)).astype(np.float32)
    np.savez(tmp / "new.npz", x=x)
    mb = x.nbytes / 2**20
    t0 = time.perf_counter()
    df = predict(run, tmp / "new.npz", batch_size=batch, progress=False)
    t_predict = time.perf_counter() - t0
    assert len(df) == n
    model = seqbench.load_model(run).eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, batch):
            model(torch.from_numpy(x[i:i + batch]))
    t_forward = time.perf_counter() - t0
    del df, x
    peak = cli_peak_mb(run, tmp / "new.npz", tmp / "out.npz")
    return {"case": f"{n:,} x {L:,}", "input MB": f"{mb:,.0f}", "predict s": f"{t_predict:.1f}",
            "forward s": f"{t_forward:.1f}", "predict seq/s": f"{n / t_predict:,.0f}",
            "forward / predict": f"{t_forward / t_predict:.2f}", "CLI peak MB": f"{peak:,.0f}"}


PEAK = """
import sys
from seqbench.cli import main
code = main(sys.argv[1:])
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
print("VmHWM", hwm[0] if hwm else "nan", file=sys.stderr)
sys.exit(code)
"""


def cli_peak_mb(run: Path, data: Path, out: Path) -> float:
    """Peak resident memory of `seqbench predict` run alone, as a user runs it (its own process): the
    child's own VmHWM (Linux), since a child's ru_maxrss starts from the forking parent's size."""
    proc = subprocess.run([sys.executable, "-c", PEAK, "predict", str(run), "--input", str(data), "--out", str(out),
                           "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kb = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VmHWM")]
    return float(kb[-1]) / 2**10 if kb else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-short", type=int, default=1_000_000)
    ap.add_argument("--n-long", type=int, default=10_000)
    args = ap.parse_args()
    from common import machine

    from seqbench.tables import format_table
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        rows = [case(Path(d), args.n_short, 10, 1024), case(Path(d), args.n_long, 10_000, 64)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(format_table(rows, list(rows[0])))
    print(f"peak memory of the process: {peak:,.0f} MB; {machine()}, 1 thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
