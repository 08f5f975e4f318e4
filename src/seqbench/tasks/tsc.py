"""Time-series classification on the UCR/UEA archive sets bundled with sktime (``tsc:<Name>``).

The archive's own train/test split is kept; 20% of train (fixed shuffle, seed 0) is held out as
validation, or, with ``fold=I/K``, fold I of K stratified folds of train (cross-validation). Each
series is z-normalized per channel over its real steps. Variable-length sets (JapaneseVowels,
PLAID) are right-padded and read at each series' last real step, so padding never changes a
prediction of a causal model.
"""
from __future__ import annotations

import numpy as np

from seqbench.data import cached_arrays, require
from seqbench.errors import SeqbenchError
from seqbench.tasks.arrays import ClassificationTask
from seqbench.tasks.base import fold_parts, parse_fold
from seqbench.tasks.registry import register_task
from seqbench.utils import suggest

PREPROCESSING_VERSION = 1  # of _build: bump when it changes (the cache rebuilds these sets)
BUNDLED = ("ACSF1", "ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels", "OSULeaf",
           "PLAID")


def _read_split(name: str, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    datasets = require("sktime.datasets", why=f"tsc:{name}")
    X, y = datasets.load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type="nested_univ")
    series = [np.stack([np.asarray(X.iloc[i, c], dtype=np.float64) for c in range(X.shape[1])], axis=-1)
              for i in range(len(X))]  # each (L_i, channels)
    return series, np.asarray(y).astype(str)


def znorm(s: np.ndarray) -> np.ndarray:
    """Per-channel z-normalization of one (L, C) series; constant channels become 0."""
    std = s.std(axis=0)
    return (s - s.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)


def pad(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    out = np.zeros((len(series), int(lengths.max()), series[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(series):
        out[i, :len(s)] = s
    return out, lengths


def _build(name: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    raw = {split: _read_split(name, split) for split in ("train", "test")}
    classes = np.array(sorted(set(raw["train"][1]) | set(raw["test"][1])))
    for split, (series, labels) in raw.items():
        x, lengths = pad([znorm(s) for s in series])
        arrays[f"x_{split}"], arrays[f"len_{split}"] = x, lengths
        arrays[f"y_{split}"] = np.searchsorted(classes, labels).astype(np.int64)
    arrays["classes"] = classes
    return arrays


@register_task("tsc")
class TimeSeriesClassification(ClassificationTask):
    """UCR/UEA time-series classification (tsc:<Name>): the label from the last real step."""

    name = "tsc"
    source = "UCR/UEA archive, as bundled in sktime"
    listed_variants = BUNDLED
    recommended = {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "epochs": 30}

    def __init__(self, variant: str = "GunPoint", valid_fraction: float = 0.2, fold: str | None = None):
        """``fold``: cross-validation on the archive's training part (the test part kept): 'I/K'
        validates on fold I of K stratified folds (each class dealt evenly over them); "all"
        trains on all of it (the refit after cross-validation; valid is then in-sample)."""
        super().__init__()
        if variant not in BUNDLED:
            raise SeqbenchError(f"unknown UCR/UEA set {variant!r}{suggest(variant, list(BUNDLED))}; "
                                f"bundled offline: {', '.join(BUNDLED)}")
        if not 0 < valid_fraction < 1:
            raise SeqbenchError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
        self.variant, self.valid_fraction = variant, valid_fraction
        self.name = f"tsc:{variant}"
        self.fold, folds = fold, parse_fold(fold, self.name)
        a = cached_arrays(f"tsc-{variant}", lambda: _build(variant), PREPROCESSING_VERSION)
        self.classes = [str(c) for c in a["classes"]]
        order = np.random.default_rng(0).permutation(len(a["x_train"]))
        if folds is not None:
            tr, va = fold_parts(np.arange(len(order)), a["y_train"], folds, np.random.default_rng(1))
        else:
            n_valid = max(1, int(round(valid_fraction * len(order))))
            va, tr = order[:n_valid], order[n_valid:]
        for split, idx in (("train", tr), ("valid", va)):
            self._set_split(split, a["x_train"][idx], a["y_train"][idx], a["len_train"][idx])
        self._set_split("test", a["x_test"], a["y_test"], a["len_test"])
        self.d_in = a["x_train"].shape[2]
        self.seq_len = a["x_train"].shape[1]
        self._finish_classes()
        self.num_classes = self.d_out = len(self.classes)
        self.chance_level = 1.0 / self.num_classes

    def config(self) -> dict:
        return {"name": self.name, "valid_fraction": self.valid_fraction,
                **({"fold": self.fold} if self.fold is not None else {})}
