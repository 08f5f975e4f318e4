"""Costs before training: parameters, the streaming step latency at the deployment batch (the
model's own ``step``, timed in interleaved rounds), full-sequence latency, the memory to stream and
a training step's time; cached per candidate and machine, or read from a ``seqbench profile`` file
measured on the target device."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqbench.errors import SeqbenchError
from seqbench.models.base import SeqModel
from seqbench.recommend.candidates import Candidate
from seqbench.utils import atomic_write_json

COSTS_VERSION = 4          # of how costs are measured, or of what they measure (4: steps timed mid-stream, as the
#                            mean of a stream of the task's length); bumped, cached costs are measured again
STREAM_CHUNK = 1024        # steps per chunk when a whole sequence is streamed to measure its state


@dataclass
class Costs:
    params: int
    shape: str            # the model's describe()
    step_ms: float        # one streaming step at the batch size
    seq_ms: float         # one full sequence (batch 1) through task.predict
    mem_mb: float         # weights + streaming state after a full sequence, at the batch size
    train_step_ms: float  # one training step at the task's batch size (for time estimates)
    step_spread: float = 0.0  # the step timings' interquartile range over their median (load on the machine)
    step_runtime: str = ""    # where the step was timed: numpy, torch or onnxruntime ("" before this was kept)

def _machine() -> str:
    from seqbench.bench.worker import environment
    env = environment(torch.get_num_threads())
    return f"{env['cpu']} x{env['cores']}, {env['threads']} threads, torch {env['torch']}"

def _cost_key(task, cand: Candidate, batch: int, runtime: str = "auto") -> str:
    spec = {"model": cand.model, "params": cand.params, "opts": cand.opts, "d_in": task.d_in, "d_out": task.d_out,
            "seq_len": str(task.seq_len), "tokens": task.input_kind == "tokens", "batch": batch,
            "method": COSTS_VERSION, **task.model_kwargs(), **({"runtime": runtime} if runtime != "auto" else {})}
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
                  progress: bool | None = None, runtime: str = "auto") -> dict[Candidate, Costs]:
    """Measure every candidate's costs on this machine, the step timings interleaved in rounds (so
    a slow moment of a shared machine hits all candidates alike); medians."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=torch.get_num_threads()):  # BLAS on torch's threads, as deployed
        check_runtime(runtime)
        import tempfile
        with tempfile.TemporaryDirectory(prefix="seqbench-costs-") as tmp:
            return _measure(task, candidates, batch, rounds, steps, progress, runtime, Path(tmp))


def _measure(task, candidates: list[Candidate], batch: int, rounds: int, steps: int, progress: bool | None,
             runtime: str = "auto", tmp: Path | None = None) -> dict[Candidate, Costs]:
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
        steps_on = {}
        for rt in _runtimes(model, runtime):
            step = step_runner(model, task, batch, rt, tmp)
            for _ in range(5):  # warm up
                step()
            steps_on[_runtime_name(model, batch, rt)] = (step, [])
        built[cand] = (steps_on, count_params(model), model.describe(), min(seq_times) * 1e3, mem,
                       min(train_times) * 1e3)
    _time_rounds(built, list(built), rounds, steps)
    for _ in range(2):  # a smaller model of a kind slower than a larger one is load, not cost: measure again
        suspect = _not_monotone({c: _fastest(b[0])[1] for c, b in built.items()})
        if not suspect:
            break
        _time_rounds(built, suspect, rounds, steps)
    out = dict(too_big)
    for c, (steps_on, n, shape, seq_ms, mem, train_ms) in built.items():
        rt, step_ms = _fastest(steps_on)
        out[c] = Costs(params=n, shape=shape, step_ms=step_ms, seq_ms=seq_ms, mem_mb=mem, train_step_ms=train_ms,
                       step_spread=_spread(steps_on[rt][1]), step_runtime=rt)
    return out


def _runtimes(model, runtime: str) -> list[str]:
    """The runtimes to time a model's step on: the one asked for; for "best", the model's own step
    and, where onnxruntime is installed and the model exports its step, the exported graph too."""
    if runtime != "best":
        return [runtime]
    import importlib.util
    exportable = type(model).export_step is not SeqModel.export_step
    return ["auto", "onnxruntime"] if exportable and importlib.util.find_spec("onnxruntime") else ["auto"]


def _runtime_name(model, batch: int, runtime: str) -> str:
    """What actually ran the step: onnxruntime, or the engine the model's own step used for this
    runtime (NumPy where its step is torch-free, the model's hook; a model without a NumPy engine
    runs torch even when "numpy" was asked)."""
    if runtime == "onnxruntime":
        return runtime
    return "numpy" if model._step_is_torch_free(model.init_state(batch, engine=runtime)) else "torch"


def _fastest(steps_on: dict) -> tuple[str, float]:
    """(runtime, median ms) of the fastest of a candidate's timed runtimes."""
    return min(((rt, statistics.median(times)) for rt, (_, times) in steps_on.items()), key=lambda kv: kv[1])


RUNTIMES = ("auto", "torch", "numpy", "onnxruntime", "best")


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise SeqbenchError(f"unknown runtime {runtime!r}; use one of: {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":  # ("best" uses it where it is installed)
        from seqbench.data import require
        require("onnxruntime", extra="export", why="--runtime onnxruntime")


def step_runner(model, task, batch: int, runtime: str, tmp: Path | None):
    """One streaming step at ``batch`` on ``runtime``, as a call to time, mid-stream (below): the
    model's own step (``auto``: its default engine; ``torch`` or ``numpy``: that engine), or the
    graph ``seqbench export --streaming`` writes, run by onnxruntime on torch's thread count (its
    state sized for a stream of the task's length). Calls carry the own step's stream on; the
    onnxruntime call repeats the same step."""
    x_t = _inputs(task, batch, None)
    max_len = int(task.seq_len) if str(task.seq_len).isdigit() else 1024
    # timed mid-stream: where a step's cost grows with the stream (attention over a KV cache), about
    # the mean over a stream of the task's length (the timing's few hundred steps carry it on), at
    # most STREAM_CHUNK steps in (one chunk: profiling stays quick on long sequences)
    prefix = _inputs(task, batch, min(max_len // 2, STREAM_CHUNK))
    if runtime != "onnxruntime":
        state = [model.init_state(batch, engine=runtime)]
        if prefix.shape[1]:
            state[0] = model.step(prefix, state[0])[1]

        def step():
            y, state[0] = model.step(x_t, state[0])
            return y
        return step
    import onnxruntime as ort

    from seqbench.export import StreamingStep, export_model
    path = tmp / f"step{len(list(tmp.iterdir()))}.onnx"
    export_model(model, path, "onnx", streaming=True, max_len=max_len)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    module = StreamingStep(model, max_len)
    dtype = module.example_input(batch).dtype
    names = [i.name for i in sess.get_inputs()]
    state = [a.numpy() for a in module.init_state(batch)]
    for t in range(prefix.shape[1]):  # the same point of the stream as the own step's
        state = sess.run(None, dict(zip(names, [prefix[:, t].to(dtype).numpy(), *state])))[1:]
    feeds = dict(zip(names, [x_t.to(dtype).numpy(), *state]))
    return lambda: sess.run(None, feeds)


def _time_rounds(built: dict, cands: list[Candidate], rounds: int, steps: int) -> None:
    """Interleaved: each round times every candidate (on each of its runtimes) once, so a slow
    moment hits all alike."""
    for _ in range(rounds):
        for cand in cands:
            for step, times in built[cand][0].values():
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                times.append((time.perf_counter() - t0) / steps * 1e3)


def _not_monotone(step_ms: dict[Candidate, float], factor: float = 1.5) -> list[Candidate]:
    """Candidates of one model and shape whose step is over ``factor`` x that of a larger one."""
    out = set()
    groups: dict[tuple, list[Candidate]] = {}
    for c in step_ms:
        groups.setdefault((c.model, c.model_opts), []).append(c)
    for group in groups.values():
        group.sort(key=lambda c: c.params)
        for i, small in enumerate(group):
            for big in group[i + 1:]:
                if step_ms[small] > factor * step_ms[big]:
                    out.update((small, big))
    return sorted(out, key=lambda c: (c.model, c.params))


def _spread(times: list[float]) -> float:
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (0.0, 0.0, 0.0)
    return round((q3 - q1) / max(statistics.median(times), 1e-9), 3)

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
            progress: bool | None = None, runtime: str = "auto") -> dict[Candidate, Costs]:
    """Costs for every candidate: cached ones from the store (same candidate, task shape, batch and
    machine), the rest measured now and cached."""
    from seqbench.bench.store import Store
    from seqbench.recommend import records
    machine = _machine()
    cached: dict[Candidate, Costs] = {}
    if db is not None and Path(db).exists():  # a new store is created only once there is something to keep
        with Store(db) as store:
            for cand in candidates:
                row = records.cost(store, machine, _cost_key(task, cand, batch, runtime))
                if row is not None:
                    cached[cand] = Costs(**row)
    todo = [c for c in candidates if c not in cached]
    fresh = measure_costs(task, todo, batch, progress=progress, runtime=runtime) if todo else {}
    keep = [(_cost_key(task, c, batch, runtime), dataclasses.asdict(v)) for c, v in fresh.items()
            if math.isfinite(v.step_ms)]  # what does not fit in memory now may fit later: not cached
    if db is not None and keep:
        with Store(db) as store:
            records.put_costs(store, machine, keep)
    return {c: cached.get(c) or fresh[c] for c in candidates}

def write_costs(path: str | Path, task, costs: dict[Candidate, Costs], batch: int, runtime: str = "auto") -> None:
    """A costs table for ``recommend --costs``: measured where the model will run."""
    atomic_write_json(path, {"seqbench_costs": 1, "machine": _machine(), "batch": batch, "task": task.name, "runtime": runtime,
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
