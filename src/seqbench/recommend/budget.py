"""How long: the time budget as a user writes it, what an epoch of a candidate costs, and the
training length (rungs of successive halving) that grows with the budget."""
from __future__ import annotations

import math
import re

from seqbench.errors import SeqbenchError
from seqbench.recommend.costs import Costs

REDUCTION = 3                # successive halving keeps the best third at each rung
MAX_GROWTH = REDUCTION ** 4  # training length grows with the budget up to this many times the task's epochs


def parse_duration(text: str | float | int, allow_zero: bool = False) -> float:
    """Seconds from 300, '300s', '5m', '1.5h' (0 only where ``allow_zero``: the instant answer)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smh]?)\s*", str(text))
        if not m:
            raise SeqbenchError(f"cannot read {text!r} as a duration; write it like 300, 90s, 5m or 1.5h")
        value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not (value > 0 or (allow_zero and value == 0)):
        raise SeqbenchError(f"the time budget must be positive, got {text!r} (0 gives the instant answer only: "
                            "seqbench recommend --time-budget 0, or seqbench.recommend.instant_answer)")
    return value


def epoch_seconds(task, cost: Costs) -> float:
    """Seconds for one epoch of a candidate with ``cost`` on ``task``: its training steps and the
    validation pass (profile costs on one thread, before any calibration on real runs)."""
    steps = math.ceil(task.num_samples("train") / int(task.recommended.get("batch_size", 32)))
    return (steps * cost.train_step_ms + task.num_samples("valid") * cost.seq_ms / 4) / 1e3


def grown_epochs(base: int, per_epoch_s: float, seconds: float) -> int:
    """Training length that grows with the budget: ``base`` epochs times the largest power of
    REDUCTION (up to MAX_GROWTH) whose training takes at most ``seconds`` at ``per_epoch_s``.
    Powers of REDUCTION keep the rungs aligned, and a budget maps to one length, so a rerun
    resumes the same search."""
    growth = 1
    while growth < MAX_GROWTH and base * growth * REDUCTION * per_epoch_s <= seconds:
        growth *= REDUCTION
    return base * growth


def rungs_for(max_epochs: int) -> list[int]:
    """The epochs at which successive halving compares trials: r, 3r and ``max_epochs``."""
    r = max(1, round(max_epochs / REDUCTION ** 2))
    return sorted({min(r, max_epochs), min(r * REDUCTION, max_epochs), max_epochs})
