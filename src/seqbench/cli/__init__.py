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
                 early_stop=_early_stop(args), device=args.device, precision=args.precision, log=args.log)
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
    from seqbench.bench.executors import get_executor
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
                                                         "precision": args.precision,
                                                         "log": args.log}.items() if v is not None}}
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
    import seqbench
    from seqbench.recommend import instant_answer, parse_duration, print_instant
    budget = parse_duration(args.time_budget, allow_zero=True)
    if budget == 0 and args.out:
        raise SeqbenchError("--time-budget 0 gives the instant answer only and writes nothing; drop --out, or give "
                            "a time budget for a search")
    task_opts = parse_options(args.task_opt, "--task-opt")
    if budget == 0:
        task = seqbench.create_task(args.task, **task_opts)
        print_instant(instant_answer(task, _limits(args), _csv(args.models) or None, costs=args.costs,
                                     runtime=args.runtime))
        return 0

    def show(ans) -> None:
        print_instant(ans)
        sys.stdout.flush()
    rec = recommend(args.task, _limits(args), budget, on_instant=show, models=_csv(args.models) or None, seeds=repeats,
                    db=args.db, out=args.out, executor=args.executor, workers=args.workers, costs=args.costs,
                    max_epochs=args.max_epochs, max_trials=args.max_trials, progress=False if args.no_progress else None,
                    task_opts=task_opts, imports=imports, device=args.device, log=args.log, runtime=args.runtime)
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
    costs = measure_costs(task, cands, limits.batch, progress=False if args.no_progress else None, runtime=args.runtime)
    write_costs(args.out, task, costs, limits.batch, args.runtime)
    out = exclusions(costs, limits)  # the limits given: which candidates they would exclude, and why
    rows = [{"candidate": c.id, "params": f"{k.params:,}", "step (ms)": f"{k.step_ms:.3g}", "on": k.step_runtime,
             "spread": f"{k.step_spread:.0%}", "sequence (ms)": f"{k.seq_ms:.3g}", "memory (MB)": f"{k.mem_mb:.3g}",
             "limits": f"excluded: {out[c]}" if c in out else "within"} for c, k in costs.items()]
    print(format_table(rows, ["candidate", "params", "step (ms)", "on", "spread", "sequence (ms)", "memory (MB)",
                              "limits"],
                       align_right=["params", "step (ms)", "spread", "sequence (ms)", "memory (MB)"]))
    print("spread: the step timings' interquartile range over their median (high: the machine was busy; "
          "measure again on a quiet one)")
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


from seqbench.cli.parser import build_parser  # noqa: E402 (it names the commands above)
