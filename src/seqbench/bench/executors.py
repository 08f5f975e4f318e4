"""Where a sweep's trials run: Executors (one class each, registered by name; ``register_executor`` adds one):

``local`` (default): up to ``workers`` trial processes at once (default: one per core), forked
from a server that has torch imported (a trial starts in ~0.1 s), each with ``cores // workers``
torch threads so workers never oversubscribe the CPU. A trial process that crashes or is killed
(e.g. out of memory) fails that trial only; the failure, its exit code and its last line of
output are recorded. Trial processes die with the sweep (``PR_SET_PDEATHSIG`` on Linux; the fork
server exits with the sweep), so a killed sweep leaves no orphans. The fork server starts with a
safe import path: a ``concurrent.py`` (or any module) in the working directory is never imported.

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
from pathlib import Path
from typing import Any

from seqbench.errors import SeqbenchError
from seqbench.registry import Registry


# -- executors ----------------------------------------------------------------------------------
class Executor:
    """Runs trials somewhere. ``submit`` starts one; ``poll`` returns those that ended as
    (handle, result or None, error or None); ``close`` stops what is still running."""

    name = ""

    def __init__(self, *, workers: int | None = None, cpus_per_trial: int | None = None,
                 address: str | None = None) -> None:
        check_workers(workers, cpus_per_trial)
        self.workers, self.cpus_per_trial, self.address = workers, cpus_per_trial, address

    def has_slot(self, running: int) -> bool:
        return True

    def submit(self, trial: dict, run_dir: Path) -> Any:
        raise NotImplementedError

    def pid(self, handle: Any) -> int | None:
        return None

    def poll(self) -> list[tuple[Any, dict | None, str | None]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def check_workers(workers: int | None, cpus_per_trial: int | None) -> None:
    for name, v in (("--workers", workers), ("--cpus-per-trial", cpus_per_trial)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise SeqbenchError(f"{name} must be a positive integer, got {v!r}")


EXECUTORS: Registry[type[Executor]] = Registry("executor")  # filled by the classes below and by plugins


def register_executor(name: str):
    def wrap(cls: type[Executor]) -> type[Executor]:
        cls.name = name
        return EXECUTORS.register(name, cls)
    return wrap


def list_executors() -> list[str]:
    return EXECUTORS.names()


def get_executor(name: str) -> type[Executor]:
    return EXECUTORS.get(name)


def _die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _watch_driver(pid: int) -> None:
    """End this trial process as soon as the sweep that started it is gone (a ``kill -9`` of the
    sweep): its parent is the fork server, which outlives the sweep while trials hold its pipe."""
    import threading

    from seqbench.bench.store import _pid_alive

    def watch() -> None:
        while _pid_alive(pid):
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, daemon=True, name="seqbench-watch-driver").start()


def _trial_process(trial_path: str, result_path: str, threads: int, run_dir: str, safe_path: bool,
                   driver: int, gpu: int | None = None) -> None:
    """Entry point of a trial process, forked from a server that has torch imported already."""
    _die_with_parent()  # the fork server
    _watch_driver(driver)  # and the sweep itself
    if gpu is not None:  # this trial's GPU, before anything initializes CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if safe_path:  # nothing the trial imports later comes from the user's working directory
        cwd = os.getcwd()
        sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    out = os.open(result_path + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)  # keep the trial's prints and warnings off the sweep's progress line
    os.dup2(out, 2)
    from seqbench.bench.worker import main
    sys.exit(main([trial_path, result_path, str(threads), run_dir]))


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


def _ensure_server() -> None:
    """Start the fork server without the working directory on its import path: it runs
    ``python -c``, which puts the current directory first, and a ``concurrent.py`` there would
    shadow the standard library while it imports torch. Safe-path mode (Python 3.11+) and a neutral
    working directory while it starts; trial processes still run in the sweep's directory."""
    ctx = _context()
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver
    with _safe_start():
        forkserver.ensure_running()


@contextlib.contextmanager
def _safe_start():
    saved_env, saved_cwd = os.environ.get("PYTHONSAFEPATH"), os.getcwd()
    os.environ["PYTHONSAFEPATH"] = "1"
    os.chdir(os.path.abspath(os.sep))  # the server keeps this directory: it must outlive the sweep
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        if saved_env is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = saved_env


def _uses_main(trials: list[dict]) -> bool:
    """Whether a trial names a model or task registered by the running script (``__main__``)."""
    from seqbench.models.registry import get_model_entry
    from seqbench.tasks.registry import get_task_entry
    classes = [get_model_entry(t["model"]).cls for t in trials] + [get_task_entry(t["task"]).factory for t in trials]
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


@register_executor("local")
class LocalExecutor(Executor):
    """Trial processes on this machine, ``workers`` at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cores = os.cpu_count() or 1
        self.workers = max(1, self.workers or cores)
        self.threads = self.cpus_per_trial or max(1, cores // self.workers)
        self.tmp = tempfile.TemporaryDirectory(prefix="seqbench-sweep-")
        self.running: dict[Any, Path] = {}
        self.hide_main: bool | None = None
        self.gpu_of: dict[Any, int] = {}  # trial process -> its GPU (one trial per GPU)

    def has_slot(self, running: int) -> bool:
        return running < self.workers

    def submit(self, trial: dict, run_dir: Path) -> Any:
        if self.hide_main is None:
            self.hide_main = not _uses_main([trial])
        gpu = self._free_gpu(trial)
        tpath, rpath = Path(self.tmp.name) / f"{trial['key']}.json", Path(self.tmp.name) / f"{trial['key']}.result.json"
        tpath.write_text(json.dumps(trial))
        proc = _context().Process(target=_trial_process, daemon=False,
                                  args=(str(tpath), str(rpath), self.threads, str(run_dir), self.hide_main,
                                        os.getpid(), gpu))
        _ensure_server()
        with _main_hidden(self.hide_main):
            proc.start()
        self.running[proc] = rpath
        if gpu is not None:
            self.gpu_of[proc] = gpu
        return proc

    def _free_gpu(self, trial: dict) -> int | None:
        """A GPU no running trial holds, for a trial that trains on CUDA (device auto or cuda)."""
        import torch
        if str(trial.get("train", {}).get("device", "auto")) not in ("auto", "cuda") or not torch.cuda.is_available():
            return None
        n = torch.cuda.device_count()
        self.workers = min(self.workers, n)  # one trial per GPU: has_slot admits no more from now on
        return next(g for g in range(n) if g not in set(self.gpu_of.values()))

    def pid(self, handle: Any) -> int | None:
        return handle.pid

    def poll(self):
        ended = []
        for proc in [p for p in self.running if p.exitcode is not None]:
            self.gpu_of.pop(proc, None)
            result, error = _collect(self.running.pop(proc), proc.exitcode)
            ended.append((proc, result, error))
        return ended

    def close(self) -> None:
        for proc in self.running:  # interrupted (Ctrl-C), or a search out of time: stop the trials
            proc.kill()
        for proc in self.running:
            proc.join(5)
            proc.close()
        self.running.clear()
        self.tmp.cleanup()


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


@register_executor("ray")
class RayExecutor(Executor):
    """Each trial a Ray task with ``cpus_per_trial`` CPUs in a fresh worker process."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from seqbench.data import require
        self.ray = require("ray", extra="ray", why="--executor ray")
        self.started_here = not self.ray.is_initialized()
        if self.started_here:
            # Ray puts the driver's working directory on every worker's import path (and a local
            # instance starts its workers from there): connect from a neutral directory, safe-path on
            with _safe_start():
                self.ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                              ignore_reinit_error=True, runtime_env={"env_vars": {"PYTHONSAFEPATH": "1"}})
        self.threads = self.cpus_per_trial or 1
        self.cwd = os.getcwd()

        @self.ray.remote(num_cpus=self.threads, max_calls=1)  # a fresh worker process per trial: no state leaks
        def ray_trial(trial: dict, threads: int, run_dir: str, driver_cwd: str) -> dict:
            import os as _os
            import sys as _sys
            # a Ray instance the user started elsewhere put its driver's directory on the path
            unsafe = {"", ".", driver_cwd, _os.getcwd()}
            _sys.path[:] = [p for p in _sys.path if p not in unsafe]
            from seqbench.bench.worker import execute_trial
            try:
                return execute_trial(trial, threads, run_dir)
            except Exception as e:  # noqa: BLE001 - returned to the driver, recorded as a failure
                return {"error": f"{type(e).__name__}: {e}"}
        self.remote = ray_trial
        self.refs: dict[Any, None] = {}

    def submit(self, trial: dict, run_dir: Path) -> Any:
        device = str(trial.get("train", {}).get("device", "auto"))
        # "auto" means what it means locally: a GPU where there is one (here: where the cluster has one)
        wants_gpu = device.startswith("cuda") or (device == "auto" and self.ray.cluster_resources().get("GPU", 0) > 0)
        gpus = 1 if wants_gpu else 0
        ref = self.remote.options(num_gpus=gpus).remote(trial, self.threads, str(run_dir), self.cwd)
        self.refs[ref] = None
        return ref

    def poll(self):
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        ended = []
        for ref in ready:
            self.refs.pop(ref)
            try:
                out = self.ray.get(ref)
                ended.append((ref, None, out["error"]) if "error" in out else (ref, out, None))
            except Exception as e:  # noqa: BLE001 - e.g. the worker process crashed
                ended.append((ref, None, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"))
        return ended

    def close(self) -> None:
        for ref in self.refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        if self.started_here:
            self.ray.shutdown()
