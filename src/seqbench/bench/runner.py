"""Run a sweep's trials, each in its own process, and record them in the store.

``local`` (default): up to ``workers`` trial processes at once (default: one per core), forked
from a server that has torch imported (a trial starts in ~0.1 s), each with ``cores // workers``
torch threads so workers never oversubscribe the CPU. A trial process that crashes or is killed
(e.g. out of memory) fails that trial only; the failure, its exit code and its last line of
output are recorded. Trial processes die with the sweep (``PR_SET_PDEATHSIG`` on Linux; the fork
server exits with the sweep), so a killed sweep leaves no orphans; its unfinished trials are
rerun by the next run of the same command.

``ray``: trials as Ray tasks (``num_cpus`` each; one fresh worker process per trial), for when one
machine is not enough; ``address`` joins an existing cluster. Results come back to this driver,
which writes them into the same store.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from seqbench.bench.store import Store
from seqbench.errors import SeqbenchError


@dataclass
class SweepSummary:
    total: int
    skipped: int = 0  # already done before this run
    done: int = 0
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Progress:
    """Done / running / failed / total, the current best per task, and an ETA, on one live line."""

    def __init__(self, summary: SweepSummary, enabled: bool | None):
        from tqdm.auto import tqdm
        self.summary = summary
        self.bar = tqdm(total=summary.total, initial=summary.skipped, unit="trial", desc="sweep", dynamic_ncols=True,
                        disable=None if enabled is None else not enabled)
        self.best: dict[str, tuple[float, str, bool]] = {}

    def update(self, running: int, trial: dict | None = None, result: dict | None = None):
        """Redraw; with ``trial``, one more trial ended (``result`` None if it failed)."""
        if trial is not None:
            self.bar.update(1)
            if result and result.get("test_metric") is not None:
                v, hib = result["test_metric"], bool(result["higher_is_better"])
                cur = self.best.get(trial["task"])
                if cur is None or (v > cur[0] if hib else v < cur[0]):
                    self.best[trial["task"]] = (v, trial["model"], hib)
        best = " ".join(f"{t}:{m}={v:.4g}" for t, (v, m, _) in sorted(self.best.items()))
        self.bar.set_postfix_str(f"running {running}, failed {self.summary.failed}" + (f" | best {best}" if best else ""))

    def close(self):
        self.bar.close()


def run_sweep(trials: list[dict], db: str | Path, *, executor: str = "local", workers: int | None = None,
              address: str | None = None, progress: bool | None = None, cpus_per_trial: int | None = None) -> SweepSummary:
    """Run every trial not yet done in ``db``; failed and interrupted trials are rerun."""
    if executor not in ("local", "ray"):
        raise SeqbenchError(f"unknown executor {executor!r}; use local or ray")
    with Store(db) as store:
        store.add(trials)
        todo = [t for t in trials if store.status(t["key"]) != "done"]
        summary = SweepSummary(total=len(trials), skipped=len(trials) - len(todo))
        bar = Progress(summary, progress)
        try:
            if executor == "local":
                _run_local(todo, store, summary, bar, workers, cpus_per_trial)
            else:
                _run_ray(todo, store, summary, bar, address, cpus_per_trial)
        finally:
            bar.close()
    return summary


def _record(store: Store, summary: SweepSummary, bar: Progress, trial: dict, result: dict | None, error: str | None,
            running: int) -> None:
    if error is None:
        store.finish(trial["key"], result)
        summary.done += 1
    else:
        store.fail(trial["key"], error)
        summary.failed += 1
        summary.errors[trial["key"]] = error
    bar.update(running, trial, result)


def _trial_process(trial_path: str, result_path: str, threads: int) -> None:
    """Entry point of a trial process, forked from a server that has torch imported already."""
    _die_with_parent()  # the fork server: it exits when this sweep does
    out = os.open(result_path + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)  # keep the trial's prints and warnings off the sweep's progress line
    os.dup2(out, 2)
    from seqbench.bench.worker import main
    sys.exit(main([trial_path, result_path, str(threads)]))


_CONTEXT = None


def _context():
    """A forkserver that pre-imports torch (and the optimizer's lazy dynamo import): a trial process
    then starts in ~0.1 s instead of ~5 s, still isolated (BENCHMARKS.md, "Sweep overhead")."""
    global _CONTEXT
    if _CONTEXT is None:
        import multiprocessing as mp
        if "forkserver" in mp.get_all_start_methods():
            _CONTEXT = mp.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(["seqbench.bench.worker", "torch._dynamo"])
        else:
            _CONTEXT = mp.get_context("spawn")
    return _CONTEXT


def _uses_main(trials: list[dict]) -> bool:
    """Whether a trial names a model or task registered by the running script (``__main__``)."""
    from seqbench.models.registry import _MODELS
    from seqbench.tasks.registry import _TASKS
    classes = [_MODELS[t["model"]].cls for t in trials if t["model"] in _MODELS]
    classes += [_TASKS[t["task"].split(":", 1)[0]] for t in trials if t["task"].split(":", 1)[0] in _TASKS]
    return any(c.__module__ == "__main__" for c in classes)


@contextlib.contextmanager
def _main_hidden(hide: bool):
    """Start a trial process without re-running the user's script in it.

    multiprocessing (spawn, forkserver) re-imports ``__main__`` in every child, so an unguarded
    script calling ``run_sweep`` would run again (its training, its sweep) in each trial. A trial
    only needs seqbench, so the script is hidden while the process starts, unless a trial uses a
    model or task the script registered; then the script is imported, and must keep its sweep under
    ``if __name__ == "__main__":`` (README, "Sweeps")."""
    main = sys.modules.get("__main__")
    if not hide or main is None:
        yield
        return
    saved = {a: main.__dict__[a] for a in ("__file__", "__spec__") if a in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


def _run_local(todo, store, summary, bar, workers, cpus_per_trial) -> None:
    cores = os.cpu_count() or 1
    workers = max(1, workers or cores)
    threads = cpus_per_trial or max(1, cores // workers)
    pending = list(todo)
    running: dict = {}
    ctx = _context()
    hide_main = not _uses_main(todo)
    with tempfile.TemporaryDirectory(prefix="seqbench-sweep-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    trial = pending.pop(0)
                    tpath, rpath = Path(tmp) / f"{trial['key']}.json", Path(tmp) / f"{trial['key']}.result.json"
                    tpath.write_text(json.dumps(trial))
                    proc = ctx.Process(target=_trial_process, args=(str(tpath), str(rpath), threads), daemon=False)
                    with _main_hidden(hide_main):
                        proc.start()
                    store.start(trial["key"], proc.pid)
                    running[proc] = (trial, rpath)
                    bar.update(len(running))
                time.sleep(0.02)
                for proc in [p for p in running if p.exitcode is not None]:
                    trial, rpath = running.pop(proc)
                    result, error = _collect(rpath, proc.exitcode)
                    _record(store, summary, bar, trial, result, error, len(running))
        finally:
            for proc in running:  # interrupted (Ctrl-C): stop the trials; the store still says running
                proc.kill()


def _collect(rpath: Path, code: int) -> tuple[dict | None, str | None]:
    if rpath.exists():
        out = json.loads(rpath.read_text())
        if "error" in out:
            return None, out["error"]
        return out, None
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    hint = " (out of memory?)" if code in (-9, 137) else ""
    return None, f"trial process died: {how}{hint}{_log_tail(Path(str(rpath) + '.log'))}"


def _log_tail(log: Path, chars: int = 400) -> str:
    """The last line the trial wrote (its error, usually), so a failure says why in the store."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f"; last output: {lines[-1][-chars:]}" if lines else ""


def _run_ray(todo, store, summary, bar, address, cpus_per_trial) -> None:
    from seqbench.data import require
    ray = require("ray", extra="ray", why="--executor ray")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    threads = cpus_per_trial or 1

    @ray.remote(num_cpus=threads, max_calls=1)  # a fresh worker process per trial: no state leaks
    def ray_trial(trial: dict, threads: int) -> dict:
        from seqbench.bench.worker import execute_trial
        try:
            return execute_trial(trial, threads)
        except Exception as e:  # noqa: BLE001 - returned to the driver, recorded as a failure
            return {"error": f"{type(e).__name__}: {e}"}

    try:
        refs = {}
        for trial in todo:
            store.start(trial["key"])
            refs[ray_trial.remote(trial, threads)] = trial
        bar.update(len(refs))
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            trial = refs.pop(ready[0])
            try:
                out = ray.get(ready[0])
                result, error = (None, out["error"]) if "error" in out else (out, None)
            except Exception as e:  # noqa: BLE001 - e.g. the worker process crashed
                result, error = None, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            _record(store, summary, bar, trial, result, error, len(refs))
    finally:
        if started_here:
            ray.shutdown()
