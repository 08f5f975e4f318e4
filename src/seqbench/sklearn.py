"""scikit-learn estimators over the zoo: ``SeqClassifier`` and ``SeqRegressor`` (one value per sequence).

    from seqbench.sklearn import SeqClassifier
    clf = SeqClassifier(model="tcn", params=10_000, epochs=20, random_state=0).fit(X, y)
    clf.predict(X_new), clf.predict_proba(X_new), clf.score(X_test, y_test)

``X`` is a 3-D array (n, length, channels), a 2-D array (n, length) of one channel, or a list of
(length_i, channels) arrays of different lengths (right-padded; the causal models read each
sequence at its last real step). They work in ``Pipeline``, ``cross_val_score`` and
``GridSearchCV``, clone and pickle (the weights go with the estimator), and are deterministic with
``random_state``. Training uses every sequence given to ``fit`` (the best epoch is chosen on them);
hold data out with scikit-learn's own tools. Needs scikit-learn (the ``data`` extra).
"""
from __future__ import annotations

import numpy as np
import torch

from seqbench.data.optional import require
from seqbench.tasks.arrays import ArrayTask, ClassificationTask, last_step, split_target
from seqbench.tasks.base import Metric

_sk = require("sklearn.base", why="seqbench.sklearn")


def _as_sequences(X) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(x (n, L, c) float32 right-padded, lengths or None, whether X was a 2-D table) from a 3-D
    array, a 2-D array or a list of sequences of different lengths."""
    if isinstance(X, (list, tuple)) and len(X) and all(isinstance(s, np.ndarray) and s.ndim in (1, 2) for s in X) \
            and len({s.shape[0] for s in X}) > 1:
        seqs = [np.asarray(s, dtype=np.float64).reshape(len(s), -1) for s in X]
        if len({s.shape[1] for s in seqs}) != 1:
            raise ValueError("every sequence needs the same number of channels")
        lengths = np.array([len(s) for s in seqs])
        x = np.zeros((len(seqs), lengths.max(), seqs[0].shape[1]))
        for i, s in enumerate(seqs):
            x[i, :len(s)] = s
        _check_finite(x)
        return x.astype(np.float32), lengths, False
    from sklearn.utils.validation import check_array
    x = check_array(X, allow_nd=True, dtype=np.float64, ensure_min_features=1)  # refuses NaN, sparse, empty
    table = x.ndim == 2
    if table:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"X must be (n, length), (n, length, channels) or a list of sequences, got {x.ndim}-D")
    return x.astype(np.float32), None, table


def _check_finite(x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        raise ValueError("X contains NaN or infinity; clean or impute it first")


class _ArrayClassification(ClassificationTask):
    name = "sklearn"
    source = "arrays given to fit"

    def __init__(self, x, y, lengths):
        super().__init__()
        for split in ("train", "valid", "test"):
            self._set_split(split, x, y, lengths)
        self.seq_len, self.d_in = x.shape[1], x.shape[2]
        self._finish_classes()


class _ArrayRegression(ArrayTask):
    name = "sklearn"
    source = "arrays given to fit"
    metric = Metric("mse", higher_is_better=False)
    output_steps = "last"

    def __init__(self, x, y, lengths):
        super().__init__()
        for split in ("train", "valid", "test"):
            self._set_split(split, x, y.astype(np.float32), lengths)
        self.seq_len, self.d_in, self.d_out = x.shape[1], x.shape[2], 1
        self.trivial_baseline = float(np.var(y))

    def loss(self, out, target):
        return self._err(out, target).mean()

    def score(self, out, target):
        e = self._err(out, target)
        return {"mse": (float(e.sum()), e.numel())}

    def _err(self, out, target):
        y, lengths = split_target(target)
        return (last_step(out, lengths)[:, 0] - y).square()


def fit_model(est, task, lr: float, device: str = "cpu") -> None:
    """Build the estimator's zoo model (``model``, ``params``, ``model_opts``) for ``task`` and train
    it (``epochs``, ``batch_size``, ``lr`` or the given default, ``random_state``): sets ``model_``
    and ``result_``. Every sequence given is used; the best epoch is chosen on them."""
    import warnings

    import seqbench
    from seqbench.utils import seed_everything
    seed = 0 if est.random_state is None else int(est.random_state)
    seed_everything(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small budget may miss by > 5%: the exact count is on the model
        est.model_ = seqbench.model_for_task(est.model, task, params=est.params, **(est.model_opts or {}))
    cfg = seqbench.TrainConfig(epochs=est.epochs, batch_size=min(est.batch_size, task.num_samples("train")),
                               lr=est.lr or lr, seed=seed, device=device)
    est.result_ = seqbench.train(est.model_, task, cfg, progress=False, evaluate_test=False)
    est.model_.eval()


class WeightsPickle:
    """Pickles ``model_`` as its config and weights (parametrized modules, like the TCN's weight norm,
    pickle only that way) and rebuilds it on load: for estimators that hold a fitted zoo model."""

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if state.get("model_") is not None:
            m = state.pop("model_")
            state["_model_saved"] = (m.config, {k: v.detach().cpu() for k, v in m.state_dict().items()})
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("_model_saved", None)
        self.__dict__.update(state)
        if saved is not None:
            from seqbench.models.registry import model_from_config
            self.model_ = model_from_config(saved[0])
            self.model_.load_state_dict(saved[1])
            self.model_.eval()


class _SeqEstimator(WeightsPickle, _sk.BaseEstimator):
    def __init__(self, model: str = "tcn", params: int | str | None = 10_000, epochs: int = 10,
                 lr: float | None = None, batch_size: int = 32, model_opts: dict | None = None,
                 random_state: int | None = None, device: str = "cpu"):
        self.model, self.params, self.epochs, self.lr = model, params, epochs, lr
        self.batch_size, self.model_opts, self.random_state, self.device = batch_size, model_opts, random_state, device

    def _fit(self, task) -> None:
        fit_model(self, task, lr=2e-3, device=self.device)

    def _outputs(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self, "model_")
        x, lengths, table = _as_sequences(X)
        if x.shape[2] != self.n_channels_:
            raise ValueError(f"X has {x.shape[2]} channels; the estimator was fitted on {self.n_channels_}")
        if table and getattr(self, "n_features_in_", x.shape[1]) != x.shape[1]:  # a table keeps its width
            raise ValueError(f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (steps of a table; give sequences of other "
                             "lengths as a list)")
        with torch.inference_mode():
            out = self.model_(torch.from_numpy(x))
            last = out[:, -1] if lengths is None else out[torch.arange(len(x)), torch.from_numpy(lengths - 1)]
        return last.float().numpy()

    def _prepare(self, X, y):
        from sklearn.utils.validation import check_consistent_length, column_or_1d
        x, lengths, table = _as_sequences(X)
        y = column_or_1d(y, warn=True)
        check_consistent_length(x, y)
        if isinstance(self, _sk.RegressorMixin) and not np.isfinite(np.asarray(y, dtype=np.float64)).all():
            raise ValueError("y contains NaN or infinity")
        self.n_channels_ = x.shape[2]
        if table:  # a table of n sequences x length, as scikit-learn sees it
            self.n_features_in_ = x.shape[1]
        return x, y, lengths

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags


class SeqClassifier(_sk.ClassifierMixin, _SeqEstimator):
    """A zoo model as a scikit-learn classifier (one label per sequence)."""

    def fit(self, X, y) -> "SeqClassifier":
        x, codes, lengths = self._prepare_classes(X, y)
        self._fit(_ArrayClassification(x, codes, lengths))
        return self

    def _prepare_classes(self, X, y):
        """Inputs, labels as codes 0..K-1 (``classes_`` holds the labels), lengths."""
        from sklearn.utils.multiclass import check_classification_targets
        x, y, lengths = self._prepare(X, y)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has one class ({self.classes_[0]!r}); a classifier needs at least 2")
        return x, codes.astype(np.int64), lengths

    def predict_proba(self, X) -> np.ndarray:
        logits = self._outputs(X)[:, :len(self.classes_)]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)  # first: it checks that the estimator is fitted
        return self.classes_[proba.argmax(1)]


class SeqRegressor(_sk.RegressorMixin, _SeqEstimator):
    """A zoo model as a scikit-learn regressor (one value per sequence)."""

    def fit(self, X, y) -> "SeqRegressor":
        x, y, lengths = self._prepare(X, y)
        y = y.astype(np.float64)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0  # trained on standardized targets
        self._fit(_ArrayRegression(x, (y - self.y_mean_) / self.y_std_, lengths))
        return self

    def predict(self, X) -> np.ndarray:
        return self._outputs(X)[:, 0].astype(np.float64) * self.y_std_ + self.y_mean_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # scikit-learn's checks fit a linear model of tabular features; read as steps of a sequence, a
        # small recurrent or convolutional model needs more than their budget to reach R^2 0.5
        tags.regressor_tags.poor_score = True
        return tags


class SeqRecommender(SeqClassifier):
    """``seqbench recommend`` as a scikit-learn classifier: ``fit`` searches the zoo within
    ``time_budget`` under the limits, then the estimator predicts with the winner (or, when nothing
    beat the trivial baseline, with the majority class, as recommend advises). The search splits the
    data given to ``fit`` into train/valid/test (70/15/15, stratified; cross-validated when small);
    ``recommendation_`` holds the full answer."""

    def __init__(self, time_budget: str | float = "2m", max_step_ms: float | None = None,
                 max_params: int | None = None, max_memory_mb: float | None = None, models: list[str] | None = None,
                 workers: int | None = 1, random_state: int | None = None):
        self.time_budget, self.max_step_ms, self.max_params = time_budget, max_step_ms, max_params
        self.max_memory_mb, self.models, self.workers, self.random_state = max_memory_mb, models, workers, random_state

    def fit(self, X, y) -> "SeqRecommender":
        import tempfile
        from pathlib import Path

        import seqbench
        x, codes, lengths = self._prepare_classes(X, y)
        limits = seqbench.Limits(max_step_ms=self.max_step_ms, max_params=self.max_params,
                                 max_memory_mb=self.max_memory_mb)
        with tempfile.TemporaryDirectory(prefix="seqbench-recommender-") as tmp:
            path = Path(tmp) / "data.npz"
            np.savez(path, x=x, y=codes,
                     lengths=np.full(len(x), x.shape[1]) if lengths is None else lengths)
            rec = seqbench.recommend("custom", limits, self.time_budget, models=self.models, db=Path(tmp) / "r.db",
                                     workers=self.workers, progress=False, seed=int(self.random_state or 0),
                                     task_opts={"path": str(path), "normalize": "none"})
            self.model_ = None if rec.winner is None else seqbench.load_model(rec.winner.run_dir).eval()
        self.recommendation_ = rec
        self.majority_ = int(np.bincount(codes).argmax())
        return self

    def predict_proba(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self, "recommendation_")
        if self.model_ is None:  # the trivial baseline was recommended: the majority class
            n = len(_as_sequences(X)[0])
            return np.eye(len(self.classes_))[np.full(n, self.majority_)]
        return super().predict_proba(X)


__all__ = ["SeqClassifier", "SeqRecommender", "SeqRegressor"]
