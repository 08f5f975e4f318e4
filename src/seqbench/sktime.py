"""sktime estimators over the zoo, so sktime's pipelines and benchmarking can include seqbench's models.

    from seqbench.sktime import SeqTSClassifier, SeqForecaster
    clf = SeqTSClassifier(model="gru", params=10_000, epochs=20).fit(X_train, y_train)  # sktime Panel data
    f = SeqForecaster(model="tcn", params=5_000, epochs=30).fit(y, fh=[1, 2, 3])        # a pd.Series
    f.predict()

``SeqTSClassifier`` takes sktime's Panel data (a 3-D array (n, channels, length), a nested or
multi-indexed frame, or sequences of different lengths) and trains a ``seqbench.sklearn.SeqClassifier``.
``SeqForecaster`` trains a zoo model on every window of the series: the last ``lookback`` values in,
the next values up to the horizon out, all at once; ``predict`` reads the series' last window.
Needs sktime (the ``baselines`` extra).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from seqbench.data.optional import require
from seqbench.sklearn import WeightsPickle, fit_model
from seqbench.tasks.forecast import WindowForecast

_classification = require("sktime.classification.base", extra="baselines", why="seqbench.sktime")
_forecasting = require("sktime.forecasting.base", extra="baselines", why="seqbench.sktime")


class SeqTSClassifier(_classification.BaseClassifier):
    """A zoo model as an sktime time-series classifier (one label per sequence).

    >>> from sktime.datasets import load_unit_test
    >>> from seqbench.sktime import SeqTSClassifier
    >>> X, y = load_unit_test(split="train", return_type="numpy3D")
    >>> clf = SeqTSClassifier(model="tcn", params=2_000, epochs=3, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (20, 2)
    """

    _tags = {
        "authors": "seqbench",
        "X_inner_mtype": ["df-list", "numpy3D"],  # a list of (length, channels) frames; a 3-D array as it is
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "capability:predict_proba": True,
        "capability:random_state": True,
        "python_dependencies": "torch",
    }

    def __init__(self, model: str = "tcn", params: int | str | None = 10_000, epochs: int = 10,
                 lr: float | None = None, batch_size: int = 32, model_opts: dict | None = None,
                 random_state: int | None = None):
        self.model, self.params, self.epochs, self.lr = model, params, epochs, lr
        self.batch_size, self.model_opts, self.random_state = batch_size, model_opts, random_state
        super().__init__()

    @staticmethod
    def _sequences(X):
        """sktime's inner data -> what SeqClassifier takes: (n, length, channels), or a list of (length, channels)."""
        if isinstance(X, np.ndarray):
            return X.transpose(0, 2, 1)
        return [df.to_numpy(dtype=np.float64) for df in X]

    def _fit(self, X, y):
        from seqbench.sklearn import SeqClassifier
        self.estimator_ = SeqClassifier(model=self.model, params=self.params, epochs=self.epochs, lr=self.lr,
                                        batch_size=self.batch_size, model_opts=self.model_opts,
                                        random_state=self.random_state)
        self.estimator_.fit(self._sequences(X), y)
        return self

    def _predict(self, X) -> np.ndarray:
        return self.estimator_.predict(self._sequences(X))

    def _predict_proba(self, X) -> np.ndarray:
        return self.estimator_.predict_proba(self._sequences(X))

    @classmethod
    def get_test_params(cls, parameter_set: str = "default"):
        return [{"model": "tcn", "params": 1_000, "epochs": 1, "random_state": 0},
                {"model": "gru", "params": 1_000, "epochs": 2, "random_state": 1}]


class _SeriesForecast(WindowForecast):
    """Every window of the series given to fit, in every split (the best epoch is chosen on them)."""
    name, source = "sktime", "series given to fit"

    def __init__(self, series, lookback: int, horizon: int, season: int, transform: str):
        super().__init__()
        self._setup(series, lookback, horizon, season, fractions=None, transform=transform)


class SeqForecaster(WeightsPickle, _forecasting.BaseForecaster):
    """A zoo model as an sktime forecaster of a univariate series: trained on the series' windows
    (``lookback`` values in, ``max(fh)`` values out at once), it forecasts from the last window.

    ``lookback``: input steps (default: ``max(2 * sp, 3 * horizon)``, at most half of what the series
    leaves after one horizon). ``sp``: the season length, for the default lookback. ``transform``:
    what the model learns, as in ``forecast:*`` tasks: ``none``, ``log``, ``diff`` (random walks),
    ``returns``.

    >>> from sktime.datasets import load_airline
    >>> from seqbench.sktime import SeqForecaster
    >>> f = SeqForecaster(model="tcn", params=2_000, epochs=3, sp=12, transform="log", random_state=0)
    >>> len(f.fit(load_airline(), fh=[1, 2, 3]).predict())
    3
    """

    _tags = {
        "authors": "seqbench",
        "y_inner_mtype": "pd.Series",
        "X_inner_mtype": "pd.DataFrame",
        "scitype:y": "univariate",
        "capability:exogenous": False,  # X is accepted and not used
        "capability:insample": False,
        "capability:pred_int": False,
        "capability:missing_values": False,
        "requires-fh-in-fit": True,
        "capability:random_state": True,
        "python_dependencies": "torch",
    }

    def __init__(self, model: str = "tcn", params: int | str | None = 10_000, epochs: int = 30,
                 lookback: int | None = None, sp: int = 1, transform: str = "none", lr: float | None = None,
                 batch_size: int = 32, model_opts: dict | None = None, random_state: int | None = None):
        self.model, self.params, self.epochs, self.lookback, self.sp = model, params, epochs, lookback, sp
        self.transform, self.lr, self.batch_size = transform, lr, batch_size
        self.model_opts, self.random_state = model_opts, random_state
        super().__init__()

    def _fit(self, y: pd.Series, X=None, fh=None):
        from seqbench.tasks.custom import TRANSFORMS
        steps = fh.to_relative(self.cutoff)
        if (steps.to_numpy() < 1).any():
            raise ValueError("SeqForecaster forecasts the future only: every fh step must be >= 1")
        horizon = int(steps.to_numpy().max())
        series = y.to_numpy(dtype=np.float64)
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; use one of: {', '.join(TRANSFORMS)}")
        if self.transform in ("log", "returns") and (series <= 0).any():
            raise ValueError(f"transform={self.transform!r} needs a positive series; it has values <= 0 (use 'diff')")
        room = (len(series) - horizon) // 2
        lookback = self.lookback or max(1, min(max(2 * self.sp, 3 * horizon), room))
        if len(series) < lookback + horizon + 1:
            raise ValueError(f"the series has {len(series)} values; lookback {lookback} + horizon {horizon} needs "
                             f"at least {lookback + horizon + 1}; give a smaller lookback or fh")
        task = _SeriesForecast(series, lookback, horizon, self.sp, self.transform)
        fit_model(self, task, lr=1e-3)
        self.task_ = task  # its lookback, horizon, scale and transform are what predict reads
        return self

    def _predict(self, fh, X=None) -> pd.Series:
        import torch

        from seqbench.tasks.forecast import transformed
        steps = fh.to_relative(self.cutoff).to_numpy()  # sktime holds fh to the one fitted
        task, series = self.task_, self._y.to_numpy(dtype=np.float64)  # the series so far (update() appends)
        tail = series[-(task.lookback + 1):]  # diff/returns need one value before the window
        z = (transformed(tail, task.transform)[-task.lookback:] - task.mean) / task.std
        with torch.inference_mode():
            out = self.model_(torch.from_numpy(z.astype(np.float32))[None, :, None])
            values = task.forecast(out, torch.tensor([series[-1]]))[0].numpy()
        return pd.Series(values[steps - 1], index=fh.to_absolute_index(self.cutoff), name=self._y.name)

    def _update(self, y, X=None, update_params=True):
        """New observations move the window predict reads; the weights are kept (refit with fit)."""
        return self

    @classmethod
    def get_test_params(cls, parameter_set: str = "default"):
        return [{"model": "tcn", "params": 1_000, "epochs": 2, "random_state": 0},
                {"model": "gru", "params": 1_000, "epochs": 2, "lookback": 4, "random_state": 1}]


__all__ = ["SeqForecaster", "SeqTSClassifier"]
