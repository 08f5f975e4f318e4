"""The ``seqbench`` command line. Exit codes: 0 ok, 2 bad input (one-line message), 1 internal."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from seqbench.errors import SeqbenchError
from seqbench.tables import fmt, format_table
from seqbench.utils import check_seed


MAX_OPTION_CHARS = 10_000


def parse_options(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """Parse repeated KEY=VALUE options; values are Python literals when they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SeqbenchError(f"{what} option {item!r} must look like KEY=VALUE (e.g. levels=8)")
        if len(raw) > MAX_OPTION_CHARS:
            raise SeqbenchError(f"{what} option {key} has a value of {len(raw):,} characters; at most "
                                f"{MAX_OPTION_CHARS:,} (put long lists in a file)")
        try:
            out[key.replace("-", "_")] = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            out[key.replace("-", "_")] = raw
    return out


def set_threads(threads: int | None) -> None:
    """--threads N: torch and the BLAS libraries under NumPy (the streaming engines) alike."""
    from seqbench.utils import pin_threads
    if threads is not None:
        if threads < 1:
            raise SeqbenchError(f"--threads must be >= 1, got {threads}")
        pin_threads(threads)


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
        print(f"seqbench: warning: {w.message}", file=sys.stderr)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    import seqbench
    from seqbench.tasks.registry import get_task_entry
    names = [n if not v else f"{n}:{v}" for n in seqbench.list_tasks() for v in get_task_entry(n).listed_variants]
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
    flags = dict(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, clip=args.clip,
                 schedule=args.schedule, steps_per_epoch=args.steps_per_epoch, seed=args.seed, compile=args.compile,
                 early_stop=_early_stop(args), device=args.device, precision=args.precision)
    return TrainConfig.for_task(task, **{**train_options(args), **{k: v for k, v in flags.items() if v is not None}})


def deprecated(old: str, new: str) -> None:
    """An old spelling still works for one release, with one line saying what replaces it."""
    print(f"seqbench: warning: {old} is deprecated and will be removed; use {new}", file=sys.stderr)


def _early_stop(args: argparse.Namespace) -> int | None:
    if args.patience is not None:  # TrainConfig.patience is the plateau schedule's: one word, one meaning
        deprecated("--patience N (early stopping)", "--early-stop N")
        return args.patience if args.early_stop is None else args.early_stop
    return args.early_stop


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    """--train-opt KEY=VALUE: any TrainConfig field (weight_decay, momentum, step_size, gamma, patience
    of the plateau schedule, aux_weight, eval_batch_size...); a dedicated flag wins over it."""
    import dataclasses as dc

    from seqbench.train import TrainConfig
    opts = parse_options(getattr(args, "train_opt", None), "--train-opt")
    fields = {f.name for f in dc.fields(TrainConfig)}
    unknown = sorted(set(opts) - fields)
    if unknown:
        raise SeqbenchError(f"unknown --train-opt {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    return opts


def load_imports(args: argparse.Namespace) -> list[str]:
    """--import MODULE (repeatable): the user's tasks and models, registered before anything runs."""
    from seqbench.utils import load_plugin
    return [load_plugin(spec) for spec in (getattr(args, "imports", None) or [])]


def describe_task(task) -> str:
    """The task as resolved: its options (defaults filled in) and split sizes, for the start of a run."""
    cfg = {k: v for k, v in task.config().items() if k != "name"}
    opts = ", ".join(f"{k}={v}" for k, v in cfg.items())
    sizes = "/".join(f"{task.sizes.get(s, 0):,}" for s in ("train", "valid", "test"))
    return f"task {task.name}" + (f" ({opts})" if opts else "") + f": train/valid/test {sizes}, seq_len {task.seq_len}"


def cmd_train(args: argparse.Namespace) -> int:
    import seqbench
    from seqbench.utils import seed_everything
    set_threads(args.threads)
    check_seed(args.seed, "--seed")
    if args.resume and args.out is None:
        raise SeqbenchError("--resume needs the --out of the run to continue")
    if args.resume and args.overwrite:
        raise SeqbenchError("give --resume (continue the run in --out) or --overwrite (replace it), not both")
    load_imports(args)
    task = seqbench.create_task(args.task, **parse_options(args.task_opt, "--task-opt"))
    cfg = _train_config(args, task)
    cfg.validate()
    from seqbench.train.trainer import prepare_out_dir
    if args.out is not None:  # fail before any work if the directory is taken or cannot be made
        prepare_out_dir(args.out, args.overwrite, args.resume, create=False)
    seed_everything(args.seed)
    model = seqbench.model_for_task(args.model, task, params=args.params, causal=not args.non_causal,
                                    **parse_options(args.model_opt, "--model-opt"))
    from seqbench.memory import check_training_memory
    check_training_memory(model, task, cfg.batch_size)
    if args.out is not None:
        prepare_out_dir(args.out, args.overwrite, args.resume)
    if args.resume:  # before any output: a different run is an error, not a resume
        from seqbench.train.trainer import check_resumable, run_config
        check_resumable(Path(args.out), run_config(model, task, cfg))
    print(describe_task(task), file=sys.stderr)  # everything resolved and checked: say what will run
    print("training: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items() if v is not None),
          file=sys.stderr)
    rf = model.receptive_field
    print(f"{args.model} ({model.describe()}): {seqbench.count_params(model):,} params, receptive field "
          f"{'unbounded' if rf is None else f'{rf:,}'}", file=sys.stderr)
    if args.resume:
        print(f"resuming the run in {args.out}", file=sys.stderr)
    result = seqbench.train(model, task, cfg, out_dir=args.out, overwrite=args.overwrite, resume=args.resume,
                            progress=False if args.no_progress else None)
    name = task.metric.name
    paper = task.paper.values.get(args.model)
    chance = f" (chance {fmt(task.chance_level)})" if task.chance_level is not None else ""
    print(f"test {name}: {fmt(result.test[name])}   trivial baseline: {fmt(task.trivial_baseline)}{chance}   "
          f"paper ({args.model}): {fmt(paper)}" + (f" [{task.paper.note}]" if task.paper.note else ""))
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


def _csv(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def cmd_bench(args: argparse.Namespace) -> int:
    from seqbench.bench import file_trials, grid_trials, run_sweep, suite_trials
    from seqbench.bench.runner import get_executor
    from seqbench.bench.sweep import trial_key
    get_executor(args.executor)
    if args.address and args.executor != "ray":
        raise SeqbenchError(f"--address joins a Ray cluster; give --executor ray with it (the {args.executor} "
                            "executor runs here)")
    imports = load_imports(args)
    models, tasks = _csv(args.models), _csv(args.tasks)
    try:
        seeds = [check_seed(int(s), "--seeds") for s in _csv(args.seeds)] or [0]
    except ValueError:
        raise SeqbenchError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    train = {**train_options(args), **{k: v for k, v in {"epochs": args.epochs, "lr": args.lr,
                                                         "batch_size": args.batch_size, "device": args.device,
                                                         "precision": args.precision}.items() if v is not None}}
    if args.config:
        trials = file_trials(args.config)
    elif args.suite:
        if not models:
            raise SeqbenchError("--suite needs --models, e.g. --models tcn,lstm,gru")
        if args.budget is not None:  # "budget" also means a parameter count and a time: --scale says this one
            deprecated("--budget quick|standard|full", "--scale")
        trials = suite_trials(args.suite, args.scale if args.budget is None else args.budget, models, seeds,
                              tasks or None)
    else:
        if not tasks or not models:
            raise SeqbenchError("give --tasks and --models (or --suite NAME, or --config sweep.toml)")
        trials = grid_trials(tasks, models, seeds, _csv(args.params) or [None],
                             parse_options(args.task_opt, "--task-opt"), parse_options(args.model_opt, "--model-opt"))
    for t in trials:
        if train:  # the overrides are part of the trial, so of its key
            t["train"].update(train)
            t["key"] = trial_key(t)
        if imports:
            t["imports"] = imports  # trial processes load the same modules
    if not trials:
        raise SeqbenchError("the sweep is empty (no task of the suite has this --budget)")
    summary = run_sweep(trials, args.db, executor=args.executor, workers=args.workers, address=args.address,
                        progress=False if args.no_progress else None, cpus_per_trial=args.cpus_per_trial)
    others = f", {summary.by_others} finished by another sweep" if summary.by_others else ""
    print(f"{summary.total} trials: {summary.skipped} already done, {summary.done} finished now{others}, "
          f"{summary.failed} failed; results in {args.db}")
    for key, err in list(summary.errors.items())[:10]:
        print(f"  failed {key}: {err}", file=sys.stderr)
    if args.export:
        from seqbench.bench import Store
        with Store(args.db, readonly=True) as store:
            print(f"exported to {store.export(args.export)}")
    return 1 if summary.failed else 0


def _limits(args: argparse.Namespace):
    from seqbench.recommend import Limits
    from seqbench.utils import parse_count
    return Limits(max_step_ms=args.max_step_ms, max_params=parse_count(args.max_params) if args.max_params else None,
                  max_memory_mb=args.max_memory_mb, batch=args.batch)


def cmd_recommend(args: argparse.Namespace) -> int:
    from seqbench.recommend import print_recommendation, recommend
    set_threads(1)  # the driver's own timings and the winner's test: one thread, like the trials
    imports = load_imports(args)
    if args.seeds is not None:  # --seeds is a list of seeds in bench; here it was a count
        deprecated("recommend --seeds N", "--repeats N")
    repeats = args.repeats if args.repeats is not None else args.seeds if args.seeds is not None else 1
    rec = recommend(args.task, _limits(args), args.time_budget, models=_csv(args.models) or None, seeds=repeats,
                    db=args.db, out=args.out, executor=args.executor, workers=args.workers, costs=args.costs,
                    max_epochs=args.max_epochs, progress=False if args.no_progress else None,
                    task_opts=parse_options(args.task_opt, "--task-opt"), imports=imports, device=args.device)
    print_recommendation(rec)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import seqbench
    from seqbench.recommend import candidate_space, exclusions, measure_costs, write_costs
    set_threads(args.threads)
    load_imports(args)
    if Path(args.out).is_dir() or not Path(args.out).absolute().parent.is_dir():
        raise SeqbenchError(f"--out {args.out}: give a file to write in an existing directory, e.g. costs.json")
    task = seqbench.create_task(args.task, **parse_options(args.task_opt, "--task-opt"))
    limits = _limits(args)
    limits.check()
    cands = candidate_space(task, limits.max_params, _csv(args.models) or None)
    costs = measure_costs(task, cands, limits.batch, progress=False if args.no_progress else None)
    write_costs(args.out, task, costs, limits.batch)
    out = exclusions(costs, limits)  # the limits given: which candidates they would exclude, and why
    rows = [{"candidate": c.id, "params": f"{k.params:,}", "step (ms)": f"{k.step_ms:.3g}",
             "sequence (ms)": f"{k.seq_ms:.3g}", "memory (MB)": f"{k.mem_mb:.3g}",
             "limits": f"excluded: {out[c]}" if c in out else "within"} for c, k in costs.items()]
    print(format_table(rows, ["candidate", "params", "step (ms)", "sequence (ms)", "memory (MB)", "limits"],
                       align_right=["params", "step (ms)", "sequence (ms)", "memory (MB)"]))
    print(f"{len(costs)} candidates measured at batch {limits.batch}; written to {args.out} "
          "(use it with seqbench recommend --costs)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from seqbench.predict import predict, write_predictions
    set_threads(args.threads)
    load_imports(args)
    df = predict(args.run, args.input)
    if args.out:
        print(f"{len(df):,} predictions written to {write_predictions(df, args.out)}")
    else:
        print(df.to_csv(index=False), end="")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from seqbench.export import export_run
    set_threads(args.threads)
    load_imports(args)
    desc = export_run(args.run, args.out, args.format, streaming=args.streaming, max_len=args.max_len,
                      length=args.length, check=not args.no_check)
    size = Path(args.out).stat().st_size
    what = "one streaming step" if desc["streaming"] else "the full-sequence model"
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, {what}, {desc['format']} via {desc['exporter']}) "
          f"and {args.out}.json")
    for kind in ("inputs", "outputs"):
        print(f"  {kind}: " + ", ".join(f"{s['name']} {tuple(s['shape'])} {s['dtype']}" for s in desc[kind]))
    if "fixed_length" in desc:
        print(f"  the length is fixed at {desc['fixed_length']} steps ({desc.get('fixed_reason', 'see README')})")
    if "max_abs_diff" in desc:
        print(f"  checked against PyTorch ({desc['checked']}): max |difference| {desc['max_abs_diff']:.1e}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from seqbench.compress import compress_run, compression_table, load_run
    set_threads(args.threads)
    load_imports(args)
    rows = compress_run(args.run, args.out, quantize=args.quantize, prune=args.prune, distill_into=args.distill_into,
                        epochs=args.epochs, temperature=args.temperature, alpha=args.alpha,
                        progress=None if not args.no_progress else False)
    print(compression_table(rows, load_run(args.run)[1]))
    print(f"variants written under {args.out}/ (each a run directory); table in {args.out}/compression.md")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from seqbench.bench import write_report
    paths = write_report(args.db, args.out)
    print(f"wrote {paths['md']} and {paths['html']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from seqbench import __version__
    p = argparse.ArgumentParser(prog="seqbench", description="Which sequence architecture should I use? "
                                "Matched-budget comparisons of TCN, RNNs and more.")
    plugin = argparse.ArgumentParser(add_help=False)
    plugin.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                        help="your module (name or .py file) that registers tasks/models; repeatable")
    on_run = argparse.ArgumentParser(add_help=False, parents=[plugin])  # commands that take a run directory
    on_run.add_argument("run", help="a run directory (seqbench train --out, or recommend's winner/)")
    on_run.add_argument("--threads", type=int)
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

    tr = sub.add_parser("train", help="train one model on one task", parents=[plugin])
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
    tr.add_argument("--train-opt", action="append", metavar="KEY=VALUE",
                    help="any training setting, e.g. weight_decay=1e-4, gamma=0.5, eval_batch_size=64")
    tr.add_argument("--non-causal", action="store_true", help="build the non-causal variant")
    tr.add_argument("--out", help="run directory for checkpoints, config and history")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace the run in --out (the new run is built beside it and swapped in when it ends)")
    tr.add_argument("--resume", action="store_true",
                    help="continue the killed or finished run in --out from its last epoch (same settings)")
    tr.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps")
    tr.add_argument("--precision", default="32", help="32 | bf16 | 16 (autocast; 16 needs a GPU)")
    tr.add_argument("--early-stop", type=int, metavar="N",
                    help="early stopping: stop after N epochs without a better valid metric")
    tr.add_argument("--patience", type=int, help=argparse.SUPPRESS)  # deprecated spelling of --early-stop
    tr.add_argument("--compile", action="store_true",
                    help="torch.compile the model (falls back to eager; slower than eager on small CPUs)")
    tr.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="run a sweep of models x tasks x seeds into a results database", parents=[plugin])
    b.add_argument("--db", required=True, help="SQLite results database (created if missing; reruns resume)")
    b.add_argument("--tasks", help="comma-separated tasks, e.g. adding,copy_memory,smnist")
    b.add_argument("--models", help="comma-separated models, e.g. tcn,lstm,gru")
    b.add_argument("--params", help="comma-separated budgets, e.g. 10k,70k (default: each model's default size)")
    b.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    b.add_argument("--suite", help="a predefined suite: tcn-paper (the paper's tasks and configurations)")
    b.add_argument("--scale", default="quick", choices=["quick", "standard", "full"],
                   help="suite scale: quick (minutes on 2 cores), standard, full (the paper's schedule)")
    b.add_argument("--budget", choices=["quick", "standard", "full"], help=argparse.SUPPRESS)  # deprecated: --scale
    b.add_argument("--config", help="a sweep from a TOML/YAML file (see README)")
    b.add_argument("--task-opt", action="append", metavar="KEY=VALUE")
    b.add_argument("--model-opt", action="append", metavar="KEY=VALUE")
    b.add_argument("--train-opt", action="append", metavar="KEY=VALUE", help="any training setting of every trial")
    b.add_argument("--epochs", type=int, help="override every trial's epochs")
    b.add_argument("--lr", type=float, help="override every trial's learning rate")
    b.add_argument("--batch-size", type=int, help="override every trial's batch size")
    b.add_argument("--device", help="every trial's device: auto | cpu | cuda (one trial per GPU) | mps")
    b.add_argument("--precision", help="every trial's precision: 32 | bf16 | 16")
    b.add_argument("--executor", default="local", help="where trials run: local (default) or ray")
    b.add_argument("--workers", type=int, help="local: trial processes at once (default: CPU cores)")
    b.add_argument("--cpus-per-trial", type=int, help="torch threads (local) / Ray CPUs per trial")
    b.add_argument("--address", help="ray: address of an existing cluster (default: start a local one)")
    b.add_argument("--export", help="also write all rows to a .csv or .parquet file")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_bench)

    r = sub.add_parser("report", help="write report.md and report.html from a results database")
    r.add_argument("db")
    r.add_argument("--out", required=True, help="output directory")
    r.set_defaults(func=cmd_report)

    def add_limits(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True, help="a task name (e.g. tsc:GunPoint) or custom with --task-opt path=")
        p.add_argument("--task-opt", action="append", metavar="KEY=VALUE")
        p.add_argument("--models", help="comma-separated models to consider (default: every streaming zoo model)")
        p.add_argument("--max-step-ms", type=float, help="streaming step latency limit at --batch, in ms")
        p.add_argument("--batch", type=int, default=1, help="batch size the step limit applies to (default 1)")
        p.add_argument("--max-params", help="parameter limit, e.g. 200k (also the top of the size grid; default 100k)")
        p.add_argument("--max-memory-mb", type=float, help="memory to stream (weights + state) limit, MB")
        p.add_argument("--no-progress", action="store_true")

    rc = sub.add_parser("recommend", help="the best architecture and size for a task under your limits", parents=[plugin])
    add_limits(rc)
    rc.add_argument("--time-budget", default="10m", help="time to decide, e.g. 300, 90s, 5m, 1h (default 10m)")
    rc.add_argument("--repeats", type=int, default=None, metavar="N",
                    help="train the top three N times, seeds 0..N-1 (2+: ties judged on the seed spread; default 1)")
    rc.add_argument("--seeds", type=int, help=argparse.SUPPRESS)  # deprecated: a count here, a list in bench
    rc.add_argument("--db", default="recommend.db", help="results store (rerun to resume; default recommend.db)")
    rc.add_argument("--out", help="directory for recommendation.md/.html/.json, pareto.png and the winner's run")
    rc.add_argument("--executor", default="local", help="where trials run: local (default) or ray")
    rc.add_argument("--workers", type=int, help="trials at once (default: CPU cores, one thread each)")
    rc.add_argument("--costs", help="costs measured on the target device by `seqbench profile` (JSON)")
    rc.add_argument("--max-epochs", type=int, help="epochs of a fully trained candidate (default: the task's)")
    rc.add_argument("--device", default="cpu", help="where trials train: cpu (default) | auto | cuda | mps")
    rc.set_defaults(func=cmd_recommend)

    pr = sub.add_parser("predict", help="predictions of a trained run on new data (a CSV/Parquet/NPZ file)",
                        parents=[on_run])
    pr.add_argument("--input", required=True, help="new data, in the layout the run was trained on")
    pr.add_argument("--out", help="predictions file (.csv, .parquet or .npz); default: CSV on stdout")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="export a trained run to ONNX or torch.export (.pt2), optionally as "
                        "one streaming step with its state as inputs/outputs", parents=[on_run])
    ex.add_argument("--out", required=True, help="the file to write: model.onnx or model.pt2")
    ex.add_argument("--format", help="onnx | pt2 (or a registered format); default: from --out's extension")
    ex.add_argument("--streaming", action="store_true",
                    help="export one step: (x_t, *state) -> (y_t, *next_state) (causal models)")
    ex.add_argument("--max-len", type=int, default=1024,
                    help="streaming: the Transformer's KV cache length (steps per stream; default 1024)")
    ex.add_argument("--length", type=int, default=64, help="the example sequence's length; the LRU's "
                    "full-sequence graph is fixed to it (default 64)")
    ex.add_argument("--no-check", action="store_true", help="skip running the file against PyTorch")
    ex.set_defaults(func=cmd_export)

    cp = sub.add_parser("compress", help="smaller/faster variants of a trained run (int8, TCN pruning, "
                        "distillation), each a run directory, with a comparison table", parents=[on_run])
    cp.add_argument("--out", required=True, help="directory for the variants and compression.md")
    cp.add_argument("--quantize", choices=["int8"], help="int8 dynamic quantization (lstm, gru, rnn)")
    cp.add_argument("--prune", type=float, help="fraction of TCN channels to remove, then fine-tune (e.g. 0.5)")
    cp.add_argument("--distill-into", help="a student MODEL:PARAMS trained on the teacher's soft outputs, e.g. tcn:10k "
                    "(a student of the same size from scratch is trained beside it for comparison)")
    cp.add_argument("--epochs", type=int, help="epochs for fine-tuning (default: a quarter of the run's) and "
                    "distillation (default: the run's)")
    cp.add_argument("--temperature", type=float, default=2.0, help="distillation temperature (default 2)")
    cp.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher's term (default 0.5)")
    cp.add_argument("--no-progress", action="store_true")
    cp.set_defaults(func=cmd_compress)

    pf = sub.add_parser("profile", help="measure the recommend candidates' costs on this machine (for --costs)", parents=[plugin])
    add_limits(pf)
    pf.add_argument("--out", required=True, help="the costs JSON to write")
    pf.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a deployment step)")
    pf.set_defaults(func=cmd_profile)

    d = sub.add_parser("demo", help="TCN vs LSTM vs GRU at ~70K parameters on the adding problem")
    d.add_argument("--models", default="tcn,lstm,gru")
    d.add_argument("--params", default="70k")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int)
    d.set_defaults(func=cmd_demo)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one clean line (no source path, line number or code excerpt)."""
    print(f"seqbench: warning: {str(message).splitlines()[0] if str(message) else category.__name__}",
          file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    saved, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        return args.func(args)
    except SeqbenchError as e:
        print(f"seqbench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable --out, a full disk, a permission: say which file, no traceback
        where = f": {e.filename}" if e.filename else ""
        print(f"seqbench: error: {e.strerror or e}{where}; check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqbench: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = saved


if __name__ == "__main__":
    sys.exit(main())
