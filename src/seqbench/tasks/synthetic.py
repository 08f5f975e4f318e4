"""Synthetic stress tasks from the TCN paper (Sec. 5.2): the adding problem and copy memory.

Both are generated per batch from a seed, so any sequence length fits in memory and the same
seed always gives the same data.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from seqbench.errors import SeqbenchError
from seqbench.tasks.base import Metric, PaperReference, Task
from seqbench.tasks.registry import register_task

_SPLIT_ID = {"train": 0, "valid": 1, "test": 2}


class _SeededTask(Task):
    """Samples i of a split come from a generator seeded by (seed, split, batch start)."""

    def __init__(self, seq_len: int, seed: int, n_train: int, n_valid: int, n_test: int):
        super().__init__()
        for label, v in (("seq_len", seq_len), ("n_train", n_train), ("n_valid", n_valid),
                         ("n_test", n_test)):
            if not isinstance(v, int) or v < 1:
                raise SeqbenchError(f"{self.name}: {label} must be a positive integer, got {v!r}")
        self.seed = seed
        self.sizes = {"train": n_train, "valid": n_valid, "test": n_test}

    def _generator(self, split: str, start: int) -> torch.Generator:
        # distinct, reproducible stream per (seed, split, batch start)
        state = np.random.SeedSequence([self.seed, _SPLIT_ID[split], start]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@register_task("adding")
class Adding(_SeededTask):
    """Adding problem: sum the two marked values of a length-T sequence (MSE at the last step).

    Input (B, T, 2): channel 0 uniform in [0, 1], channel 1 marks one position in the first half
    and one in the second half. Target: the sum of the two marked values. Predicting 1 always
    has expected MSE 1/6; the paper quotes 0.1767, which we report as the trivial baseline.
    """

    name = "adding"
    d_in, d_out = 2, 1
    metric = Metric("mse", higher_is_better=False)
    trivial_baseline = 0.1767
    trivial_note = "predict 1 always (paper's figure; exact expectation 1/6)"
    output_steps = "last"
    source = "synthetic (Hochreiter & Schmidhuber 1997)"
    recommended = {"optimizer": "adam", "lr": 2e-3, "batch_size": 32, "epochs": 10}

    def __init__(self, seq_len: int = 600, seed: int = 0, n_train: int = 50_000, n_valid: int = 1000,
                 n_test: int = 1000):
        super().__init__(seq_len, seed, n_train, n_valid, n_test)
        if seq_len < 2:
            raise SeqbenchError(f"adding: seq_len must be >= 2 (two marked halves), got {seq_len}")
        self.seq_len = seq_len
        self.paper = PaperReference({"lstm": 0.164, "gru": 5.3e-5, "rnn": 0.177, "tcn": 5.8e-5},
                                    "Table 1, T=600, 70K params" + ("" if seq_len == 600 else
                                                                    f" (this task: T={seq_len})"))

    def config(self):
        return {"name": self.name, "seq_len": self.seq_len, "seed": self.seed,
                "n_train": self.sizes["train"], "n_valid": self.sizes["valid"],
                "n_test": self.sizes["test"]}

    def _batch(self, split, start, size):
        g = self._generator(split, start)
        T, half = self.seq_len, self.seq_len // 2
        values = torch.rand(size, T, generator=g)
        first = torch.randint(0, half, (size,), generator=g)
        second = torch.randint(half, T, (size,), generator=g)
        marks = torch.zeros(size, T)
        rows = torch.arange(size)
        marks[rows, first] = 1.0
        marks[rows, second] = 1.0
        target = values[rows, first] + values[rows, second]  # (B,)
        return torch.stack([values, marks], dim=-1), target  # (B, T, 2), (B,)

    def loss(self, out, target):
        return F.mse_loss(out[:, -1, 0], target)

    def score(self, out, target):
        err = (out[:, -1, 0] - target).pow(2).sum().item()
        return {"mse": (err, len(target))}


@register_task("copy_memory")
class CopyMemory(_SeededTask):
    """Copy memory: recall 10 digits after T steps (cross-entropy over all T+20 steps).

    Input (B, T+20, 1) as in the paper: 10 digits drawn from 1-8, then T-1 blanks (0), then the
    last 11 entries are 9 (the first 9 is the delimiter). Target: 0 everywhere except the last 10
    steps, which repeat the 10 digits. Outputting blanks and then uniform guesses over 1-8 scores
    10 ln 8 / (T + 20), the memory-less baseline. Secondary metric: accuracy on the last 10 steps.
    """

    name = "copy_memory"
    d_in, d_out = 1, 10
    metric = Metric("loss", higher_is_better=False)
    output_steps = "all"
    source = "synthetic (Hochreiter & Schmidhuber 1997; TCN paper Sec. 5.3)"
    recommended = {"optimizer": "rmsprop", "lr": 5e-4, "batch_size": 32, "clip": 1.0, "epochs": 10}

    def __init__(self, T: int = 1000, seed: int = 0, n_train: int = 10_000, n_valid: int = 1000,
                 n_test: int = 1000):
        super().__init__(T, seed, n_train, n_valid, n_test)
        self.T = T
        self.seq_len = T + 20
        self.trivial_baseline = 10 * math.log(8) / (T + 20)
        self.trivial_note = "blanks, then a uniform guess over 8 digits: 10 ln 8 / (T+20)"
        self.paper = PaperReference({"lstm": 0.0204, "gru": 0.0197, "rnn": 0.0202, "tcn": 3.5e-5},
                                    "Table 1, T=1000, 16K params" + ("" if T == 1000 else
                                                                     f" (this task: T={T})"))

    def config(self):
        return {"name": self.name, "T": self.T, "seed": self.seed, "n_train": self.sizes["train"],
                "n_valid": self.sizes["valid"], "n_test": self.sizes["test"]}

    def _batch(self, split, start, size):
        g = self._generator(split, start)
        digits = torch.randint(1, 9, (size, 10), generator=g)
        x = torch.zeros(size, self.seq_len)
        x[:, :10] = digits
        x[:, -11:] = 9.0
        target = torch.zeros(size, self.seq_len, dtype=torch.long)
        target[:, -10:] = digits
        return x.unsqueeze(-1), target  # (B, T+20, 1), (B, T+20)

    def loss(self, out, target):
        return F.cross_entropy(out.reshape(-1, self.d_out), target.reshape(-1))

    def score(self, out, target):
        ce = F.cross_entropy(out.reshape(-1, self.d_out), target.reshape(-1), reduction="sum").item()
        correct = (out[:, -10:].argmax(-1) == target[:, -10:]).sum().item()
        return {"loss": (ce, target.numel()), "acc": (correct, target[:, -10:].numel())}
