"""One trial in its own process: the runner forks it and calls ``main([TRIAL.json, RESULT.json, THREADS, RUN_DIR])``
(also runnable as ``python -m seqbench.bench.worker TRIAL.json RESULT.json THREADS [RUN_DIR]``).

With a run directory the trial checkpoints every epoch there and, if a killed attempt left a
``last.pt``, resumes from it; a finished trial's directory is an ordinary run (``load_model``).

The result (metrics, history, sizes, timings, peak memory, environment) or the error is written
to RESULT.json atomically; the driver alone writes to the results store.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch


def environment(threads: int) -> dict:
    import seqbench
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"seqbench": seqbench.__version__, "git": git_revision(), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": cpu, "cores": os.cpu_count(), "threads": threads}


def git_revision() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def peak_memory_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inference_latency_ms(task, model) -> float:
    """Median ms for one sample (batch 1, from the valid split) through the model, as a deployment would."""
    x, _ = next(task.batches("valid", 1))
    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(7):
            t0 = time.perf_counter()
            task.predict(model, x)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e3


def execute_trial(trial: dict, threads: int = 1, run_dir: str | None = None) -> dict:
    """Build, train and evaluate one trial; returns the store's result columns."""
    import shutil

    import seqbench
    from seqbench.data.fingerprint import changed_files
    from seqbench.errors import SeqbenchError
    from seqbench.train import TrainConfig
    from seqbench.utils import seed_everything

    from seqbench.utils import pin_threads
    pin_threads(max(1, threads))
    from seqbench.utils import load_plugin
    for spec in trial.get("imports", ()):  # the user's --import modules: their tasks and models
        load_plugin(spec)
    data = trial.get("data")
    changed = changed_files(trial["task_opts"], data) if data else []
    if changed:
        raise SeqbenchError(f"{changed[0]} changed since the sweep started (sha256 differs); "
                            "rerun the sweep to train on the new data")
    seed_everything(trial["seed"])
    task = seqbench.create_task(trial["task"], **trial["task_opts"])
    model = seqbench.model_for_task(trial["model"], task, params=trial["params"], **trial["model_opts"])
    cfg = TrainConfig.for_task(task, **{**trial["train"], "seed": trial["seed"]})
    resume = False
    if run_dir is not None:
        run = Path(run_dir)
        resume = (run / "last.pt").is_file() and (run / "best.pt").is_file()
        if run.exists() and not resume:  # an attempt that died before its first epoch ended
            shutil.rmtree(run)
    with_test = trial.get("test", True)  # a search selects on valid: test is left for its winner
    r = seqbench.train(model, task, cfg, out_dir=run_dir, resume=resume, progress=False, evaluate_test=with_test)
    if run_dir is not None and not trial.get("keep_state"):  # a search may continue the training later
        (Path(run_dir) / "last.pt").unlink(missing_ok=True)  # finished: the training state is not needed
    metric = task.metric.name
    return {"metric": metric, "higher_is_better": int(task.metric.higher_is_better),
            "test_metric": r.test.get(metric), "best_valid": r.best_valid[metric], "test": r.test,
            "history": r.history, "params": r.params, "receptive_field": r.receptive_field,
            "train_time": r.train_time, "samples_per_sec": r.samples_per_sec,
            "infer_ms": inference_latency_ms(task, model), "peak_mem_mb": peak_memory_mb(),
            "paper": task.paper.values.get(trial["model"]), "trivial": task.trivial_baseline,
            "chance": task.chance_level, "optimum": getattr(task, "optimum", None),
            "env": environment(threads) | {"resumed": resume}}


def main(argv: list[str] | None = None) -> int:
    from seqbench.utils import atomic_write_json
    args = argv or sys.argv[1:]
    trial_path, result_path, threads = args[:3]
    run_dir = args[3] if len(args) > 3 else None
    trial = json.loads(Path(trial_path).read_text())
    try:
        result = execute_trial(trial, int(threads), run_dir)
    except Exception as e:  # noqa: BLE001 - recorded in the store as the trial's failure
        atomic_write_json(result_path, {"error": f"{type(e).__name__}: {e}",
                                        "traceback": traceback.format_exc(limit=8)})
        return 1
    atomic_write_json(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
