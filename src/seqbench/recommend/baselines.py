"""A strong non-deep baseline beside the zoo, so the answer says when one wins.

Classification: MiniRocket features (Dempster et al. 2021, sktime's implementation) and a ridge
classifier with its regularization chosen by leave-one-out CV (scikit-learn) — among the strongest
cheap time-series classifiers, and what users compare with anyway. Needs the ``baselines`` extra
(sktime with numba); without it, or for other kinds of data, there is no such row.
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
    seq_ms: float         # one sequence through features and classifier, batch 1
    note: str = ""


def available(task) -> bool:
    """Whether the baseline applies: an array classification task, and the extra installed."""
    from seqbench.tasks.arrays import ClassificationTask
    return isinstance(task, ClassificationTask) and all(
        importlib.util.find_spec(m) is not None for m in ("sktime", "numba", "sklearn"))


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


def nondeep_baseline(task) -> NonDeep | None:
    """The non-deep baseline for this task, or None where none applies (or its extra is missing)."""
    return minirocket(task) if available(task) else None


def warm() -> None:
    """Compile (and cache) numba's MiniRocket kernels once, e.g. at install time: the first fit in a
    fresh environment otherwise spends a minute compiling."""
    from sktime.transformations.panel.rocket import MiniRocketMultivariate
    x = np.random.default_rng(0).normal(size=(4, 2, 16))
    MiniRocketMultivariate(random_state=0).fit(x).transform(x)
