"""How good is `seqbench recommend`'s answer (issue 25)? Per offline set and time budget: recommend's
answer; the default first try (the largest TCN at the task's settings) and the instant answer, each
trained for the same wall time; the best non-deep baseline; and the best of the portfolio's grid
(every configuration at 400 optimizer steps, from src/seqbench/recommend/portfolio.json). All are
test metrics; trials are cached in the store (results/recommend_quality.db), so a rerun reuses them.

    python benchmarks/recommend_quality.py [--budgets 1m,5m] [--sets GunPoint,lynx] [--workers 1]
                                           [--default-seeds 3]

``--default-seeds K`` trains the default first try for the same wall time with seeds 0..K-1: its
column is then their mean, and the noise the `>= default` judgment allows is the larger of the test
standard error and the seed noise of the difference (one run's test SE does not cover how much a
rerun moves). recommend's answer is one seed's run and the column a mean of K, so that difference
varies by sd * sqrt(1 + 1/K) over seeds, sd the seeds' standard deviation.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DB = ROOT / "results" / "recommend_quality.db"
OUT = ROOT / "results" / "recommend_quality.md"
SETS = ["GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions", "JapaneseVowels", "OSULeaf", "sunspots",
        "airpassengers", "co2", "lynx", "smnist-digits", "adding-100"]


def timed_trial(task_name: str, opts: dict, cand, lr: float, seconds: float, seed: int = 0) -> dict:
    from seqbench.bench.sweep import make_trial
    return make_trial(task_name, cand.model, seed, params=cand.params, task_opts=opts, model_opts=cand.opts,
                      train={"lr": lr, "epochs": 100_000, "max_time": seconds})


def test_of(db: Path, trial: dict) -> float | None:
    from seqbench.bench import Store
    with Store(db, readonly=True) as store:
        row = store.row(trial["key"])
    return None if row is None or row["status"] != "done" else row["test_metric"]


def standard_error(task, db: Path, trial: dict, value: float | None) -> float | None:
    """One standard error of a trial's test metric (accuracy: binomial; others: over test batches)."""
    from seqbench.bench.runner import run_dir_for
    from seqbench.recommend.answer import metric_noise
    if value is None:
        return None
    return metric_noise(task, run_dir_for(db, trial.get("run") or trial["key"]), value, "test")


def seed_noise(seeded: list[float]) -> float:
    """The seed noise of one run's metric minus the mean of ``seeded`` (runs of the same training
    with other seeds): sd * sqrt(1 + 1/K)."""
    return statistics.stdev(seeded) * math.sqrt(1 + 1 / len(seeded))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="1m,5m")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--default-seeds", type=int, default=1, help="seeds of the default's same-time training")
    ap.add_argument("--db", default=str(DB))
    ap.add_argument("--out", default=str(OUT), help="the markdown table to write")
    args = ap.parse_args()
    import seqbench
    from build_portfolio import SETS as ALL
    from common import machine

    from seqbench.bench import run_sweep
    from seqbench.errors import SeqbenchError
    from seqbench.recommend import Limits, candidate_space, instant_answer, parse_duration
    from seqbench.recommend.portfolio import Portfolio, default_config, match
    from seqbench.tables import fmt, md_table
    from seqbench.utils import atomic_write_text
    if args.default_seeds < 1:
        ap.error(f"--default-seeds must be at least 1, got {args.default_seeds}")
    names = args.sets.split(",")
    unknown = [n for n in names if n not in ALL]
    if unknown:
        ap.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    budgets = [parse_duration(b) for b in args.budgets.split(",")]
    port = Portfolio.load()
    grid = {s["name"]: s for s in port.sets} if port else {}
    rows, regrets = [], []
    for name in names:
        task_name, opts = ALL[name]
        task = seqbench.create_task(task_name, **opts)
        hib = task.metric.higher_is_better
        lr = float(task.recommended.get("lr", 2e-3))
        cands = candidate_space(task)
        default = match(default_config(), cands, task)
        instant = instant_answer(task, Limits(), db=args.db)
        pick = next(c for c in cands if c.id == instant.pick) if instant.pick else default
        g = grid.get(name)
        best_cfg = max(g["scores"], key=lambda c: g["scores"][c]) if g else None
        grid_test = g["test_metric"][best_cfg] if g else None
        for budget in budgets:
            try:
                rec = seqbench.recommend(task_name, Limits(), budget, db=args.db, workers=args.workers,
                                         progress=False, task_opts=opts)
            except SeqbenchError as e:  # e.g. a budget too short for profiling and one trial: say so, go on
                rows.append([name, f"{budget / 60:g} min", task.metric.name, f"refused: {e}"] + ["-"] * 9)
                print(" | ".join(rows[-1]), flush=True)
                continue
            rec_test = rec.test.get(rec.metric) if rec.winner is not None else rec.trivial_test
            trials = {"default": timed_trial(task_name, opts, default, lr, budget),
                      "instant": timed_trial(task_name, opts, pick, lr, budget)}
            more = [timed_trial(task_name, opts, default, lr, budget, seed) for seed in range(1, args.default_seeds)]
            run_sweep([*trials.values(), *more], args.db, workers=args.workers, cpus_per_trial=1, progress=False)
            d_test, i_test = test_of(Path(args.db), trials["default"]), test_of(Path(args.db), trials["instant"])
            se = standard_error(task, Path(args.db), trials["default"], d_test)
            seeded = [v for v in [d_test, *(test_of(Path(args.db), t) for t in more)] if v is not None]
            if len(seeded) > 1:  # the default's mean over seeds; the noise includes their spread
                d_test, se = statistics.fmean(seeded), max(se or 0.0, seed_noise(seeded))
            nondeep = rec.nondeep["test"] if rec.nondeep else None
            gap = None if grid_test is None else (grid_test - rec.trivial_test) * (1 if hib else -1)
            regret = None if not gap or gap <= 0 else (grid_test - rec_test) * (1 if hib else -1) / gap
            if regret is not None:
                regrets.append(regret)
            worse = d_test is not None and (d_test - rec_test) * (1 if hib else -1) > (se or 0)
            rows.append([name, f"{budget / 60:g} min", task.metric.name, fmt(rec_test),
                         rec.winner.candidate if rec.winner else "trivial baseline", fmt(d_test),
                         "-" if se is None else f"{se:.3f}", "no" if worse else "yes", fmt(i_test), instant.pick or "-",
                         fmt(nondeep), fmt(grid_test), "-" if regret is None else f"{regret:.2f}"])
            print(" | ".join(rows[-1]), flush=True)
    head = ["set", "budget", "metric", "recommend", "its answer", "default, same time", "SE", ">= default",
            "instant pick, same time", "instant pick", "non-deep", "grid best", "regret"]
    mean = sum(regrets) / len(regrets) if regrets else float("nan")
    atomic_write_text(Path(args.out), "\n".join([
        "# How good is recommend's answer", "",
        "Test metrics. `>= default`: recommend's answer is at least the default first try's (the largest TCN, the "
        "task's settings, trained for the same wall time) within its standard error (SE; accuracy: binomial, "
        "other metrics: over test batches of 16; with --default-seeds K > 1, the default's mean over K seeds and "
        "the larger of that SE and the seed noise of one run against that mean, sd * sqrt(1 + 1/K)). `regret`: the share of the gap between the "
        "trivial baseline and the grid's best (the portfolio's configurations at 400 optimizer steps) that "
        "recommend's answer misses (0: as good; negative: better).", "",
        md_table(head, rows), "", f"Mean regret: {mean:.3f} over {len(regrets)} runs.", "",
        f"`python benchmarks/recommend_quality.py --budgets {args.budgets} --sets {args.sets} --default-seeds "
        f"{args.default_seeds}`, {machine()}, "
        f"{args.workers} worker(s).", ""]))
    print(json.dumps({"mean_regret": mean, "runs": len(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
