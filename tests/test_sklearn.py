"""The scikit-learn estimators pass scikit-learn's own estimator checks, and work where users put
them: Pipeline, cross_val_score, GridSearchCV, clone, pickle, variable-length lists.

Checks that do not apply: none are skipped. One is relaxed by a tag: the regressor's
``poor_score`` (scikit-learn fits its checks' linear, tabular problem; read as the steps of a
sequence, a small sequence model needs more epochs than the checks give it to reach R^2 0.5)."""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the data extra is not installed (make installs it)")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from seqbench.sklearn import SeqClassifier, SeqRegressor  # noqa: E402

TINY = dict(model="gru", params=None, model_opts={"hidden": 8}, epochs=3, lr=1e-2, random_state=0)


@parametrize_with_checks([SeqClassifier(**TINY), SeqRegressor(**TINY)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _signs(n=80, L=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["up", "down"])[np.arange(n) % 2]
    x = rng.normal(size=(n, L, 2)) + np.where(y == "up", 1.0, -1.0)[:, None, None]
    return x, y


def test_pipelines_search_clone_pickle_and_ragged_input():
    x, y = _signs()
    clf = SeqClassifier(model="gru", params=None, model_opts={"hidden": 8}, epochs=10, lr=1e-2, random_state=0)
    assert cross_val_score(clf, x, y, cv=3).mean() > 0.9
    pipe = make_pipeline(FunctionTransformer(lambda a: a * 2.0), clf).fit(x, y)
    assert set(pipe.predict(x)) <= {"up", "down"}
    grid = GridSearchCV(SeqClassifier(model="gru", params=None, model_opts={"hidden": 8}, random_state=0),
                        {"epochs": [1, 5]}, cv=2).fit(x, y)
    assert grid.best_params_["epochs"] in (1, 5)
    fitted = clf.fit(x, y)
    again = pickle.loads(pickle.dumps(fitted))  # the weights travel with the estimator
    np.testing.assert_allclose(again.predict_proba(x), fitted.predict_proba(x))
    same = clone(clf).fit(x, y)  # deterministic with random_state
    np.testing.assert_allclose(same.predict_proba(x), fitted.predict_proba(x), atol=1e-6)
    ragged = [s[: 6 + i % 6] for i, s in enumerate(x)]  # a list of sequences of different lengths
    assert SeqClassifier(model="gru", params=None, model_opts={"hidden": 8}, epochs=5, lr=1e-2,
                         random_state=0).fit(ragged, y).score(ragged, y) > 0.9


def test_a_regressor_predicts_one_value_per_sequence():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 10))
    y = 3 * x[:, -1] + 1  # the last step, scaled and shifted
    reg = SeqRegressor(model="gru", params=None, model_opts={"hidden": 16}, epochs=40, lr=1e-2, random_state=0)
    assert reg.fit(x, y).score(x, y) > 0.9 and reg.predict(x).shape == (120,)


def test_a_weight_normed_model_pickles_with_its_weights():
    """The TCN's weight norm is a parametrization, which torch pickles only through state_dict."""
    x, y = _signs(n=24)
    clf = SeqClassifier(model="tcn", params="2k", epochs=1, random_state=0).fit(x, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(x), clf.predict_proba(x))


def test_seq_recommender_fits_by_recommend_then_predicts_as_its_winner():
    pytest.importorskip("optuna", reason="the search extra is not installed (make installs it)")
    from seqbench.sklearn import SeqRecommender
    x, y = _signs(n=120)
    est = SeqRecommender(time_budget=12, max_params=2_000, models=["gru"], random_state=0)
    assert clone(est).get_params() == est.get_params()
    est.fit(x[:100], y[:100])
    rec = est.recommendation_
    assert rec.winner is not None and rec.winner.model == "gru" and est.model_ is not None
    assert est.score(x[100:], y[100:]) > 0.8
    again = pickle.loads(pickle.dumps(est))
    assert (again.predict_proba(x[100:]) == est.predict_proba(x[100:])).all()
    assert set(est.predict(x[100:])) <= {"up", "down"}
