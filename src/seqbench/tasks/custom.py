"""The user's own data (``custom``): a CSV, Parquet or NPZ file, validated with errors that name the
problem. File layouts (README, "Your own data"):

* **NPZ** -- ``x``: (N, L) or (N, L, d) numbers; ``y``: (N,) one label or value per sequence, or
  (N, L) a target per step; optional ``lengths`` (N,) when sequences are right-padded. Or a single
  ``series`` (T,) to forecast.
* **CSV / Parquet** -- long format, one row per step: a sequence id column (``series``), an
  optional order column (``step``), numeric feature columns, and either ``label`` (one per
  sequence, constant within it) or ``target`` (one per step). To forecast: one numeric column
  (or the column named by ``value``), one row per time step.

``kind`` is inferred (integer labels: classification; float labels: regression; per-step target:
per_step; a lone series: forecast) or given. Sequences are split 70/15/15 at random (``seed``);
forecast series chronologically.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from seqbench.data.files import _fail, _integral, load_file
from seqbench.errors import SeqbenchError
from seqbench.tasks.arrays import ArrayTask, ClassificationTask, last_step, split_target, step_mask
from seqbench.tasks.base import Metric, Task, cut_indices, fold_parts, parse_fold
from seqbench.tasks.forecast import WindowForecast
from seqbench.tasks.language import TokenStream
from seqbench.tasks.registry import register_task

KINDS = ("auto", "classification", "regression", "per_step", "forecast", "lm")


# Options that only some kinds of data take; giving one the data does not use is an error.
ONLY_FOR = {"value": {"forecast"}, "lookback": {"forecast"}, "horizon": {"forecast"}, "season": {"forecast"},
            "transform": {"forecast"}, "label": {"classification", "regression"},
            "target": {"per_step"}, "features": {"classification", "regression", "per_step"},
            "normalize": {"classification", "regression", "per_step"}, "test_path": {"classification", "regression",
                                                                                   "per_step"},
            "level": {"lm"}, "seq_len": {"lm"}, "valid_len": {"lm"}, "id": {"classification", "regression", "per_step"},
            "step": {"classification", "regression", "per_step", "forecast"},
            "fold": {"classification", "regression", "per_step", "forecast"}}
DEFAULTS = {"id": "series", "step": "step", "label": "label", "target": "target", "normalize": "none",
            "transform": "none", "horizon": 1, "season": 1, "level": "char", "seq_len": 128, "valid_len": 64}
NORMALIZE = ("none", "series", "feature")
TRANSFORMS = ("none", "diff", "log", "returns")


def parse_split(split, path) -> tuple[float, float, float] | None:
    """'0.7,0.15,0.15' or (0.7, 0.15, 0.15) (the CLI reads KEY=0.7,0.15,0.15 as a tuple)."""
    if split is None:
        return None
    try:
        parts = tuple(float(v) for v in (str(split).split(",") if isinstance(split, str) else split))
    except (TypeError, ValueError):
        parts = ()
    if len(parts) != 3 or not all(np.isfinite(parts)) or min(parts) < 0 or parts[0] <= 0 or abs(sum(parts) - 1) > 1e-6:
        raise _fail(path, f"split={split!r} must be three fractions train,valid,test summing to 1, e.g. 0.7,0.15,0.15")
    return parts  # type: ignore[return-value]


@register_task("custom", listed_variants=())  # needs a file: described in `seqbench tasks`' footer
def custom_task(path: str = "", kind: str = "auto", id: str | None = None, step: str | None = None,
                label: str | None = None, target: str | None = None, value: str | None = None,
                features: str | None = None, lookback: int | None = None, horizon: int | None = None,
                season: int | None = None, seed: int = 0, split: str | tuple[float, ...] | list[float] | None = None,
                fold: str | None = None,
                test_path: str | None = None,
                normalize: str | None = None, transform: str | None = None, level: str | None = None,
                seq_len: int | None = None, valid_len: int | None = None) -> Task:
    """Your own file: CSV/Parquet/NPZ sequences (classification, regression, per-step targets), a
    series to forecast, or text / token ids to model (see README, "Your own data")."""
    given = {k: v for k, v in dict(id=id, step=step, label=label, target=target, value=value, features=features,
                                   fold=fold,
                                   lookback=lookback, horizon=horizon, season=season, split=split, test_path=test_path,
                                   normalize=normalize, transform=transform, level=level, seq_len=seq_len,
                                   valid_len=valid_len).items() if v is not None}
    opt = {**DEFAULTS, **given}
    if not path:
        raise SeqbenchError("the custom task needs a file: create_task('custom', path='data.csv') "
                            "or --task-opt path=data.csv")
    if kind not in KINDS:
        raise SeqbenchError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    for key, allowed in (("normalize", NORMALIZE), ("transform", TRANSFORMS), ("level", ("char", "word"))):
        if opt[key] not in allowed:
            raise SeqbenchError(f"{key}={opt[key]!r} is not one of {', '.join(allowed)}")
    p = Path(os.path.expanduser(str(path)))
    feature_list = [f.strip() for f in features.split(",") if f.strip()] if features else None
    if feature_list:
        taken = sorted({opt["id"], opt["step"], opt["label"], opt["target"]} & set(feature_list))
        if taken:
            raise SeqbenchError(f"features={features!r} names the {', '.join(map(repr, taken))} column: the id, step, "
                                "label and target columns cannot be inputs (the label would leak into them)")
    data = load_file(p, id_col=opt["id"], time_col=opt["step"], label_col=opt["label"], target_col=opt["target"],
                     value_col=value, features=feature_list)
    fractions = parse_split(split, p)
    if "text" in data or "tokens" in data:
        found = "lm"
    elif "series" in data:
        found = "forecast"
    elif data["per_step"]:
        found = "per_step"
        if kind == "auto" and _integral(np.concatenate(data["y"])) and _integral(np.concatenate(data["x"])):
            raise _fail(p, "per-step targets and inputs are all integers: are they token ids? Pass kind=lm with "
                           "a 1-D 'tokens' array for language modelling, or kind=per_step to regress them as numbers")
    else:
        found = "classification" if (data["y"].dtype.kind in "USO" or _integral(data["y"])) else "regression"
    if kind not in ("auto", found) and not (found in ("classification", "regression") and
                                            kind in ("classification", "regression")):
        raise _fail(p, f"holds {_DESCRIBE[found]}, not data for kind={kind}")
    kind = found if kind == "auto" else kind
    unused = sorted(k for k in given if k in ONLY_FOR and kind not in ONLY_FOR[k])
    if unused:
        raise SeqbenchError(f"option(s) {', '.join(unused)} do not apply to {p.name} (read as kind={kind}); "
                            f"remove them (options for {kind}: {', '.join(_options_for(kind))})")
    resolved = {"lm": ("level", "seq_len", "valid_len"), "forecast": ("horizon", "season", "transform")}.get(
        kind, ("normalize",))  # the defaults that shape this kind of task, printed and saved with the run
    opts = {"path": str(path), "kind": kind, "seed": seed, **{k: opt[k] for k in resolved}, **given}
    if kind == "lm":
        return CustomText(data, p, opt["level"], opt["seq_len"], opt["valid_len"], fractions, opts)
    if kind == "forecast":
        return CustomForecast(data["series"], p, lookback, opt["horizon"], opt["season"], opt["transform"],
                              fractions, opts)
    if test_path is not None:  # a second file holds the test sequences
        tp = Path(os.path.expanduser(str(test_path)))
        test = load_file(tp, id_col=opt["id"], time_col=opt["step"], label_col=opt["label"],
                         target_col=opt["target"], value_col=value, features=data["features"])
        if "x" not in test or test["per_step"] != data["per_step"]:
            raise _fail(tp, f"must hold the same kind of sequences as {p.name} (kind={kind})")
        extra = [c for c in test["columns"] if c not in data["features"]] if not feature_list else []
        if extra:  # features are matched by name: a column the training file lacks is a mismatch
            raise _fail(tp, f"has a column {extra[0]!r} that {p.name} lacks (features: {', '.join(data['features'])}); "
                            "the test file needs the training file's feature columns, matched by name")
        data = _join_test(data, test)
    cls = CustomClassification if kind == "classification" else CustomRegression
    return cls(data, p, kind, seed, fractions, opt["normalize"], opts)


_DESCRIBE = {"lm": "text or token ids (kind=lm)", "forecast": "one series (to forecast)",
             "per_step": "a target per step (kind=per_step)", "classification": "one label per sequence",
             "regression": "one value per sequence"}


def _options_for(kind: str) -> list[str]:
    return ["seed", "split"] + sorted(k for k, kinds in ONLY_FOR.items() if kind in kinds)


def _join_test(data: dict, test: dict) -> dict:
    """Sequences of the main file (train/valid) and of the test file, with their split marked."""
    if data.get("split") is not None and (data["split"] == "test").any():
        raise SeqbenchError("give the test sequences either in a split column or as test_path, not both")
    main_split = data["split"] if data.get("split") is not None else np.array(["trainval"] * len(data["x"]))
    y = (np.concatenate([data["y"], test["y"]]) if not data["per_step"] else list(data["y"]) + list(test["y"]))
    return {"x": list(data["x"]) + list(test["x"]), "y": y, "per_step": data["per_step"],
            "split": np.concatenate([main_split, np.array(["test"] * len(test["x"]))])}


class CustomForecast(WindowForecast):
    name = "custom"
    kind = "forecast"
    source = "user file"

    def __init__(self, series: np.ndarray, path: Path, lookback: int | None, horizon: int, season: int,
                 transform: str, fractions, opts: dict):
        super().__init__()
        if len(series) < 10:
            raise _fail(path, f"the series has {len(series)} values; forecasting needs at least 10")
        if transform in ("log", "returns") and (series <= 0).any():
            raise _fail(path, f"transform={transform} needs a positive series; it has values <= 0 (use diff)")
        self.opts = opts
        fold = opts.get("fold")
        self._setup(series, lookback or max(2 * season, min(24, len(series) // 5)), horizon, season,
                    fractions=fractions[:2] if fractions else (0.7, 0.15), transform=transform,
                    fold=parse_fold(fold, path))

    def config(self) -> dict:
        return {"name": "custom", **self.opts, "lookback": self.lookback}

    def fitted(self) -> dict:
        return {"scale": {"mean": self.mean, "std": self.std}, "transform": self.transform,
                "lookback": self.lookback, "horizon": self.horizon, "season": self.season}


def _padded_splits(task: ArrayTask, data: dict, path: Path, seed: int, y_dtype, fractions, stratify,
                   how: str) -> dict:
    """Split the sequences (by the file's split column or test file, else at random (``seed``) by
    ``fractions``, default 70/15/15, per class when ``stratify``), normalize them with statistics
    fitted on the training part, pad them to one length. Returns the fitted normalization."""
    xs, y = data["x"], data["y"]
    dims = {s.shape[1] for s in xs}
    if len(dims) != 1:
        raise _fail(path, f"sequences have different feature counts {sorted(dims)}")
    if len(xs) < 3:
        raise _fail(path, f"has {len(xs)} sequence(s); at least 3 are needed for train/valid/test splits")
    parts = _split_indices(len(xs), data.get("split"), y if stratify else None, fractions or (0.7, 0.15, 0.15), seed,
                           path)
    fold = parse_fold(task.opts.get("fold"), path)
    if fold is not None:  # cross-validation (or its refit): train+valid re-cut, test kept
        parts["train"], parts["valid"] = fold_parts(np.concatenate([parts["train"], parts["valid"]]),
                                                    y if stratify else None, fold, np.random.default_rng(seed + 1))
    fitted = fit_normalization([xs[i] for i in parts["train"]], how)
    xs = normalize(xs, fitted)
    lengths = np.array([len(s) for s in xs])
    L = int(lengths.max())
    x = np.zeros((len(xs), L, dims.pop()), dtype=np.float32)
    for i, s in enumerate(xs):
        x[i, :len(s)] = s
    if data["per_step"]:
        yy = np.zeros((len(xs), L), dtype=np.float32)
        for i, s in enumerate(y):
            yy[i, :len(s)] = s
        y = yy
    y = y.astype(y_dtype)
    ids = data.get("ids") or list(range(len(xs)))
    task.split_ids = {k: [ids[i] for i in v] for k, v in parts.items()}  # which sequence went where
    for split, idx in parts.items():
        task._set_split(split, x[idx], y[idx], lengths[idx])
    task.d_in, task.seq_len = x.shape[2], L
    return fitted


def fit_normalization(train: list[np.ndarray], how: str) -> dict:
    """What ``normalize`` needs, fitted on the training sequences only: 'feature' keeps each
    feature's mean and std over all training steps; 'series' and 'none' need nothing."""
    if how != "feature":
        return {"how": how}
    steps = np.concatenate(train)
    std = steps.std(axis=0)
    return {"how": how, "mean": steps.mean(axis=0).tolist(), "std": np.where(std > 1e-8, std, 1.0).tolist()}


def normalize(xs: list[np.ndarray], fitted: dict) -> list[np.ndarray]:
    """Sequences (L_i, d) normalized as fitted: per feature with the training statistics, or each
    sequence's channels over its own steps ('series', as the UCR tasks do). Training and
    ``seqbench predict`` both call this."""
    how = fitted.get("how", "none")
    if how == "series":
        from seqbench.tasks.tsc import znorm
        return [znorm(x) for x in xs]
    if how == "feature":
        mean, std = np.asarray(fitted["mean"]), np.asarray(fitted["std"])
        return [(x - mean) / std for x in xs]
    return xs


def _split_indices(n: int, marks, labels, fractions, seed: int, path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fixed = {}
    if marks is not None:
        fixed = {s: np.flatnonzero(marks == s) for s in ("train", "valid", "test")}
        free = np.flatnonzero(marks == "trainval")  # from a test file: train/valid still to split
        if len(free):
            fixed["train"], fixed["valid"] = cut_indices(free, labels, (fractions[0], fractions[1]), rng)
        for s, idx in fixed.items():
            if len(idx) == 0:
                raise _fail(path, f"the split column gives no {s} sequences; every split needs at least one")
        return fixed
    return dict(zip(("train", "valid", "test"), cut_indices(np.arange(n), labels, fractions, rng)))


class CustomClassification(ClassificationTask):
    """Sequences with one class label each (integers 0..K-1 or names), read at the last real step."""

    name = "custom"
    kind = "classification"
    source = "user file"
    recommended = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 20}

    def __init__(self, data: dict, path: Path, kind: str, seed: int, fractions, normalize: str, opts: dict):
        super().__init__()
        self.opts, y = opts, data["y"]
        if y.dtype.kind in "USO":  # class names: sorted, encoded 0..K-1; the names are kept for predictions
            self.classes = [str(c) for c in np.unique(y.astype(str))]
            y = np.searchsorted(np.array(self.classes), y.astype(str))
        else:
            if not _integral(y) or (y < 0).any():
                raise _fail(path, "classification labels must be integers >= 0 (class ids) or names")
            if y.max() >= max(10 * np.unique(y).size, 1000):
                raise _fail(path, f"labels run up to {int(y.max()):,} for {np.unique(y).size} distinct classes; "
                                  "class ids are 0..K-1: renumber them (or pass kind=regression for numeric targets)")
            self.classes = [str(c) for c in range(int(y.max()) + 1)]
        if np.unique(y).size < 2:
            raise _fail(path, f"the label column has only one class ({self.classes[int(y[0])]!r}); classification "
                              "needs >= 2 (or pass kind=regression)")
        self.features = data.get("features")
        self.normalization = _padded_splits(self, {**data, "y": y}, path, seed, np.int64, fractions, stratify=True,
                                            how=normalize)
        self._finish_classes()
        self.num_classes = self.d_out = max(self.num_classes, len(self.classes))
        unseen = sorted(set().union(*(np.unique(self.data[s][1]) for s in ("valid", "test"))) -
                        set(np.unique(self.data["train"][1])))
        n_valid = len(self.data["valid"][1])
        if n_valid < len(self.classes):
            import warnings
            warnings.warn(f"{path.name}: validation holds {n_valid} sequence(s) for {len(self.classes)} classes, so "
                          "choosing a model on it is mostly noise; give more sequences per class or a larger "
                          "valid share (split=0.6,0.2,0.2)")
        if unseen:
            import warnings
            warnings.warn(f"{path.name}: class(es) {', '.join(repr(self.classes[int(c)]) for c in unseen[:5])} occur in "
                          "valid/test but never in training; the model cannot learn to predict them")
        self.chance_level = 1.0 / self.num_classes

    def config(self) -> dict:
        return {"name": "custom", **self.opts}

    def fitted(self) -> dict:
        return {"classes": self.classes, "normalize": self.normalization, "features": self.features}


class CustomRegression(ArrayTask):
    """Sequences with one value each (read at the last real step) or a target per step; MSE."""

    name = "custom"
    source = "user file"
    metric = Metric("mse", higher_is_better=False)
    recommended = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 20}

    def __init__(self, data: dict, path: Path, kind: str, seed: int, fractions, normalize: str, opts: dict):
        super().__init__()
        self.kind, self.opts, per_step = kind, opts, data["per_step"]
        if data["y"].dtype.kind in "USO" if not per_step else False:
            raise _fail(path, "kind=regression needs numeric labels; these are names (use kind=classification)")
        self.features = data.get("features")
        self.normalization = _padded_splits(self, data, path, seed, np.float32, fractions, stratify=False,
                                            how=normalize)
        self.d_out = 1
        self.output_steps = "all" if per_step else "last"
        mean = self.real_targets("train").mean()
        self.trivial_by_split = {s: float(((self.real_targets(s) - mean) ** 2).mean()) for s in self.data}
        self.trivial_baseline = self.trivial_by_split["test"]
        self.trivial_note = "predict the training mean" + (" at every step" if per_step else "")

    def config(self) -> dict:
        return {"name": "custom", **self.opts}

    def fitted(self) -> dict:
        return {"normalize": self.normalization, "features": self.features}

    def loss(self, out: torch.Tensor, target) -> torch.Tensor:
        return self._sq_err(out, target).mean()

    def score(self, out: torch.Tensor, target) -> dict[str, tuple[float, int]]:
        e = self._sq_err(out, target)
        return {"mse": (float(e.sum()), e.numel())}

    def _sq_err(self, out: torch.Tensor, target) -> torch.Tensor:
        y, lengths = split_target(target)
        if self.kind == "regression":
            return (last_step(out, lengths)[:, 0] - y).square()
        err = (out[..., 0] - y).square()
        mask = step_mask(lengths, y.shape[1])
        return err.flatten() if mask is None else err[mask]


class CustomText(TokenStream):
    """Language modelling on your text (characters, or words with level=word) or token ids (NPZ
    'tokens'): a contiguous 90/5/5 split (or split=), vocabulary from the training part (unseen
    tokens map to <unk>), windows of seq_len with the last valid_len scored, like ptb_char."""

    name = "custom"
    kind = "lm"
    source = "user file"
    recommended = {"optimizer": "adam", "lr": 2e-3, "batch_size": 32, "epochs": 10, "clip": 0.5}

    def __init__(self, data: dict, path: Path, level: str, seq_len: int, valid_len: int, fractions, opts: dict):
        super().__init__()
        self.opts, self.level = opts, level
        self.metric = Metric("bpc" if level == "char" and "text" in data else "ppl", higher_is_better=False)
        fr = fractions or (0.9, 0.05, 0.05)
        if "text" in data:
            from seqbench.tasks.language import _tokens
            toks = _tokens(data["text"], level)
            a, b = int(len(toks) * fr[0]), int(len(toks) * (fr[0] + fr[1]))
            parts = {"train": toks[:a], "valid": toks[a:b], "test": toks[b:]}
            vocab = sorted(set(parts["train"]) | {"<unk>"})
            index = {w: i for i, w in enumerate(vocab)}
            arrays = {k: np.array([index.get(t, index["<unk>"]) for t in v], dtype=np.int64) for k, v in parts.items()}
        else:
            ids = data["tokens"]
            distinct = np.unique(ids).size
            if ids.max() >= max(10 * distinct, 1 << 16):  # the vocabulary is 0..max id: one embedding row each
                raise _fail(path, f"token ids run up to {int(ids.max()):,} for {distinct:,} distinct tokens; the "
                                  "vocabulary is 0..max id, so renumber the ids 0..V-1 first")
            a, b = int(len(ids) * fr[0]), int(len(ids) * (fr[0] + fr[1]))
            arrays = {"train": ids[:a], "valid": ids[a:b], "test": ids[b:]}
            vocab = [str(i) for i in range(int(ids.max()) + 1)]
        if len(vocab) < 2:
            raise _fail(path, "has fewer than 2 distinct tokens in its training part; nothing to model")
        try:
            self._setup({"vocab": np.array(vocab), **arrays}, seq_len, valid_len, None)
        except SeqbenchError as e:
            raise _fail(path, str(e)) from None
        self.embed_dim = 64 if level == "char" else 128

    def config(self) -> dict:
        return {"name": "custom", **self.opts}

    def fitted(self) -> dict:
        return {"vocab": self.vocab}
