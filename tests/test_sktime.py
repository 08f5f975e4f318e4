"""sktime adapters: sktime's own estimator checks, and the forecaster inside sktime's evaluation."""
import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sktime", reason="the baselines extra is not installed (make installs it)")

from seqbench.sktime import SeqForecaster, SeqTSClassifier  # noqa: E402

# sktime runs each forecaster check over many horizons and index types: 690 fits, ~11 minutes here
# (all pass: SEQBENCH_SKTIME_ALL=1 runs them). By default each check runs, on fewer scenarios: the
# families below, one check per horizon x index type, are left to that full run.
MANY_SCENARIOS = ["test_predict_time_index", "test_predict_time_index_with_X", "test_predict_interval",
                  "test_update_predict_predicted_index", "test_predict_time_index_in_sample_full",
                  "test_predict_quantiles"]
ALL = os.environ.get("SEQBENCH_SKTIME_ALL") == "1"


def _check(estimator, **kwargs):
    from sktime.utils.estimator_checks import check_estimator
    results = check_estimator(estimator, raise_exceptions=False, **kwargs)
    failed = {k: str(v)[:500] for k, v in results.items() if v != "PASSED"}
    assert results and not failed, failed
    return results


def test_the_classifier_passes_sktimes_estimator_checks():
    """Every check sktime has for classifiers: equal and unequal lengths, multivariate, pickling,
    idempotent fits, probabilities."""
    _check(SeqTSClassifier)


def test_the_forecaster_passes_sktimes_contract_checks():
    results = _check(SeqForecaster, tests_to_exclude=None if ALL else MANY_SCENARIOS)
    assert len({k.split("[")[0] for k in results}) > 60  # the contract's checks ran, not a handful


def test_the_forecaster_beats_the_mean_in_sktimes_evaluate():
    """On a trending seasonal series, sktime's own backtest scores the zoo forecaster below the
    forecast of the mean, and moving the cutoff moves the forecast (update reads the new window)."""
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.forecasting.naive import NaiveForecaster
    from sktime.split import ExpandingWindowSplitter
    t = np.arange(120)
    y = pd.Series(10 + 0.05 * t + np.sin(2 * np.pi * t / 12), index=pd.period_range("2000-01", periods=120, freq="M"))
    cv = ExpandingWindowSplitter(initial_window=96, step_length=12, fh=list(range(1, 7)))
    ours = evaluate(SeqForecaster(model="tcn", params=3_000, epochs=40, sp=12, random_state=0), cv, y)
    mean = evaluate(NaiveForecaster(strategy="mean"), cv, y)
    err = ours.filter(like="test_").iloc[:, 0].mean()
    assert err < 0.5 * mean.filter(like="test_").iloc[:, 0].mean()

    f = SeqForecaster(model="gru", params=2_000, epochs=2, random_state=0).fit(y[:100], fh=[1, 2])
    before = f.predict()
    after = f.update(y[100:110], update_params=False).predict()
    assert list(after.index) == list(y.index[110:112]) and not np.allclose(before.values, after.values)


def test_a_bad_transform_or_a_short_series_is_one_clear_error():
    y = pd.Series(np.linspace(-1.0, 1.0, 40))
    for kwargs, fh, match in [({"transform": "sqrt"}, [1], "unknown transform 'sqrt'"),
                              ({"transform": "log"}, [1], "needs a positive series"),
                              ({"lookback": 30}, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "lookback 30 \\+ horizon 10 needs")]:
        with pytest.raises(ValueError, match=match):
            SeqForecaster(model="tcn", params=1_000, epochs=1, **kwargs).fit(y, fh=fh)


def test_without_sktime_the_import_names_the_extra():
    import subprocess
    import sys
    code = "import sys; sys.modules['sktime'] = None\ntry:\n    import seqbench.sktime\nexcept Exception as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "pip install 'seqbench[baselines]'" in out and "seqbench.sktime" in out
