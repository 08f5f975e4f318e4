"""The portfolio and the instant answer: measured data properties, the greedy order over the nearest
corpus sets, leave-one-set-out, mapping configurations to candidates, and `--time-budget 0`."""
import numpy as np
import pytest

import seqbench
from seqbench.cli import main
from seqbench.recommend import Limits, candidate_space, instant_answer
from seqbench.recommend.portfolio import Portfolio, config_candidates, leave_one_out, match, parse_config
from seqbench.recommend.properties import measure


@pytest.mark.parametrize("level", [12, 40])
def test_dependence_is_measured_where_the_target_shows_it(level):
    """A lag task's input is white noise: its dependence shows only in the target's correlation
    with the input `level` steps back."""
    p = measure(seqbench.create_task("probe:lag", level=level, seq_len=level + 40, n_train=200, n_valid=8, n_test=8))
    assert p["kind"] == "per-step" and p["memory"] == level and p["period"] == 0


def test_period_kind_and_size():
    p = measure(seqbench.create_task("probe:periodic", level=16, seq_len=128, n_train=200, n_valid=8, n_test=8))
    assert abs(p["period"] - 16) <= 1 and p["noise"] < 0.9
    d = measure(seqbench.create_task("smnist:digits"))
    assert d["kind"] == "classification" and d["classes"] == 10 and d["length"] == 64 and d["per_class"] > 100
    assert measure(seqbench.create_task("adding", seq_len=50, n_train=100, n_valid=8, n_test=8))["kind"] == "regression"


def _set(name, kind, length, scores):
    props = {"kind": kind, "length": length, "channels": 1, "classes": 2 if kind == "classification" else 0,
             "n_train": 100, "per_class": 50 if kind == "classification" else 0, "memory": length // 2, "period": 0,
             "noise": 0.5, "trend": 0.1}
    return {"name": name, "props": props, "scores": scores, "test": scores}


def test_the_order_follows_the_nearest_sets_and_complements_the_first_pick():
    """On classification sets `a` is best on two, `c` on the third, `b` second everywhere: the first
    pick is `a`; the second is `c` (it covers the set `a` misses), not `b` (never better than `a`
    or `c`). Forecasting sets, far away in kind, prefer `b` and do not vote."""
    sets = [_set("c1", "classification", 100, {"a": 1.0, "b": 0.9, "c": 0.0}),
            _set("c2", "classification", 120, {"a": 1.0, "b": 0.9, "c": 0.1}),
            _set("c3", "classification", 110, {"a": 0.2, "b": 0.8, "c": 1.0})]
    sets += [_set(f"f{i}", "forecast", 100, {"a": 0.0, "b": 1.0, "c": 0.0}) for i in range(3)]
    port = Portfolio(sets, ["a", "b", "c"], {})
    order = [c for c, _, _ in port.order(sets[0]["props"], k=3)]
    assert order[:2] == ["a", "c"]
    assert {s["name"] for s, _ in port.neighbours(sets[0]["props"], k=3)} == {"c1", "c2", "c3"}
    assert [c for c, _, _ in port.order(sets[3]["props"], k=3)][0] == "b"
    loo = {r["set"]: r for r in leave_one_out(port)}
    assert set(loo) == {s["name"] for s in sets}
    assert all(s["name"] not in [n["name"] for n, _ in port.neighbours(s["props"], exclude=s["name"])] for s in sets)


def test_a_left_out_set_does_not_weigh_in_the_neighbours_distances():
    """Leave-one-set-out must see the corpus as if the set had never been in it: an outlier set (much
    longer) left out must not shrink the length's weight in the distance to the others."""
    sets = [_set("near-length", "classification", 100, {"a": 1.0}), _set("far-length", "classification", 160, {"a": 1.0}),
            _set("outlier", "classification", 100_000, {"a": 1.0})]
    sets[0]["props"]["noise"] = 0.9  # the length-matched set differs in noise
    me = {**sets[0]["props"], "length": 160, "noise": 0.5}
    with_it = Portfolio(sets, ["a"], {}).neighbours(me, k=2, exclude="outlier")
    without = Portfolio(sets[:2], ["a"], {}).neighbours(me, k=2)
    assert [(s["name"], round(d, 6)) for s, d in with_it] == [(s["name"], round(d, 6)) for s, d in without]


def test_configurations_map_to_candidates_above_the_embedding(tmp_path):
    (tmp_path / "book.txt").write_text("the quick brown fox jumps over the lazy dog. " * 200)
    task = seqbench.create_task("custom", path=str(tmp_path / "book.txt"))
    cfgs = config_candidates(task, ["tcn", "gru"])
    assert "tcn#0@100K" in cfgs and "gru#0@100K" not in cfgs  # the default first try's size is the TCN's only
    base = task.d_in * task.embed_dim + task.d_in
    assert all(c.params - base in (5_000, 20_000, 100_000) for c in cfgs.values())
    allowed = candidate_space(task, None, ["tcn", "gru"])
    got = match("tcn#1@20K", allowed, task)
    model, shape, size = parse_config("tcn#1@20K")
    assert got.model == "tcn" and got.opts["kernel_size"] == 3
    others = [c for c in allowed if c.model == "tcn" and c.model_opts == got.model_opts]
    assert all(abs(np.log((c.params - base) / size)) >= abs(np.log((got.params - base) / size)) for c in others)
    assert match("lstm#0@5K", allowed, task) is None  # not among the models allowed


def test_the_portfolio_is_trained_by_expected_gain_over_the_default_per_second():
    """`b` closes more of the gap than the default `d` on the nearer set and `c` more on both, but
    `c` costs 10x the time: per second, `b` goes first. `a` never beats `d`: no expected gain, last."""
    from seqbench.recommend import Costs, _first
    from seqbench.recommend.portfolio import expected_gains
    sets = [_set("n1", "classification", 100, {"d": 0.5, "a": 0.4, "b": 0.8, "c": 0.9}),
            _set("n2", "classification", 400, {"d": 0.6, "a": 0.2, "b": 0.6, "c": 1.0})]
    near = Portfolio(sets, ["d", "a", "b", "c"], {}).neighbours(sets[0]["props"], k=2)
    gains = expected_gains(near, ["a", "b", "c"], "d")
    assert gains["a"] == 0 and 0 < gains["b"] < gains["c"]
    task = seqbench.create_task("smnist:digits")
    cands = candidate_space(task, 20_000, ["gru"])[:3]
    cost = lambda ms: Costs(params=1, shape="", step_ms=0.1, seq_ms=0.0, mem_mb=1.0, train_step_ms=ms)  # noqa: E731
    head = [("a", cands[0], 0.0), ("c", cands[1], 0.0), ("b", cands[2], 0.0)]
    cost_of = {cands[0]: cost(1.0), cands[1]: cost(100.0), cands[2]: cost(10.0)}
    assert _first(task, head, near, cost_of, 1, 0.0, base="d") == (cands[2].id, cands[1].id, cands[0].id)


def test_the_search_trains_the_default_then_the_portfolio_first(tmp_path):
    from seqbench.recommend import Search, SearchSpec
    task = seqbench.create_task("smnist:digits")
    allowed = candidate_space(task, 20_000, ["tcn", "gru", "lstm"])
    first = ("lstm @6K", "gru @2K")
    spec = SearchSpec(task_name="smnist:digits", task_opts={}, allowed=tuple(allowed), cost_of={}, rungs=(1, 3),
                      search_id="t", db=str(tmp_path / "r.db"), first=first)
    search = Search(spec, task)
    try:
        asked = [search.study.ask(search.dists).params["candidate"] for _ in range(3)]
    finally:
        search.close()
    assert asked == [search.default_params()["candidate"], *first]


def test_time_budget_0_prints_the_instant_answer_only(tmp_path, capsys):
    if Portfolio.load() is None:
        pytest.skip("no committed portfolio")
    db = tmp_path / "r.db"
    assert main(["recommend", "--task", "forecast:lynx", "--time-budget", "0", "--max-params", "8k",
                 "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("instant answer (before any training): ") and "seqbench's corpus" in out
    pick = out.split(": ", 1)[1].split("\n")[0]
    task = seqbench.create_task("forecast:lynx")
    assert pick in {c.id for c in candidate_space(task, 8_000)}
    assert not db.exists()  # nothing trained, nothing stored
    assert main(["recommend", "--task", "forecast:lynx", "--time-budget", "0", "--out", str(tmp_path / "o")]) == 2
    assert "instant answer only" in capsys.readouterr().err


def test_the_instant_answer_respects_the_limits():
    if Portfolio.load() is None:
        pytest.skip("no committed portfolio")
    task = seqbench.create_task("forecast:lynx")
    ans = instant_answer(task, Limits(max_params=3_000))
    assert ans.pick in {c.id for c in candidate_space(task, 3_000)}
    assert ans.properties["kind"] == "forecast" and len(ans.neighbours) == 5
