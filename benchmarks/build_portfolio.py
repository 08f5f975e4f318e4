"""The recommender's portfolio (issue 25), learned offline: every zoo model at two sizes and each
search shape, at the task's learning rate, trained for the same number of optimizer steps on every
data set the suite has offline; the results go to the results store (results/results.db, resumable:
a rerun trains only what is missing), and the portfolio with each set's measured properties and
scores to src/seqbench/recommend/portfolio.json (committed; what `seqbench recommend` reads).
results/portfolio.md shows the scores and the leave-one-set-out evaluation: the portfolio built
without a set, used on it, against the default first try.

    python benchmarks/build_portfolio.py [--workers N] [--no-train] [--sets GunPoint,lynx]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DB = ROOT / "results" / "results.db"
OUT_JSON = ROOT / "src" / "seqbench" / "recommend" / "portfolio.json"
OUT_MD = ROOT / "results" / "portfolio.md"

# Every kind of data the suite has offline, each small enough for a CPU: UCR/UEA classification
# (tiny to mid-sized, univariate and multivariate, fixed and variable length), forecasting series,
# image sequences, the synthetic memory tasks at small sizes, two probes, music and characters.
SETS: dict[str, tuple[str, dict]] = {
    "GunPoint": ("tsc:GunPoint", {}),
    "ArrowHead": ("tsc:ArrowHead", {}),
    "ItalyPowerDemand": ("tsc:ItalyPowerDemand", {}),
    "BasicMotions": ("tsc:BasicMotions", {}),
    "JapaneseVowels": ("tsc:JapaneseVowels", {}),
    "OSULeaf": ("tsc:OSULeaf", {}),
    "ACSF1": ("tsc:ACSF1", {}),
    "PLAID": ("tsc:PLAID", {}),
    "sunspots": ("forecast:sunspots", {}),
    "airpassengers": ("forecast:airpassengers", {}),
    "co2": ("forecast:co2", {}),
    "lynx": ("forecast:lynx", {}),
    "wineind": ("forecast:wineind", {}),
    "ausbeer": ("forecast:ausbeer", {}),
    "woolyrnq": ("forecast:woolyrnq", {}),
    "taylor": ("forecast:taylor", {}),
    "smnist-digits": ("smnist:digits", {}),
    "pmnist-digits": ("pmnist:digits", {}),
    "adding-100": ("adding", {"seq_len": 100, "n_train": 2000, "n_valid": 256, "n_test": 256}),
    "copy-50": ("copy_memory", {"T": 50, "n_train": 2000, "n_valid": 256, "n_test": 256}),
    "lag-100": ("probe:lag", {"level": 100, "seq_len": 164, "n_train": 1000, "n_valid": 256, "n_test": 256}),
    "periodic-32": ("probe:periodic", {"level": 32, "seq_len": 128, "n_train": 1000, "n_valid": 256, "n_test": 256}),
    "chorales": ("chorales", {}),
    "ptb-char-slice": ("ptb_char", {"seq_len": 100, "valid_len": 80, "max_tokens": 200_000}),
    "ptb-word-slice": ("ptb_word", {"seq_len": 80, "valid_len": 40, "max_tokens": 200_000}),
}
STEPS = 400          # optimizer steps per trial, on every set: equal effort, whatever the set's size
MAX_EPOCHS = 300


def build_trials(names: list[str]) -> tuple[list[dict], dict]:
    """The sweep trials of every set and portfolio configuration, and each set's task."""
    import seqbench
    from seqbench.bench.sweep import make_trial
    from seqbench.recommend.portfolio import config_candidates
    out, tasks = [], {}
    for name in names:
        task_name, opts = SETS[name]
        task = tasks[name] = seqbench.create_task(task_name, **opts)
        per_epoch = math.ceil(task.num_samples("train") / int(task.recommended.get("batch_size", 32)))
        epochs = min(MAX_EPOCHS, math.ceil(STEPS / per_epoch))
        lr = float(task.recommended.get("lr", 2e-3))
        for cfg, cand in config_candidates(task).items():
            t = make_trial(task_name, cand.model, 0, params=cand.params, task_opts=opts, model_opts=cand.opts,
                           train={"lr": lr, "epochs": epochs})
            t["portfolio"] = (name, cfg)
            out.append(t)
    return out, tasks


def normalized(values: dict[str, float], trivial: float, higher_is_better: bool) -> dict[str, float]:
    """Each configuration's share of the gap between the trivial baseline and the set's best
    configuration (clipped to [0, 1]; 0 everywhere when none beats the baseline)."""
    sign = 1.0 if higher_is_better else -1.0
    best = max(sign * v for v in values.values())
    gap = best - sign * trivial
    return {c: round(min(1.0, max(0.0, (sign * v - sign * trivial) / gap)), 4) if gap > 0 else 0.0
            for c, v in values.items()}


def write_outputs(names: list[str], todo: list[dict], tasks: dict, db: Path) -> None:
    from common import machine

    from seqbench.bench import Store
    from seqbench.recommend.portfolio import Portfolio
    from seqbench.recommend.properties import measure
    from seqbench.utils import atomic_write_text
    with Store(db, readonly=True) as store:
        done = {r["key"]: r for r in store.rows("done")}
    sets, configs = [], []
    for name in names:
        task, hib = tasks[name], tasks[name].metric.higher_is_better
        rows = {t["portfolio"][1]: done[t["key"]] for t in todo if t["portfolio"][0] == name and t["key"] in done}
        if not rows:
            continue
        configs += [c for c in rows if c not in configs]
        valid = {c: r["best_valid"] for c, r in rows.items()}
        test = {c: r["test_metric"] for c, r in rows.items()}
        sets.append({"name": name, "task": SETS[name][0], "task_opts": SETS[name][1], "props": measure(task),
                     "metric": task.metric.name, "higher_is_better": hib,
                     "trivial_valid": task.trivial_on("valid"), "trivial_test": task.trivial_on("test"),
                     "valid_metric": valid, "test_metric": test,
                     "train_s": {c: round(r["train_time"] or 0.0, 1) for c, r in rows.items()},
                     "scores": normalized(valid, task.trivial_on("valid"), hib),
                     "test": normalized(test, task.trivial_on("test"), hib)})
    import subprocess
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    built = {"command": "python benchmarks/build_portfolio.py", "revision": rev, "machine": machine(),
             "steps_per_trial": STEPS, "trials": sum(len(s["valid_metric"]) for s in sets), "of": len(todo)}
    atomic_write_text(OUT_JSON, json.dumps({"built": built, "configs": configs, "sets": sets}, indent=1) + "\n")
    write_report(Portfolio(sets, configs, built), len(todo))
    print(f"wrote {OUT_JSON} and {OUT_MD}: {built['trials']} of {len(todo)} trials")


def wins(rows: list[dict]) -> int:
    return sum(r["top_test"] > r["default_test"] + 1e-9 for r in rows)


def nested_neighbours(port, ks: tuple[int, ...] = (3, 5, 7, 10)) -> tuple[dict[int, int], int]:
    """How many sets each number of voting neighbours wins leave-one-set-out, and the wins when that
    number is itself chosen without the held-out set: for each set, the k that wins most on the
    other sets' own leave-one-out (ties: nearest the default), then used on it."""
    from seqbench.recommend.portfolio import NEIGHBOURS, Portfolio, leave_one_out
    flat = {k: wins(leave_one_out(port, k=k)) for k in ks}
    nested = 0
    for s in port.sets:
        rest = Portfolio(sets=[t for t in port.sets if t is not s], configs=port.configs, built=port.built)
        k = max(ks, key=lambda k: (wins(leave_one_out(rest, k=k)), -abs(k - NEIGHBOURS)))
        nested += wins([r for r in leave_one_out(port, k=k) if r["set"] == s["name"]])
    return flat, nested


def write_report(port, planned: int | None = None) -> None:
    """results/portfolio.md from the portfolio alone (its sets' scores): the leave-one-set-out table,
    and how the choice improves with the number of portfolio configurations trained."""
    import statistics

    from seqbench.recommend.portfolio import PORTFOLIO_FIRST, default_config, leave_one_out
    from seqbench.recommend.properties import describe
    from seqbench.tables import fmt, md_table
    from seqbench.utils import atomic_write_text
    loo = leave_one_out(port)
    head = ["set", "data (measured)", "best config (valid)", "default (tcn#0@100K)", "instant pick (LOO)",
            "its share", f"recommend's first {PORTFOLIO_FIRST + 1} trials choose (LOO)", "its share"]
    body = []
    for s, r in zip(port.sets, loo):
        best = max(s["scores"], key=lambda c: s["scores"][c])
        body.append([s["name"], describe(s["props"]), best, fmt(r["default_test"]), r["instant"], fmt(r["instant_test"]),
                     r["top"], fmt(r["top_test"])])
    ties = sum(abs(r["top_test"] - r["default_test"]) <= 1e-9 for r in loo)
    inst = sum(r["instant_test"] > r["default_test"] + 1e-9 for r in loo)
    mean = {k: statistics.fmean(r[k] for r in loo) for k in ("default_test", "instant_test", "top_test")} if loo else {}
    curve = []
    for n in range(1, len(port.configs)):
        rows = leave_one_out(port, first=n)
        curve.append([n + 1, wins(rows),
                      sum(abs(r["top_test"] - r["default_test"]) <= 1e-9 for r in rows),
                      sum(r["top_test"] < r["default_test"] - 1e-9 for r in rows),
                      f"{statistics.fmean(r['top_test'] for r in rows):.3f}"])
    flat, nested = nested_neighbours(port)
    default = default_config()
    ceiling = sum(max(s["test"].values()) > s["test"].get(default, 0.0) + 1e-9 for s in port.sets)
    built = port.built
    atomic_write_text(OUT_MD, "\n".join([
        "# The recommender's portfolio, and how it transfers", "",
        "Every configuration (model, search shape, size; the task's learning rate) trained for "
        f"{built.get('steps_per_trial', STEPS)} optimizer steps on each offline set; scores are the share of the gap "
        "between the trivial baseline and the set's best configuration that a configuration closes (test split, "
        "1 = the set's best; 0 = no better than the trivial baseline, or not trained).",
        "Leave one set out: the portfolio built from the other sets, used on this one (its nearest sets by "
        "measured properties vote).", "",
        md_table(head, body), "",
        f"Over {len(loo)} sets, what recommend's first {PORTFOLIO_FIRST + 1} trials choose (the default first try and "
        f"the portfolio's first {PORTFOLIO_FIRST}, the best on validation, the default kept unless another is "
        f"better) beats the default alone on test on {wins(loo)} and ties it on {ties}; the instant pick alone beats it "
        f"on {inst}. Mean share of the gap closed: "
        + ", ".join(f"{k.removesuffix('_test')} {v:.3f}" for k, v in mean.items()) + ".", "",
        "## More of the portfolio tried", "",
        "The same leave-one-set-out choice from the default and the portfolio's first N - 1 configurations for this "
        f"set (N trials). On {len(port.sets) - ceiling} of the {len(port.sets)} sets no configuration of the grid "
        "beats the default on test at all, so at most "
        f"{ceiling} can be won.", "",
        md_table(["trials", "beats the default", "ties", "loses", "mean share of the gap closed"], curve), "",
        f"recommend trains the portfolio's first {PORTFOLIO_FIRST} right after the default (PORTFOLIO_FIRST), read off "
        "this table: the first count past the jump in the mean share, before the search's own proposals take over. "
        "Choosing it here is a choice made on these same 19 sets, so the row it picks is an optimistic estimate.", "",
        "## How many neighbours vote", "",
        f"Sets that recommend's first {PORTFOLIO_FIRST + 1} trials win over the default, by the number of nearest sets "
        "voting: " + ", ".join(f"{k}: {n}" for k, n in flat.items()) + f". Chosen without the held-out set (for each "
        f"set, the number that wins most on the other sets' own leave-one-out, then used on it): {nested} of "
        f"{len(port.sets)}. The best single number read off the first list is a choice made on the evaluation sets; "
        "the nested count is what choosing it transfers.", "",
        f"`{built.get('command', 'python benchmarks/build_portfolio.py')}`, revision {built.get('revision', '?')}, "
        f"{built.get('machine', '?')}; {built.get('trials', '?')} of {planned or built.get('of', '?')} trials done. "
        "The tables: `python benchmarks/build_portfolio.py --report` (from portfolio.json alone).", ""]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int)
    ap.add_argument("--no-train", action="store_true", help="write the outputs from what the store holds")
    ap.add_argument("--report", action="store_true", help=f"rewrite only {OUT_MD.name}, from the committed portfolio.json")
    ap.add_argument("--sets", help=f"comma-separated subset of: {', '.join(SETS)}")
    ap.add_argument("--db", default=str(DB))
    args = ap.parse_args()
    if args.report:
        from seqbench.recommend.portfolio import Portfolio
        write_report(Portfolio.load(OUT_JSON))
        print(f"wrote {OUT_MD}")
        return 0
    names = args.sets.split(",") if args.sets else list(SETS)
    unknown = [n for n in names if n not in SETS]
    if unknown:
        ap.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    todo, tasks = build_trials(names)
    if not args.no_train:
        from seqbench.bench import run_sweep
        cost = {"transformer": 1, "trellisnet": 1}
        ordered = sorted(todo, key=lambda t: (cost.get(t["model"], 0), t["params"]))  # cheap first
        print(run_sweep([{k: v for k, v in t.items() if k != "portfolio"} for t in ordered], args.db,
                        workers=args.workers, cpus_per_trial=1))
    write_outputs(names, todo, tasks, Path(args.db))
    return 0


if __name__ == "__main__":
    sys.exit(main())
