"""Every registered task trains a step with every causal model, through the trainer's own path
(``task.predict``: ``forward_last`` where the task reads the last step, the full forward otherwise).

A speed path once broke every fixed-length UCR task while no test trained one: this grid is the
guard. New tasks and models join it automatically (the task list comes from the registry).
"""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import seqbench
from seqbench.tasks.registry import get_task_entry
from seqbench.train import TrainConfig

# Small options per task family (data sizes only; the code path is the task's own).
SMALL = {"adding": {"seq_len": 16, "n_train": 8, "n_valid": 4, "n_test": 4},
         "copy_memory": {"T": 8, "n_train": 8, "n_valid": 4, "n_test": 4},
         "smnist": {"n_train": 8, "n_valid": 4, "n_test": 4},
         "pmnist": {"n_train": 8, "n_valid": 4, "n_test": 4},
         "chorales": {"n_pieces": 12},
         "ptb_word": {"seq_len": 12, "valid_len": 6, "max_tokens": 200},
         "ptb_char": {"seq_len": 12, "valid_len": 6, "max_tokens": 200},
         "probe": {"seq_len": 96, "n_train": 8, "n_valid": 4, "n_test": 4}}


def _custom_files(tmp: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    files = {}
    p = tmp / "cls.csv"  # fixed-length classification
    p.write_text("series,step,a,b,label\n" + "".join(f"{s},{t},{rng.normal():.3f},{rng.normal():.3f},{s % 3}\n"
                                                    for s in range(12) for t in range(7)))
    files["classification"] = str(p)
    p = tmp / "ragged.csv"  # variable-length classification
    p.write_text("series,step,a,label\n" + "".join(f"{s},{t},{rng.normal():.3f},{s % 2}\n"
                                                 for s in range(12) for t in range(3 + s % 4)))
    files["ragged"] = str(p)
    np.savez(tmp / "reg.npz", x=rng.normal(size=(12, 9, 2)), y=rng.normal(size=12))
    files["regression"] = str(tmp / "reg.npz")
    np.savez(tmp / "step.npz", x=rng.normal(size=(12, 9)), y=rng.normal(size=(12, 9)),
             lengths=rng.integers(3, 10, size=12))
    files["per_step"] = str(tmp / "step.npz")
    p = tmp / "series.csv"
    p.write_text("value\n" + "".join(f"{np.sin(i / 4):.4f}\n" for i in range(120)))
    files["forecast"] = str(p)
    return files


def _task_cases():
    cases = []
    for family in seqbench.list_tasks():
        entry = get_task_entry(family)
        if family == "custom":
            cases += [("custom", kind) for kind in ("classification", "ragged", "regression", "per_step", "forecast")]
            continue
        cases += [(family if not v else f"{family}:{v}", None) for v in entry.listed_variants]
    return cases


CAUSAL_MODELS = seqbench.list_models()  # every zoo model is built causal by default


@pytest.fixture(scope="module")
def custom_files(tmp_path_factory):
    return _custom_files(tmp_path_factory.mktemp("custom"))


@pytest.fixture(scope="module")
def tasks(custom_files):
    built = {}

    def get(name, kind):
        key = (name, kind)
        if key not in built:
            opts = dict(SMALL.get(name.split(":")[0], {}))
            if name == "custom":
                opts["path"] = custom_files[kind]
            if name.startswith("forecast"):
                opts.update(lookback=12, horizon=2)
            built[key] = seqbench.create_task(name, **opts)
        return built[key]
    return get


def _small_model(name, task):
    kwargs = {}
    if task.input_kind == "tokens":
        kwargs["embed_dim"] = 8
    # dropout on: the training step goes through FastDropout (or TrellisNet's locked mask) on every task's shapes
    shape = {"tcn": {"levels": 2, "kernel_size": 3}, "trellisnet": {"levels": 3, "dilations": [1, 2]},
             "transformer": {"layers": 1}, "lru": {"layers": 1}, "gru": {"layers": 2}, "lstm": {"layers": 2},
             "rnn": {"layers": 2}}.get(name, {})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny budgets may miss by > 5%
        return seqbench.create_model(name, task.d_in, task.d_out, params=None, hidden=8, dropout=0.1, **shape, **kwargs)


@pytest.mark.parametrize("task_name,kind", _task_cases(), ids=lambda v: v or "")
def test_every_task_trains_a_step_with_every_causal_model(tasks, task_name, kind):
    task = tasks(task_name, kind)
    for name in CAUSAL_MODELS:
        model = _small_model(name, task)
        x, y = next(task.batches("train", 3, shuffle_seed=0))
        loss = task.loss(task.predict(model, x), y)
        assert torch.isfinite(loss), (name, task_name)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name} on {task_name}: no gradient"
        model.eval()
        with torch.no_grad():
            scores = task.score(task.predict(model, x), y)
        assert scores and all(np.isfinite(s) and c > 0 for s, c in scores.values()), (name, task_name, scores)


@pytest.mark.parametrize("task_name", ["tsc:GunPoint", "tsc:JapaneseVowels"])
def test_train_runs_on_fixed_and_variable_length_ucr_sets(task_name):
    """`seqbench train --task tsc:GunPoint` crashed in forward_last's indexing; train end to end."""
    task = seqbench.create_task(task_name)
    model = _small_model("tcn", task)
    r = seqbench.train(model, task, TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2), progress=False)
    assert 0 <= r.test["accuracy"] <= 1 and r.best_epoch == 1


@pytest.mark.parametrize("task_name,kind", _task_cases(), ids=lambda v: v or "")
def test_every_task_config_rebuilds_the_same_task(tasks, task_name, kind):
    """``create_task(**task.config())`` rebuilds the task: same options, sizes and data (compress,
    recommend and --resume rebuild tasks this way; smnist once dropped n_train and rebuilt 50K)."""
    task = tasks(task_name, kind)
    cfg = task.config()
    again = seqbench.create_task(**cfg)
    assert again.config() == cfg and again.sizes == task.sizes
    x1, _ = next(task.batches("train", 4))
    x2, _ = next(again.batches("train", 4))
    torch.testing.assert_close(x1, x2)
