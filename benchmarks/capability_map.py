"""The zoo's capability map (issue 26): every streaming zoo model at two sizes, seeds 0-1, on each
capability probe at several levels; for each cell, the share of the gap between the trivial
baseline and the optimum the model closes (1: optimal, 0: no better than predicting 0), as a
heatmap and a table in results/. Resumable in the results store, like `make results`.

    python benchmarks/capability_map.py [--workers N] [--quick] [--db results/results.db] [--out results]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = ["tcn", "trellisnet", "lstm", "gru", "rnn", "transformer", "lru"]
SIZES = [5_000, 20_000]
SEEDS = [0, 1]
LEVELS = {"lag": [10, 100, 500], "crosslag": [10, 100], "periodic": [8, 32, 128], "trend": [1],
          "walk": [0.1], "regime": [0.01, 0.05], "outliers": [0.01, 0.1]}
TRAIN = {"epochs": 5}
DATA = {"n_train": 1000, "n_valid": 256, "n_test": 256}
QUICK = {"models": ["tcn", "gru"], "sizes": [3_000], "seeds": [0], "levels": {"lag": [10], "walk": [0.1]},
         "train": {"epochs": 1}, "data": {"n_train": 64, "n_valid": 16, "n_test": 16}}


def seq_len(variant: str, level: float) -> int:
    """Long enough for the property and some scored steps after it."""
    if variant in ("lag", "crosslag"):
        return max(128, int(level) + 64)
    if variant == "periodic":
        return max(128, int(4 * level))
    return 128


def trials(models, sizes, seeds, levels, train, data) -> list[dict]:
    from seqbench.bench.sweep import make_trial
    out = [make_trial(f"probe:{v}", m, s, params=p, task_opts={"level": lv, "seq_len": seq_len(v, lv), **data},
                      train=train)
           for v, lvs in levels.items() for lv in lvs for m in models for p in sizes for s in seeds]
    return sorted(out, key=lambda t: t["task_opts"]["seq_len"])  # cheap first


def table(db: Path, todo: list[dict]) -> tuple[list[str], list[list[str]], dict]:
    """Rows: probe and level; columns: model@size; cells: the mean share of the gap closed."""
    from seqbench.bench import Store
    keys = {t["key"]: t for t in todo}
    with Store(db, readonly=True) as store:
        rows = [r for r in store.rows("done") if r["key"] in keys]
    cells: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        t = keys[r["key"]]
        gap = r["trivial"] - r["optimum"]
        share = (r["trivial"] - r["test_metric"]) / gap if gap > 0 else float("nan")
        cells.setdefault((f"{t['task']} {t['task_opts']['level']:g}", f"{t['model']}@{t['params'] // 1000}K"),
                         []).append(share)
    row_names = sorted({k[0] for k in cells}, key=lambda s: (s.split()[0], float(s.split()[1])))
    col_names = sorted({k[1] for k in cells})
    body = [[rn] + [f"{statistics.fmean(cells[rn, c]):.2f}" if (rn, c) in cells else "-" for c in col_names]
            for rn in row_names]
    return ["probe, level"] + col_names, body, {k: statistics.fmean(v) for k, v in cells.items()}


def heatmap(header, body, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    data = np.array([[float(c) if c != "-" else np.nan for c in row[1:]] for row in body])
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(header), 1.0 + 0.4 * len(body)))
    im = ax.imshow(np.clip(data, 0, 1), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(header) - 1), header[1:], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(body)), [r[0] for r in body], fontsize=8)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if data[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=ax, label="share of the gap to the optimum closed")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int)
    ap.add_argument("--quick", action="store_true", help="a tiny map (2 models, 2 probes, 1 epoch): minutes")
    ap.add_argument("--db", default=str(ROOT / "results" / "results.db"))
    ap.add_argument("--out", default=str(ROOT / "results"))
    args = ap.parse_args()
    from common import machine

    from seqbench.bench import run_sweep
    from seqbench.tables import md_table
    from seqbench.utils import atomic_write_text
    cfg = QUICK if args.quick else {"models": MODELS, "sizes": SIZES, "seeds": SEEDS, "levels": LEVELS,
                                    "train": TRAIN, "data": DATA}
    todo = trials(cfg["models"], cfg["sizes"], cfg["seeds"], cfg["levels"], cfg["train"], cfg["data"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(run_sweep(todo, args.db, workers=args.workers, cpus_per_trial=1))
    header, body, _ = table(Path(args.db), todo)
    heatmap(header, body, out / "capability.png")
    atomic_write_text(out / "capability.md", "\n".join([
        "# Capability map of the zoo", "",
        "Share of the gap between the trivial baseline (predict 0) and the optimum that each model closes "
        "(test MSE; mean over seeds; 1 is optimal). Probes: seqbench.tasks.probes.", "",
        md_table(header, body), "", "![capability heatmap](capability.png)", "",
        f"`python benchmarks/capability_map.py{' --quick' if args.quick else ''}`, {machine()}, "
        f"{len(todo)} trials ({cfg['train']['epochs']} epochs, {cfg['data']['n_train']} training sequences).", ""]))
    print(f"wrote {out / 'capability.md'} and capability.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
