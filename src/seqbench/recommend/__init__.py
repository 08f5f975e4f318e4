"""`seqbench recommend`: the best architecture and size for a task, under deployment limits and a
time budget to decide.

    rec = seqbench.recommend("tsc:GunPoint", seqbench.Limits(max_step_ms=0.3), budget="5m")
    rec.winner, rec.ranked, rec.excluded, rec.explanation

1. **Candidates**: every zoo model that can serve (causal, streaming), at sizes on a log grid up to
   the parameter limit, at the shapes each model asks a search to try (``search_shapes``: the TCN
   at two kernel sizes, each deep enough for its receptive field to cover the sequence).
2. **Costs before training** (``profile``): parameters, the streaming step latency at ``batch``
   (the model's own ``step``, timed in interleaved rounds on this machine), full-sequence
   latency at the task's length, the memory to stream (weights + state after a full sequence), and
   a training step's time. Cached per candidate and machine in the results store, or read from a
   ``costs.json`` measured on the target device (``seqbench profile``). A candidate over a limit
   never trains; the answer lists it with the number that excluded it.
3. **Search** (Optuna, ask-and-tell): a TPE sampler proposes a candidate, learning rate and
   dropout; successive halving on epochs (rungs r, 3r, 9r; 9r grows with the budget,
   ``_max_epochs``) stops the unpromising early and resumes the promising from their
   checkpoints. Trials are ordinary sweep trials in the same SQLite store, run by the same
   executors (local processes or Ray), so a killed search, rerun, reuses every finished trial
   and resumes interrupted ones. Selection is on the validation split.
4. **The answer**: ranked candidates, the winner's test metric (the only use of test), the
   trivial baseline (the winner must beat it on valid, else the baseline is recommended), ties
   within noise resolved toward the cheaper step, a Pareto plot, and the winner as a run directory."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
import time
from pathlib import Path

from seqbench.errors import SeqbenchError
from seqbench.tables import fmt
from seqbench.recommend.answer import (Ranked, Recommendation, choose, explain, fmt_duration,  # noqa: F401
                                       print_recommendation, validation_noise, write_answer, _test_winner)
from seqbench.recommend.candidates import Candidate, Limits, candidate_space, exclusions  # noqa: F401
from seqbench.recommend.instant import Instant, instant_answer, print_instant  # noqa: F401
from seqbench.recommend.costs import Costs, _machine, measure_costs, profile, read_costs, write_costs  # noqa: F401
from seqbench.recommend import records
from seqbench.recommend.portfolio import PORTFOLIO_FIRST
from seqbench.recommend.budget import epoch_seconds, grown_epochs, parse_duration, rungs_for
from seqbench.recommend.search import TRIAL_OVERHEAD_S, Search, SearchSpec, default_candidate

CV_BELOW = 50   # validation sequences under which the best configurations are compared by cross-validation
CV_FOLDS = 5
CV_TOP = 3      # the best configurations cross-validated (beside the default)
MIN_STEPS = 200  # optimizer steps of a fully trained candidate, at least: 20 epochs of 31 series would be 20
GROW_SHARE = 0.15  # of the budget, the most the default first try's full training grows to (see _max_epochs)
CV_SHARE = 0.35  # of the time left after profiling, kept for cross-validating the best and the refit
FINAL_SHARE = 0.3  # of the time left after profiling, kept for training the winner on (unless refitted after CV)


def recommend(task, limits: Limits | None = None, budget: str | float = "10m", *, models: list[str] | None = None,
              seeds: int = 1, db: str | Path = "recommend.db", out: str | Path | None = None,
              executor: str = "local", workers: int | None = None, costs: str | Path | None = None,
              max_epochs: int | None = None, seed: int = 0, progress: bool | None = None,
              task_name: str | None = None, task_opts: dict | None = None,
              imports: list[str] | None = None, device: str = "cpu", on_instant=None,
              log: str | None = None, runtime: str = "auto", max_trials: int | None = None) -> Recommendation:
    """Search the zoo for ``task`` under ``limits`` within ``budget`` (seconds or '5m'); see the
    module docstring. ``task`` is a name (with ``task_opts``) or a Task built by ``create_task``.
    ``on_instant``, if given, is called with the portfolio's instant answer (``Instant``) before
    the full profile and any training. ``log`` (tensorboard | mlflow) tracks every trial.
    ``max_trials``: stop the search after this many configurations (the time budget still bounds
    it; a rerun with a larger number continues the same search).
    ``runtime`` (auto | torch | numpy | onnxruntime | best) is where candidates' steps are timed
    (best: the faster of the own step and the onnxruntime export): the ranking under a latency
    limit depends on the runtime that will run the model."""
    import seqbench
    from seqbench.data import require
    require("optuna", extra="search", why="seqbench recommend")  # before any work
    t_start = time.monotonic()
    limits = limits or Limits()
    limits.check()
    budget_s = parse_duration(budget)
    from seqbench.tracking import check_logger
    check_logger(log)
    from seqbench.recommend.costs import check_runtime
    check_runtime(runtime)
    if out is not None:  # a file, or a directory holding the user's files: refused before any work
        from seqbench.outdir import OutDir
        OutDir(out).check()
    if not isinstance(seeds, int) or seeds < 1:
        raise SeqbenchError(f"seeds must be a positive integer, got {seeds!r}")
    t_task = time.monotonic()
    if isinstance(task, str):
        task_name, task_opts = task, dict(task_opts or {})
        task = seqbench.create_task(task_name, **task_opts)
    else:
        task_name, task_opts = task_name or task.config()["name"], dict(task_opts or {
            k: v for k, v in task.config().items() if k != "name"})
    task_load_s = time.monotonic() - t_task  # each trial process loads the task again
    from seqbench.bench.sweep import data_identity
    task_opts, _ = data_identity(task_opts)
    from seqbench.bench.executors import check_workers, get_executor
    get_executor(executor)
    check_workers(workers, None)
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
        raise SeqbenchError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    if max_trials is not None and (not isinstance(max_trials, int) or isinstance(max_trials, bool) or max_trials < 1):
        raise SeqbenchError(f"max_trials must be a positive integer, got {max_trials!r}")
    # 1-2: candidates and their costs, before anything trains
    candidates = candidate_space(task, limits.max_params, models)
    from seqbench.recommend.properties import try_measure
    props = try_measure(task)  # the data's properties: what the portfolio compares
    if on_instant is not None:  # seconds: only the candidates the instant answer needs are measured
        on_instant(instant_answer(task, limits, models, db=db, costs=costs, runtime=runtime, props=props))
    if costs is not None:
        cost_of, machine = read_costs(costs, task, candidates, limits.batch)
    else:
        cost_of, machine = profile(task, candidates, limits.batch, db, progress, runtime), _machine()
        machine += {"auto": "", "best": ", steps timed on each model's own step and its onnxruntime export (the "
                                        "faster kept)"}.get(runtime, f", steps timed on {runtime}")
    excluded = exclusions(cost_of, limits)
    allowed = [c for c in candidates if c not in excluded]
    from seqbench.tasks.registry import get_task_entry
    use_cv = task.num_samples("valid") < CV_BELOW and "fold" in get_task_entry(task_name).option_names()
    if not allowed and all(not math.isfinite(k.train_step_ms) for k in cost_of.values()):
        raise SeqbenchError(next(iter(cost_of.values())).shape.removeprefix("does not fit: "))
    if not allowed:
        fastest = min(cost_of.items(), key=lambda kv: kv[1].step_ms)
        lightest = min(cost_of.items(), key=lambda kv: kv[1].mem_mb)
        fewest = min(cost_of.items(), key=lambda kv: kv[1].params)
        raise SeqbenchError(f"no candidate meets the limits: the fastest step measured is {fastest[0].id} at "
                            f"{fastest[1].step_ms:.3g} ms, the least memory {lightest[1].mem_mb:.3g} MB "
                            f"({lightest[0].id}), the fewest parameters {fewest[1].params:,} ({fewest[0].id}), "
                            f"at --batch {limits.batch}; relax --max-step-ms / --max-memory-mb / --max-params")

    if max_epochs is None:
        max_epochs = _max_epochs(task, allowed, cost_of, budget_s, use_cv)
    rungs = rungs_for(max_epochs)

    # the portfolio's order for data like this (the instant answer), trained right after the default
    from seqbench.recommend.instant import answer_from, portfolio_order
    ordered, near = portfolio_order(task, props, allowed) if props is not None else ([], [])
    instant = answer_from(task, props, ordered, near, ordered[0]) if ordered else None

    # 3: the search, resumable from the store
    ident = {"task": task_name, "task_opts": task_opts, "limits": dataclasses.asdict(limits), "models": models,
             "rungs": rungs, "seed": seed, "seeds": seeds, "costs": str(costs) if costs else None,
             **({"runtime": runtime} if runtime != "auto" else {})}
    from seqbench.device import resolve_device
    spec = SearchSpec(task_name=task_name, task_opts=task_opts, allowed=tuple(allowed), cost_of=cost_of,
                      rungs=tuple(rungs), db=str(db), seed=seed, overhead=TRIAL_OVERHEAD_S + task_load_s,
                      search_id=hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12],
                      imports=tuple(imports or ()), device=str(resolve_device(device)) if device != "cpu" else "cpu",
                      first=_first(task, ordered[:PORTFOLIO_FIRST], near, cost_of, rungs[0], task_load_s), log=log)
    search = Search(spec, task)
    from seqbench.recommend.baselines import nondeep_baseline
    nondeep = nondeep_baseline(task, max_s=0.1 * budget_s)  # within the budget: its time counts like profiling's
    try:
        profile_s = time.monotonic() - t_start
        remaining = budget_s - search.spent_before - profile_s
        quickest = min(search.estimate(c, rungs[0]) for c in allowed)
        done_before = search.ranked()
        if remaining < quickest and not done_before:
            raise SeqbenchError(f"the time budget {fmt_duration(budget_s)} is too short: profiling took "
                                f"{profile_s:.0f}s and the quickest first trial needs ~{quickest:.0f}s; give "
                                f"--time-budget {fmt_duration(max(60.0, 3 * (profile_s + quickest)))} or more")
        t_search = time.monotonic()
        confirm_share = 0.25 if seeds > 1 else 0.0  # kept for rerunning the best with more seeds
        cv_share = CV_SHARE if use_cv else 0.0  # kept for cross-validating the best when validation is small, and the refit
        # kept for training the winner on, unless it is refitted after cross-validation (the refit then
        # takes the end of CV's share)
        final_share = FINAL_SHARE if seeds == 1 and (not use_cv or not task.refit_after_cv) else 0.0
        if remaining >= quickest:  # else: this search already spent its budget; answer from its results
            search.run(deadline=t_search + remaining * (1 - confirm_share - cv_share - final_share), workers=workers,
                       executor=executor, progress=progress, t_start=t_start, max_trials=max_trials)
        rows = search.ranked()
        failed = [r for r in search.records.values() if r.get("state") == "FAIL" and r.get("error")]
        if not rows and failed:
            first = str(failed[0]["error"]).strip().splitlines()[-1][:300]
            raise SeqbenchError(f"every trial failed ({len(failed)} tried); the first error: {first}")
        if not rows:
            raise SeqbenchError(f"no trial finished within the time budget {fmt_duration(budget_s)} (profiling "
                                f"took {profile_s:.0f}s); give a longer --time-budget")
        if seeds > 1 and time.monotonic() < t_search + remaining * (1 - cv_share):
            search.confirm(rows, seeds, deadline=t_search + remaining * (1 - cv_share), workers=workers,
                           executor=executor)
            rows = search.ranked(seeds)
        if use_cv:  # few validation sequences: the best configurations are compared by k-fold CV instead
            from seqbench.recommend.answer import best_per_candidate
            top = best_per_candidate(rows)[:CV_TOP]
            # the default first: it is what the others must measurably beat, so its folds must finish
            pool = [r for r in rows if r.default] + [r for r in top if not r.default]
            cv_rows = search.cross_validate(pool, CV_FOLDS, deadline=t_search + remaining * (0.95 - final_share),
                                            workers=workers, executor=executor)
            # the never-worse rule needs the default among the compared: without its folds, keep the split's scores
            if cv_rows and (any(r.default for r in cv_rows) or not any(r.default for r in pool)):
                rows = cv_rows + [r for r in rows if r not in pool]
        # the answer: beat the trivial baseline on valid, resolve ties toward the cheaper step
        hib = task.metric.higher_is_better
        trivial_valid, trivial_test = task.trivial_on("valid"), task.trivial_on("test")
        if rows[0].cv_folds:  # the baseline scored on the same folds as the cross-validated configurations
            k = rows[0].cv_folds
            trivial_valid = statistics.fmean(seqbench.create_task(task_name, **{**task_opts, "fold": f"{i}/{k}"})
                                             .trivial_on("valid") for i in range(k))
        best = rows[0]
        noise, what = _noise(task, rows)
        winner, close = choose(rows, trivial_valid, hib, noise)
        if winner is not None and winner.cv_folds and task.refit_after_cv:  # selected by CV: retrained on all of train+valid
            left = t_search + remaining - time.monotonic()
            if search.estimate(search.by_id[winner.candidate], winner.epochs) * 1.3 < left:
                refit = search.refit(winner, deadline=t_search + remaining, workers=workers, executor=executor)
                if refit is not None:
                    rows = [refit if r is winner else r for r in rows]
                    winner, best = refit, rows[0]
        trained_on, kept_default = None, winner is not None and winner.default and winner is not best
        # the rest of the budget: the winner's split run trains on (not where it was refitted on train+valid)
        if winner is not None and final_share and not winner.refit:
            longer, before, after = search.extend(winner, deadline=t_search + remaining, workers=workers,
                                                  executor=executor)
            if longer.epochs > winner.epochs:
                trained_on = (winner.epochs, longer.epochs, before, after)
                rows = [longer if r is winner else r for r in rows]
                winner = longer
        elapsed = search.spent_before + time.monotonic() - t_start
        records.set_search_spent(search.store, spec.search_id, elapsed)
        tried = {rec["params"]["candidate"] for rec in search.records.values()}
        never = [c for c in allowed if c.id not in tried]
        untried = ""
        if never and max_trials is not None and len(search.records) >= max_trials:
            untried = (f"{len(never)} of {len(allowed)} candidates within the limits were never trained: the search "
                       f"stopped at --max-trials {max_trials}.")
        elif never:  # say so, and what budget would give each a first rung
            import os
            more = sum(search.estimate(c, rungs[0]) for c in never) / max(1, workers or os.cpu_count() or 1)
            untried = (f"{len(never)} of {len(allowed)} candidates within the limits were never trained in "
                       f"{fmt_duration(budget_s)}; about --time-budget {fmt_duration(budget_s + more)} would train "
                       "each one at least for the first rung.")
    finally:
        search.close()

    # 4: the answer (decided above): notes, the winner's test score
    tie, test, note = False, {}, ""
    if winner is not None:
        if kept_default:  # decided on the scores before the winner trained on
            within = f"by more than the {what} (+-{noise:.3g})" if noise else "at all"
            note = (f" It is the default first try, kept because nothing trained was better {within}; the best "
                    f"validation score was {fmt(best.valid)} ({best.candidate}).")
        if close:
            tie = True
            others = len({r.candidate for r in [best, *close]} - {winner.candidate})
            note = (f" {len(close) + 1} trained configurations ({others} other candidate"
                    f"{'s' * (others != 1)}) are within the {what} (+-{noise:.3g}) of the best validation score "
                    f"({fmt(best.valid)}, {best.candidate}); the cheapest step among them is recommended.")
        if winner.refit:
            note += (f" Chosen by {winner.cv_folds}-fold cross-validation, then retrained on all of train+valid "
                     f"({winner.epochs} epochs): that model is the one tested and written.")
        elif winner.cv_folds and not task.refit_after_cv:
            note += (f" Chosen by {winner.cv_folds}-fold cross-validation; the model tested and written is its "
                     "training on the train part, kept at its best epoch on the validation part (the latest data "
                     "before the test part): a forecaster is not retrained without a validation to stop it.")
        if trained_on:
            on = "the validation part" if winner.cv_folds else "validation"
            note += (f" Then trained on for the rest of the budget: {trained_on[0]} -> {trained_on[1]} epochs, "
                     f"{on} {fmt(trained_on[2])} -> {fmt(trained_on[3])} (its best epoch kept).")
        test = _test_winner(task, winner)
    rec = Recommendation(task=task.name, metric=task.metric.name, higher_is_better=hib, winner=winner, ranked=rows,
                         excluded=[(c.id, why) for c, why in excluded.items()], trivial_valid=trivial_valid,
                         trivial_test=trivial_test, test=test, explanation="", tie=tie, elapsed=elapsed,
                         budget=budget_s, machine=machine, untried=untried,
                         nondeep=None if nondeep is None else dataclasses.asdict(nondeep),
                         instant=None if instant is None else instant.to_dict())
    if nondeep is not None:  # the answer says when a non-deep baseline beats the deep candidates
        ref = winner.valid if winner is not None else trivial_valid
        lead = nondeep.valid - ref if hib else ref - nondeep.valid
        if lead > (noise or 0):
            what_lost = f"the recommended {winner.candidate} ({fmt(winner.valid)})" if winner else \
                f"the trivial baseline ({fmt(trivial_valid)}), which no deep candidate beat"
            note += (f" A non-deep baseline beats {what_lost} on validation: {nondeep.name} reaches "
                     f"{fmt(nondeep.valid)} (test {fmt(nondeep.test)}), {fmt(lead)} ahead, beyond the noise; "
                     f"{nondeep.how}, fitted in {nondeep.fit_s:.1f}s.")
    rec.explanation = explain(rec, note, noise if rows and winner is None else None, what, task.trivial_note)
    if winner is None and note:
        rec.explanation += note
    rec.optuna = search.dashboard[0]  # the search's study, for optuna-dashboard
    if out is not None:
        write_answer(rec, out)
    return rec


def _max_epochs(task, allowed: list[Candidate], cost_of: dict, budget_s: float, use_cv: bool) -> int:
    """How long a candidate trains at most (the last rung): the task's epochs, at least MIN_STEPS
    optimizer steps on a tiny set, and longer as the budget allows (``grown_epochs``): the default
    first try, trained to the end, may take GROW_SHARE of the budget; with cross-validation, each
    of the ~21 trainings it runs (the best three and the default on each fold, and the refit) an
    equal part of CV's share. A resumed search, with the same budget and cached costs, gets the
    same length."""
    per_epoch = math.ceil(task.num_samples("train") / int(task.recommended.get("batch_size", 32)))
    base = max(int(task.recommended.get("epochs", 10)), math.ceil(MIN_STEPS / per_epoch))
    ref = default_candidate(allowed) or max(allowed, key=lambda c: cost_of[c].train_step_ms)
    share = CV_SHARE / ((CV_TOP + 1) * CV_FOLDS + 1) if use_cv else GROW_SHARE
    return grown_epochs(base, epoch_seconds(task, cost_of[ref]), share * budget_s)


def _first(task, head: list, near: list, cost_of: dict, first_rung: int, load_s: float,
           base: str | None = None) -> tuple[str, ...]:
    """The portfolio's picks in the order to train them after the default: by expected gain over
    the default (on the nearest corpus sets) per second of their first rung, so a short budget
    spends itself on the likeliest improvements that are also cheap; the portfolio's order breaks
    ties. ``base``: the default's configuration (the registry's default choice if not given)."""
    from seqbench.recommend.portfolio import default_config, expected_gains
    gains = expected_gains(near, [cfg for cfg, _, _ in head], base or default_config())
    secs = {c: TRIAL_OVERHEAD_S + load_s + epoch_seconds(task, cost_of[c]) * first_rung for _, c, _ in head}
    return tuple(c.id for cfg, c, _ in sorted(head, key=lambda x: -gains[x[0]] / secs[x[1]]))


def _noise(task, rows: list[Ranked]) -> tuple[float | None, str]:
    """One noise rule for "beats the baseline" and for ties between candidates, and what it is."""
    best = rows[0]
    if best.cv_folds:  # cross-validated: the standard error of the mean over folds
        spread = max([best.valid_std] + [r.valid_std for r in rows[1:4] if r.cv_folds and r.valid_std])
        return spread / math.sqrt(best.cv_folds), f"{best.cv_folds}-fold cross-validation's standard error"
    if best.valid_std is not None:  # several seeds: the seed-to-seed spread is the noise
        peers = [r for r in rows[1:] if r.epochs == best.epochs]
        return (max([best.valid_std] + [r.valid_std for r in peers[:3] if r.valid_std is not None]),
                "seed-to-seed spread")
    return validation_noise(task, best), "validation sampling noise"


__all__ = ["Candidate", "Costs", "Instant", "Limits", "Ranked", "Recommendation", "SearchSpec", "candidate_space", "choose",
           "exclusions", "instant_answer", "measure_costs", "parse_duration", "print_recommendation", "profile", "read_costs",
           "print_instant", "recommend", "validation_noise", "write_costs"]
