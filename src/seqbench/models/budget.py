"""Matched parameter budgets: solve a model's width so its parameter count meets a target."""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import torch

from seqbench.errors import SeqbenchError
from seqbench.models.base import count_params

TOLERANCE = 0.05
MAX_WIDTH = 1 << 16


@dataclass(frozen=True)
class BudgetSolution:
    width: int
    params: int
    target: int

    @property
    def rel_error(self) -> float:
        return (self.params - self.target) / self.target


BYTES_PER_PARAM = 16  # float32 weights, gradients and two Adam moments


def count_on_meta(cls, **kwargs) -> int:
    """Parameter count of ``cls(**kwargs)`` built on the meta device: no memory is allocated."""
    with torch.device("meta"):
        return count_params(cls(**kwargs))


def count_for_width(name: str, d_in: int, d_out: int, width: int, **cfg) -> int:
    """Exact parameter count of ``name`` at ``width``. Small widths are built on CPU (a few ms; the
    meta device is slower for modules this small), large ones on the meta device (nothing allocated)."""
    from seqbench.models.registry import get_model_entry
    entry = get_model_entry(name)
    kwargs = {"d_in": d_in, "d_out": d_out, **cfg, entry.width_arg: width}
    if width > 512:
        return count_on_meta(entry.cls, **kwargs)
    with torch.device("cpu"):
        return count_params(entry.cls(**kwargs))


def memory_bytes() -> int:
    """This machine's physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40  # unknown: do not refuse


def check_fits_in_memory(params: int, what: str) -> None:
    """Refuse a model whose training state (weights, gradients, Adam moments) would not fit in memory."""
    need, have = params * BYTES_PER_PARAM, memory_bytes()
    if need > have:
        raise SeqbenchError(f"{what} needs about {need / 2**30:,.1f} GiB to train ({params:,} parameters x "
                            f"{BYTES_PER_PARAM} bytes) but this machine has {have / 2**30:.1f} GiB; "
                            "choose a smaller --params or width")


def solve_width_for_budget(name: str, d_in: int, d_out: int, target: int, **cfg) -> BudgetSolution:
    """Smallest-error width for ``target`` parameters (counts grow monotonically with width).

    Raises SeqbenchError when even the narrowest model is over budget by more than 5%; warns when
    the closest width still misses by more than 5% (e.g. coarse width granularity).
    """
    from seqbench.models.registry import get_model_entry
    width_arg = get_model_entry(name).width_arg

    @functools.cache
    def count(w: int) -> int:
        return count_for_width(name, d_in, d_out, w, **cfg)

    lo_count = count(1)
    if lo_count > target * (1 + TOLERANCE):
        raise SeqbenchError(
            f"params={target:,} is impossible for {name!r} with these settings: its narrowest version "
            f"already has {lo_count:,} parameters; raise --params or reduce depth/options")
    lo, hi = 1, 2
    while count(hi) < target and hi < MAX_WIDTH:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: count(lo) < target <= count(hi) (or lo == 1)
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda w: abs(count(w) - target))
    sol = BudgetSolution(best, count(best), target)
    if abs(sol.rel_error) > TOLERANCE:
        warnings.warn(f"{name}: closest width {width_arg}={best} gives {sol.params:,} params, "
                      f"{sol.rel_error:+.1%} from the budget {target:,}", stacklevel=3)
    return sol
