"""The instant answer: the portfolio's pick for this data, within the limits, before anything trains,
with its reason (the data's measured properties and what the corpus's nearest sets showed)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.recommend.candidates import Candidate, Limits, candidate_space, exclusions


@dataclass
class Instant:
    pick: str | None                  # the candidate's id (None: nothing in the portfolio fits the limits)
    config: str | None                # the portfolio configuration it stands for
    reason: str
    properties: dict[str, Any]
    order: list[str] = field(default_factory=list)      # candidate ids in the portfolio's order, to train first
    neighbours: list[str] = field(default_factory=list)  # the corpus sets that voted

    def to_dict(self) -> dict:
        import dataclasses
        return dataclasses.asdict(self)


def portfolio_order(task, props: dict, allowed: list[Candidate], portfolio=None) -> tuple[list[tuple[str, Candidate, float]], list]:
    """The portfolio's configurations for data with ``props``, mapped to ``allowed`` candidates
    (each candidate once, in order), with each one's weighted mean score on the nearest sets."""
    from seqbench.recommend.portfolio import Portfolio, match
    port = Portfolio.load() if portfolio is None else portfolio
    if port is None:
        return [], []
    ranked = port.order(props)
    out, seen = [], set()
    for cfg, score, _ in ranked:
        cand = match(cfg, allowed, task)
        if cand is not None and cand not in seen:
            seen.add(cand)
            out.append((cfg, cand, score))
    return out, ranked[0][2] if ranked else []


def answer_from(task, props: dict, ordered: list, near: list, pick: tuple | None) -> Instant:
    """The Instant for ``pick`` (cfg, candidate, score) among the ``ordered`` portfolio candidates."""
    order, names = [c.id for _, c, _ in ordered], [s["name"] for s, _ in near]
    if pick is None:
        return Instant(None, None, "no configuration of the portfolio meets the limits; a search "
                       "(--time-budget) tries every candidate", props, order, names)
    cfg, cand, score = pick
    return Instant(cand.id, cfg, reason(task, props, cand, cfg, score, near), props, order, names)


def reason(task, props: dict, cand: Candidate, cfg: str, score: float, near: list) -> str:
    """Why: the data as measured, how the pick covers its dependence, and the corpus's evidence."""
    from seqbench.recommend.costs import _build
    from seqbench.recommend.properties import describe
    text = describe(props)
    rf = _build(task, cand).receptive_field
    if props["memory"]:
        if rf is None:
            text += f": {cand.model}'s recurrent state carries it"
        elif rf >= props["memory"]:
            text += f": {cand.model} with receptive field {rf:,} >= {props['memory']:,}"
        else:
            text += f" ({cand.model}'s receptive field is {rf:,} steps)"
    names = ", ".join(s["name"] for s, _ in near)
    text += (f". On the most similar sets in seqbench's corpus ({names}), {cfg} closed {score:.0%} of the gap "
             "between the trivial baseline and each set's best configuration (weighted mean).")
    return text


def instant_answer(task, limits: Limits | None = None, models: list[str] | None = None,
                   db: str | Path | None = None, costs: str | Path | None = None, portfolio=None,
                   runtime: str = "auto", props: dict | None = None) -> Instant:
    """The portfolio's first configuration that meets ``limits``: only the candidates it needs are
    measured (cached in ``db`` like recommend's costs), so the answer takes seconds. ``props``:
    the data's properties, if already measured."""
    from seqbench.recommend.costs import profile, read_costs
    from seqbench.recommend.properties import try_measure
    limits = limits or Limits()
    limits.check()
    props = try_measure(task) if props is None else props
    candidates = candidate_space(task, limits.max_params, models)
    ordered, near = portfolio_order(task, props, candidates, portfolio) if props is not None else ([], [])
    if not ordered:
        return Instant(None, None, "no portfolio (src/seqbench/recommend/portfolio.json) to draw on; build it with "
                       "benchmarks/build_portfolio.py" if props is not None else "the data could not be measured",
                       props or {})
    for cfg, cand, score in ordered:
        cost = (read_costs(costs, task, [cand], limits.batch)[0] if costs is not None
                else profile(task, [cand], limits.batch, db, progress=False, runtime=runtime))
        if not exclusions(cost, limits):
            return answer_from(task, props, ordered, near, (cfg, cand, score))
    return answer_from(task, props, ordered, near, None)


def print_instant(ans: Instant) -> None:
    if ans.pick is None:
        print(f"instant answer: none. {ans.reason}")
    else:
        print(f"instant answer (before any training): {ans.pick}\n  why: {ans.reason}")
