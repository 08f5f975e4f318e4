"""The search (Optuna, ask-and-tell): a TPE sampler proposes a candidate, learning rate and (where
the candidate uses it) dropout; successive halving on epochs (rungs r, 3r, 9r) stops the
unpromising early and resumes the promising from their checkpoints. Trials are ordinary sweep
trials in the results store, run by the sweep executors; the search's log in the same database
lets a killed search resume."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench.recommend import records
from seqbench.recommend.answer import Ranked
from seqbench.recommend.budget import MAX_GROWTH, REDUCTION, epoch_seconds
from seqbench.recommend.candidates import Candidate
from seqbench.recommend.costs import Costs

TRIAL_OVERHEAD_S = 0.5     # starting a trial process (forked from a warm server), on top of loading the task
FAILURES_TO_STOP = 8       # trials failed in a row, none finished: the search stops instead of burning its budget
SHARE_OF_LEFT = 0.25       # while others run, a proposed trial's first rung may take at most this share of the time left


def default_candidate(allowed: list[Candidate]) -> Candidate | None:
    """What an expert would try first: the largest allowed candidate of the model the registry
    marks as the default choice (``SeqModel.default_choice``), at its first search shape."""
    from seqbench.models.registry import get_model_entry
    pool = [c for c in allowed if get_model_entry(c.model).cls.default_choice]
    if not pool:
        return None
    top = max(c.params for c in pool)
    return next(c for c in pool if c.params == top)  # the grid lists a size's shapes in search_shapes order


@dataclass(frozen=True)
class SearchSpec:
    """Everything that defines a search, fixed when it starts (its id hashes the parts a rerun must
    share to resume it)."""
    task_name: str
    task_opts: dict[str, Any]
    allowed: tuple[Candidate, ...]
    cost_of: dict[Candidate, Costs]
    rungs: tuple[int, ...]
    search_id: str
    db: str
    seed: int = 0
    overhead: float = TRIAL_OVERHEAD_S
    imports: tuple[str, ...] = ()
    device: str = "cpu"
    first: tuple[str, ...] = ()   # candidate ids trained right after the default: the portfolio's picks
    log: str | None = None        # experiment tracking of every trial: tensorboard | mlflow


class Search:
    """A running search, built from its ``SearchSpec``: the Optuna study (ask-and-tell), the driver
    running trials, and the log in the store that lets a killed search resume."""

    def __init__(self, spec: SearchSpec, task):
        from seqbench.bench.store import Store
        from seqbench.data import require
        optuna = self.optuna = require("optuna", extra="search", why="seqbench recommend")
        self.spec, self.task = spec, task
        self.task_name, self.task_opts, self.rungs = spec.task_name, spec.task_opts, list(spec.rungs)
        allowed, seed, rungs = list(spec.allowed), spec.seed, list(spec.rungs)
        self.allowed, self.cost_of, self.by_id = allowed, spec.cost_of, {c.id: c for c in allowed}
        self.search_id, self.db = spec.search_id, spec.db
        self.metric = task.metric
        self.calibration, self.overhead = 1.0, spec.overhead
        self.store = Store(spec.db)
        direction = "maximize" if task.metric.higher_is_better else "minimize"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            direction=direction,
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, len(allowed))),
                                               constant_liar=True),
            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0], reduction_factor=REDUCTION))
        self.dists = {"candidate": optuna.distributions.CategoricalDistribution([c.id for c in allowed]),
                      "lr": optuna.distributions.FloatDistribution(3e-4, 1e-2, log=True),
                      "dropout": optuna.distributions.FloatDistribution(0.0, 0.3)}
        prior, self.spent_before = records.search_log(self.store, self.search_id)
        self.records: dict[str, dict] = {}
        for tid, rec in prior.items():  # finished trials count as they are; interrupted ones are proposed again
            if rec["params"].get("candidate") not in self.by_id:
                continue
            self.records[tid] = rec
            if rec["state"] in ("COMPLETE", "PRUNED"):
                self.study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState[rec["state"]], value=rec.get("value"), params=rec["params"],
                    distributions=self.dists, intermediate_values={int(k): v for k, v in rec["values"].items()}))
            elif rec["state"] == "RUNNING":
                self.study.enqueue_trial(rec["params"])
        self.default_tid, self.enqueued = None, set()
        default = self.default_params()
        if default is not None:  # what an expert would try first: trained first, to the end, never pruned
            self.default_tid = _tid(default)
            self.enqueued.add(self.default_tid)
            if self.default_tid not in self.records:
                self.study.enqueue_trial(default)
        for cid in spec.first:  # the portfolio's configurations next, at the task's learning rate
            params = {"candidate": cid, "lr": self.task_lr(), "dropout": 0.0}
            if cid in self.by_id and _tid(params) not in self.records and params != default:
                self.study.enqueue_trial(params)
                self.enqueued.add(_tid(params))
        self.driver = None
        self.t_start = time.monotonic()
        self.mirrored = 0.0  # when the dashboard's copy of the study was last written

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()
        self.store.close()
        self.mirror(force=True)

    @property
    def dashboard(self) -> tuple[str, str]:
        """Where Optuna's dashboard finds this search: the storage URL and the study's name."""
        return f"sqlite:///{dashboard_path(self.db)}", f"recommend-{self.task_name}-{self.search_id}"

    def mirror(self, force: bool = False) -> None:
        """Copy the study's finished trials into a SQLite storage that ``optuna-dashboard`` opens
        (the search itself keeps its own log in the results store; this copy is for looking)."""
        now = time.monotonic()
        if not force and now - self.mirrored < 10:
            return
        self.mirrored = now
        optuna = self.optuna
        url, name = self.dashboard
        done = [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]
        if not done:
            return
        storage = optuna.storages.RDBStorage(url)
        try:
            if name in {s.study_name for s in storage.get_all_studies()}:
                optuna.delete_study(study_name=name, storage=storage)
            copy = optuna.create_study(study_name=name, storage=storage, direction=self.study.direction)
            copy.set_user_attr("task", self.task_name)
            copy.add_trials(done)
        finally:
            storage.engine.dispose()

    def default_params(self) -> dict | None:
        """The default configuration: the largest allowed candidate of the model the registry marks
        as the default choice (``SeqModel.default_choice``), at its first search shape, with the
        task's learning rate and the model's default dropout. None if no such candidate is allowed."""
        c = default_candidate(self.allowed)
        return None if c is None else {"candidate": c.id, "lr": self.task_lr(), "dropout": 0.0}

    def task_lr(self) -> float:
        """The task's learning rate, within the search's range."""
        return min(1e-2, max(3e-4, float(self.task.recommended.get("lr", 2e-3))))

    def uses_dropout(self, c: Candidate) -> bool:
        from seqbench.models.registry import get_model_entry
        return "dropout" in get_model_entry(c.model).cls.searchable(c.opts)

    def estimate(self, c: Candidate, epochs: int) -> float:
        """Seconds for ``epochs`` more epochs of ``c`` on one thread (profile costs, calibrated on runs)."""
        return self.overhead + epoch_seconds(self.task, self.cost_of[c]) * epochs * self.calibration

    def trial(self, params: dict, epochs: int, s: int, fold: tuple[int, int] | str | None = None,
              limits: dict | None = None) -> dict:
        """The sweep trial of a configuration (seed ``s``; ``fold`` (i, k): fold i of k as validation;
        "all": trained on all of train+valid; ``limits``: max_time / early_stop for its training)."""
        from seqbench.bench.sweep import make_trial
        c = self.by_id[params["candidate"]]
        opts = dict(c.opts)
        if self.uses_dropout(c):
            opts["dropout"] = round(params["dropout"], 3)
        tag = None if fold is None else "all" if fold == "all" else f"{fold[0]}/{fold[1]}"
        task_opts = self.task_opts if tag is None else {**self.task_opts, "fold": tag}
        t = make_trial(self.task_name, c.model, s, params=c.params, task_opts=task_opts, model_opts=opts,
                       train={"lr": round(params["lr"], 6), "epochs": epochs, "device": self.spec.device,
                              **({"log": self.spec.log} if self.spec.log else {}), **(limits or {})})
        run = f"search-{self.search_id}-{_tid(params)}-s{s}" + ("" if tag is None else "-refit" if tag == "all"
                                                                 else f"-fold{fold[0]}of{fold[1]}")
        t.update(run=run, keep_state=True, test=False)
        if self.spec.imports:
            t["imports"] = list(self.spec.imports)
        return t

    def log(self, tid: str, rec: dict) -> None:
        self.records[tid] = rec
        records.log_search(self.store, self.search_id, tid, rec, self.spent_before + time.monotonic() - self.t_start)
        if rec["state"] != "RUNNING":
            self.mirror()

    def _start(self, tid: str, rec: dict, epochs: int) -> None:
        t = self.trial(rec["params"], epochs, 0)
        rec.update(key=t["key"], target=epochs, started=time.monotonic())
        self.store.add([t])
        if self.store.status(t["key"]) == "done":  # finished before an interruption: reused, not retrained
            row = self.store.row(t["key"])
            self.reused.append((t, {**row, "history": json.loads(row["history"] or "[]")}, None))
        elif not self.driver.submit(t):
            self.reused.append((t, None, "held by another search on the same database"))
        self.by_key[t["key"]] = tid

    def run(self, deadline: float, workers: int | None, executor: str, progress: bool | None, t_start: float,
            max_trials: int | None = None) -> None:
        """Propose, train and promote trials until ``deadline``, or until ``max_trials``
        configurations (those of an earlier run of this search included) have been tried and the
        last of them has ended."""
        from tqdm.auto import tqdm

        from seqbench.bench.runner import Driver
        optuna, rungs = self.optuna, self.rungs
        self.t_start = t_start
        self.driver = Driver(self.store, executor, workers=workers, cpus_per_trial=1)
        self.reused, self.by_key = [], {}
        # trials at once: the local executor's workers; Ray schedules any number, so cap it likewise
        capacity = self.driver.executor.workers or max(1, os.cpu_count() or 1)
        live: dict[str, dict] = {}
        queue: list[tuple[str, int]] = []  # promoted trials waiting for a slot: (tid, epochs)
        total = max(1, int(deadline - time.monotonic()))
        bar = tqdm(total=total, unit="s", desc="recommend", leave=False, dynamic_ncols=True,
                   disable=None if progress is None else not progress,
                   bar_format="{desc}: {n_fmt}/{total_fmt}s {bar} {postfix}")
        best: tuple[float, str] | None = None
        failures = 0  # trials failed in a row
        tried = len(self.records)
        try:
            while time.monotonic() < deadline:
                if failures >= FAILURES_TO_STOP and best is None:
                    break  # every trial fails (broken code or data): recommend reports the error
                bar.n = min(total, total - int(deadline - time.monotonic()))
                done = sum(r["state"] in ("COMPLETE", "PRUNED") for r in self.records.values())
                bar.set_postfix_str(f"{done} trials done, {len(live)} running"
                                    + (f" | best {best[1]}: {self.metric.name} {best[0]:.4g}" if best else ""))
                bar.refresh()
                ended, self.reused = self.driver.poll() + self.reused, []
                for t, result, error in ended:
                    tid = self.by_key.pop(t["key"], None)
                    if tid is None or tid not in live:
                        continue
                    rec = live[tid]
                    if error is not None or result is None:
                        self.study.tell(rec["trial"], state=optuna.trial.TrialState.FAIL)
                        rec.update(state="FAIL", error=error)
                        self.log(tid, live.pop(tid))
                        failures += 1
                        continue
                    failures = 0
                    took = time.monotonic() - rec["started"]
                    if took > 5:  # calibrate the time estimates on what trials really take
                        est = self.estimate(self.by_id[rec["params"]["candidate"]], rec["target"] - rec["reported"])
                        ratio = (took - self.overhead) / max((est - self.overhead) / self.calibration, 1e-3)
                        self.calibration = 0.5 * self.calibration + 0.5 * min(5.0, max(0.2, ratio))
                    hist = result["history"]
                    for row in hist[rec["reported"]:]:
                        rec["trial"].report(row[f"valid_{self.metric.name}"], row["epoch"])
                        rec["values"][str(row["epoch"])] = row[f"valid_{self.metric.name}"]
                    rec["reported"], rec["value"] = len(hist), result["best_valid"]
                    if best is None or self.metric.better(rec["value"], best[0]):
                        best = (rec["value"], rec["params"]["candidate"])
                    nxt = next((r for r in rungs if r > rec["reported"]), None)
                    if nxt is not None and tid != self.default_tid and rec["trial"].should_prune():
                        self.study.tell(rec["trial"], state=optuna.trial.TrialState.PRUNED)
                        rec["state"] = "PRUNED"
                        self.log(tid, live.pop(tid))
                    elif nxt is not None:
                        queue.append((tid, nxt))  # promoted: continues from its checkpoint
                        self.log(tid, rec)
                    else:
                        self.study.tell(rec["trial"], rec["value"])
                        rec["state"] = "COMPLETE"
                        self.log(tid, live.pop(tid))
                asks = 0
                while self.driver.has_slot() and len(live) - len(queue) < capacity:
                    left = deadline - time.monotonic()
                    if queue:
                        tid, epochs = queue.pop(0)
                        rec = live[tid]
                        if self.estimate(self.by_id[rec["params"]["candidate"]], epochs - rec["reported"]) > left:
                            self.study.tell(rec["trial"], rec["value"])  # no time for the next rung: as it is
                            rec["state"] = "COMPLETE"
                            self.log(tid, live.pop(tid))
                        else:
                            self._start(tid, rec, epochs)
                        continue
                    if all(self.estimate(c, rungs[0]) > left for c in self.allowed) or asks >= 20:
                        break
                    if max_trials is not None and tried >= max_trials:
                        break
                    asks += 1
                    trial = self.study.ask(self.dists)
                    params = {k: trial.params[k] for k in self.dists}
                    if not self.uses_dropout(self.by_id[params["candidate"]]):
                        params["dropout"] = 0.0  # not a knob of this candidate: one trial, not copies
                    tid = _tid(params)
                    # the sampler's proposals weigh their cost: while others run, one whose first rung would
                    # take over a quarter of the time left waits (a slow candidate does not eat the budget)
                    cap = left if tid in self.enqueued or not live else SHARE_OF_LEFT * left
                    if tid in live or self.estimate(self.by_id[params["candidate"]], rungs[0]) > cap:
                        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)  # a duplicate, or too long now
                        continue
                    live[tid] = {"trial": trial, "params": params, "reported": 0, "values": {}, "state": "RUNNING"}
                    tried += 1
                    self.log(tid, live[tid])
                    self._start(tid, live[tid], rungs[0])
                if not live and all(self.estimate(c, rungs[0]) > deadline - time.monotonic() for c in self.allowed):
                    break  # nothing runs and nothing more fits
                if not live and max_trials is not None and tried >= max_trials:
                    break  # as many configurations as asked for, all ended
                time.sleep(0.05)
            for tid, rec in live.items():  # out of time: a trial keeps the score of its last finished rung
                if rec.get("value") is not None:
                    self.study.tell(rec["trial"], rec["value"])
                    rec["state"] = "COMPLETE"
                self.log(tid, rec)
        finally:
            self.driver.cancel()
            bar.close()

    def confirm(self, rows: list[Ranked], seeds: int, deadline: float, workers: int | None, executor: str) -> None:
        """Train the top three again with seeds 1..seeds-1, as far as the first seed went."""
        self._train_all([self.trial(_params(r), r.epochs, s) for r in rows[:3] for s in range(1, seeds)],
                        deadline, workers, executor)

    def cross_validate(self, rows: list[Ranked], k: int, deadline: float, workers: int | None,
                       executor: str) -> list[Ranked]:
        """Score ``rows`` by k-fold cross-validation on train+valid (each fold trained as far as the
        configuration went): their ``valid`` becomes the mean over folds, ``valid_std`` the folds'
        spread, ``cv_folds`` k. Configurations whose folds did not all finish by ``deadline`` are
        left out."""
        jobs = {(i, f): self.trial(_params(r), r.epochs, 0, (f, k)) for i, r in enumerate(rows) for f in range(k)}
        self._train_all(list(jobs.values()), deadline, workers, executor)
        out = []
        for i, r in enumerate(rows):
            vals = [self.store.row(jobs[i, f]["key"]) for f in range(k)]
            if all(v is not None and v["status"] == "done" for v in vals):
                scores = [v["best_valid"] for v in vals]
                out.append(dataclasses.replace(r, valid=statistics.fmean(scores), valid_std=statistics.stdev(scores),
                                               cv_folds=k))
        hib = self.metric.higher_is_better
        return sorted(out, key=lambda r: (-r.valid if hib else r.valid, -r.epochs))

    def refit(self, r: Ranked, deadline: float, workers: int | None, executor: str) -> Ranked | None:
        """The cross-validated winner trained again on all of train+valid (``fold=all``): with no
        validation left to pick its epoch, for as many epochs as its folds' best validation scores
        came after on average (``refit_epochs``); the refitted row (its run directory), or None if
        it did not finish by ``deadline``."""
        epochs = self.refit_epochs(r)
        t = self.trial(_params(r), epochs, 0, "all")
        self._train_all([t], deadline, workers, executor)
        row = self.store.row(t["key"])
        if row is None or row["status"] != "done":
            return None
        run = Path(f"{Path(self.db).resolve()}.runs") / t["run"]
        return dataclasses.replace(r, run_dir=str(run), train_time=_train_time(run), refit=True, epochs=epochs)

    def refit_epochs(self, r: Ranked) -> int:
        """The mean over ``r``'s cross-validation folds of the epoch with the best validation score,
        the last such epoch where it is tied (a saturated accuracy: the longer-trained model),
        ``r.epochs`` where the folds' histories are missing."""
        best = []
        for f in range(r.cv_folds):
            row = self.store.row(self.trial(_params(r), r.epochs, 0, (f, r.cv_folds))["key"])
            hist = json.loads(row["history"] or "[]") if row is not None else []
            scores = [(h[f"valid_{self.metric.name}"], h["epoch"]) for h in hist if f"valid_{self.metric.name}" in h]
            if scores:
                pick = max if self.metric.higher_is_better else min
                top = pick(v for v, _ in scores)
                best.append(max(e for v, e in scores if v == top))
        return max(1, round(statistics.fmean(best))) if len(best) == r.cv_folds and best else r.epochs

    def extend(self, r: Ranked, deadline: float, workers: int | None, executor: str
               ) -> tuple[Ranked, float | None, float | None]:
        """The winner's split run trained on from its checkpoint until ``deadline`` (the share of
        the budget kept for it), so the answer gets the training length the budget allows, its best
        epoch on validation kept; it stops earlier only when half the time it was given passes
        without a better validation score (on a tiny set, validation can plateau for hundreds of
        epochs and then improve: airpassengers' default TCN, trained 5 minutes, scored best at
        epochs 1,383-3,244 over 3 seeds). Returns the row as extended (``valid`` can only improve;
        a cross-validated row keeps its fold mean) and the split run's validation score before and
        after; ``r`` and Nones where there is no time for a few epochs or the training did not
        finish."""
        left = deadline - time.monotonic() - self.overhead
        epoch_s = epoch_seconds(self.task, self.cost_of[self.by_id[r.candidate]]) * self.calibration
        if left < 3 * epoch_s:
            return r, None, None
        t = self.trial(_params(r), r.epochs * MAX_GROWTH, 0,
                       limits={"max_time": round(left, 1), "early_stop": max(10, math.ceil(0.5 * left / epoch_s))})
        self._train_all([t], deadline + 10 + 0.1 * left, workers, executor)  # its last epoch may overrun max_time
        row = self.store.row(t["key"])
        if row is None or row["status"] != "done":
            return r, None, None
        epochs = len(json.loads(row["history"] or "[]"))
        before = self.records.get(_tid(_params(r)), {}).get("value")
        return (dataclasses.replace(r, valid=r.valid if r.cv_folds else row["best_valid"], epochs=epochs,
                                    train_time=_train_time(Path(r.run_dir))), before, row["best_valid"])

    def _train_all(self, trials: list[dict], deadline: float, workers: int | None, executor: str) -> None:
        """Run every trial not yet done in the store, until they end or ``deadline``."""
        from seqbench.bench.runner import Driver
        self.driver = Driver(self.store, executor, workers=workers, cpus_per_trial=1)
        todo, running = list(trials), set()
        try:
            while (todo or running) and time.monotonic() < deadline:
                while todo and self.driver.has_slot():
                    t = todo.pop(0)
                    self.store.add([t])
                    if self.store.status(t["key"]) != "done" and self.driver.submit(t):
                        running.add(t["key"])
                for t, _, _ in self.driver.poll():
                    running.discard(t["key"])
                running = {key for key in running if self.store.status(key) != "done"}
                time.sleep(0.05)
        finally:
            self.driver.cancel()

    def ranked(self, seeds: int = 1) -> list[Ranked]:
        """Trained configurations, best validation metric (mean over seeds) first."""
        rows = []
        for tid, rec in self.records.items():
            if rec.get("value") is None:
                continue
            c = self.by_id[rec["params"]["candidate"]]
            k = self.cost_of[c]
            run = Path(f"{Path(self.db).resolve()}.runs") / f"search-{self.search_id}-{tid}-s0"
            epochs = len(rec["values"])
            vals = [rec["value"]]
            for s in range(1, seeds):
                row = self.store.row(self.trial(rec["params"], epochs, s)["key"])
                if row is not None and row["status"] == "done":
                    vals.append(row["best_valid"])
            rows.append(Ranked(candidate=c.id, model=c.model, shape=k.shape, params=k.params, step_ms=k.step_ms,
                               step_runtime=k.step_runtime, mem_mb=k.mem_mb, lr=rec["params"]["lr"],
                               dropout=rec["params"]["dropout"] if self.uses_dropout(c) else None,
                               valid=statistics.fmean(vals), valid_std=statistics.stdev(vals) if len(vals) > 1 else None,
                               seeds=len(vals), epochs=epochs, train_time=_train_time(run), run_dir=str(run),
                               default=tid == self.default_tid))
        hib = self.metric.higher_is_better
        # by the validation score alone: a configuration better at fewer epochs is not ranked below a
        # worse one that trained longer (its best-on-valid weights are that good); ties: more epochs first
        rows.sort(key=lambda r: (-r.valid if hib else r.valid, -r.epochs))
        return rows

def dashboard_path(db: str | Path) -> Path:
    """The Optuna storage beside a recommend database: recommend.db -> recommend.optuna.db."""
    db = Path(db)
    return db.with_name(f"{db.stem}.optuna.db")


def _params(r: Ranked) -> dict:
    return {"candidate": r.candidate, "lr": r.lr, "dropout": r.dropout or 0.0}


def _tid(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]

def _train_time(run: Path) -> float:
    try:
        return float(json.loads((run / "history.jsonl").read_text().splitlines()[-1])["train_time"])
    except (OSError, ValueError, IndexError, KeyError):
        return 0.0
