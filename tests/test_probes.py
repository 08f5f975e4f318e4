"""The capability probes' optima are right by construction: the Bayes-optimal predictor (the true
delayed value, the noise-free signal, the naive forecast of a random walk, the forward filter of a
switching process) reaches each probe's ``optimum``, and the trivial baseline is far from it."""
import pytest
import torch

import seqbench
from seqbench.tasks.probes import PROBES


@pytest.mark.parametrize("variant", PROBES)
def test_the_oracle_reaches_the_optimum(variant):
    task = seqbench.create_task(f"probe:{variant}", seq_len=96, n_test=512)
    err, n = 0.0, 0
    for best, y in task.oracle_batches("test"):
        e = (best - y)[:, task.start:].pow(2)
        err, n = err + float(e.sum()), n + e.numel()
    assert abs(err / n - task.optimum) <= 0.03 * max(task.optimum, 0.05)
    assert task.trivial_baseline > task.optimum + 0.2 * (1 + task.optimum)  # a gap to close


@pytest.mark.parametrize("variant", PROBES)
def test_the_task_scores_the_oracle_at_the_optimum(variant):
    """The task's own metric, fed the oracle's predictions, gives the optimum (the scored steps and
    the metric agree with how the optimum was computed)."""
    task = seqbench.create_task(f"probe:{variant}", seq_len=96, n_test=512)
    sums = [task.score(best[..., None], y)["mse"] for best, y in task.oracle_batches("test")]
    mse = sum(s for s, _ in sums) / sum(c for _, c in sums)
    assert mse == pytest.approx(task.optimum, rel=0.03, abs=0.0015)


def test_levels_are_checked():
    with pytest.raises(seqbench.SeqbenchError, match=r"probe:lag takes level in \[1, 62\]"):
        seqbench.create_task("probe:lag", seq_len=64, level=100)
    with pytest.raises(seqbench.SeqbenchError, match="unknown probe 'nope'"):
        seqbench.create_task("probe:nope")


def test_a_model_learns_a_short_lag():
    """The probe trains like any task: a small GRU recalls a 2-step lag far better than the baseline."""
    task = seqbench.create_task("probe:lag", level=2, seq_len=32, n_train=512, n_valid=64, n_test=64)
    torch.manual_seed(0)
    model = seqbench.model_for_task("gru", task, hidden=16)
    r = seqbench.train(model, task, seqbench.TrainConfig(epochs=4, lr=1e-2), progress=False)
    assert r.test["mse"] < 0.3 * task.trivial_baseline


def test_the_report_shows_the_optimum_beside_the_metric(tmp_path):
    pytest.importorskip("matplotlib", reason="the bench extra is not installed (make installs it)")
    from seqbench.bench import grid_trials, run_sweep, write_report
    trials = grid_trials(["probe:walk"], ["gru"], [0], [None], {"seq_len": 24, "n_train": 64, "n_valid": 16,
                                                              "n_test": 16}, {"hidden": 4}, {"epochs": 1})
    assert run_sweep(trials, tmp_path / "r.db", progress=False).done == 1
    md = (write_report(tmp_path / "r.db", tmp_path / "rep")["md"]).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| task"))
    row = next(line for line in md.splitlines() if line.startswith("| probe:walk"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "optimum" in header and cells[header.strip("|").split("|").index(" optimum ")] == "0.01"
