"""The portfolio: what seqbench's own benchmark corpus teaches about data like the user's, before
anything trains (issue 25).

``portfolio.json`` (built by ``benchmarks/build_portfolio.py``) holds, for every offline data set
of the corpus, its measured properties (``properties.py``) and each configuration's score there:
the share of the gap between the trivial baseline and the best configuration on that set that it
closes (validation; 1 is the set's best). For a new task, the sets nearest in those properties
vote: configurations are ordered greedily so that each adds the most to the best score so far on
the neighbours, weighted by closeness (the portfolio idea of AutoGluon's zero-shot and TabRepo).
The first is the instant answer; recommend trains them first.

A configuration is a model, one of the shapes it asks a search to try (``search_shapes``, by
index) and a size, at the task's learning rate: ``tcn#0@20K``."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqbench.errors import SeqbenchError
from seqbench.recommend.candidates import Candidate, embedding_params
from seqbench.recommend.properties import KINDS

PORTFOLIO = Path(__file__).with_name("portfolio.json")
SIZES = (5_000, 20_000)
DEFAULT_SIZE = 100_000     # the default first try's size (the top of recommend's default size grid)
NEIGHBOURS = 5
PORTFOLIO_FIRST = 5        # the portfolio's configurations recommend trains right after the default


def config_id(model: str, shape: int, size: int) -> str:
    return f"{model}#{shape}@{size // 1000}K"


def default_config() -> str | None:
    """The default first try as a configuration: the model the registry marks as the default
    choice, at its first search shape and ``DEFAULT_SIZE``."""
    from seqbench.models.registry import get_model_entry, list_models
    name = next((n for n in list_models() if get_model_entry(n).cls.default_choice), None)
    return None if name is None else config_id(name, 0, DEFAULT_SIZE)


def parse_config(cfg: str) -> tuple[str, int, int]:
    m = re.fullmatch(r"([A-Za-z0-9_.:-]+)#(\d+)@(\d+)K", cfg)
    if not m:
        raise SeqbenchError(f"not a portfolio configuration: {cfg!r} (written like tcn#0@20K)")
    return m.group(1), int(m.group(2)), int(m.group(3)) * 1000


def config_candidates(task, models: list[str] | None = None) -> dict[str, Candidate]:
    """Every configuration the portfolio is built from, as this task's candidates: each streaming
    zoo model at ``SIZES`` and each search shape, plus the default first try (the TCN's first
    shape at ``DEFAULT_SIZE``). Sizes count above a token task's embedding."""
    from seqbench.models.registry import get_model_entry, list_models
    base = embedding_params(task)
    out = {}
    for name in models or list_models():
        cls = get_model_entry(name).cls
        if not cls.supports_step:
            continue
        shapes = cls.search_shapes(task.seq_len)
        sizes = SIZES + ((DEFAULT_SIZE,) if cls.default_choice else ())
        for i, shape in enumerate(shapes):
            for size in sizes:
                if size == DEFAULT_SIZE and i:
                    continue
                out[config_id(name, i, size)] = Candidate(name, base + size, tuple(shape.items()))
    return out


def match(cfg: str, allowed: list[Candidate], task) -> Candidate | None:
    """The allowed candidate closest to a configuration: its model and shape, the nearest size
    (on a log scale, above the embedding); None if the model or shape is not allowed."""
    from seqbench.models.registry import get_model_entry, list_models
    model, shape, size = parse_config(cfg)
    if model not in list_models():
        return None
    shapes = get_model_entry(model).cls.search_shapes(task.seq_len)
    if shape >= len(shapes):
        return None
    want = tuple(shapes[shape].items())
    pool = [c for c in allowed if c.model == model and c.model_opts == want]
    base = embedding_params(task)
    return min(pool, key=lambda c: abs(math.log(max(c.params - base, 1) / size)), default=None)


def features(props: dict[str, Any]) -> np.ndarray:
    """Properties as a vector where distance means dissimilarity: sizes on log scales, the kind
    one-hot (weighted so that another kind of prediction is far), dependence relative to length."""
    L = max(1, props["length"])
    kind = [3.0 * (props["kind"] == k) for k in KINDS]
    return np.array(kind + [math.log1p(L), math.log1p(props["channels"]), math.log1p(props["classes"]),
                            math.log1p(props["n_train"]), math.log1p(props["per_class"]),
                            math.log1p(props["memory"]), props["memory"] / L, math.log1p(props["period"]),
                            props["noise"], props["trend"]])


@dataclass
class Portfolio:
    """The corpus: per set, its properties and every configuration's normalized validation score
    (``scores``) and test score (``test``, for evaluating the portfolio, never for choosing)."""
    sets: list[dict[str, Any]]
    configs: list[str]
    built: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path = PORTFOLIO) -> "Portfolio | None":
        path = Path(path)
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(sets=list(raw["sets"]), configs=list(raw["configs"]), built=dict(raw.get("built", {})))
        except (ValueError, KeyError, TypeError) as e:
            raise SeqbenchError(f"{path} is not a seqbench portfolio ({e}); rebuild it with "
                                "benchmarks/build_portfolio.py") from None

    def neighbours(self, props: dict[str, Any], k: int = NEIGHBOURS, exclude: str | None = None
                   ) -> list[tuple[dict, float]]:
        """The ``k`` corpus sets nearest to ``props`` (standardized features), with distances."""
        pool = [s for s in self.sets if s["name"] != exclude]
        if not pool:
            return []
        feats = np.stack([features(s["props"]) for s in pool])  # a left-out set does not scale the others
        scale = feats.std(0)
        scale[scale == 0] = 1.0
        scale[:len(KINDS)] = 1.0  # the kind's weight is its own, not the corpus's mix
        me = features(props) / scale
        dist = [float(np.linalg.norm(features(s["props"]) / scale - me)) for s in pool]
        order = np.argsort(dist, kind="stable")[:k]
        return [(pool[i], dist[i]) for i in order]

    def order(self, props: dict[str, Any], k: int = NEIGHBOURS, exclude: str | None = None,
              allowed: set[str] | None = None) -> list[tuple[str, float, list[tuple[dict, float]]]]:
        """Configurations in the order to try them on data with ``props``: greedily, each the one
        that raises the neighbours' weighted best-so-far score most. Each comes with its own weighted
        mean score there and the neighbours used. ``allowed`` restricts the configurations."""
        near = self.neighbours(props, k, exclude)
        if not near:
            return []
        w = _weights(near)
        pool = [c for c in self.configs if allowed is None or c in allowed]
        score = {c: np.array([s["scores"].get(c, 0.0) or 0.0 for s, _ in near]) for c in pool}
        best, out = np.zeros(len(near)), []
        while pool:
            gain = {c: float(w @ np.maximum(best, score[c])) for c in pool}
            top = max(pool, key=lambda c: (gain[c], float(w @ score[c])))  # stable: pool order breaks ties
            out.append((top, float(w @ score[top]), near))
            best = np.maximum(best, score[top])
            pool.remove(top)
        return out


def _weights(near: list[tuple[dict, float]]) -> np.ndarray:
    """The neighbours' votes: closer sets weigh more (normalized to sum to 1)."""
    w = np.array([1.0 / (d + 0.25) for _, d in near])
    return w / w.sum()


def expected_gains(near: list[tuple[dict, float]], configs: list[str], base: str | None) -> dict[str, float]:
    """Each configuration's expected gain over ``base`` (the default first try, trained before it):
    its weighted mean, over the neighbours, of how much more of each set's gap it closed than
    ``base`` did (0 where it closed less)."""
    if not near:
        return {c: 0.0 for c in configs}
    w = _weights(near)
    ref = np.array([(s["scores"].get(base, 0.0) or 0.0) if base else 0.0 for s, _ in near])
    return {c: float(w @ np.maximum(np.array([s["scores"].get(c, 0.0) or 0.0 for s, _ in near]) - ref, 0.0))
            for c in configs}


def leave_one_out(portfolio: Portfolio, first: int = PORTFOLIO_FIRST, k: int = NEIGHBOURS) -> list[dict[str, Any]]:
    """For each set: the portfolio built without it, used on it. ``instant``: the test score of its
    first configuration; ``top``: of what recommend's first trials choose (the default first try
    and the portfolio's first ``first``, the best on validation, the default kept unless another is
    better); ``default``: the default first try's. Scores are normalized test scores (share of the
    gap to the set's best closed). ``k``: how many nearest sets vote."""
    default = default_config()
    out = []
    for s in portfolio.sets:
        ranked = [c for c, _, _ in portfolio.order(s["props"], k=k, exclude=s["name"])]
        if not ranked:
            continue
        valid = lambda c: s["scores"].get(c, 0.0) or 0.0  # noqa: E731
        head = [c for c in ranked if c != default][:first]
        chosen = max(head, key=valid)
        if default in s["scores"] and valid(default) >= valid(chosen):
            chosen = default
        out.append({"set": s["name"], "instant": ranked[0], "instant_test": s["test"].get(ranked[0], 0.0),
                    "top": chosen, "top_test": s["test"].get(chosen, 0.0),
                    "default_test": s["test"].get(default, 0.0)})
    return out
