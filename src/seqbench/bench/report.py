"""The paper-style report of a results database: ``report.md`` (+ PNG plots beside it) and a
self-contained ``report.html`` (plots embedded as data URIs, no scripts, no external files).

Contents: the results table (tasks x models, mean +/- std over seeds, best per row in bold by the
metric's direction, parameter counts, the paper's numbers in a reference column), learning curves
per task, metric vs parameters, effective memory (copy-memory accuracy vs T, when the trials
cover two or more T), and a speed table (training samples/s, inference latency).
"""
from __future__ import annotations

import html
import io
import json
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from seqbench.bench.store import Store
from seqbench.errors import SeqbenchError
from seqbench.tables import fmt, fmt_count, html_figure, html_page, html_table, md_table


def _task_label(row: dict) -> str:
    cfg = json.loads(row["config"])
    opts = cfg.get("task_opts") or {}
    shown = {k: v for k, v in opts.items() if k in ("seq_len", "T", "variant", "steps_per_quarter", "lookback")}
    data = cfg.get("data")
    if data:  # the user's file: its name and a content hash, so two datasets never share a row
        shown["data"] = f"{data['file']}@{data['sha256'][:8]}"
    return row["task"] + (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else "")


def _natural(config: tuple[str, int]) -> tuple:
    """Sort key: numbers inside task labels compare as numbers (T=50 < T=100 < T=1000)."""
    task, budget = config
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", task)), budget


def summarize(rows: list[dict]) -> dict[tuple[str, int, str], list[dict]]:
    """Done trials grouped by (task label, budget, model): each group holds the seeds of one
    configuration, so a mean +- std is always over seeds, never over model sizes or datasets."""
    groups: dict[tuple[str, int, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(_task_label(r), r["budget"] or 0, r["model"])].append(r)  # budget 0: the model's default size
    return dict(groups)


def _mean_std(vals: list[float]) -> str:
    if len(vals) == 1:
        return f"{fmt(vals[0])} (n=1)"
    return f"{fmt(statistics.fmean(vals))} ± {fmt(statistics.stdev(vals))} (n={len(vals)})"


def results_table(groups: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows as plain strings with **bold** best), markdown-ready: one row per task and budget."""
    configs = sorted({(t, b) for t, b, _ in groups}, key=_natural)
    models = sorted({m for _, _, m in groups})
    header = ["task", "budget", "metric"] + models + ["trivial baseline", "optimum", "paper (Bai et al. 2018)"]
    out = []
    for task, budget in configs:
        cells, means = {}, {}
        first = next(rs for (t, b, _), rs in groups.items() if (t, b) == (task, budget))[0]
        hib = bool(first["higher_is_better"])
        for m in models:
            vals = [r["test_metric"] for r in groups.get((task, budget, m), []) if r["test_metric"] is not None]
            if not vals:
                continue
            params = int(statistics.fmean(r["params"] for r in groups[(task, budget, m)]))
            means[m] = statistics.fmean(vals)
            cells[m] = f"{_mean_std(vals)}, {fmt_count(params)}"
        best = (max if hib else min)(means, key=means.get) if means else None
        paper = ", ".join(f"{m} {fmt(rs[0]['paper'])}" for m in models if (rs := groups.get((task, budget, m)))
                          and rs[0]["paper"] is not None) or "-"
        trivial = fmt(first["trivial"])
        if first.get("chance") is not None:
            trivial += f" (chance {fmt(first['chance'])})"
        row = [task, fmt_count(budget), f"{first['metric']} ({'max' if hib else 'min'})"]
        row += [(f"**{cells[m]}**" if m == best else cells[m]) if m in cells else "-" for m in models]
        out.append(row + [trivial, "-" if first.get("optimum") is None else fmt(first["optimum"]), paper])
    return header, out


def speed_table(groups: dict) -> tuple[list[str], list[list[str]]]:
    header = ["task", "budget", "model", "params", "train samples/s", "inference latency (ms, batch 1)",
              "peak memory (MB)"]
    rows = []
    for (task, budget, model), rs in sorted(groups.items()):
        rows.append([task, fmt_count(budget), model, f"{int(statistics.fmean(r['params'] for r in rs)):,}",
                     fmt(statistics.fmean(r["samples_per_sec"] or 0 for r in rs)),
                     fmt(statistics.fmean(r["infer_ms"] or 0 for r in rs)),
                     fmt(statistics.fmean(r["peak_mem_mb"] or 0 for r in rs))])
    return header, rows


def learning_curve_panels(groups: dict) -> list[dict]:
    """One panel per task and budget: title, y-label (that task's own metric) and the mean
    validation curve over seeds of each model."""
    configs = sorted({(t, b) for t, b, _ in groups}, key=_natural)
    several_budgets = len({b for _, b in configs}) > 1
    panels = []
    for task, budget in configs:
        members = {m: rs for (t, b, m), rs in sorted(groups.items()) if (t, b) == (task, budget)}
        metric = next(iter(members.values()))[0]["metric"]
        lines = {}
        for model, rs in members.items():
            curves = [[h.get(f"valid_{metric}") for h in json.loads(r["history"] or "[]")] for r in rs]
            length = min((len(c) for c in curves), default=0)
            if length:
                lines[model] = [statistics.fmean(c[i] for c in curves) for i in range(length)]
        panels.append({"title": f"{task}, {fmt_count(budget)}" if several_budgets else task,
                       "ylabel": f"valid {metric}", "lines": lines})
    return panels


def memory_curves(groups: dict) -> dict[tuple[str, int], dict[int, float]]:
    """Copy-memory test accuracy vs T: {(model, budget): {T: mean over seeds}}, sorted by T, for each
    model and size with at least two T (a single T is no curve; sizes are not pooled)."""
    acc = defaultdict(lambda: defaultdict(list))
    for (_, budget, model), rs in groups.items():
        for r in rs:
            if r["task"] == "copy_memory":
                T = (json.loads(r["config"]).get("task_opts") or {}).get("T", 1000)
                a = json.loads(r["test"] or "{}").get("acc")
                if a is not None:
                    acc[(model, budget)][T].append(a)
    return {k: {T: statistics.fmean(by_t[T]) for T in sorted(by_t)} for k, by_t in acc.items() if len(by_t) >= 2}


def _figures(groups: dict) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG bytes) for every plot the data supports."""
    from seqbench.data import require
    require("matplotlib", extra="bench", why="report plots")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    figs = []

    def save(fig, name: str, caption: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        figs.append((name, caption, buf.getvalue()))

    # learning curves: the valid metric per epoch, mean over seeds; one panel per task and budget
    panels = learning_curve_panels(groups)
    n = len(panels)
    if n:
        cols = min(3, n)
        fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4.2 * cols, 3.2 * math.ceil(n / cols)), squeeze=False)
        for ax, panel in zip(axes.flat, panels):
            for model, mean in panel["lines"].items():
                ax.plot(range(1, len(mean) + 1), mean, marker="o", label=model)
            ax.set_title(panel["title"], fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel(panel["ylabel"])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        save(fig, "learning_curves.png", "Learning curves: validation metric per epoch (mean over seeds)")
    # metric vs parameters: one panel per task (all its budgets), the trivial baseline as a line
    tasks = sorted({t for t, _, _ in groups})
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.2 * max(1, len(tasks)), 3.4), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        rows = [(model, r) for (t, _, model), rs in sorted(groups.items()) if t == task for r in rs]
        for model in sorted({m for m, _ in rows}):
            pts = [(r["params"], r["test_metric"]) for m, r in rows if m == model and r["test_metric"] is not None]
            ax.scatter([p for p, _ in pts], [v for _, v in pts], label=model, s=18)
        first = rows[0][1]
        if first["trivial"] is not None:
            ax.axhline(first["trivial"], color="grey", linestyle="--", linewidth=1, label="trivial")
        ax.set_xscale("log")
        ticks = sorted({r["params"] for _, r in rows})  # label the sizes present (a narrow log axis has no
        if len(ticks) > 6:                            # decade tick, and its minor labels overlap)
            ticks = [ticks[int(round(i))] for i in np.linspace(0, len(ticks) - 1, 6)]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_count(int(round(v)))))
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("parameters")
        ax.set_ylabel(f"test {first['metric']}")
        ax.legend(fontsize=7)
    save(fig, "metric_vs_params.png", "Test metric vs parameter count (one point per trial)")
    # effective memory: copy-memory accuracy vs T
    mem = memory_curves(groups)
    if mem:
        sizes = {budget for _, budget in mem}
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for (model, budget), by_t in sorted(mem.items()):
            label = model if len(sizes) == 1 else f"{model} ({fmt_count(budget) if budget else 'default'})"
            ax.plot(list(by_t), list(by_t.values()), marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("T (copy-memory delay)")
        ax.set_ylabel("accuracy on the last 10 steps")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
        save(fig, "effective_memory.png", "Effective memory: copy-memory accuracy vs sequence length T")
    return figs


def environment(rows: list[dict]) -> str:
    """Where the trials ran: each of CPU, torch, seqbench and git revision once if all trials agree,
    else every value (revisions by finish time: first to last, and how many)."""
    envs = [json.loads(r["env"] or "{}") for r in sorted(rows, key=lambda r: r["finished"] or 0)]

    def values(key: str) -> list[str]:
        return list(dict.fromkeys(str(e.get(key) or "?") for e in envs))  # distinct, in finish order
    revs = [v for v in values("git") if v != "?"]
    rev = ("no git" if not revs else revs[0] if len(revs) == 1
           else f"revisions {revs[0]} to {revs[-1]}, {len(revs)} in all")
    return (f"Machine: {' / '.join(values('cpu'))}, torch {' / '.join(values('torch'))}, "
            f"seqbench {' / '.join(values('seqbench'))} ({rev})")


def write_report(db: str | Path, out_dir: str | Path) -> dict[str, Path]:
    db = Path(db)
    if db.is_dir():
        raise SeqbenchError(f"{db} is a directory; give the results database file written by `seqbench bench --db`")
    if not db.is_file():
        raise SeqbenchError(f"results database {db} does not exist; run `seqbench bench ... --db {db}` first")
    with Store(db, readonly=True) as store:
        rows = store.rows("done")
        counts = store.counts()
        failed = store.rows("failed")
    if not rows:
        raise SeqbenchError(f"{db} has no finished trials yet ({', '.join(f'{k}: {v}' for k, v in counts.items()) or 'empty'})")
    if not str(out_dir).strip():
        raise SeqbenchError("--out is empty; give a directory for the report, e.g. --out report/")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SeqbenchError(f"--out {out} is a file; give a directory for the report")
    out.mkdir(parents=True, exist_ok=True)
    groups = summarize(rows)
    header, table = results_table(groups)
    sh, srows = speed_table(groups)
    figs = _figures(groups)
    intro = (f"{len(rows)} finished trials ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}) from `{db.name}`. "
             f"Mean ± std over seeds of the test metric (best-on-valid weights); best per row in bold. "
             f"{environment(rows)}.")
    fail_md = ("\n\n## Failed trials\n\n" + md_table(["task", "model", "seed", "error"],
               [[f["task"], f["model"], str(f["seed"]), (f["error"] or "")[:200]] for f in failed])) if failed else ""
    from seqbench.utils import atomic_write, atomic_write_text
    for name, _, png in figs:
        atomic_write(out / name, lambda tmp, png=png: Path(tmp).write_bytes(png))
    md = (f"# seqbench report\n\n{intro}\n\n## Results\n\n{md_table(header, table)}\n\n"
          + "".join(f"## {cap}\n\n![{cap}]({name})\n\n" for name, cap, _ in figs)
          + f"## Speed\n\n{md_table(sh, srows)}{fail_md}\n")
    atomic_write_text(out / "report.md", md)
    body = (f"<h1>seqbench report</h1><p>{html.escape(intro).replace('`', '')}</p><h2>Results</h2>"
            f"{html_table(header, table)}"
            + "".join(html_figure(png, cap) for _, cap, png in figs)
            + f"<h2>Speed</h2>{html_table(sh, srows)}"
            + (f"<h2>Failed trials</h2>{html_table(['task', 'model', 'seed', 'error'], [[f['task'], f['model'], str(f['seed']), (f['error'] or '')[:200]] for f in failed])}" if failed else ""))
    atomic_write_text(out / "report.html", html_page("seqbench report", body))
    return {"md": out / "report.md", "html": out / "report.html"}
