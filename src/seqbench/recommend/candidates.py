"""What a search may choose from: deployment limits, and every streaming zoo model on a log grid
of sizes up to the parameter limit, at the shapes each model asks a search to try."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seqbench.errors import SeqbenchError
from seqbench.tables import fmt_count

DEFAULT_MAX_PARAMS = 100_000
MIN_PARAMS = 2_000
SIZE_FACTOR = 3.0          # the size grid: MIN_PARAMS * 3^i up to the parameter limit


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

def embedding_params(task) -> int:
    """A token task's embedding (tied to the decoder), which comes on top of every model: size
    grids start above it."""
    embed = task.model_kwargs().get("embed_dim")
    return task.d_in * embed + task.d_in if task.input_kind == "tokens" and embed else 0


def candidate_space(task, max_params: int | None = None, models: list[str] | None = None) -> list[Candidate]:
    """The zoo models that can serve the task (causal and streaming), on a log grid of sizes."""
    from seqbench.models.registry import get_model_entry, list_models
    names = models or list_models()
    for n in names:
        get_model_entry(n)
    names = [n for n in names if get_model_entry(n).cls.supports_step]
    base = embedding_params(task)
    embed = task.model_kwargs().get("embed_dim")
    if max_params is not None and max_params < base + MIN_PARAMS:
        raise SeqbenchError(f"--max-params {max_params:,} does not cover this task's embedding ({base:,} = vocabulary "
                            f"{task.d_in:,} x embed_dim {embed} + bias) plus the smallest model ({MIN_PARAMS:,}); "
                            f"give at least {base + MIN_PARAMS:,}")
    top = max_params or base + DEFAULT_MAX_PARAMS
    sizes, s = [], float(MIN_PARAMS)
    while base + s <= top * 1.0001:
        sizes.append(int(round(base + s, -2)))
        s *= SIZE_FACTOR
    if top not in sizes and top > sizes[-1] * 1.5:
        sizes.append(top)
    if max_params is not None:  # solved widths land within 5% of a budget: aim below a hard limit
        sizes = sorted({min(size, int(max_params * 0.96)) for size in sizes})
    L = task.seq_len  # the longest sequence of a variable-length task
    out = []
    for name in names:  # each model says which shapes to try (the TCN: two kernel sizes that see it all)
        shapes = get_model_entry(name).cls.search_shapes(L)
        out += [Candidate(name, size, tuple(shape.items())) for size in sizes for shape in shapes]
    return out

def exclusions(costs: dict, limits: Limits) -> dict[Candidate, str]:
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
