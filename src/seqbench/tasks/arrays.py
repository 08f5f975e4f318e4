"""Tasks over in-memory arrays (real data): the split store, batching, and the common task kinds.

Every split is a float32 ``x`` (N, L, d_in), a target ``y`` and, for variable-length data, the
true ``lengths`` (N,). Sequences are right-padded with zeros; a batch is cut to its longest
member. Variable-length predictions are read at each sequence's last real step and per-step
targets are masked past it, so for a causal model padding never changes a prediction (tested).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqbench.errors import SeqbenchError
from seqbench.tasks.base import Metric, Task


class ArrayTask(Task):
    """Subclasses call ``self._set_split`` for train/valid/test in ``__init__``."""

    variable_length = False

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

    def _set_split(self, split: str, x: np.ndarray, y: np.ndarray, lengths: np.ndarray | None = None) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x[..., None]
        if len(x) == 0:
            raise SeqbenchError(f"task {self.name!r}: the {split} split is empty")
        if not np.isfinite(x).all():
            raise SeqbenchError(f"task {self.name!r}: the {split} split has NaN/inf inputs")
        if lengths is not None:
            lengths = np.asarray(lengths, dtype=np.int64)
            if (lengths == x.shape[1]).all():  # no padding in this split: a fixed-length batch
                lengths = None
            else:
                self.variable_length = True
        self.data[split] = (x, np.asarray(y), lengths)
        self.sizes[split] = len(x)

    def _gather(self, split: str, idx: np.ndarray):
        """x (B, L', d_in) cut to the batch's longest sequence; target, or (target, lengths)."""
        x, y, lengths = self.data[split]
        if lengths is None:
            return torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        ln = lengths[idx]
        top = int(ln.max())
        per_step = y.ndim >= 2 and y.shape[1] == x.shape[1]
        yb = y[idx, :top] if per_step else y[idx]
        return torch.from_numpy(x[idx, :top]), (torch.from_numpy(yb), torch.from_numpy(ln))

    def real_targets(self, split: str) -> np.ndarray:
        """The split's targets, one row per sequence or, for per-step targets, per real (unpadded) step."""
        _, y, lengths = self.data[split]
        if y.ndim == 1 or lengths is None:
            return y.reshape(-1, *y.shape[2:])
        return y[np.arange(y.shape[1])[None] < lengths[:, None]]

    def predict(self, model, x: torch.Tensor) -> torch.Tensor:
        if self.variable_length and not getattr(model, "causal", True):  # any nn.Module may be evaluated
            raise SeqbenchError(f"task {self.name!r} has variable-length sequences, padded on the right; a "
                                "non-causal model would see the padding. Use a causal model")
        if self.variable_length:
            return model(x)
        return super().predict(model, x)

    def info(self) -> dict[str, Any]:
        info = super().info()
        if self.variable_length:
            lens = np.concatenate([np.full(len(x), x.shape[1]) if ln is None else ln for x, _, ln in self.data.values()])
            info["seq_len"] = f"{lens.min()}-{lens.max()}"
        return info


def last_step(out: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(B, d) output at each sequence's last real step (the last step when lengths is None)."""
    if lengths is None:
        return out[:, -1]
    if out.shape[1] == 1:  # a last-step output (forward_last) cannot be indexed by lengths
        raise SeqbenchError("per-sequence lengths need the full output (B, L, d_out), got a last-step output")
    return out[torch.arange(len(out)), lengths.to(out.device) - 1]


def split_target(target) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(target, lengths) from a batch's target: variable-length tasks pass (target, lengths)."""
    return target if isinstance(target, tuple) else (target, None)


def step_mask(lengths: torch.Tensor | None, L: int) -> torch.Tensor | None:
    """(B, L) bool: True on real steps."""
    if lengths is None:
        return None
    return torch.arange(L, device=lengths.device)[None, :] < lengths[:, None]


class ClassificationTask(ArrayTask):
    """One label per sequence, predicted from the last (real) step. Accuracy; majority-class baseline."""

    metric = Metric("accuracy", higher_is_better=True)
    output_steps = "last"
    soft_targets = "softmax"
    trivial_note = "majority class of the training set, scored on test"

    def _finish_classes(self) -> None:
        ys = {s: d[1].astype(np.int64) for s, d in self.data.items()}
        self.num_classes = int(max(int(y.max()) for y in ys.values()) + 1)
        self.d_out = self.num_classes
        counts = np.bincount(ys["train"], minlength=self.num_classes)
        majority = int(counts.argmax())
        self.trivial_by_split = {s: float((y == majority).mean()) for s, y in ys.items()}
        self.trivial_baseline = self.trivial_by_split["test"]
        self.chance_level = 1.0 / self.num_classes
        for s, (x, y, ln) in self.data.items():
            self.data[s] = (x, y.astype(np.int64), ln)

    def loss(self, out: torch.Tensor, target) -> torch.Tensor:
        y, lengths = split_target(target)
        return F.cross_entropy(last_step(out, lengths), y)

    def score(self, out: torch.Tensor, target) -> dict[str, tuple[float, int]]:
        y, lengths = split_target(target)
        logits = last_step(out, lengths)
        return {"accuracy": (float((logits.argmax(-1) == y).sum()), len(y)),
                "nll": (float(F.cross_entropy(logits, y, reduction="sum")), len(y))}
