"""The ``seqbench`` command line. Exit codes: 0 ok, 2 bad input (one-line message), 1 internal."""
from __future__ import annotations

import argparse
import ast
import sys
import warnings
from typing import Any, Sequence

from seqbench.errors import SeqbenchError


def format_table(rows: list[dict[str, Any]], columns: Sequence[str], align_right: Sequence[str] = ()) -> str:
    """Plain-text table; numbers should already be formatted as strings."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}

    def line(values: dict[str, Any]) -> str:
        cells = [str(values.get(c, "")).rjust(widths[c]) if c in align_right else
                 str(values.get(c, "")).ljust(widths[c]) for c in columns]
        return "  ".join(cells).rstrip()

    return "\n".join([line({c: c for c in columns}), "  ".join("-" * widths[c] for c in columns)] +
                     [line(r) for r in rows])


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.2e}"


def parse_options(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """Parse repeated KEY=VALUE options; values are Python literals when they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SeqbenchError(f"{what} option {item!r} must look like KEY=VALUE (e.g. levels=8)")
        try:
            out[key.replace("-", "_")] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.replace("-", "_")] = raw
    return out


def set_threads(threads: int | None) -> None:
    import torch
    if threads is not None:
        if threads < 1:
            raise SeqbenchError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


# -- commands ------------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    import seqbench
    from seqbench.models.registry import get_model_entry
    from seqbench.utils import parse_count
    target = parse_count(args.params) if args.params else None
    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in seqbench.list_models():
            entry = get_model_entry(name)
            if args.non_causal and not entry.cls.supports_non_causal:
                rows.append({"model": name, "shape": "(causal only)", "description": entry.summary})
                continue
            m = seqbench.create_model(name, args.d_in, args.d_out, params=target, causal=not args.non_causal)
            n = seqbench.count_params(m)
            rows.append({"model": name, "shape": m.describe(), "params": f"{n:,}",
                         "vs budget": f"{(n - target) / target:+.1%}" if target else "",
                         "receptive field": "unbounded" if m.receptive_field is None else f"{m.receptive_field:,}",
                         "causal": "yes" if m.causal else "no",
                         "streams": "yes" if m.supports_step and m.causal else "no",
                         "description": entry.summary})
    cols = ["model", "shape", "params"] + (["vs budget"] if target else []) + \
        ["receptive field", "causal", "streams", "description"]
    print(format_table(rows, cols, align_right=["params", "vs budget", "receptive field"]))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    import seqbench
    from seqbench.tasks.registry import get_task_class
    names = [n if not v else f"{n}:{v}" for n in seqbench.list_tasks() for v in get_task_class(n).listed_variants]
    rows = []
    for name in names:
        print(f"loading {name}...", end="\r", file=sys.stderr, flush=True)
        try:
            info = seqbench.create_task(name).info()
        except seqbench.SeqbenchError as e:  # e.g. the data extra is missing
            rows.append({"task": name, "source": f"unavailable: {e}"})
            continue
        rows.append({"task": name, "train/valid/test": f"{info['train']:,}/{info['valid']:,}/{info['test']:,}",
                     "d_in": info["d_in"], "d_out": info["d_out"], "seq_len": info["seq_len"],
                     "metric": f"{info['metric']} ({info['direction']})", "baseline": fmt(info["baseline"]),
                     "source": info["source"]})
    print(format_table(rows, ["task", "train/valid/test", "d_in", "d_out", "seq_len", "metric",
                              "baseline", "source"], align_right=["d_in", "d_out", "seq_len", "baseline"]))
    print("custom: your own CSV/Parquet/NPZ file, e.g. --task custom --task-opt path=data.csv (see README, "
          "'Your own data')")
    return 0


def _train_config(args: argparse.Namespace, task) -> "Any":
    from seqbench.train import TrainConfig
    return TrainConfig.for_task(task, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                                lr=args.lr, clip=args.clip, schedule=args.schedule,
                                steps_per_epoch=args.steps_per_epoch, seed=args.seed, compile=args.compile)


def cmd_train(args: argparse.Namespace) -> int:
    import seqbench
    from seqbench.utils import seed_everything
    set_threads(args.threads)
    task = seqbench.create_task(args.task, **parse_options(args.task_opt, "--task-opt"))
    cfg = _train_config(args, task)
    cfg.validate()
    if args.out:  # fail before any work if the directory is taken
        from seqbench.train.trainer import prepare_out_dir
        prepare_out_dir(args.out, args.overwrite)
    seed_everything(args.seed)
    model = seqbench.model_for_task(args.model, task, params=args.params, causal=not args.non_causal,
                                    **parse_options(args.model_opt, "--model-opt"))
    rf = model.receptive_field
    print(f"{args.model} ({model.describe()}): {seqbench.count_params(model):,} params, receptive field "
          f"{'unbounded' if rf is None else f'{rf:,}'}; task {task.name}, seq_len {task.seq_len}", file=sys.stderr)
    result = seqbench.train(model, task, cfg, out_dir=args.out, overwrite=True,
                            progress=False if args.no_progress else None)
    name = task.metric.name
    paper = task.paper.values.get(args.model)
    print(f"test {name}: {fmt(result.test[name])}   trivial baseline: {fmt(task.trivial_baseline)}   "
          f"paper ({args.model}): {fmt(paper)}" + (f" [{task.paper.note}]" if paper is not None else ""))
    extra = {k: v for k, v in result.test.items() if k != name}
    if extra:
        print("also: " + ", ".join(f"{k} {fmt(v)}" for k, v in extra.items()))
    print(f"best epoch {result.best_epoch}/{cfg.epochs}, train time {result.train_time:.1f}s, "
          f"{result.samples_per_sec:.0f} samples/s" + (f"; run saved in {args.out}" if args.out else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seqbench.demo import run_demo
    set_threads(args.threads)
    return run_demo(models=args.models.split(","), params=args.params, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    from seqbench import __version__
    p = argparse.ArgumentParser(prog="seqbench", description="Which sequence architecture should I use? "
                                "Matched-budget comparisons of TCN, RNNs and more.")
    p.add_argument("--version", action="version", version=f"seqbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list the model zoo, optionally sized to a parameter budget")
    m.add_argument("--params", help="parameter budget, e.g. 70k")
    m.add_argument("--d-in", type=int, default=1, help="input features (default 1)")
    m.add_argument("--d-out", type=int, default=10, help="output features (default 10)")
    m.add_argument("--non-causal", action="store_true", help="size the non-causal variants")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("tasks", help="list the task suite")
    t.set_defaults(func=cmd_tasks)

    tr = sub.add_parser("train", help="train one model on one task")
    tr.add_argument("--task", required=True)
    tr.add_argument("--model", required=True)
    tr.add_argument("--params", help="parameter budget (e.g. 70k); solves the model's width")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--optimizer", help="adam | adamw | rmsprop | sgd (default: the task's)")
    tr.add_argument("--lr", type=float)
    tr.add_argument("--clip", type=float, help="max gradient norm")
    tr.add_argument("--schedule", help="none | step | plateau")
    tr.add_argument("--steps-per-epoch", type=int, help="cap optimizer steps per epoch")
    tr.add_argument("--task-opt", action="append", metavar="KEY=VALUE", help="task option, e.g. seq_len=200")
    tr.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="model option, e.g. levels=8")
    tr.add_argument("--non-causal", action="store_true", help="build the non-causal variant")
    tr.add_argument("--out", help="run directory for checkpoints, config and history")
    tr.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    tr.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("--compile", action="store_true",
                    help="torch.compile the model (falls back to eager; slower than eager on small CPUs)")
    tr.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="TCN vs LSTM vs GRU at ~70K parameters on the adding problem")
    d.add_argument("--models", default="tcn,lstm,gru")
    d.add_argument("--params", default="70k")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SeqbenchError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
