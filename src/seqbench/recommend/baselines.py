"""A strong non-deep baseline beside the zoo, so the answer says when one wins.

Classification: MiniRocket features (Dempster et al. 2021, sktime's implementation) and a ridge
classifier with its regularization chosen by leave-one-out CV (scikit-learn) — among the strongest
cheap time-series classifiers, and what users compare with anyway. Forecasting: statsforecast's
AutoETS and AutoTheta, refitted on each window's history (the values the networks see), the one
better on validation reported. Needs the ``baselines`` extra; without it, or for other kinds of
data, there is no such row.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

import numpy as np

MAX_TRAIN = 10_000  # sequences the baseline fits on (its features are 10K floats per sequence)


@dataclass
class NonDeep:
    name: str
    valid: float
    test: float
    fit_s: float          # fitting, features included
    seq_ms: float         # one sequence through features and classifier (one window's fit and forecast), batch 1
    note: str = ""
    how: str = "it classifies whole sequences (no streaming step)"


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def available(task) -> bool:
    """Whether a baseline applies: an array classification or a forecasting task, and the extra installed."""
    from seqbench.tasks.arrays import ClassificationTask
    from seqbench.tasks.forecast import WindowForecast
    if isinstance(task, ClassificationTask):
        return _have("sktime", "numba", "sklearn")
    return isinstance(task, WindowForecast) and hasattr(task, "origins") and _have("statsforecast")


def _panel(task, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, channels, L) float64 and labels; padded sequences are zero-padded (MiniRocket takes one length)."""
    x, y, _ = task.data[split]
    if limit is not None and len(x) > limit:
        pick = np.random.default_rng(0).choice(len(x), limit, replace=False)
        x, y = x[pick], y[pick]
    x = np.transpose(x, (0, 2, 1)).astype(np.float64)
    if x.shape[2] < 9:  # MiniRocket's kernels have length 9
        x = np.pad(x, ((0, 0), (0, 0), (0, 9 - x.shape[2])))
    return x, np.asarray(y).astype(np.int64)


def minirocket(task) -> NonDeep:
    """MiniRocket + RidgeClassifierCV, fitted on train, scored on valid and test (accuracy)."""
    import warnings

    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sktime.transformations.panel.rocket import MiniRocketMultivariate
    xtr, ytr = _panel(task, "train", MAX_TRAIN)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rocket = MiniRocketMultivariate(random_state=0).fit(xtr)
        clf = make_pipeline(StandardScaler(with_mean=False), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
        clf.fit(rocket.transform(xtr), ytr)
        fit_s = time.perf_counter() - t0

        def score(split: str) -> float:
            x, y = _panel(task, split)
            return float((clf.predict(rocket.transform(x)) == y).mean())
        valid, test = score("valid"), score("test")
        one = _panel(task, "test")[0][:1]
        t0 = time.perf_counter()
        for _ in range(5):
            clf.predict(rocket.transform(one))
        seq_ms = (time.perf_counter() - t0) / 5 * 1e3
    note = f"fitted on {len(xtr):,} of {task.num_samples('train'):,} training sequences" \
        if len(xtr) < task.num_samples("train") else ""
    return NonDeep("MiniRocket + ridge", valid, test, fit_s, seq_ms, note)


MAX_WINDOWS = 400  # forecast windows per split the statistical models refit on (evenly spaced)


def statistical(task, max_s: float = 60.0) -> NonDeep:
    """AutoETS and AutoTheta (statsforecast) refitted on each window's lookback, forecasting its
    horizon; the better on validation MAE is reported (valid and test MAE). AutoETS only for
    seasons up to 24 (its fit grows steeply with the season); windows are thinned evenly so that
    the whole takes about ``max_s`` seconds."""
    import warnings

    from statsforecast.models import AutoETS, AutoTheta
    season = task.season if task.season > 1 and task.lookback >= 2 * task.season else 1
    makers = {"AutoTheta": lambda: AutoTheta(season_length=season)}
    if season <= 24:
        makers["AutoETS"] = lambda: AutoETS(season_length=season)
    with warnings.catch_warnings():  # the cost of one fit of each, on the first training window
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        o = task.origins["train"][0]
        for make in makers.values():
            make().fit(task.series[o - task.lookback:o]).predict(h=task.horizon)
        per_window = time.perf_counter() - t0
    windows = int(min(MAX_WINDOWS, max(20, max_s / max(per_window, 1e-4) / 2)))

    def mae(make, split: str) -> tuple[float, float, int]:
        origins = task.origins[split]
        if len(origins) > windows:
            origins = origins[np.linspace(0, len(origins) - 1, windows).round().astype(int)]
        errs, t0 = [], time.perf_counter()
        for o in origins:
            hist = task.series[o - task.lookback:o]
            try:
                pred = make().fit(hist).predict(h=task.horizon)["mean"]
            except Exception:  # a degenerate window (e.g. constant): the last value, as a forecaster would
                pred = np.full(task.horizon, hist[-1])
            errs.append(np.abs(np.asarray(pred) - task.series[o:o + task.horizon]).mean())
        return float(np.mean(errs)), time.perf_counter() - t0, len(origins)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        valid = {name: mae(make, "valid") for name, make in makers.items()}
        name = min(valid, key=lambda n: valid[n][0])
        test, test_s, n_test = mae(makers[name], "test")
    fit_s = sum(v[1] for v in valid.values()) + test_s
    capped = any(len(task.origins[s]) > windows for s in ("valid", "test"))
    note = f"scored on {windows} evenly spaced windows per split" if capped else ""
    return NonDeep(name + (f" (season {season})" if season > 1 else ""), valid[name][0], test, fit_s,
                   test_s / n_test * 1e3, note, "it refits on each window's history (no streaming step)")


def nondeep_baseline(task, max_s: float = 60.0) -> NonDeep | None:
    """The non-deep baseline for this task, or None where none applies (or its extra is missing);
    a forecasting baseline takes about ``max_s`` seconds at most."""
    from seqbench.tasks.forecast import WindowForecast
    if not available(task):
        return None
    return statistical(task, max_s) if isinstance(task, WindowForecast) else minirocket(task)


def warm() -> None:
    """Compile (and cache) numba's MiniRocket kernels once, e.g. at install time: the first fit in a
    fresh environment otherwise spends a minute compiling."""
    from sktime.transformations.panel.rocket import MiniRocketMultivariate
    x = np.random.default_rng(0).normal(size=(4, 2, 16))
    MiniRocketMultivariate(random_state=0).fit(x).transform(x)
