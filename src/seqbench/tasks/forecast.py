"""Univariate forecasting (``forecast:<name>``): from the last ``lookback`` values, predict the next
``horizon`` values at once (the model's last step outputs ``horizon`` numbers).

The series is split chronologically: a window belongs to the split that holds all of its forecast
targets (70% / 15% / 15% of the time axis); its lookback may reach into the split before, as it
would in deployment. Scaling (mean, std) is fit on the train part only. Metrics are on the
original scale: MAE (the headline), RMSE and sMAPE (%); the seasonal-naive forecast (repeat the
value one season earlier) is scored on the same test windows as the baseline.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from seqbench.data import require
from seqbench.errors import SeqbenchError
from seqbench.tasks.arrays import ArrayTask
from seqbench.tasks.base import Metric
from seqbench.tasks.registry import register_task
from seqbench.utils import suggest


def _pmdarima(loader: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        datasets = require("pmdarima.datasets", why="this forecasting set")
        return np.asarray(getattr(datasets, loader)(as_series=False), dtype=np.float64)
    return load


def _co2() -> np.ndarray:
    """Mauna Loa weekly CO2 (statsmodels), 2,284 weeks; its gaps are filled by linear interpolation."""
    sm = require("statsmodels.api", why="forecast:co2")
    s = sm.datasets.co2.load_pandas().data["co2"].to_numpy(dtype=np.float64)
    return fill_gaps(s)


def fill_gaps(s: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN (ends: nearest value)."""
    bad = ~np.isfinite(s)
    if bad.all():
        raise SeqbenchError("the series has no finite values")
    if bad.any():
        idx = np.arange(len(s))
        s = s.copy()
        s[bad] = np.interp(idx[bad], idx[~bad], s[~bad])
    return s


# name: (loader, season length, default lookback, default horizon, source)
SERIES = {
    "sunspots": (_pmdarima("load_sunspots"), 132, 264, 12, "monthly sunspot numbers 1749-1983 (pmdarima)"),
    "airpassengers": (_pmdarima("load_airpassengers"), 12, 36, 12, "monthly airline passengers 1949-1960 (pmdarima)"),
    "co2": (_co2, 52, 104, 52, "weekly Mauna Loa CO2 1958-2001, gaps interpolated (statsmodels)"),
    "wineind": (_pmdarima("load_wineind"), 12, 36, 12, "monthly Australian wine sales (pmdarima)"),
    "lynx": (_pmdarima("load_lynx"), 10, 20, 5, "annual Canadian lynx trappings (pmdarima)"),
}


def seasonal_naive(series: np.ndarray, origin: int, horizon: int, season: int) -> np.ndarray:
    """Forecast for series[origin:origin+horizon] from values before origin: one season back."""
    h = np.arange(horizon)
    return series[origin + h - season * (h // season + 1)]


class WindowForecast(ArrayTask):
    """Forecast ``horizon`` values of a 1-D series from its last ``lookback`` values."""

    metric = Metric("mae", higher_is_better=False)
    output_steps = "last"
    d_in = 1
    recommended = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 50}

    def _setup(self, series: np.ndarray, lookback: int, horizon: int, season: int,
               fractions: tuple[float, float] = (0.7, 0.15)) -> None:
        series = np.asarray(series, dtype=np.float64)
        if series.ndim != 1 or not np.isfinite(series).all():
            raise SeqbenchError(f"task {self.name!r}: the series must be 1-D and finite")
        for label, v in (("lookback", lookback), ("horizon", horizon), ("season", season)):
            if not isinstance(v, int) or v < 1:
                raise SeqbenchError(f"{label} must be a positive integer, got {v!r}")
        T = len(series)
        ends = (int(T * fractions[0]), int(T * (fractions[0] + fractions[1])), T)  # split boundaries
        first = max(lookback, season * math.ceil(horizon / season))  # origins with a full lookback and a naive
        self.lookback, self.horizon, self.season, self.d_out, self.seq_len = lookback, horizon, season, horizon, lookback
        self.mean, self.std = float(series[:ends[0]].mean()), float(series[:ends[0]].std() or 1.0)
        z = (series - self.mean) / self.std
        lo = 0
        for split, hi in zip(("train", "valid", "test"), ends):
            origins = np.arange(max(lo, first), hi - horizon + 1)
            if len(origins) == 0:
                raise SeqbenchError(f"task {self.name!r}: the {split} part ({hi - lo} steps) holds no window of "
                                    f"lookback {lookback} + horizon {horizon}; use a smaller lookback/horizon")
            x = np.stack([z[o - lookback:o] for o in origins])
            y = np.stack([series[o:o + horizon] for o in origins])
            self._set_split(split, x, y.astype(np.float32))
            naive = np.stack([seasonal_naive(series, o, horizon, season) for o in origins])
            self.trivial_by_split = {**self.trivial_by_split, split: float(np.abs(naive - y).mean())}
            if split == "test":
                self.trivial_baseline = self.trivial_by_split["test"]
                self.naive = {"mae": self.trivial_baseline, "rmse": float(np.sqrt(((naive - y) ** 2).mean())),
                              "smape": float(smape(naive, y).mean())}
            lo = hi
        self.trivial_note = f"seasonal naive (season {season}) on the test windows"

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out[:, -1], (target - self.mean) / self.std)  # in scaled units

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[float, int]]:
        pred = out[:, -1].double() * self.std + self.mean
        err = pred - target.double()
        n = err.numel()
        return {"mae": (float(err.abs().sum()), n), "mse": (float(err.square().sum()), n),
                "smape": (float(smape(pred.numpy(), target.double().numpy()).sum()), n)}

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        means["rmse"] = math.sqrt(means.pop("mse"))
        return means


def smape(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Symmetric MAPE per value, in percent (0 where both are 0)."""
    denom = np.abs(pred) + np.abs(y)
    return np.where(denom > 0, 200.0 * np.abs(pred - y) / np.where(denom > 0, denom, 1.0), 0.0)


@register_task("forecast")
class Forecast(WindowForecast):
    """Forecast a bundled real series (forecast:<name>): ``lookback`` values in, ``horizon`` out."""

    listed_variants = tuple(SERIES)

    def __init__(self, variant: str = "airpassengers", lookback: int | None = None, horizon: int | None = None):
        super().__init__()
        if variant not in SERIES:
            raise SeqbenchError(f"unknown series {variant!r}{suggest(variant, list(SERIES))}; "
                                f"choose one of: {', '.join(SERIES)}")
        load, season, lb, hz, self.source = SERIES[variant]
        self.variant, self.name = variant, f"forecast:{variant}"
        self._setup(load(), lookback or lb, horizon or hz, season)

    def config(self) -> dict:
        return {"name": self.name, "lookback": self.lookback, "horizon": self.horizon}
