"""seqbench recommend: limits measured before training, a search inside the time budget, an
honest answer, and a search that survives kill -9."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import pytest

import seqbench
from conftest import trial_rows
from seqbench.cli import main
from seqbench.recommend import Limits, candidate_space, exclusions, measure_costs, parse_duration

pytest.importorskip("optuna", reason="the search extra is not installed (make installs it)")
SEQBENCH = str(Path(sys.executable).parent / "seqbench")
STREAMING = [n for n in seqbench.list_models() if seqbench.models.registry.get_model_entry(n).cls.supports_step]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A learnable classification file: the first feature's sign carries the class."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("rec") / "signal.csv"
    rows = []
    for s in range(90):
        y = s % 2
        for t in range(12):
            rows.append(f"{s},{t},{rng.normal() + 1.5 * (2 * y - 1):.3f},{rng.normal():.3f},{y}")
    path.write_text("series,step,a,b,label\n" + "\n".join(rows) + "\n")
    return path


def test_candidates_cover_the_sequence_and_respect_the_parameter_limit(data):
    task = seqbench.create_task("custom", path=str(data))
    cands = candidate_space(task, 20_000, ["tcn", "gru"])
    assert {c.params for c in cands} == {2000, 6000, 18000}
    for c in cands:
        if c.model == "tcn":
            m = seqbench.model_for_task("tcn", task, params=c.params, **c.opts)
            assert m.receptive_field >= task.seq_len
    costs = measure_costs(task, [c for c in cands if c.params == 2000], rounds=2, steps=5)
    assert all(k.step_ms > 0 and k.seq_ms > 0 and k.mem_mb > 0 and k.params > 1000 for k in costs.values())
    out = exclusions(costs, Limits(max_step_ms=min(k.step_ms for k in costs.values()) * 1.01))
    assert 0 < len(out) < len(costs) and all("step" in why and "ms >" in why for why in out.values())


def test_recommend_respects_limits_and_budget_and_beats_the_baseline(data, tmp_path):
    # costs as a target device measured them (a costs file): the Transformer's step is slower than the
    # limit there, whatever this machine's load makes of it, so the limit's effect is deterministic
    from seqbench.recommend import profile, write_costs
    task = seqbench.create_task("custom", path=str(data))
    cands = candidate_space(task, 20_000, ["tcn", "gru", "transformer"])
    costs = profile(task, cands, 1, tmp_path / "r.db")
    limit = 2 * max(k.step_ms for c, k in costs.items() if c.model != "transformer")
    for c, k in costs.items():
        if c.model == "transformer":
            k.step_ms = 10 * limit
    write_costs(tmp_path / "costs.json", task, costs, 1)
    t0 = time.time()
    rec = seqbench.recommend("custom", Limits(max_step_ms=limit, max_params=20_000), budget=40,
                             models=["tcn", "gru", "transformer"], db=tmp_path / "r.db", out=tmp_path / "out",
                             max_epochs=9, progress=False, task_opts={"path": str(data)}, costs=tmp_path / "costs.json")
    started = [r["started"] for r in trial_rows(tmp_path / "r.db") if r["started"]]
    assert started and max(started) <= t0 + 40 + 2  # no trial starts after the budget's deadline
    assert rec.winner is not None and rec.test["accuracy"] > rec.trivial_test + 0.2
    assert all(r.step_ms <= limit for r in rec.ranked) and all(not r.candidate.startswith("transformer")
                                                             for r in rec.ranked)
    assert any(cid.startswith("transformer") and "step" in why for cid, why in rec.excluded)
    assert "transformer" in rec.explanation and "excluded" in rec.explanation
    winner = seqbench.load_model(rec.paths["winner"])  # an ordinary run directory
    assert seqbench.count_params(winner) == rec.winner.params
    md = Path(rec.paths["md"]).read_text()
    assert "Pareto" in md and (tmp_path / "out" / "pareto.png").stat().st_size > 5000
    assert json.loads(Path(rec.paths["json"]).read_text())["winner"]["candidate"] == rec.winner.candidate


def test_kill_9_mid_search_then_rerun_retrains_nothing_finished(data, tmp_path):
    db = tmp_path / "r.db"
    argv = [SEQBENCH, "recommend", "--task", "custom", "--task-opt", f"path={data}", "--models", "gru,tcn",
            "--max-params", "6k", "--time-budget", "50s", "--max-epochs", "9", "--db", str(db), "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while time.time() - t0 < 120 and sum(r["status"] == "done" for r in trial_rows(db)) < 3:
            time.sleep(0.1)
        assert proc.poll() is None, "the search ended before it could be killed mid-way"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    before = {r["key"]: r["finished"] for r in trial_rows(db) if r["status"] == "done"}
    assert len(before) >= 3
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = {r["key"]: r for r in trial_rows(db)}
    assert all(after[k]["finished"] == f and after[k]["attempts"] == 1 for k, f in before.items()), \
        "a trial finished before the kill was trained again"
    assert "trivial baseline" in done.stdout


def test_a_search_whose_every_trial_fails_stops_and_says_why(data, tmp_path, monkeypatch):
    """Code that breaks in the trial processes (here a plugin module that imports only in the process
    that started the search): the search stops after a few failures in a row and answers with the
    first error, instead of failing trials for the whole budget and saying only that none finished."""
    import os

    from seqbench.recommend.search import FAILURES_TO_STOP
    (tmp_path / "fragile.py").write_text("import os\n"
                                         "if os.getpid() != int(os.environ.get('SEQBENCH_TEST_PID', -1)):\n"
                                         "    raise ImportError('fragile: broken outside the first process')\n")
    monkeypatch.setenv("SEQBENCH_TEST_PID", str(os.getpid()))
    with pytest.raises(seqbench.SeqbenchError, match="every trial failed .*broken outside the first process"):
        seqbench.recommend("custom", Limits(max_params=2_000), budget=120, models=["gru"], db=tmp_path / "r.db",
                           max_epochs=1, progress=False, task_opts={"path": str(data)},
                           imports=[str(tmp_path / "fragile.py")])
    rows = trial_rows(tmp_path / "r.db")
    failed = [r for r in rows if r["status"] == "failed"]  # (the rest: queued when it stopped, never run)
    assert FAILURES_TO_STOP <= len(failed) <= FAILURES_TO_STOP + 2 and {r["status"] for r in rows} <= {"failed", "pending"}
    assert len(rows) <= FAILURES_TO_STOP + 4


def test_costs_from_the_target_device_are_used(data, tmp_path, capsys):
    costs = tmp_path / "costs.json"
    assert main(["profile", "--task", "custom", "--task-opt", f"path={data}", "--models", "gru", "--max-params", "2k",
                 "--out", str(costs), "--no-progress"]) == 0
    table = json.loads(costs.read_text())
    assert len(table["entries"]) == 1
    entry = next(iter(table["entries"].values()))
    entry["step_ms"] = 99.0  # as if the target were much slower
    costs.write_text(json.dumps(table))
    code = main(["recommend", "--task", "custom", "--task-opt", f"path={data}", "--models", "gru", "--max-params",
                 "2k", "--max-step-ms", "1", "--costs", str(costs), "--db", str(tmp_path / "r.db"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "fastest step measured is gru @1.92K at 99 ms" in err


def test_profile_on_the_best_runtime_names_where_each_step_ran(data, tmp_path, capsys):
    """--runtime best times each model's own step and its onnxruntime export and keeps the faster; the
    table and the costs file say which ran (the own step: NumPy for the TCN, torch for the GRU)."""
    pytest.importorskip("onnxruntime", reason="the export extra is not installed (make installs it)")
    task = seqbench.create_task("custom", path=str(data))
    cands = [c for c in candidate_space(task, 20_000, ["tcn", "gru"]) if c.params == 2000]
    assert {k.step_runtime for k in measure_costs(task, cands, rounds=1, steps=2).values()} == {"numpy", "torch"}
    on_numpy = measure_costs(task, cands, rounds=1, steps=2, runtime="numpy")  # the GRU has no NumPy engine
    assert {c.model: k.step_runtime for c, k in on_numpy.items()} == {"tcn": "numpy", "gru": "torch"}
    costs = tmp_path / "costs.json"
    assert main(["profile", "--task", "custom", "--task-opt", f"path={data}", "--models", "tcn,gru", "--max-params",
                 "2k", "--runtime", "best", "--out", str(costs), "--no-progress"]) == 0
    entries = json.loads(costs.read_text())["entries"].values()
    ran = {e["shape"]: e["step_runtime"] for e in entries}
    assert len(ran) >= 2 and all(rt in {"numpy", "torch", "onnxruntime"} for rt in ran.values())
    out = capsys.readouterr().out
    assert " on " in out.splitlines()[0] and all(rt in out for rt in ran.values()), out


@pytest.mark.parametrize("extra,match", [
    (["--max-step-ms", "0.00001"], r"no candidate meets the limits: the fastest step measured is \S+"),
    (["--time-budget", "0.1s"], r"the time budget 0.1s is too short: profiling took"),
    (["--time-budget", "soon"], r"cannot read 'soon' as a duration"),
    (["--max-params", "500"], r"max_params must be at least 2,000"),
    (["--batch", "0"], r"batch must be a positive integer"),
])
def test_bad_requests_are_one_line_errors(data, tmp_path, capsys, extra, match):
    import re
    code = main(["recommend", "--task", "custom", "--task-opt", f"path={data}", "--models", "gru", "--max-params",
                 "2k", "--db", str(tmp_path / "r.db"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and re.search(match, err), err


def test_durations():
    assert parse_duration("5m") == 300 and parse_duration("90s") == 90 and parse_duration(2) == 2.0
    assert parse_duration("1.5h") == 5400


def test_noise_labels_recommend_the_trivial_baseline(tmp_path):
    """Labels independent of the inputs: nothing beats the majority class on validation, and the
    answer says so instead of crowning a model."""
    rng = np.random.default_rng(1)
    labels = (rng.random(400) < 0.2).astype(int)  # 80% majority, unrelated to the features
    path = tmp_path / "noise.csv"
    path.write_text("series,step,a,label\n" + "".join(f"{s},{t},{rng.normal():.3f},{labels[s]}\n"
                                                     for s in range(400) for t in range(6)))
    rec = seqbench.recommend("custom", Limits(max_params=2_000), budget=30, models=["gru"], db=tmp_path / "r.db",
                             max_epochs=3, max_trials=6, progress=False, task_opts={"path": str(path)})
    assert rec.ranked, "trials should have run"
    assert rec.winner is None and rec.test == {}
    assert "No candidate beat the trivial baseline" in rec.explanation


def test_recommend_on_the_ray_executor(tmp_path):
    """Any trial that finishes beats the trivial baseline (the class is the sign of a strong signal, and
    one epoch is many optimizer steps), so the answer does not depend on how many trials the budget
    allows on a loaded machine, where a Ray trial's worker start alone can take ~10 s."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (make installs it)")
    rng = np.random.default_rng(0)
    path = tmp_path / "easy.csv"
    path.write_text("series,step,a,label\n" + "".join(
        f"{s},{t},{rng.normal(0, 0.3) + 2 * (s % 2) - 1:.3f},{s % 2}\n" for s in range(600) for t in range(8)))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rec = seqbench.recommend("custom", Limits(max_params=2_000), budget=40, models=["gru", "tcn"],
                                 db=tmp_path / "r.db", executor="ray", max_epochs=1, max_trials=4, progress=False,
                                 task_opts={"path": str(path)})
    finally:
        ray.shutdown()
    assert rec.ranked and rec.winner is not None and rec.test["accuracy"] > rec.trivial_test


def test_the_winner_trains_on_for_the_rest_of_the_budget(tmp_path):
    """600 sequences leave enough validation for no cross-validation: after the search (one-epoch
    trials here), the winner continues from its checkpoint in the budget's last share (its best
    epoch on validation kept); the answer is that longer run, and says so."""
    rng = np.random.default_rng(0)
    path = tmp_path / "easy.csv"
    path.write_text("series,step,a,label\n" + "".join(
        f"{s},{t},{rng.normal(0, 1.0) + 0.5 * (2 * (s % 2) - 1):.3f},{s % 2}\n" for s in range(600) for t in range(8)))
    rec = seqbench.recommend("custom", Limits(max_params=2_000), budget=40, models=["gru"], db=tmp_path / "r.db",
                             max_epochs=1, max_trials=3, progress=False, task_opts={"path": str(path)})
    assert rec.winner is not None and rec.winner.epochs > 1
    hist = [json.loads(line) for line in (Path(rec.winner.run_dir) / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == list(range(1, rec.winner.epochs + 1))  # resumed, not restarted
    assert rec.winner.valid == max(h["valid_accuracy"] for h in hist)
    assert f"-> {rec.winner.epochs} epochs" in rec.explanation


def test_streaming_memory_counts_shared_buffers_once():
    """The NumPy engines keep NumPy views of the state's tensors: that memory is counted once, so the
    TCN's state (the same buffers and folded weights in both engines) measures the same on either
    engine, and TrellisNet's NumPy state measures what its buffers and weights hold."""
    import numpy as np
    import torch

    from seqbench.recommend.costs import _state_bytes
    m = seqbench.create_model("tcn", 1, 4, params=3_000).eval()
    sizes = []
    for engine in ("numpy", "torch"):
        state = m.init_state(2, engine)
        m.step(torch.randn(2, 30, 1), state)
        sizes.append(_state_bytes(state))
    assert sizes[0] == sizes[1], sizes
    m = seqbench.create_model("trellisnet", 1, 4, params=3_000).eval()
    state = m.init_state(2, "numpy")
    m.step(torch.randn(2, 30, 1), state)
    held = sum(b.full.numel() * b.full.element_size() for b in state["levels"])
    held += sum(a.nbytes for a in (state["w"], state["w0"], *state["head"]))
    assert isinstance(state["levels"][0].buf, np.ndarray) and _state_bytes(state) == held


def test_recommend_on_text_sizes_its_grid_above_the_embedding(tmp_path):
    """Plain text: the size grid starts above the tied embedding (it once started at 2,000 params,
    below a 29-token x 64 embedding, and failed in 2 s)."""
    (tmp_path / "book.txt").write_text("the quick brown fox jumps over the lazy dog. " * 300)
    rec = seqbench.recommend("custom", Limits(), budget=12, models=["gru"], db=tmp_path / "r.db", max_epochs=1,
                             progress=False, task_opts={"path": str(tmp_path / "book.txt")})
    assert rec.ranked and rec.metric == "bpc"
    assert min(r.params for r in rec.ranked) > 29 * 64
    import optuna  # the search's study, as optuna-dashboard opens it, through Optuna's own API
    (name,) = optuna.get_all_study_names(rec.optuna)
    study = optuna.load_study(study_name=name, storage=rec.optuna)
    assert len(study.trials) >= len(rec.ranked) and study.best_value == pytest.approx(rec.ranked[0].valid)
    assert study.best_trial.params["candidate"] == rec.ranked[0].candidate


def test_a_non_deep_baseline_that_wins_is_said_to(tmp_path):
    """Classes told apart by the frequency of an oscillation at a random phase: MiniRocket's
    convolutions see it at once, a 2K GRU trained for one epoch does not. The answer says so."""
    pytest.importorskip("numba", reason="the baselines extra is not installed (make installs it)")
    rng = np.random.default_rng(0)
    n, L = 120, 64
    y = np.arange(n) % 2
    t = np.arange(L)
    x = np.sin(2 * np.pi * np.where(y[:, None] == 1, 0.3, 0.05) * t + rng.uniform(0, 6.3, (n, 1)))
    np.savez(tmp_path / "freq.npz", x=x + 0.3 * rng.normal(size=x.shape), y=y)
    rec = seqbench.recommend("custom", Limits(max_params=2_000), budget=15, models=["gru"], db=tmp_path / "r.db",
                             max_epochs=1, progress=False, task_opts={"path": str(tmp_path / "freq.npz")})
    assert rec.nondeep is not None and rec.nondeep["valid"] >= 0.9
    assert "A non-deep baseline beats" in rec.explanation and "MiniRocket + ridge" in rec.explanation


def test_the_default_first_and_cross_validation_on_a_small_validation_split(data, tmp_path):
    """The default first try (the largest TCN at the TCN's own kernel) trains first and to the end;
    90 sequences leave 14 for validation, so the best configurations are compared by 5-fold
    cross-validation on train+valid (test untouched), and the noise is that of the fold mean."""
    rec = seqbench.recommend("custom", Limits(max_params=2_000), budget=40, models=["tcn", "gru"],
                             db=tmp_path / "r.db", max_epochs=2, max_trials=6, progress=False,
                             task_opts={"path": str(data)})
    default = [r for r in rec.ranked if r.default]  # once: cross-validated if it was among the best
    assert len(default) == 1 and default[0].epochs == 2 and default[0].candidate.startswith("tcn(k=7")
    cv = [r for r in rec.ranked if r.cv_folds]
    assert cv and all(r.cv_folds == 5 and r.valid_std is not None for r in cv)
    assert rec.ranked[:len(cv)] == cv  # the cross-validated come first
    if rec.winner is not None:
        assert rec.winner.cv_folds == 5
    task = seqbench.create_task("custom", path=str(data), fold="1/5")
    plain = seqbench.create_task("custom", path=str(data))
    assert task.sizes["test"] == plain.sizes["test"]
    refit = seqbench.create_task("custom", path=str(data), fold="all")  # the winner's refit trains on train+valid
    assert refit.sizes["train"] == plain.sizes["train"] + plain.sizes["valid"] and refit.sizes["test"] == plain.sizes["test"]
    if rec.winner is not None and rec.winner.refit:  # when the budget left room for it
        cfg = json.loads((Path(rec.winner.run_dir) / "config.json").read_text())
        assert cfg["task"]["fold"] == "all" and "retrained on all of train+valid" in rec.explanation
        # no validation left to stop it: the refit trains as long as its folds' best epochs, on average
        prefix = Path(rec.winner.run_dir).name.removesuffix("-refit")
        best = []
        for f in range(5):
            hist = [json.loads(line) for line in (tmp_path / "r.db.runs" / f"{prefix}-fold{f}of5" / "history.jsonl")
                    .read_text().splitlines()]
            best.append(max(hist, key=lambda h: (h["valid_accuracy"], h["epoch"]))["epoch"])  # tied: the last
        assert cfg["train"]["epochs"] == rec.winner.epochs == max(1, round(np.mean(best)))


def test_training_length_grows_with_the_budget(data):
    """The last rung is the task's epochs times the largest power of 3 (at most 81) that the default
    first try can train within its share of the budget; cross-validation, training ~21 models,
    leaves each a smaller share. Costs as a target device measured them."""
    from seqbench.recommend import Costs, _max_epochs
    from seqbench.recommend.budget import MAX_GROWTH, grown_epochs
    assert [grown_epochs(10, 0.1, s) for s in (1.0, 3.01, 8.9, 9.01, 1e9)] == [10, 30, 30, 90, 10 * MAX_GROWTH]
    task = seqbench.create_task("custom", path=str(data))
    cands = candidate_space(task, 20_000, ["tcn", "gru"])
    cost_of = {c: Costs(params=c.params, shape="", step_ms=0.1, seq_ms=1.0, mem_mb=1.0, train_step_ms=5.0 * c.params / 1e3)
               for c in cands}
    base = _max_epochs(task, cands, cost_of, 1.0, use_cv=False)
    assert base == task.recommended["epochs"] or base * np.ceil(task.num_samples("train") / 32) >= 200
    lengths = [_max_epochs(task, cands, cost_of, b, use_cv=False) for b in (60, 600, 3600, 36000)]
    assert lengths == sorted(lengths) and lengths[-1] > lengths[0] >= base
    assert all(n // base in (1, 3, 9, 27, 81) for n in lengths)
    assert _max_epochs(task, cands, cost_of, 3600, use_cv=True) < _max_epochs(task, cands, cost_of, 3600, use_cv=False)


def test_a_short_series_is_cross_validated_on_rolling_origins(tmp_path):
    """240 steps leave ~30 validation windows: the best configurations are compared by 5-fold
    rolling-origin validation, and the seasonal naive baseline is scored on the same five folds.
    The chosen forecaster is not refitted on train+valid: its training stopped on the latest data
    trains on from its checkpoint for the time left, and is the answer. The series (an AR(2) cycle
    of ~11 steps) is one a small GRU forecasts better than the seasonal naive, so a winner is chosen."""
    e, y = np.random.default_rng(0).normal(size=240), np.zeros(240)
    for i in range(2, len(y)):
        y[i] = 1.6 * y[i - 1] - 0.9 * y[i - 2] + e[i]
    (tmp_path / "s.csv").write_text("value\n" + "\n".join(f"{v:.4f}" for v in y) + "\n")
    opts = {"path": str(tmp_path / "s.csv"), "kind": "forecast", "lookback": 24, "horizon": 3, "season": 12}
    rec = seqbench.recommend("custom", Limits(max_params=2_000), budget=40, models=["gru"], db=tmp_path / "r.db",
                             max_epochs=10, max_trials=3, progress=False, task_opts=opts)
    assert rec.metric == "mae" and all(r.epochs >= 1 for r in rec.ranked)
    assert len(trial_rows(tmp_path / "r.db")) <= 3 + 5 * 3  # the search's 3, CV's folds of the best 3 (no refit)
    cv = [r for r in rec.ranked if r.cv_folds]
    assert cv and rec.ranked[:len(cv)] == cv and all(r.cv_folds == 5 for r in cv)
    assert rec.winner is not None and rec.winner.cv_folds == 5 and not rec.winner.refit
    cfg = json.loads((Path(rec.winner.run_dir) / "config.json").read_text())
    assert "fold" not in cfg["task"] and "not retrained without a validation" in rec.explanation
    hist = [json.loads(line) for line in (Path(rec.winner.run_dir) / "history.jsonl").read_text().splitlines()]
    assert len(hist) == rec.winner.epochs > 10  # then trained on from its checkpoint: its last rung was 10
    assert f"-> {rec.winner.epochs} epochs, the validation part" in rec.explanation
    folds = [seqbench.create_task("custom", **opts, fold=f"{i}/5").trivial_on("valid") for i in range(5)]
    assert rec.trivial_valid == pytest.approx(np.mean(folds))
    assert rec.trivial_valid != pytest.approx(seqbench.create_task("custom", **opts).trivial_on("valid"))


def test_a_statistical_forecaster_beats_the_seasonal_naive_on_a_trend(tmp_path):
    """A seasonal series on a linear trend: the seasonal naive forecast lags the trend by a season;
    AutoETS / AutoTheta (refitted on each window) follow it. Scored on the same windows."""
    pytest.importorskip("statsforecast", reason="the baselines extra is not installed (make installs it)")
    from seqbench.recommend.baselines import nondeep_baseline
    t = np.arange(300)
    rng = np.random.default_rng(0)
    y = 10 + 0.5 * t + 3 * np.sin(2 * np.pi * t / 12) + 0.2 * rng.normal(size=len(t))
    (tmp_path / "s.csv").write_text("value\n" + "\n".join(f"{v:.4f}" for v in y) + "\n")
    task = seqbench.create_task("custom", path=str(tmp_path / "s.csv"), kind="forecast", value="value",
                                lookback=36, horizon=6, season=12)
    base = nondeep_baseline(task, max_s=5)
    assert base is not None and base.name.startswith(("AutoETS", "AutoTheta"))
    assert base.valid < 0.5 * task.trivial_on("valid") and base.test < 0.5 * task.trivial_on("test")


def test_costs_not_monotone_in_size_are_measured_again():
    """A smaller model of one kind and shape timed slower than a larger one (load, not cost) is
    flagged with it for more interleaved rounds; other kinds and shapes are not compared."""
    from seqbench.recommend.candidates import Candidate
    from seqbench.recommend.costs import _not_monotone, _spread
    a, b, c = (Candidate("tcn", p, (("kernel_size", 7),)) for p in (2000, 6000, 18000))
    k3 = Candidate("tcn", 2000, (("kernel_size", 3),))
    g = Candidate("gru", 2000)
    assert _not_monotone({a: 0.02, b: 0.03, c: 0.04, k3: 0.5, g: 0.9}) == []
    assert _not_monotone({a: 0.45, b: 0.03, c: 0.04, k3: 0.02, g: 0.9}) == [a, b, c]
    assert _spread([1.0, 1.0, 1.0, 1.0]) == 0 and _spread([1.0, 2.0, 3.0, 4.0, 5.0]) > 0.5


def _per_step_variable_file(path):
    rng = np.random.default_rng(0)
    rows = [f"{s},{t},{a:.3f},{a > 0:d}" for s in range(40) for t, a in enumerate(rng.normal(size=8 + s % 7))]
    path.write_text("series,step,a,target\n" + "\n".join(rows) + "\n")
    return {"kind": "per_step"}


def _many_classes_file(path):
    rng = np.random.default_rng(0)
    rows = [f"{s},{t},{rng.normal() + s % 12:.3f},{s % 12}" for s in range(96) for t in range(6)]
    path.write_text("series,step,a,label\n" + "\n".join(rows) + "\n")
    return {}


@pytest.mark.parametrize("make,metric", [(_per_step_variable_file, "mse"), (_many_classes_file, "accuracy")],
                         ids=["per-step-variable-length", "12-classes"])  # a forecast: the rolling-origin test
def test_every_kind_of_data_runs_through_recommend(tmp_path, make, metric):
    opts = {"path": str(tmp_path / "d.csv"), **make(tmp_path / "d.csv")}
    rec = seqbench.recommend("custom", Limits(max_params=2_000), budget=10, models=["gru"], db=tmp_path / "r.db",
                             max_epochs=1, progress=False, task_opts=opts)
    assert rec.ranked and rec.metric == metric and all(r.epochs >= 1 for r in rec.ranked)
    assert rec.instant is None or rec.instant["pick"].startswith("gru")


@pytest.mark.parametrize("model", STREAMING)
def test_steps_timed_on_each_runtime_compute_the_same_outputs(model, tmp_path):
    """What `--runtime` times is the same step, mid-stream: the exported ONNX graph in onnxruntime,
    and each engine, give the model's own step output (within 1e-5)."""
    pytest.importorskip("onnxruntime", reason="the export extra is not installed (make installs it)")
    from seqbench.recommend.costs import step_runner
    task = seqbench.create_task("tsc:GunPoint")
    m = seqbench.model_for_task(model, task, params=3_000).eval()
    with torch.inference_mode():
        ref = step_runner(m, task, 2, "auto", tmp_path)()
        for runtime in ("torch", "numpy", "onnxruntime"):
            out = step_runner(m, task, 2, runtime, tmp_path)()
            out = out[0] if runtime == "onnxruntime" else out  # onnxruntime: (output, *next state)
            assert np.abs(np.asarray(out) - ref.numpy()).max() < 1e-5, runtime
    with pytest.raises(seqbench.SeqbenchError, match="unknown runtime 'tflite'"):
        from seqbench.recommend.costs import check_runtime
        check_runtime("tflite")
