"""The answer: ranked configurations, the noise rule that decides ties and whether anything beats
the trivial baseline, the winner's test score, and the written outputs (markdown, HTML, JSON, the
Pareto plot, the winner's run directory)."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqbench.tables import fmt
from seqbench.utils import atomic_write_json

@dataclass
class Ranked:
    candidate: str
    model: str
    shape: str
    params: int
    step_ms: float
    mem_mb: float
    lr: float
    dropout: float | None         # None: the candidate has no dropout to vary
    valid: float                  # best validation metric (mean over seeds when several)
    valid_std: float | None
    seeds: int
    epochs: int                   # epochs reached
    train_time: float
    run_dir: str
    default: bool = False         # the configuration an expert would try first (trained first, never pruned)
    cv_folds: int = 0             # k: valid is the mean over k-fold cross-validation, valid_std its spread
    refit: bool = False           # run_dir holds the configuration retrained on all of train+valid
    step_runtime: str = ""        # where step_ms was timed (numpy, torch, onnxruntime)

@dataclass
class Recommendation:
    task: str
    metric: str
    higher_is_better: bool
    winner: Ranked | None         # None: nothing beat the trivial baseline (recommend the baseline)
    ranked: list[Ranked]
    excluded: list[tuple[str, str]]
    trivial_valid: float
    trivial_test: float
    test: dict[str, float]        # the winner's test metrics (the only use of the test split)
    explanation: str
    tie: bool
    elapsed: float
    budget: float
    machine: str
    paths: dict[str, str] = field(default_factory=dict)
    untried: str = ""             # how many allowed candidates never trained, and the budget that would try them
    nondeep: dict | None = None   # a strong non-deep baseline's scores (NonDeep as a dict), where one applies
    instant: dict | None = None   # the portfolio's pick before training (Instant as a dict), where there is one
    optuna: str = ""              # the storage URL of the search's Optuna study (optuna-dashboard opens it)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

def choose(rows: list[Ranked], trivial: float, higher_is_better: bool, noise: float | None
           ) -> tuple[Ranked | None, list[Ranked]]:
    """The winner and the configurations tied with the best. The best must beat the trivial baseline
    by more than ``noise`` ((None, []) otherwise). The default configuration (``Ranked.default``),
    when trained, is replaced only by one measurably better (by more than ``noise``); otherwise any
    configuration within ``noise`` of the best ties, the cheapest step among them winning."""
    if not rows:
        return None, []
    best = rows[0]

    def margin(a: float, b: float) -> float:
        return a - b if higher_is_better else b - a
    if not margin(best.valid, trivial) > (noise or 0):
        return None, []
    comparable = [r for r in rows if r.cv_folds == best.cv_folds]  # cross-validated scores compare with their like
    default = next((r for r in comparable if r.default), None)
    if default is not None and not margin(best.valid, default.valid) > (noise or 0):
        return default, []  # nothing measurably better than what an expert would try first
    close = [r for r in comparable[1:] if noise and abs(r.valid - best.valid) <= noise and not r.default]
    sign = -1 if higher_is_better else 1  # within noise: the cheapest step; then fewer params, then the better score
    return min([best, *close], key=lambda r: (r.step_ms, r.params, sign * r.valid, r.lr, r.dropout or 0.0)), close

def validation_noise(task, best: Ranked, batch: int = 16) -> float | None:
    """One standard error of the best configuration's validation metric: accuracy as a proportion,
    any other metric from the spread of its value over batches of the validation split."""
    return metric_noise(task, best.run_dir, best.valid, "valid", batch)


def metric_noise(task, run_dir: str | Path, value: float, split: str = "valid", batch: int = 16) -> float | None:
    """One standard error of a run's metric ``value`` on ``split`` (see ``validation_noise``)."""
    n = task.num_samples(split)
    if task.metric.name == "accuracy":
        return _noise(task, value, n)
    if n < 2 * batch:
        batch = max(1, n // 4)
    import seqbench
    model = seqbench.load_model(run_dir, "best").eval()
    values = []
    with torch.inference_mode():
        for x, y in task.batches(split, batch):
            sums = task.score(task.predict(model, x).float(), y)
            values.append(task.finalize({k: s / max(c, 1) for k, (s, c) in sums.items()})[task.metric.name])
    values = [v for v in values if math.isfinite(v)]
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None

def _noise(task, value: float, n: int) -> float | None:
    """The validation metric's sampling noise (one standard error), where it is known: accuracy, as
    an adjusted (Agresti-Coull) proportion so that 0/n or n/n still carries the noise of n samples."""
    if task.metric.name != "accuracy":
        return None
    p = (value * n + 2) / (n + 4)
    return math.sqrt(p * (1 - p) / (n + 4))

def _test_winner(task, winner: Ranked) -> dict[str, float]:
    import seqbench
    model = seqbench.load_model(winner.run_dir, "best")
    return task.evaluate(model, "test")

def fmt_duration(s: float) -> str:
    return f"{s / 60:.0f}m" if s >= 120 else f"{s:.3g}s"

def explain(rec: Recommendation, note: str = "", noise: float | None = None, what: str = "",
            baseline: str = "") -> str:
    m = rec.metric
    if rec.winner is None:
        best = rec.ranked[0] if rec.ranked else None
        tail = f"; the best, {best.candidate}, reached {fmt(best.valid)}" if best else ""
        within = f" by more than the {what} (+-{noise:.3g})" if noise else ""
        named = f": {baseline}" if baseline else ""
        return (f"No candidate beat the trivial baseline{named} on validation{within} ({m} "
                f"{fmt(rec.trivial_valid)}){tail}. "
                "Recommended: the trivial baseline. More data, a longer --time-budget or another transform "
                "of the data may change that.")
    w = rec.winner
    parts = [f"{w.candidate} ({w.shape}, {w.params:,} params): best validation {m} {fmt(w.valid)} at "
             f"{w.step_ms:.3g} ms/step{' in onnxruntime' if w.step_runtime == 'onnxruntime' else ''} (trivial baseline {fmt(rec.trivial_valid)}); test {m} "
             f"{fmt(rec.test.get(m))} (trivial baseline on test {fmt(rec.trivial_test)}).{note}"]
    for r in [r for r in best_per_candidate(rec.ranked) if r.candidate != w.candidate][:3]:
        parts.append(f"{r.candidate}: {fmt(r.valid)} at {r.step_ms:.3g} ms ({r.epochs} epochs).")
    for cid, why in rec.excluded[:5]:
        parts.append(f"{cid} excluded: {why}.")
    if len(rec.excluded) > 5:
        parts.append(f"... and {len(rec.excluded) - 5} more excluded by the limits.")
    if rec.untried:
        parts.append(rec.untried)
    return " ".join(parts)

def write_answer(rec: Recommendation, out: str | Path) -> dict[str, str]:
    """recommendation.md / .html / .json, the Pareto plot, and the winner as a run directory (copied
    beside and swapped in, so an interrupted write never leaves half a winner)."""
    import html

    from seqbench.outdir import OutDir
    from seqbench.tables import html_figure, html_page, html_table, md_table
    dest = OutDir(out).check()
    out = dest.path
    paths = {}
    if rec.winner is not None:
        work = dest.staging("winner")
        shutil.copytree(rec.winner.run_dir, work, ignore=shutil.ignore_patterns("last.pt", ".*"), dirs_exist_ok=True)
        atomic_write_json(work / "result.json", {"test": rec.test, "best_valid": rec.winner.valid,
                                                  "candidate": rec.winner.candidate})
        paths["winner"] = str(dest.put_dir(work, "winner"))
    header, rows = ranked_table(rec)
    plot = pareto_plot(rec)
    if plot is not None:
        paths["pareto"] = str(dest.write("pareto.png", lambda tmp: Path(tmp).write_bytes(plot)))
    paths.update(md=str(out / "recommendation.md"), html=str(out / "recommendation.html"),
                 json=str(out / "recommendation.json"))
    rec.paths = paths
    ex_rows = [[cid, why] for cid, why in rec.excluded]
    md = (f"# seqbench recommend: {rec.task}\n\n{rec.explanation}\n\n"
          f"Machine: {rec.machine}. Time: {rec.elapsed:.0f}s of a {rec.budget:.0f}s budget. Selection on "
          f"validation; the winner alone was scored on test.\n\n## Ranked\n\n{md_table(header, rows)}\n\n"
          + ("## Validation metric vs step latency\n\n![Pareto front](pareto.png)\n\n" if plot else "")
          + (f"## Excluded by the limits (measured before training)\n\n{md_table(['candidate', 'why'], ex_rows)}\n"
             if ex_rows else ""))
    dest.write_text("recommendation.md", md)
    body = (f"<h1>seqbench recommend: {html.escape(rec.task)}</h1><p>{html.escape(rec.explanation)}</p>"
            f"<h2>Ranked</h2>{html_table(header, rows)}"
            + (html_figure(plot, "Validation metric vs step latency: the Pareto front") if plot else "")
            + (f"<h2>Excluded by the limits</h2>{html_table(['candidate', 'why'], ex_rows)}" if ex_rows else ""))
    dest.write_text("recommendation.html", html_page(f"seqbench recommend: {rec.task}", body))
    dest.write_text("recommendation.json", json.dumps(rec.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return paths

def best_per_candidate(rows: list[Ranked]) -> list[Ranked]:
    """The first (best-ranked) configuration of each candidate, in rank order."""
    seen, out = set(), []
    for r in rows:
        if r.candidate not in seen:
            seen.add(r.candidate)
            out.append(r)
    return out

def ranked_table(rec: Recommendation) -> tuple[list[str], list[list[str]]]:
    """One row per candidate (its best configuration; every configuration is in recommendation.json)."""
    header = ["rank", "candidate", "shape", "params", f"valid {rec.metric}", "step (ms)", "memory (MB)", "lr",
              "dropout", "epochs", "train time"]
    rows = []
    shown = best_per_candidate(rec.ranked)
    if rec.winner is not None and rec.winner not in shown:
        shown = [rec.winner if r.candidate == rec.winner.candidate else r for r in shown]
    for i, r in enumerate(shown, 1):
        valid = fmt(r.valid) + ("" if r.valid_std is None else f" ± {fmt(r.valid_std)} " + (
            f"({r.cv_folds}-fold CV)" if r.cv_folds else f"(n={r.seeds})"))
        row = [str(i), r.candidate, r.shape, f"{r.params:,}", valid, f"{r.step_ms:.3g}", f"{r.mem_mb:.3g}",
               f"{r.lr:.2g}", "-" if r.dropout is None else f"{r.dropout:.2f}", str(r.epochs), f"{r.train_time:.1f}s"]
        rows.append([f"**{c}**" for c in row] if r is rec.winner else row)
    if rec.nondeep:
        nd = rec.nondeep
        rows.append(["-", f"non-deep: {nd['name']}", "no streaming step", "-", fmt(nd["valid"]), "-", "-", "-", "-",
                     "-", f"{nd['fit_s']:.1f}s"])
    rows.append(["-", "trivial baseline", "-", "0", fmt(rec.trivial_valid), "-", "-", "-", "-", "-", "-"])
    return header, rows

def pareto_plot(rec: Recommendation) -> bytes | None:
    """Validation metric vs step latency: every trained candidate, the Pareto front joined, the
    trivial baseline as a line. None without matplotlib or results."""
    if not rec.ranked:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import io
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    models = sorted({r.model for r in rec.ranked})
    for m in models:
        pts = [r for r in rec.ranked if r.model == m]
        ax.scatter([r.step_ms for r in pts], [r.valid for r in pts], label=m, s=22)
    better = (lambda a, b: a > b) if rec.higher_is_better else (lambda a, b: a < b)
    front, best = [], None
    for r in sorted(rec.ranked, key=lambda r: r.step_ms):
        if best is None or better(r.valid, best):
            front.append(r)
            best = r.valid
    ax.plot([r.step_ms for r in front], [r.valid for r in front], color="black", linewidth=1, label="Pareto front")
    if rec.winner is not None:
        ax.scatter([rec.winner.step_ms], [rec.winner.valid], s=120, facecolors="none", edgecolors="red",
                   label="winner")
    ax.axhline(rec.trivial_valid, color="grey", linestyle="--", linewidth=1, label="trivial baseline")
    if rec.nondeep:  # not a streaming model: no step latency, so a level to compare with
        ax.axhline(rec.nondeep["valid"], color="tab:purple", linestyle=":", linewidth=1.2,
                   label=f"non-deep: {rec.nondeep['name']}")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator
    lo, hi = min(r.step_ms for r in rec.ranked), max(r.step_ms for r in rec.ranked)
    ticks = np.geomspace(lo, hi, 5) if hi > lo * 1.01 else np.array([lo])  # five labels, never overlapping
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.2g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("streaming step latency (ms)")
    ax.set_ylabel(f"validation {rec.metric}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()

def print_recommendation(rec: Recommendation, file=sys.stdout, top: int = 12) -> None:
    from seqbench.tables import format_table
    header, rows = ranked_table(rec)
    ranked, baselines = [r for r in rows if r[0] != "-"], [r for r in rows if r[0] == "-"]
    if len(ranked) > top:  # the best, the winner wherever it ranks, and the baselines; the rest in the files
        keep = [r for i, r in enumerate(ranked) if i < top or r[0].startswith("**")]
        rows = keep + [["...", f"{len(ranked) - len(keep)} more candidates in recommendation.md"] + [""] * 9,
                       *baselines]
    print(format_table([dict(zip(header, [c.strip("*") for c in r])) for r in rows], header,
                       align_right=["params", f"valid {rec.metric}", "step (ms)", "memory (MB)", "epochs"]), file=file)
    if rec.excluded:
        print(f"\nexcluded before training ({len(rec.excluded)}): " +
              "; ".join(f"{cid}: {why}" for cid, why in rec.excluded[:8]) +
              (" ..." if len(rec.excluded) > 8 else ""), file=file)
    print(f"\n{rec.explanation}", file=file)
    if rec.instant and rec.instant.get("pick"):
        agree = "the search agrees" if rec.winner is not None and rec.winner.candidate == rec.instant["pick"] else \
            "the search's answer above replaces it"
        print(f"The portfolio's instant answer was {rec.instant['pick']} ({agree}).", file=file)
    if rec.paths.get("md"):
        print(f"written: {rec.paths.get('md')}" + (f"; winner run: {rec.paths['winner']}" if "winner" in rec.paths
                                                  else ""), file=file)
    if rec.optuna:
        print(f"the search in Optuna's dashboard: optuna-dashboard {rec.optuna}", file=file)
