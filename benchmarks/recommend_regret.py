"""Regret of `seqbench recommend` under a time budget, against an exhaustive grid of the same space.

For each small task: (1) the grid: every candidate that meets the limits, at three learning rates
and two dropout rates (the search's ranges), trained to full fidelity (the task's epochs), run as
one sweep on both cores; the grid's best on validation is then trained with seeds 0-2 to measure
its seed-to-seed spread; (2) `recommend` over the same space with a time budget of a third of the
grid's time. Regret = the grid best's mean test metric minus the recommendation's (in the
metric's better direction), compared with that spread; time ratio = recommend's wall time / the
grid's.

    python benchmarks/recommend_regret.py [--tasks tsc:GunPoint,tsc:ItalyPowerDemand] [--share 0.33]

Results go to BENCHMARKS.md by hand (with the machine line this prints).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

import seqbench  # noqa: E402
from seqbench.bench import Store, make_trial, run_sweep  # noqa: E402
from seqbench.recommend import Limits, candidate_space, exclusions, profile  # noqa: E402

LRS = (3e-4, 1e-3, 3e-3)
DROPOUTS = (0.0, 0.2)


def grid_best(task_name: str, limits: Limits, db: Path, models: list[str] | None) -> tuple[dict, float]:
    task = seqbench.create_task(task_name)
    cands = candidate_space(task, limits.max_params, models)
    costs = profile(task, cands, limits.batch, db)
    allowed = [c for c in cands if c not in exclusions(costs, limits)]
    epochs = int(task.recommended.get("epochs", 10))
    trials = [make_trial(task_name, c.model, 0, params=c.params,
                         model_opts={**c.opts, **({"dropout": d} if c.model not in ("gru", "lstm", "rnn") else {})},
                         train={"lr": lr, "epochs": epochs})
              for c in allowed for lr in LRS for d in (DROPOUTS if c.model not in ("gru", "lstm", "rnn") else (0.0,))]
    t0 = time.monotonic()
    run_sweep(trials, db, workers=2, cpus_per_trial=1, progress=False)
    took = time.monotonic() - t0
    with Store(db) as store:
        rows = [store.row(t["key"]) for t in trials]
    hib = task.metric.higher_is_better
    best = (max if hib else min)((r for r in rows if r and r["status"] == "done"), key=lambda r: r["best_valid"])
    return best, took


def seed_spread(best: dict, db: Path) -> tuple[float, float]:
    cfg = json.loads(best["config"])
    trials = [make_trial(cfg["task"], cfg["model"], s, params=cfg["params"], model_opts=cfg["model_opts"],
                         train=cfg["train"]) for s in (0, 1, 2)]
    run_sweep(trials, db, workers=2, cpus_per_trial=1, progress=False)
    with Store(db) as store:
        vals = [store.row(t["key"])["test_metric"] for t in trials]
    return statistics.fmean(vals), statistics.stdev(vals)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--share", type=float, default=1 / 3, help="recommend's budget as a share of the grid's time")
    p.add_argument("--tasks", default="tsc:GunPoint,tsc:ItalyPowerDemand")
    p.add_argument("--max-step-ms", type=float, default=0.3)
    p.add_argument("--max-params", default="60k")
    args = p.parse_args()
    limits = Limits(max_step_ms=args.max_step_ms, max_params=seqbench.utils.parse_count(args.max_params))
    print(f"machine: {machine()}; recommend budget {args.share:.2f} x the grid's time; limits {limits}")
    print("| task | recommended | its test | grid best (valid) | grid best test, seeds 0-2 | regret | "
          "within spread | recommend time | grid time | time ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.tasks.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            best, grid_time = grid_best(name, limits, Path(tmp) / "grid.db", None)
            mean, std = seed_spread(best, Path(tmp) / "grid.db")
            t0 = time.monotonic()
            rec = seqbench.recommend(name, limits, grid_time * args.share, db=Path(tmp) / "rec.db", progress=False)
            rec_time = time.monotonic() - t0
        metric = rec.metric
        got = rec.test.get(metric) if rec.winner else rec.trivial_test
        regret = (mean - got) if rec.higher_is_better else (got - mean)
        cfg = f"{best['model']} {best['params']:,} lr {json.loads(best['config'])['train']['lr']}"
        print(f"| {name} | {rec.winner.candidate if rec.winner else 'trivial baseline'} | {got:.4g} | {cfg} | "
              f"{mean:.4g} ± {std:.3g} | {regret:+.4g} | {'yes' if regret <= std else 'no'} | {rec_time:.0f}s | "
              f"{grid_time:.0f}s | {rec_time / grid_time:.2f} |", flush=True)



if __name__ == "__main__":
    main()
