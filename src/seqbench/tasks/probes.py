"""Capability probes (after SynTSBench): synthetic tasks with one programmable property each and a
known optimum, so a model's score says how much of the gap between the trivial baseline and the
best possible it closes. Every probe predicts a value at every step (MSE over the steps after a
burn-in); ``level`` sets the property's strength; ``oracle_batches`` yields the Bayes-optimal
predictions beside the targets (the tests check that they reach ``optimum``).

``probe:lag``       recall the input L steps back (level: L)               optimum 0
``probe:periodic``  the next value of a sine of period P under noise 0.5     optimum 0.25 (the noise)
``probe:trend``     the next value of a line of random slope, noise 0.5      optimum 0.25
``probe:walk``      the next value of a random walk (steps of sd level)      optimum level^2 (naive forecast)
``probe:regime``    the current mean of a two-state switching process        optimum: the forward filter's
                    (switch probability level), observed in noise 1          error (estimated, see below)
``probe:outliers``  the clean next value of a sine with outliers (rate level) optimum 0
``probe:crosslag``  channel 1's value L steps back, channel 0 a distractor   optimum 0
"""
from __future__ import annotations

import math

import numpy as np
import torch

from seqbench.errors import SeqbenchError
from seqbench.tasks.base import Metric
from seqbench.tasks.registry import register_task
from seqbench.tasks.synthetic import _SeededTask

PROBES = ("lag", "periodic", "trend", "walk", "regime", "outliers", "crosslag")
DEFAULT_LEVEL = {"lag": 32, "periodic": 24, "trend": 1, "walk": 0.1, "regime": 0.02, "outliers": 0.05, "crosslag": 16}
NOISE = 0.5  # sd of the observation noise of periodic and trend


@register_task("probe", listed_variants=PROBES)
class Probe(_SeededTask):
    """A capability probe (see the module docstring): ``probe:lag``, ``probe:periodic``, ..."""

    name = "probe"
    d_out = 1
    metric = Metric("mse", higher_is_better=False)
    output_steps = "all"
    source = "synthetic probes with known optima (after SynTSBench)"
    recommended = {"optimizer": "adam", "lr": 2e-3, "batch_size": 32, "epochs": 10}

    def __init__(self, variant: str = "lag", level: float | None = None, seq_len: int = 256, seed: int = 0,
                 n_train: int = 2000, n_valid: int = 256, n_test: int = 256):
        super().__init__(seq_len, seed, n_train, n_valid, n_test)
        if variant not in PROBES:
            raise SeqbenchError(f"unknown probe {variant!r}; use one of: {', '.join('probe:' + p for p in PROBES)}")
        self.variant, self.level = variant, float(DEFAULT_LEVEL[variant] if level is None else level)
        self.seq_len = seq_len
        self.d_in = 2 if variant == "crosslag" else 1
        lo, hi = {"lag": (1, seq_len - 2), "crosslag": (1, seq_len - 2), "periodic": (2, seq_len / 3),
                  "trend": (0, 100), "walk": (1e-4, 100), "regime": (1e-4, 0.5), "outliers": (0, 0.5)}[variant]
        if not lo <= self.level <= hi:
            raise SeqbenchError(f"probe:{variant} takes level in [{lo:g}, {hi:g}] at seq_len {seq_len}, got {self.level:g}")
        if variant in ("lag", "crosslag", "periodic") and self.level != int(self.level):
            raise SeqbenchError(f"probe:{variant}'s level is a whole number of steps, got {self.level:g}")
        self.start = {"lag": int(self.level), "crosslag": int(self.level), "periodic": int(2 * self.level)}.get(
            variant, min(16, seq_len // 4))  # steps before this are not scored: the answer is not yet determined
        self.optimum = {"lag": 0.0, "crosslag": 0.0, "outliers": 0.0, "periodic": NOISE ** 2, "trend": NOISE ** 2,
                        "walk": self.level ** 2}.get(variant)
        if self.optimum is None:  # the regime filter's error has no closed form: measured on a large sample
            self.optimum = self._oracle_mse(4096)
        self.trivial_baseline = self._trivial()
        self.trivial_note = "predict 0 at every step"

    def config(self) -> dict:
        return {"name": f"probe:{self.variant}", "level": self.level, "seq_len": self.seq_len, "seed": self.seed,
                "n_train": self.sizes["train"], "n_valid": self.sizes["valid"], "n_test": self.sizes["test"]}

    # -- data ------------------------------------------------------------------------------------
    def _draw(self, split: str, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (B, T, d_in), target (B, T), the Bayes-optimal prediction (B, T))."""
        g = self._generator(split, start)
        T, v, lv = self.seq_len, self.variant, self.level
        t = torch.arange(T + 1, dtype=torch.float32)
        if v in ("lag", "crosslag"):
            x = torch.randn(size, T, self.d_in, generator=g)
            L, src = int(lv), x[..., -1]
            y = torch.cat([torch.zeros(size, L), src[:, :-L]], 1)
            return x, y, y.clone()
        if v in ("periodic", "outliers"):
            phase = torch.rand(size, 1, generator=g) * 2 * math.pi
            period = lv if v == "periodic" else 16.0
            s = torch.sin(2 * math.pi * t / period + phase)  # (B, T + 1)
            if v == "periodic":
                x = s[:, :T] + NOISE * torch.randn(size, T, generator=g)
                y = torch.cat([x[:, 1:], s[:, T:] + NOISE * torch.randn(size, 1, generator=g)], 1)
                return x[..., None], y, s[:, 1:]
            hit = torch.rand(size, T, generator=g) < lv
            spikes = hit * torch.where(torch.rand(size, T, generator=g) < 0.5, -5.0, 5.0)
            x = s[:, :T] + 0.1 * torch.randn(size, T, generator=g) + spikes
            return x[..., None], s[:, 1:], s[:, 1:].clone()
        if v == "trend":
            slope = (torch.rand(size, 1, generator=g) * 2 - 1) * 2 * lv
            line = slope * t / T + torch.randn(size, 1, generator=g) * 0.5
            obs = line + NOISE * torch.randn(size, T + 1, generator=g)
            return obs[:, :T, None], obs[:, 1:], line[:, 1:]
        if v == "walk":
            walk = torch.cumsum(lv * torch.randn(size, T + 1, generator=g), 1)
            return walk[:, :T, None], walk[:, 1:], walk[:, :T].clone()
        # regime: a two-state Markov chain (means -1, +1) observed in unit noise; target its current mean
        p = lv
        flips = torch.rand(size, T, generator=g) < p
        state = (torch.cumsum(flips.long(), 1) + torch.randint(0, 2, (size, 1), generator=g)) % 2
        mean = state.float() * 2 - 1
        x = mean + torch.randn(size, T, generator=g)
        return x[..., None], mean, _regime_filter(x, p)

    def _batch(self, split, start, size):
        x, y, _ = self._draw(split, start, size)
        return x, y

    def oracle_batches(self, split: str, batch_size: int = 256):
        """(the Bayes-optimal predictions, the targets) batch by batch."""
        n = self.num_samples(split)
        for s in range(0, n, batch_size):
            _, y, best = self._draw(split, s, min(batch_size, n - s))
            yield best, y

    def _oracle_mse(self, n: int) -> float:
        _, y, best = self._draw("test", 10**9, n)  # a sample of its own, apart from every split
        return float((best - y)[:, self.start:].pow(2).mean())

    def _trivial(self) -> float:
        _, y, _ = self._draw("test", 2 * 10**9, 2048)
        return float(y[:, self.start:].pow(2).mean())

    # -- loss and score --------------------------------------------------------------------------
    def loss(self, out, target):
        return (out[:, self.start:, 0] - target[:, self.start:]).pow(2).mean()

    def score(self, out, target):
        err = (out[:, self.start:, 0] - target[:, self.start:]).pow(2)
        return {"mse": (float(err.sum()), err.numel())}


def _regime_filter(x: torch.Tensor, p: float) -> torch.Tensor:
    """E[mean_t | x_1..x_t] by the forward algorithm of the two-state chain (the optimal predictor)."""
    xs = x.double().numpy()
    like = np.stack([np.exp(-0.5 * (xs + 1) ** 2), np.exp(-0.5 * (xs - 1) ** 2)], -1)  # (B, T, 2)
    belief = np.full((xs.shape[0], 2), 0.5)
    out = np.empty(xs.shape)
    for t in range(xs.shape[1]):
        prior = belief * (1 - p) + belief[:, ::-1] * p
        post = prior * like[:, t]
        belief = post / post.sum(1, keepdims=True)
        out[:, t] = belief[:, 1] - belief[:, 0]
    return torch.from_numpy(out).float()
