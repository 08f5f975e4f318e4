"""The task contract: data (seeded, per batch), loss, metric, trivial baseline, paper numbers."""
from __future__ import annotations

import functools

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from seqbench.errors import SeqbenchError
from seqbench.models.base import SeqModel

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool

    @property
    def direction(self) -> str:
        return "max" if self.higher_is_better else "min"

    def better(self, a: float, b: float) -> bool:
        """True if value ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b


@dataclass(frozen=True)
class PaperReference:
    """Published results for a task, by model name, with where they come from."""
    values: dict[str, float] = field(default_factory=dict)
    note: str = ""


class Task:
    """A sequence task. Subclasses set the attributes and implement ``_batch`` and ``score``.

    Every model output is (B, L, d_out); ``output_steps`` says which steps a task reads
    ("last": one prediction per sequence from the last step; "all": a prediction per step).
    """

    name: str
    d_in: int
    d_out: int
    seq_len: int
    metric: Metric
    trivial_baseline: float
    trivial_note: str = ""
    chance_level: float | None = None  # classification: 1 / classes, shown beside the trivial baseline
    paper: PaperReference = PaperReference()
    output_steps: str = "all"
    source: str = ""
    listed_variants: tuple[str, ...] = ("",)  # what `seqbench tasks` lists: "" = the plain name, else name:variant
    # Trainer settings that suit this task (TrainConfig fields: optimizer, lr, batch size, clip...), overridable.
    recommended: dict[str, Any] = {}
    input_kind: str = "features"  # "features": float (B, L, d_in); "tokens": integer ids (B, L) in 0..d_in-1
    embed_dim: int = 128          # token tasks: the embedding width models get by default
    # what the outputs are, for distillation's soft targets: "softmax" logits (classes, tokens),
    # "sigmoid" logits (independent units, multi-label), or "mse" (values)
    soft_targets: str = "mse"
    # After cross-validation, whether the chosen configuration is retrained on all of train+valid
    # (``fold=all``). A forecaster is not: its validation part is the latest data before the test
    # part, and stopping on it is what keeps a trend's extrapolation in check.
    refit_after_cv: bool = True

    _recorded: dict[str, Any] = {}  # the options create_task built it with

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's ``config()`` is completed with the options ``create_task`` built the task
        with, so ``create_task(**task.config())`` rebuilds the same task even where the subclass
        lists only some of them (its own values win: they are the resolved ones)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("config")
        if own is None or getattr(own, "_completes", False):
            return

        @functools.wraps(own)
        def config(self) -> dict[str, Any]:
            return {**self._recorded, **own(self)}
        config._completes = True
        cls.config = config

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this task with ``create_task``."""
        return {**self._recorded, "name": self.name}

    def fitted(self) -> dict[str, Any]:
        """What the task fitted on its training data (class names, normalization, vocabulary...),
        saved in a run's config.json so predictions on new data use the same."""
        return {}

    def num_samples(self, split: str) -> int:
        self._check_split(split)
        return self.sizes[split]

    def num_batches(self, split: str, batch_size: int) -> int:
        return -(-self.num_samples(split) // batch_size)

    def batches(self, split: str, batch_size: int, *, shuffle_seed: int | None = None
                ) -> Iterator[tuple[torch.Tensor, Any]]:
        """Yield (x, target) batches of ``split`` in order, or shuffled anew for each ``shuffle_seed``.

        The one batching loop of every task: subclasses say which samples form each batch
        (``_batch_indices``) and how to gather them (``_gather``)."""
        self._check_split(split)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise SeqbenchError(f"batch_size must be a positive integer, got {batch_size!r}")
        for idx in self._batch_indices(split, batch_size, shuffle_seed):
            yield self._gather(split, idx)

    def _batch_indices(self, split: str, batch_size: int, shuffle_seed: int | None) -> list[np.ndarray]:
        """Sample indices per batch: all samples, permuted by ``default_rng(shuffle_seed)``, in batches."""
        n = self.num_samples(split)
        order = np.random.default_rng(shuffle_seed).permutation(n) if shuffle_seed is not None else np.arange(n)
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]

    def _gather(self, split: str, idx: np.ndarray) -> tuple[torch.Tensor, Any]:
        """The batch of samples ``idx`` of ``split``: (x, target)."""
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        """Extra ``create_model`` arguments this task's inputs need (token tasks: ``embed_dim``)."""
        return {"embed_dim": self.embed_dim} if self.input_kind == "tokens" else {}

    def predict(self, model, x: torch.Tensor) -> torch.Tensor:
        """The model's output for this task: (B, L, d_out), or (B, 1, d_out) from
        ``model.forward_last`` when the task reads the last step only (skips work where a model can)."""
        if self.output_steps == "last" and isinstance(model, SeqModel):  # any other nn.Module: its forward
            return model.forward_last(x)
        return model(x)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss (a scalar) from model output (B, L, d_out)."""
        raise NotImplementedError

    def score(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, tuple[float, int]]:
        """Per-batch sums for evaluation: {metric: (sum, count)}; the mean is sum / count."""
        raise NotImplementedError

    @torch.inference_mode()
    def evaluate(self, model: torch.nn.Module, split: str = "test", batch_size: int = 256
                 ) -> dict[str, float]:
        from seqbench.device import model_device, to_device
        was_training = model.training
        model.eval()
        device = model_device(model)
        totals: dict[str, list[float]] = {}
        for x, y in self.batches(split, batch_size):
            x, y = to_device((x, y), device)
            for k, (s, c) in self.score(self.predict(model, x).float(), y).items():
                acc = totals.setdefault(k, [0.0, 0])
                acc[0] += s
                acc[1] += c
        model.train(was_training)
        return self.finalize({k: s / max(c, 1) for k, (s, c) in totals.items()})

    def trivial_on(self, split: str) -> float:
        """The trivial baseline scored on ``split`` (model selection compares on "valid", so it never
        needs the test split). Tasks whose baseline is a fixed figure return ``trivial_baseline``."""
        self._check_split(split)
        return self.trivial_by_split.get(split, self.trivial_baseline)

    trivial_by_split: dict[str, float] = {}

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        """Metrics derived from the per-sample means (e.g. perplexity = exp(mean NLL))."""
        return means

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "train": self.sizes.get("train"), "valid": self.sizes.get("valid"),
                "test": self.sizes.get("test"), "d_in": self.d_in, "d_out": self.d_out,
                "seq_len": self.seq_len, "metric": self.metric.name,
                "direction": self.metric.direction, "baseline": self.trivial_baseline,
                "source": self.source}

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise SeqbenchError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def parse_fold(fold, where) -> tuple[int, int] | str | None:
    """A task's ``fold`` option: None (the task's own split), "all" (the refit on train+valid after
    cross-validation), or 'I/K' -> (I, K): fold I (0..K-1) of K validates. ``where`` prefixes the error."""
    if fold is None or fold == "all":
        return fold
    try:
        i, k = (int(v) for v in str(fold).split("/"))
    except ValueError:
        i, k = -1, 0
    if not (2 <= k <= 20 and 0 <= i < k):
        raise SeqbenchError(f"{where}: fold={fold!r} must be I/K, fold I (0..K-1) of K = 2..20 folds of train+valid, "
                            "e.g. 0/5, or all (train on train+valid)")
    return i, k


def cut_indices(idx: np.ndarray, labels, fractions, rng) -> tuple[np.ndarray, ...]:
    """Split ``idx`` by ``fractions`` at random; with ``labels``, stratified: the sequences, shuffled
    within each class and laid out class after class, are dealt to the splits in turn by largest
    deficit, so every split gets its share of the whole (rounding per class would give a class of
    5 sequences 4/0/1 and leave validation nearly empty) and each class is spread over the splits."""
    fr = np.asarray(fractions, dtype=float) / sum(fractions)
    if labels is None:
        order, first = rng.permutation(idx), np.zeros(len(idx), dtype=bool)
    else:
        classes = np.unique(labels[idx])
        groups = [rng.permutation(idx[labels[idx] == c]) for c in rng.permutation(classes)]
        order = np.concatenate(groups)
        first = np.zeros(len(order), dtype=bool)
        first[np.cumsum([0] + [len(g) for g in groups[:-1]])] = True  # each class's first: to train
    owner = np.empty(len(order), dtype=np.int64)
    counts = np.zeros(len(fr))
    for i in range(len(order)):
        k = 0 if first[i] else int(np.argmax(fr * (i + 1) - counts))  # the split furthest behind its share
        owner[i] = k
        counts[k] += 1
    out = [np.sort(order[owner == k]) for k in range(len(fr))]
    for k in range(1, len(out)):  # every split gets at least one sequence
        if len(out[k]) == 0 and len(out[0]) > 1:
            out[k], out[0] = out[0][-1:], out[0][:-1]
    return tuple(out)


def fold_parts(pool: np.ndarray, labels, fold: tuple[int, int] | str, rng) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) indices of ``pool`` (train+valid) for a parsed ``fold``: "all" trains and
    validates on all of it (the refit; valid in-sample); (i, k) validates on fold i of k folds
    cut by ``cut_indices`` (stratified by ``labels`` when given) and trains on the others."""
    if fold == "all":
        return (both := np.sort(pool)), both
    i, k = fold
    folds = cut_indices(pool, labels, (1.0,) * k, rng)
    return np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i])), folds[i]
