"""The ``seqbench`` command line's parser: every command, its flags and their help."""
from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    from seqbench.cli import cmd_bench, cmd_compress, cmd_demo, cmd_export, cmd_models, cmd_predict, cmd_profile, cmd_recommend, cmd_report, cmd_tasks, cmd_train
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
    tr.add_argument("--log", choices=["tensorboard", "mlflow"], help="track the run in tensorboard | mlflow (the track extra): per-epoch metrics, config, test, model")
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
    b.add_argument("--log", choices=["tensorboard", "mlflow"], help="track every trial in tensorboard | mlflow")
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
        p.add_argument("--runtime", default="auto", choices=["auto", "torch", "numpy", "onnxruntime", "best"],
                       help="where candidates' steps are timed: the model's own step (auto), an engine, the "
                            "exported ONNX graph in onnxruntime, or the faster of the own step and the ONNX graph "
                            "for each model (best; the table names which) (default auto)")
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
    rc.add_argument("--max-epochs", type=int, help="epochs of a fully trained candidate (default: the task's, longer as the budget allows)")
    rc.add_argument("--max-trials", type=int, help="stop the search after this many configurations (default: "
                    "as many as the time budget allows)")
    rc.add_argument("--device", default="cpu", help="where trials train: cpu (default) | auto | cuda | mps")
    rc.add_argument("--log", choices=["tensorboard", "mlflow"], help="track every trial in tensorboard | mlflow")
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
