"""Run a sweep's trials, each in its own process, and record them in the store.

The driver (``run_sweep``) claims trials in the store one at a time (so several sweeps on one
database share the work and never train a trial twice), hands them to an executor, renews its
lease while they run, and records each result. Trials another live sweep holds are waited for,
not rerun. Each trial trains in its own run directory beside the database (``<db>.runs/<key>``):
a trial interrupted by a kill resumes from its last finished epoch when the sweep is rerun.

The executors (local, ray) live in ``seqbench.bench.executors``.
"""
from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.bench.executors import (EXECUTORS, Executor, check_workers, get_executor,  # noqa: F401 (API)
                                      list_executors, register_executor)
from seqbench.bench.store import Store, new_owner

RENEW_S = 10.0  # lease renewal period (the lease is LEASE_S; see store.py)
LOST_CLAIM = "lost its claim to another sweep"  # Driver.poll's error for a trial it no longer owned


@dataclass
class SweepSummary:
    total: int
    skipped: int = 0  # already done before this run
    done: int = 0
    failed: int = 0
    by_others: int = 0  # finished meanwhile by another sweep on the same database
    errors: dict[str, str] = field(default_factory=dict)


def run_dir_for(db: str | Path, key: str) -> Path:
    """Where a trial trains (checkpoints for resume; afterwards an ordinary run directory)."""
    return Path(f"{Path(db).resolve()}.runs") / key


# -- the driver -----------------------------------------------------------------------------------
class Progress:
    """Done / running / failed / total, the current best per task, and an ETA, on one live line."""

    def __init__(self, summary: SweepSummary, enabled: bool | None):
        from tqdm.auto import tqdm
        self.summary = summary
        self.bar = tqdm(total=summary.total, initial=summary.skipped, unit="trial", desc="sweep", dynamic_ncols=True,
                        disable=None if enabled is None else not enabled)
        self.best: dict[str, tuple[float, str, bool]] = {}

    def update(self, running: int, trial: dict | None = None, result: dict | None = None, waiting: int = 0):
        """Redraw; with ``trial``, one more trial ended (``result`` None if it failed)."""
        if trial is not None:
            self.bar.update(1)
            if result and result.get("test_metric") is not None:
                v, hib = result["test_metric"], bool(result["higher_is_better"])
                cur = self.best.get(trial["task"])
                if cur is None or (v > cur[0] if hib else v < cur[0]):
                    self.best[trial["task"]] = (v, trial["model"], hib)
        best = " ".join(f"{t}:{m}={v:.4g}" for t, (v, m, _) in sorted(self.best.items()))
        held = f", {waiting} held by another sweep" if waiting else ""
        self.bar.set_postfix_str(f"running {running}{held}, failed {self.summary.failed}" +
                                 (f" | best {best}" if best else ""))

    def close(self):
        self.bar.close()


class Driver:
    """Claims trials in the store and runs them on an executor, one lease for all of them.

    ``submit(trial)`` claims and starts a trial (False if it is done or another live sweep holds
    it); ``poll()`` records and returns the trials that ended, and renews the lease; ``close()``
    stops what still runs and frees its claims. ``run_sweep`` and ``recommend`` both drive trials
    through it. A trial may name its run directory (``trial["run"]``; default its key): trials that
    continue one training (successive rungs of a search) share one.
    """

    def __init__(self, store: Store, executor: str = "local", *, workers: int | None = None,
                 cpus_per_trial: int | None = None, address: str | None = None) -> None:
        self.store, self.owner = store, new_owner()
        self.executor = get_executor(executor)(workers=workers, cpus_per_trial=cpus_per_trial, address=address)
        self.running: dict[Any, dict] = {}
        self.last_renew = time.monotonic()

    def has_slot(self) -> bool:
        return self.executor.has_slot(len(self.running))

    def submit(self, trial: dict) -> bool:
        if not self.store.claim(trial["key"], self.owner):
            return False
        handle = self.executor.submit(trial, run_dir_for(self.store.path, trial.get("run") or trial["key"]))
        self.store.set_pid(trial["key"], self.owner, self.executor.pid(handle))
        self.running[handle] = trial
        return True

    def poll(self) -> list[tuple[dict, dict | None, str | None]]:
        """Trials that ended since the last call, each recorded in the store: (trial, result, error).
        A trial whose lease this driver lost is not recorded (its error says so)."""
        ended = []
        for handle, result, error in self.executor.poll():
            trial = self.running.pop(handle)
            if error is None:
                kept = self.store.finish(trial["key"], result, self.owner)
            else:
                kept = self.store.fail(trial["key"], error, self.owner)
            ended.append((trial, result, error) if kept else (trial, None, LOST_CLAIM))
        if time.monotonic() - self.last_renew > RENEW_S:
            self.store.renew(self.owner)
            self.last_renew = time.monotonic()
        return ended

    def cancel(self) -> None:
        """Stop every running trial and give its claim back (a search out of time)."""
        self.executor.close()
        self.running.clear()
        with contextlib.suppress(Exception):
            self.store.release(self.owner)

    def close(self) -> None:
        self.cancel()


def run_sweep(trials: list[dict], db: str | Path, *, executor: str = "local", workers: int | None = None,
              address: str | None = None, progress: bool | None = None, cpus_per_trial: int | None = None,
              validate: bool = True) -> SweepSummary:
    """Run every trial not yet done in ``db``; failed and interrupted trials are rerun (an
    interrupted one resumes from its last finished epoch). Trials another live sweep on the same
    database is running are waited for, not run twice. ``validate`` checks the whole sweep first."""
    from seqbench.bench.sweep import validate_trials
    get_executor(executor)
    check_workers(workers, cpus_per_trial)  # before the database is touched
    if validate:
        validate_trials(trials)
    with Store(db) as store:
        store.add(trials)
        todo = deque(t for t in trials if store.status(t["key"]) != "done")
        summary = SweepSummary(total=len(trials), skipped=len(trials) - len(todo))
        bar = Progress(summary, progress)
        driver = Driver(store, executor, workers=workers, cpus_per_trial=cpus_per_trial,
                        address=address) if todo else None
        waiting: list[dict] = []
        last_check = time.monotonic()
        try:
            while todo or (driver and driver.running) or waiting:
                while todo and driver.has_slot():
                    trial = todo.popleft()
                    if not driver.submit(trial):
                        if store.status(trial["key"]) == "done":
                            summary.by_others += 1
                            bar.update(len(driver.running), trial)
                        else:
                            waiting.append(trial)  # another sweep runs it: wait for its result
                        continue
                    bar.update(len(driver.running), waiting=len(waiting))
                for trial, result, error in driver.poll():
                    if error is None:
                        summary.done += 1
                    elif error != LOST_CLAIM:
                        summary.failed += 1
                        summary.errors[trial["key"]] = error
                    bar.update(len(driver.running), trial, result)
                if waiting and time.monotonic() - last_check > 1.0:  # done by the other sweep, or free again
                    last_check = time.monotonic()
                    still = []
                    for trial in waiting:
                        if store.status(trial["key"]) == "done":
                            summary.by_others += 1
                            bar.update(len(driver.running), trial)
                        elif store.held_elsewhere(trial["key"], driver.owner):
                            still.append(trial)
                        else:
                            todo.append(trial)
                    waiting = still
                time.sleep(0.02)
        finally:
            if driver is not None:
                driver.close()  # interrupted: stops the trials and frees their claims for the next run
            bar.close()
    return summary
