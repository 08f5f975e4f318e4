"""`seqbench recommend`: the best architecture and size for a task, under deployment limits and a
time budget to decide.

    rec = seqbench.recommend("tsc:GunPoint", seqbench.Limits(max_step_ms=0.3), budget="5m")
    rec.winner, rec.ranked, rec.excluded, rec.explanation

1. **Candidates**: every zoo model that can serve (causal, streaming), at sizes on a log grid up to
   the parameter limit; the TCN at two kernel sizes, each deep enough for its receptive field to
   cover the sequence.
2. **Costs before training** (``profile``): parameters, the streaming step latency at ``batch``
   (the model's own ``step``, timed in interleaved rounds on this machine), full-sequence
   latency at the task's length, the memory to stream (weights + state after a full sequence), and
   a training step's time. Cached per candidate and machine in the results store, or read from a
   ``costs.json`` measured on the target device (``seqbench profile``). A candidate over a limit
   never trains; the answer lists it with the number that excluded it.
3. **Search** (Optuna, ask-and-tell): a TPE sampler proposes a candidate, learning rate and
   dropout; successive halving on epochs (rungs r, 3r, 9r) stops the unpromising early and
   resumes the promising from their checkpoints. Trials are ordinary sweep trials in the same
   SQLite store, run by the same executors (local processes or Ray), so a killed search, rerun,
   reuses every finished trial and resumes interrupted ones. Selection is on the validation split.
4. **The answer**: ranked candidates, the winner's test metric (the only use of test), the
   trivial baseline (the winner must beat it on valid, else the baseline is recommended), ties
   within noise resolved toward the cheaper step, a Pareto plot, and the winner as a run directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqbench.errors import SeqbenchError
from seqbench.tables import fmt, fmt_count
from seqbench.utils import atomic_write_json, atomic_write_text

DEFAULT_MAX_PARAMS = 100_000
MIN_PARAMS = 2_000
SIZE_FACTOR = 3.0          # the size grid: MIN_PARAMS * 3^i up to the parameter limit
REDUCTION = 3              # successive halving keeps the best third at each rung
COSTS_VERSION = 3          # of how costs are measured, or of what they measure (3: the channels-last TCN trains ~1.5x
#                            faster); bumped, cached costs are measured again
STREAM_CHUNK = 1024        # steps per chunk when a whole sequence is streamed to measure its state
TRIAL_OVERHEAD_S = 0.5     # starting a trial process (forked from a warm server), on top of loading the task


# -- limits, candidates, costs ---------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """Deployment limits: the streaming step latency at ``batch`` (ms), parameters, memory (MB)."""
    max_step_ms: float | None = None
    max_params: int | None = None
    max_memory_mb: float | None = None
    batch: int = 1

    def check(self) -> None:
        for name in ("max_step_ms", "max_memory_mb"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SeqbenchError(f"{name} must be a positive number, got {v!r}")
        if self.max_params is not None and (not isinstance(self.max_params, int) or self.max_params < MIN_PARAMS):
            raise SeqbenchError(f"max_params must be at least {MIN_PARAMS:,} (the smallest candidate), "
                                f"got {self.max_params!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise SeqbenchError(f"batch must be a positive integer, got {self.batch!r}")
        if self.max_params is not None:  # the top of the size grid is trained: it must fit
            from seqbench.models.budget import check_fits_in_memory
            check_fits_in_memory(self.max_params, f"--max-params {self.max_params:,} (the largest candidate)")


@dataclass(frozen=True)
class Candidate:
    """One architecture at one size: what the search picks from."""
    model: str
    params: int
    model_opts: tuple[tuple[str, Any], ...] = ()

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.model_opts)

    @property
    def id(self) -> str:
        short = {"kernel_size": "k", "levels": "levels"}
        shape = ", ".join(f"{short.get(k, k)}={v}" for k, v in self.model_opts)
        return f"{self.model}{f'({shape})' if shape else ''} @{fmt_count(self.params)}"


@dataclass
class Costs:
    params: int
    shape: str            # the model's describe()
    step_ms: float        # one streaming step at the batch size
    seq_ms: float         # one full sequence (batch 1) through task.predict
    mem_mb: float         # weights + streaming state after a full sequence, at the batch size
    train_step_ms: float  # one training step at the task's batch size (for time estimates)


def candidate_space(task, max_params: int | None = None, models: list[str] | None = None) -> list[Candidate]:
    """The zoo models that can serve the task (causal and streaming), on a log grid of sizes."""
    from seqbench.models.registry import get_model_entry, list_models
    names = models or list_models()
    for n in names:
        get_model_entry(n)
    names = [n for n in names if get_model_entry(n).cls.supports_step]
    top = max_params or DEFAULT_MAX_PARAMS
    sizes, s = [], float(MIN_PARAMS)
    while s <= top * 1.0001:
        sizes.append(int(round(s, -2)))
        s *= SIZE_FACTOR
    if top not in sizes and top > sizes[-1] * 1.5:
        sizes.append(top)
    if max_params is not None:  # solved widths land within 5% of a budget: aim below a hard limit
        sizes = sorted({min(size, int(max_params * 0.96)) for size in sizes})
    L = task.seq_len  # the longest sequence of a variable-length task
    out = []
    for name in names:
        for size in sizes:
            if name == "tcn":  # two kernel sizes, each deep enough to see the whole sequence
                for k in (3, 7):
                    levels = max(1, math.ceil(math.log2((L - 1) / (2 * (k - 1)) + 1)))
                    out.append(Candidate("tcn", size, (("kernel_size", k), ("levels", levels))))
            else:
                out.append(Candidate(name, size))
    return out


def _machine() -> str:
    from seqbench.bench.worker import environment
    env = environment(torch.get_num_threads())
    return f"{env['cpu']} x{env['cores']}, {env['threads']} threads, torch {env['torch']}"


def _cost_key(task, cand: Candidate, batch: int) -> str:
    spec = {"model": cand.model, "params": cand.params, "opts": cand.opts, "d_in": task.d_in, "d_out": task.d_out,
            "seq_len": str(task.seq_len), "tokens": task.input_kind == "tokens", "batch": batch,
            "method": COSTS_VERSION, **task.model_kwargs()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _build(task, cand: Candidate, **extra):
    import warnings

    import seqbench
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small budgets may miss by > 5%: the exact count is reported
        return seqbench.model_for_task(cand.model, task, params=cand.params, **cand.opts, **extra)


def _state_bytes(state) -> int:
    """Bytes of the memory a streaming state holds: every tensor's storage and every array's owner
    counted once (a NumPy view of a tensor, as the NumPy engines keep, is the tensor's memory)."""
    seen: set[int] = set()

    def walk(o) -> int:
        if isinstance(o, torch.Tensor):
            ptr = o.untyped_storage().data_ptr()
            if ptr in seen:
                return 0
            seen.add(ptr)
            return o.untyped_storage().nbytes()
        if isinstance(o, np.ndarray):
            while isinstance(o.base, np.ndarray):  # to the array that owns the memory
                o = o.base
            if isinstance(o.base, torch.Tensor):  # memory shared with a tensor
                return walk(o.base)
            if id(o) in seen:
                return 0
            seen.add(id(o))
            return o.nbytes
        if isinstance(o, dict):
            return sum(walk(v) for v in o.values())
        if isinstance(o, (list, tuple)):
            return sum(walk(v) for v in o)
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return sum(walk(getattr(o, f.name)) for f in dataclasses.fields(o))
        if hasattr(o, "__slots__"):
            return sum(walk(getattr(o, s, None)) for s in o.__slots__)
        return 0
    return walk(state)


def _inputs(task, batch: int, length: int | None):
    """Random inputs of the task's kind: features (B, L, d_in) or token ids (B, L); L=None: one step."""
    g = torch.Generator().manual_seed(0)
    shape = (batch,) if length is None else (batch, length)
    if task.input_kind == "tokens":
        return torch.randint(0, task.d_in, shape, generator=g)
    return torch.randn(*shape, task.d_in, generator=g)


def measure_costs(task, candidates: list[Candidate], batch: int = 1, rounds: int = 5, steps: int = 20,
                  progress: bool | None = None) -> dict[Candidate, Costs]:
    """Measure every candidate's costs on this machine, the step timings interleaved in rounds (so
    a slow moment of a shared machine hits all candidates alike); medians."""
    from tqdm.auto import tqdm

    from seqbench.models.base import count_params
    L = task.seq_len  # the longest sequence of a variable-length task
    built, too_big = {}, {}
    for cand in tqdm(candidates, desc="profiling candidates", unit="model", leave=False,
                     disable=None if progress is None else not progress):
        torch.manual_seed(0)
        model = _build(task, cand).eval()
        try:
            _check_memory(task, cand, model, batch)
        except SeqbenchError as e:  # this candidate cannot run here: excluded, with the GiB it needs
            too_big[cand] = Costs(params=count_params(model), shape=f"does not fit: {e}", step_ms=math.inf,
                                  seq_ms=math.inf, mem_mb=math.inf, train_step_ms=math.inf)
            continue
        state = model.init_state(batch)
        with torch.inference_mode():
            seq = _inputs(task, batch, L)
            full_state = model.init_state(batch)
            for t in range(0, L, STREAM_CHUNK):  # chunks: a step over a long chunk may need chunk^2 memory
                _, full_state = model.step(seq[:, t:t + STREAM_CHUNK], full_state)
            x1 = _inputs(task, 1, L)
            seq_times = []
            for _ in range(3):
                t0 = time.perf_counter()
                task.predict(model, x1)
                seq_times.append(time.perf_counter() - t0)
        mem = (sum(p.numel() * p.element_size() for p in model.parameters()) + _state_bytes(full_state)) / 2**20
        # one training step at the task's batch size: forward, backward, optimizer
        tmodel = _build(task, cand).train()
        opt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        xb, yb = next(task.batches("train", int(task.recommended.get("batch_size", 32)), shuffle_seed=0))
        train_times = []
        for _ in range(2):
            t0 = time.perf_counter()
            opt.zero_grad()
            task.loss(task.predict(tmodel, xb), yb).backward()
            opt.step()
            train_times.append(time.perf_counter() - t0)
        x_t = _inputs(task, batch, None)
        for _ in range(5):  # warm up
            model.step(x_t, state)
        built[cand] = (model, state, x_t, count_params(model), model.describe(), min(seq_times) * 1e3, mem,
                       min(train_times) * 1e3, [])
    for _ in range(rounds):  # interleaved: round r times every candidate once
        for cand, (model, state, x_t, *_rest, times) in built.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                model.step(x_t, state)
            times.append((time.perf_counter() - t0) / steps * 1e3)
    return {**too_big, **{c: Costs(params=b[3], shape=b[4], step_ms=statistics.median(b[8]), seq_ms=b[5],
                                   mem_mb=b[6], train_step_ms=b[7]) for c, b in built.items()}}


def _check_memory(task, cand: Candidate, model, batch: int) -> None:
    """Refuse, before it is allocated, a candidate whose training step or streaming state at
    ``batch`` (and one full sequence of that batch, streamed as one chunk) cannot fit in memory."""
    from seqbench.memory import check_bytes, check_training_memory
    check_training_memory(model, task, int(task.recommended.get("batch_size", 32)))
    one = _state_bytes(model.init_state(1))
    per_seq = task.seq_len * (1 if task.input_kind == "tokens" else task.d_in) * 4 * 2
    check_bytes((one + per_seq) * batch, f"{cand.id} at --batch {batch:,} (its streaming state and a sequence per "
                f"stream)", "give a smaller --batch")


def profile(task, candidates: list[Candidate], batch: int = 1, db: str | Path | None = None,
            progress: bool | None = None) -> dict[Candidate, Costs]:
    """Costs for every candidate: cached ones from the store (same candidate, task shape, batch and
    machine), the rest measured now and cached."""
    from seqbench.bench.store import Store
    machine = _machine()
    cached: dict[Candidate, Costs] = {}
    if db is not None and Path(db).exists():  # a new store is created only once there is something to keep
        with Store(db) as store:
            for cand in candidates:
                row = store.cost(machine, _cost_key(task, cand, batch))
                if row is not None:
                    cached[cand] = Costs(**row)
    todo = [c for c in candidates if c not in cached]
    fresh = measure_costs(task, todo, batch, progress=progress) if todo else {}
    if db is not None and fresh:
        with Store(db) as store:
            store.put_costs(machine, [(_cost_key(task, c, batch), dataclasses.asdict(v)) for c, v in fresh.items()
                                      if math.isfinite(v.step_ms)])  # what does not fit now may fit later
    return {c: cached.get(c) or fresh[c] for c in candidates}


def write_costs(path: str | Path, task, costs: dict[Candidate, Costs], batch: int) -> None:
    """A costs table for ``recommend --costs``: measured where the model will run."""
    atomic_write_json(path, {"seqbench_costs": 1, "machine": _machine(), "batch": batch, "task": task.name,
                             "entries": {_cost_key(task, c, batch): {"candidate": c.id, **dataclasses.asdict(v)}
                                         for c, v in costs.items()}})


def read_costs(path: str | Path, task, candidates: list[Candidate], batch: int) -> tuple[dict[Candidate, Costs], str]:
    try:
        data = json.loads(Path(path).read_text())
        entries, machine = data["entries"], data["machine"]
        if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
            raise TypeError("'entries' must map cost keys to measurements")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SeqbenchError(f"{path} is not a seqbench costs file ({type(e).__name__}: {e}); write one with "
                            "`seqbench profile --out costs.json`") from None
    if data.get("batch") != batch:
        raise SeqbenchError(f"{path} was measured at --batch {data.get('batch')}, this search uses --batch {batch}")
    out = {}
    for c in candidates:
        e = entries.get(_cost_key(task, c, batch))
        if e is None:
            raise SeqbenchError(f"{path} has no costs for {c.id} on this task; run `seqbench profile` on the target "
                                "with the same --task, --models, --max-params and --batch")
        try:
            out[c] = Costs(**{k: e[k] for k in ("params", "shape", "step_ms", "seq_ms", "mem_mb", "train_step_ms")})
        except KeyError as k:
            raise SeqbenchError(f"{path}: the entry for {c.id} has no {k}; measure it again with seqbench profile") from None
        if not all(isinstance(getattr(out[c], f), (int, float)) and math.isfinite(getattr(out[c], f)) and
                   getattr(out[c], f) >= 0 for f in ("params", "step_ms", "seq_ms", "mem_mb", "train_step_ms")):
            raise SeqbenchError(f"{path}: the entry for {c.id} holds a non-numeric or negative cost; measure it "
                                "again with seqbench profile")
    return out, machine


def exclusions(costs: dict[Candidate, Costs], limits: Limits) -> dict[Candidate, str]:
    """Why each candidate over a limit is out, with the measured number."""
    out = {}
    for c, k in costs.items():
        if not math.isfinite(k.train_step_ms):
            out[c] = k.shape.split("; ", 1)[0].replace("does not fit: ", "memory: ")
        elif limits.max_params is not None and k.params > limits.max_params:
            out[c] = f"{k.params:,} params > {limits.max_params:,}"
        elif limits.max_step_ms is not None and k.step_ms > limits.max_step_ms:
            out[c] = f"step {k.step_ms:.3g} ms > {limits.max_step_ms:g} ms"
        elif limits.max_memory_mb is not None and k.mem_mb > limits.max_memory_mb:
            out[c] = f"memory {k.mem_mb:.3g} MB > {limits.max_memory_mb:g} MB"
    return out


# -- the search ------------------------------------------------------------------------------------
@dataclass
class Ranked:
    candidate: str
    model: str
    shape: str
    params: int
    step_ms: float
    mem_mb: float
    lr: float
    dropout: float | None         # None: the candidate has no dropout to vary
    valid: float                  # best validation metric (mean over seeds when several)
    valid_std: float | None
    seeds: int
    epochs: int                   # epochs reached
    train_time: float
    run_dir: str


@dataclass
class Recommendation:
    task: str
    metric: str
    higher_is_better: bool
    winner: Ranked | None         # None: nothing beat the trivial baseline (recommend the baseline)
    ranked: list[Ranked]
    excluded: list[tuple[str, str]]
    trivial_valid: float
    trivial_test: float
    test: dict[str, float]        # the winner's test metrics (the only use of the test split)
    explanation: str
    tie: bool
    elapsed: float
    budget: float
    machine: str
    paths: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_duration(text: str | float | int) -> float:
    """Seconds from 300, '300s', '5m', '1.5h'."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        import re
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smh]?)\s*", str(text))
        if not m:
            raise SeqbenchError(f"cannot read {text!r} as a duration; write it like 300, 90s, 5m or 1.5h")
        value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not value > 0:
        raise SeqbenchError(f"the time budget must be positive, got {text!r}")
    return value


def _rungs(max_epochs: int) -> list[int]:
    r = max(1, round(max_epochs / REDUCTION ** 2))
    return sorted({min(r, max_epochs), min(r * REDUCTION, max_epochs), max_epochs})


def recommend(task, limits: Limits | None = None, budget: str | float = "10m", *, models: list[str] | None = None,
              seeds: int = 1, db: str | Path = "recommend.db", out: str | Path | None = None,
              executor: str = "local", workers: int | None = None, costs: str | Path | None = None,
              max_epochs: int | None = None, seed: int = 0, progress: bool | None = None,
              task_name: str | None = None, task_opts: dict | None = None,
              imports: list[str] | None = None, device: str = "cpu") -> Recommendation:
    """Search the zoo for ``task`` under ``limits`` within ``budget`` (seconds or '5m'); see the
    module docstring. ``task`` is a name (with ``task_opts``) or a Task built by ``create_task``."""
    import seqbench
    from seqbench.data import require
    optuna = require("optuna", extra="search", why="seqbench recommend")
    t_start = time.monotonic()
    limits = limits or Limits()
    limits.check()
    budget_s = parse_duration(budget)
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
    from seqbench.bench.runner import check_workers, get_executor
    get_executor(executor)
    check_workers(workers, None)
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
        raise SeqbenchError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    max_epochs = max_epochs or int(task.recommended.get("epochs", 10))
    rungs = _rungs(max_epochs)

    # 1-2: candidates and their costs, before anything trains
    candidates = candidate_space(task, limits.max_params, models)
    if costs is not None:
        cost_of, machine = read_costs(costs, task, candidates, limits.batch)
    else:
        cost_of, machine = profile(task, candidates, limits.batch, db, progress), _machine()
    excluded = exclusions(cost_of, limits)
    allowed = [c for c in candidates if c not in excluded]
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

    # 3: the search, resumable from the store
    spec = {"task": task_name, "task_opts": task_opts, "limits": dataclasses.asdict(limits), "models": models,
            "rungs": rungs, "seed": seed, "seeds": seeds, "costs": str(costs) if costs else None}
    search_id = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
    search = _Search(task, task_name, task_opts, allowed, cost_of, rungs, search_id, db, seed, optuna,
                     overhead=TRIAL_OVERHEAD_S + task_load_s)
    search.imports = list(imports or [])
    from seqbench.device import resolve_device
    search.device = str(resolve_device(device)) if device != "cpu" else "cpu"
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
        if remaining >= quickest:  # else: this search already spent its budget; answer from its results
            search.run(deadline=t_search + remaining * (1 - confirm_share), workers=workers, executor=executor,
                       progress=progress, t_start=t_start)
        rows = search.ranked()
        if not rows:
            raise SeqbenchError(f"no trial finished within the time budget {fmt_duration(budget_s)} (profiling "
                                f"took {profile_s:.0f}s); give a longer --time-budget")
        if seeds > 1 and time.monotonic() < t_search + remaining:
            search.confirm(rows, seeds, deadline=t_search + remaining, workers=workers, executor=executor)
            rows = search.ranked(seeds)
        elapsed = search.spent_before + time.monotonic() - t_start
        search.store.set_search_spent(search_id, elapsed)
    finally:
        search.close()

    # 4: the answer: beat the trivial baseline on valid, resolve ties toward the cheaper step, test the winner
    hib = task.metric.higher_is_better
    trivial_valid, trivial_test = task.trivial_on("valid"), task.trivial_on("test")
    winner, tie, test, note, noise, what = None, False, {}, "", None, ""
    if rows:  # one noise rule for "beats the baseline" and for ties between candidates
        best = rows[0]
        peers = [r for r in rows[1:] if r.epochs == best.epochs]
        if best.valid_std is not None:  # several seeds: the seed-to-seed spread is the noise
            noise = max([best.valid_std] + [r.valid_std for r in peers[:3] if r.valid_std is not None])
            what = "seed-to-seed spread"
        else:
            noise, what = validation_noise(task, best), "validation sampling noise"
    winner, close = choose(rows, trivial_valid, hib, noise)
    if winner is not None:
        if close:
            tie = True
            others = len({r.candidate for r in [best, *close]} - {winner.candidate})
            note = (f" {len(close) + 1} trained configurations ({others} other candidate"
                    f"{'s' * (others != 1)}) are within the {what} (+-{noise:.3g}) of the best validation score "
                    f"({fmt(best.valid)}, {best.candidate}); the cheapest step among them is recommended.")
        test = _test_winner(task, winner)
    rec = Recommendation(task=task.name, metric=task.metric.name, higher_is_better=hib, winner=winner, ranked=rows,
                         excluded=[(c.id, why) for c, why in excluded.items()], trivial_valid=trivial_valid,
                         trivial_test=trivial_test, test=test, explanation="", tie=tie, elapsed=elapsed,
                         budget=budget_s, machine=machine)
    rec.explanation = explain(rec, note, noise if rows and winner is None else None, what, task.trivial_note)
    if out is not None:
        write_answer(rec, out)
    return rec


class _Search:
    """The search's state: the Optuna study (ask-and-tell), the driver running trials, and the log
    in the store that lets a killed search resume."""

    def __init__(self, task, task_name, task_opts, allowed, cost_of, rungs, search_id, db, seed, optuna,
                 overhead: float):
        from seqbench.bench.store import Store
        self.task, self.task_name, self.task_opts, self.rungs = task, task_name, task_opts, rungs
        self.allowed, self.cost_of, self.by_id = allowed, cost_of, {c.id: c for c in allowed}
        self.search_id, self.db, self.optuna = search_id, db, optuna
        self.metric = task.metric
        self.steps_per_epoch = math.ceil(task.num_samples("train") / int(task.recommended.get("batch_size", 32)))
        self.calibration, self.overhead = 1.0, overhead
        self.store = Store(db)
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
        prior, self.spent_before = self.store.search_log(search_id)
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
        self.driver = None
        self.t_start = time.monotonic()
        self.imports: list[str] = []
        self.device = "cpu"

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()
        self.store.close()

    def uses_dropout(self, c: Candidate) -> bool:
        from seqbench.models.registry import get_model_entry
        return "dropout" in get_model_entry(c.model).cls.searchable(c.opts)

    def estimate(self, c: Candidate, epochs: int) -> float:
        """Seconds for ``epochs`` more epochs of ``c`` on one thread (profile costs, calibrated on runs)."""
        k = self.cost_of[c]
        per_epoch = (self.steps_per_epoch * k.train_step_ms + self.task.num_samples("valid") * k.seq_ms / 4) / 1e3
        return self.overhead + per_epoch * epochs * self.calibration

    def trial(self, params: dict, epochs: int, s: int) -> dict:
        from seqbench.bench.sweep import make_trial
        c = self.by_id[params["candidate"]]
        opts = dict(c.opts)
        if self.uses_dropout(c):
            opts["dropout"] = round(params["dropout"], 3)
        t = make_trial(self.task_name, c.model, s, params=c.params, task_opts=self.task_opts, model_opts=opts,
                       train={"lr": round(params["lr"], 6), "epochs": epochs,
                              **({"device": self.device} if self.device != "cpu" else {"device": "cpu"})})
        t.update(run=f"search-{self.search_id}-{_tid(params)}-s{s}", keep_state=True, test=False)
        if self.imports:
            t["imports"] = self.imports
        return t

    def log(self, tid: str, rec: dict) -> None:
        self.records[tid] = rec
        self.store.log_search(self.search_id, tid, rec, self.spent_before + time.monotonic() - self.t_start)

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

    def run(self, deadline: float, workers: int | None, executor: str, progress: bool | None, t_start: float) -> None:
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
        try:
            while time.monotonic() < deadline:
                bar.n = min(total, total - int(deadline - time.monotonic()))
                bar.set_postfix_str(f"{len(live)} running | best {best[1]}: {self.metric.name} {best[0]:.4g}"
                                    if best else f"{len(live)} running")
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
                        continue
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
                    if nxt is not None and rec["trial"].should_prune():
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
                    asks += 1
                    trial = self.study.ask(self.dists)
                    params = {k: trial.params[k] for k in self.dists}
                    if not self.uses_dropout(self.by_id[params["candidate"]]):
                        params["dropout"] = 0.0  # not a knob of this candidate: one trial, not copies
                    tid = _tid(params)
                    if tid in live or self.estimate(self.by_id[params["candidate"]], rungs[0]) > left:
                        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)  # a duplicate, or too long now
                        continue
                    live[tid] = {"trial": trial, "params": params, "reported": 0, "values": {}, "state": "RUNNING"}
                    self.log(tid, live[tid])
                    self._start(tid, live[tid], rungs[0])
                if not live and all(self.estimate(c, rungs[0]) > deadline - time.monotonic() for c in self.allowed):
                    break  # nothing runs and nothing more fits
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
        from seqbench.bench.runner import Driver
        self.driver = Driver(self.store, executor, workers=workers, cpus_per_trial=1)
        todo = [(r, s) for r in rows[:3] for s in range(1, seeds)]
        running: dict[str, tuple[Ranked, int]] = {}
        try:
            while (todo or running) and time.monotonic() < deadline:
                while todo and self.driver.has_slot():
                    r, s = todo.pop(0)
                    params = {"candidate": r.candidate, "lr": r.lr, "dropout": r.dropout or 0.0}
                    t = self.trial(params, r.epochs, s)
                    self.store.add([t])
                    if self.store.status(t["key"]) == "done" or self.driver.submit(t):
                        running[t["key"]] = (r, s)
                for t, _, _ in self.driver.poll():
                    running.pop(t["key"], None)
                for key in [k for k in running if self.store.status(k) == "done"]:
                    running.pop(key)
                time.sleep(0.05)
        finally:
            self.driver.cancel()

    def ranked(self, seeds: int = 1) -> list[Ranked]:
        """Trained candidates, best first: the most epochs reached first (a 3-epoch score is not
        comparable with a 27-epoch one), then the validation metric (mean over seeds)."""
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
                               mem_mb=k.mem_mb, lr=rec["params"]["lr"],
                               dropout=rec["params"]["dropout"] if self.uses_dropout(c) else None,
                               valid=statistics.fmean(vals), valid_std=statistics.stdev(vals) if len(vals) > 1 else None,
                               seeds=len(vals), epochs=epochs, train_time=_train_time(run), run_dir=str(run)))
        hib = self.metric.higher_is_better
        rows.sort(key=lambda r: (-r.epochs, -r.valid if hib else r.valid))
        return rows


def _tid(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def _train_time(run: Path) -> float:
    try:
        return float(json.loads((run / "history.jsonl").read_text().splitlines()[-1])["train_time"])
    except (OSError, ValueError, IndexError, KeyError):
        return 0.0


def _noise(task, value: float, n: int) -> float | None:
    """The validation metric's sampling noise (one standard error), where it is known: accuracy, as
    an adjusted (Agresti-Coull) proportion so that 0/n or n/n still carries the noise of n samples."""
    if task.metric.name != "accuracy":
        return None
    p = (value * n + 2) / (n + 4)
    return math.sqrt(p * (1 - p) / (n + 4))


def choose(rows: list[Ranked], trivial: float, higher_is_better: bool, noise: float | None
           ) -> tuple[Ranked | None, list[Ranked]]:
    """The winner and the configurations tied with the best: the best must beat the trivial baseline
    by more than ``noise``, and any other within ``noise`` of it (at the same epochs) ties, the
    cheapest step among them winning. (None, []) when nothing clears the baseline."""
    if not rows:
        return None, []
    best = rows[0]
    margin = best.valid - trivial if higher_is_better else trivial - best.valid
    if not margin > (noise or 0):
        return None, []
    close = [r for r in rows[1:] if r.epochs == best.epochs and noise and abs(r.valid - best.valid) <= noise]
    sign = -1 if higher_is_better else 1  # within noise: the cheapest step; then fewer params, then the better score
    return min([best, *close], key=lambda r: (r.step_ms, r.params, sign * r.valid, r.lr, r.dropout or 0.0)), close


def validation_noise(task, best: Ranked, batch: int = 16) -> float | None:
    """One standard error of the best configuration's validation metric: accuracy as a proportion,
    any other metric from the spread of its value over batches of the validation split."""
    n = task.num_samples("valid")
    if task.metric.name == "accuracy":
        return _noise(task, best.valid, n)
    if n < 2 * batch:
        batch = max(1, n // 4)
    import seqbench
    model = seqbench.load_model(best.run_dir, "best").eval()
    values = []
    with torch.inference_mode():
        for x, y in task.batches("valid", batch):
            sums = task.score(task.predict(model, x).float(), y)
            values.append(task.finalize({k: s / max(c, 1) for k, (s, c) in sums.items()})[task.metric.name])
    values = [v for v in values if math.isfinite(v)]
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def _test_winner(task, winner: Ranked) -> dict[str, float]:
    import seqbench
    model = seqbench.load_model(winner.run_dir, "best")
    return task.evaluate(model, "test")


def fmt_duration(s: float) -> str:
    return f"{s / 60:.0f}m" if s >= 120 else f"{s:.3g}s"


def explain(rec: Recommendation, note: str = "", noise: float | None = None, what: str = "",
            baseline: str = "") -> str:
    m = rec.metric
    if rec.winner is None:
        best = rec.ranked[0] if rec.ranked else None
        tail = f"; the best, {best.candidate}, reached {fmt(best.valid)}" if best else ""
        within = f" by more than the {what} (+-{noise:.3g})" if noise else ""
        named = f": {baseline}" if baseline else ""
        return (f"No candidate beat the trivial baseline{named} on validation{within} ({m} "
                f"{fmt(rec.trivial_valid)}){tail}. "
                "Recommended: the trivial baseline. More data, a longer --time-budget or another transform "
                "of the data may change that.")
    w = rec.winner
    parts = [f"{w.candidate} ({w.shape}, {w.params:,} params): best validation {m} {fmt(w.valid)} at "
             f"{w.step_ms:.3g} ms/step (trivial baseline {fmt(rec.trivial_valid)}); test {m} "
             f"{fmt(rec.test.get(m))}.{note}"]
    for r in [r for r in best_per_candidate(rec.ranked) if r.candidate != w.candidate][:3]:
        parts.append(f"{r.candidate}: {fmt(r.valid)} at {r.step_ms:.3g} ms ({r.epochs} epochs).")
    for cid, why in rec.excluded[:5]:
        parts.append(f"{cid} excluded: {why}.")
    if len(rec.excluded) > 5:
        parts.append(f"... and {len(rec.excluded) - 5} more excluded by the limits.")
    return " ".join(parts)


def write_answer(rec: Recommendation, out: str | Path) -> dict[str, str]:
    """recommendation.md / .html / .json, the Pareto plot, and the winner as a run directory (copied
    beside and swapped in, so an interrupted write never leaves half a winner)."""
    import html

    from seqbench.outdir import OutDir
    from seqbench.tables import html_figure, html_page, html_table, md_table
    dest = OutDir(out).check()
    out = dest.path
    paths = {}
    if rec.winner is not None:
        work = dest.staging("winner")
        shutil.copytree(rec.winner.run_dir, work, ignore=shutil.ignore_patterns("last.pt", ".*"), dirs_exist_ok=True)
        atomic_write_json(work / "result.json", {"test": rec.test, "best_valid": rec.winner.valid,
                                                  "candidate": rec.winner.candidate})
        paths["winner"] = str(dest.put_dir(work, "winner"))
    header, rows = ranked_table(rec)
    plot = pareto_plot(rec)
    if plot is not None:
        paths["pareto"] = str(dest.write("pareto.png", lambda tmp: Path(tmp).write_bytes(plot)))
    paths.update(md=str(out / "recommendation.md"), html=str(out / "recommendation.html"),
                 json=str(out / "recommendation.json"))
    rec.paths = paths
    ex_rows = [[cid, why] for cid, why in rec.excluded]
    md = (f"# seqbench recommend: {rec.task}\n\n{rec.explanation}\n\n"
          f"Machine: {rec.machine}. Time: {rec.elapsed:.0f}s of a {rec.budget:.0f}s budget. Selection on "
          f"validation; the winner alone was scored on test.\n\n## Ranked\n\n{md_table(header, rows)}\n\n"
          + ("## Validation metric vs step latency\n\n![Pareto front](pareto.png)\n\n" if plot else "")
          + (f"## Excluded by the limits (measured before training)\n\n{md_table(['candidate', 'why'], ex_rows)}\n"
             if ex_rows else ""))
    dest.write_text("recommendation.md", md)
    body = (f"<h1>seqbench recommend: {html.escape(rec.task)}</h1><p>{html.escape(rec.explanation)}</p>"
            f"<h2>Ranked</h2>{html_table(header, rows)}"
            + (html_figure(plot, "Validation metric vs step latency: the Pareto front") if plot else "")
            + (f"<h2>Excluded by the limits</h2>{html_table(['candidate', 'why'], ex_rows)}" if ex_rows else ""))
    dest.write_text("recommendation.html", html_page(f"seqbench recommend: {rec.task}", body))
    dest.write_text("recommendation.json", json.dumps(rec.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return paths


def best_per_candidate(rows: list[Ranked]) -> list[Ranked]:
    """The first (best-ranked) configuration of each candidate, in rank order."""
    seen, out = set(), []
    for r in rows:
        if r.candidate not in seen:
            seen.add(r.candidate)
            out.append(r)
    return out


def ranked_table(rec: Recommendation) -> tuple[list[str], list[list[str]]]:
    """One row per candidate (its best configuration; every configuration is in recommendation.json)."""
    header = ["rank", "candidate", "shape", "params", f"valid {rec.metric}", "step (ms)", "memory (MB)", "lr",
              "dropout", "epochs", "train time"]
    rows = []
    shown = best_per_candidate(rec.ranked)
    if rec.winner is not None and rec.winner not in shown:
        shown = [rec.winner if r.candidate == rec.winner.candidate else r for r in shown]
    for i, r in enumerate(shown, 1):
        valid = fmt(r.valid) + (f" ± {fmt(r.valid_std)} (n={r.seeds})" if r.valid_std is not None else "")
        row = [str(i), r.candidate, r.shape, f"{r.params:,}", valid, f"{r.step_ms:.3g}", f"{r.mem_mb:.3g}",
               f"{r.lr:.2g}", "-" if r.dropout is None else f"{r.dropout:.2f}", str(r.epochs), f"{r.train_time:.1f}s"]
        rows.append([f"**{c}**" for c in row] if r is rec.winner else row)
    rows.append(["-", "trivial baseline", "-", "0", fmt(rec.trivial_valid), "-", "-", "-", "-", "-", "-"])
    return header, rows


def pareto_plot(rec: Recommendation) -> bytes | None:
    """Validation metric vs step latency: every trained candidate, the Pareto front joined, the
    trivial baseline as a line. None without matplotlib or results."""
    if not rec.ranked:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import io
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    models = sorted({r.model for r in rec.ranked})
    for m in models:
        pts = [r for r in rec.ranked if r.model == m]
        ax.scatter([r.step_ms for r in pts], [r.valid for r in pts], label=m, s=22)
    better = (lambda a, b: a > b) if rec.higher_is_better else (lambda a, b: a < b)
    front, best = [], None
    for r in sorted(rec.ranked, key=lambda r: r.step_ms):
        if best is None or better(r.valid, best):
            front.append(r)
            best = r.valid
    ax.plot([r.step_ms for r in front], [r.valid for r in front], color="black", linewidth=1, label="Pareto front")
    if rec.winner is not None:
        ax.scatter([rec.winner.step_ms], [rec.winner.valid], s=120, facecolors="none", edgecolors="red",
                   label="winner")
    ax.axhline(rec.trivial_valid, color="grey", linestyle="--", linewidth=1, label="trivial baseline")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator
    lo, hi = min(r.step_ms for r in rec.ranked), max(r.step_ms for r in rec.ranked)
    ticks = np.geomspace(lo, hi, 5) if hi > lo * 1.01 else np.array([lo])  # five labels, never overlapping
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.2g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("streaming step latency (ms)")
    ax.set_ylabel(f"validation {rec.metric}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def print_recommendation(rec: Recommendation, file=sys.stdout, top: int = 12) -> None:
    from seqbench.tables import format_table
    header, rows = ranked_table(rec)
    if len(rows) > top + 1:  # the best, the winner wherever it ranks, and the baseline; the rest in the files
        keep = [r for i, r in enumerate(rows[:-1]) if i < top or r[0].startswith("**")]
        rows = keep + [["...", f"{len(rows) - 1 - len(keep)} more candidates in recommendation.md"] + [""] * 9,
                       rows[-1]]
    print(format_table([dict(zip(header, [c.strip("*") for c in r])) for r in rows], header,
                       align_right=["params", f"valid {rec.metric}", "step (ms)", "memory (MB)", "epochs"]), file=file)
    if rec.excluded:
        print(f"\nexcluded before training ({len(rec.excluded)}): " +
              "; ".join(f"{cid}: {why}" for cid, why in rec.excluded[:8]) +
              (" ..." if len(rec.excluded) > 8 else ""), file=file)
    print(f"\n{rec.explanation}", file=file)
    if rec.paths:
        print(f"written: {rec.paths.get('md')}" + (f"; winner run: {rec.paths['winner']}" if "winner" in rec.paths
                                                  else ""), file=file)


__all__ = ["Candidate", "Costs", "Limits", "Ranked", "Recommendation", "candidate_space", "exclusions",
           "measure_costs", "parse_duration", "profile", "read_costs", "recommend", "write_costs"]
