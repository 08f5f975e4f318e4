import json

import numpy as np
import pytest
import torch

import seqbench
from seqbench.tasks.base import Metric, Task
from seqbench.train import TrainConfig


def tiny_adding(**kw):
    return seqbench.create_task("adding", seq_len=12, n_train=kw.pop("n_train", 256), n_valid=64, n_test=64, **kw)


def tiny_model(task, seed=0):
    torch.manual_seed(seed)
    return seqbench.create_model("tcn", task.d_in, task.d_out, levels=2, kernel_size=3, hidden=8)


def test_same_seed_same_loss_curve():
    task = tiny_adding()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=7)
    r1 = seqbench.train(tiny_model(task), task, cfg, progress=False)
    r2 = seqbench.train(tiny_model(task), task, cfg, progress=False)
    strip = lambda h: [{k: v for k, v in row.items() if k != "train_time"} for row in h]  # noqa: E731
    assert strip(r1.history) == strip(r2.history)
    r3 = seqbench.train(tiny_model(task), task, TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=8),
                        progress=False)
    assert strip(r3.history) != strip(r1.history)


def test_tcn_learns_the_adding_problem():
    """A small TCN leaves the adding problem's plateau well below the trivial MSE."""
    task = seqbench.create_task("adding", seq_len=20, n_train=32 * 150, n_valid=500, n_test=500)
    torch.manual_seed(0)
    model = seqbench.create_model("tcn", 2, 1, levels=3, kernel_size=4, hidden=32)
    result = seqbench.train(model, task, TrainConfig(epochs=3, batch_size=32, lr=2e-3), progress=False)
    assert result.test["mse"] < 0.2 * task.trivial_baseline, result.history


def test_clipping_applies_after_backward():
    """With SGD lr=1 and clip=1e-3 every update is at most 1e-3 in norm: clipping really happened."""
    task = tiny_adding(n_train=32)
    model = tiny_model(task)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    seqbench.train(model, task, TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=1.0, clip=1e-3),
                   progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < (after - before).norm() <= 1e-3 * 1.001
    unclipped = tiny_model(task)
    seqbench.train(unclipped, task, TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=1.0),
                   progress=False)
    assert (torch.cat([p.detach().flatten() for p in unclipped.parameters()]) - before).norm() > 1e-2


def test_step_schedule_decays_lr():
    task = tiny_adding(n_train=32)
    r = seqbench.train(tiny_model(task), task, TrainConfig(epochs=4, batch_size=32, lr=1e-2, schedule="step",
                                                           step_size=2, gamma=0.1), progress=False)
    assert [round(h["lr"], 8) for h in r.history] == [1e-2, 1e-2, 1e-3, 1e-3]


@pytest.mark.parametrize("higher_is_better", [False, True])
def test_plateau_schedule_follows_metric_direction(higher_is_better):
    """A metric that gets worse each epoch (in its own direction) triggers the decay."""
    class Drifting(Task):
        name, d_in, d_out, seq_len, trivial_baseline = "drift", 2, 1, 12, 0.0
        metric = Metric("m", higher_is_better)

        def __init__(self):
            super().__init__()
            self.sizes, self.calls = {"train": 32, "valid": 32, "test": 32}, 0
            self.inner = tiny_adding(n_train=32)

        def _gather(self, split, idx):
            return self.inner._gather(split, idx)

        def loss(self, out, target):
            return self.inner.loss(out, target)

        def score(self, out, target):
            self.calls += 1
            return {"m": ((-self.calls if higher_is_better else self.calls) * len(target), len(target))}

    task = Drifting()
    r = seqbench.train(tiny_model(task), task, TrainConfig(epochs=3, batch_size=32, lr=1e-2, schedule="plateau",
                                                           patience=0, gamma=0.5), progress=False)
    assert [h["lr"] for h in r.history] == [1e-2, 1e-2, 5e-3]


def test_run_directory_and_reload(tmp_path):
    task = tiny_adding()
    model = tiny_model(task)
    out = tmp_path / "run"
    r = seqbench.train(model, task, TrainConfig(epochs=2, batch_size=32, lr=1e-2), out_dir=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "best.pt", "config.json", "history.jsonl", "last.pt",
                                                     "result.json"]
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["task"]["seq_len"] == 12 and config["model"]["name"] == "tcn"
    best = seqbench.load_model(out, "best")
    assert seqbench.count_params(best) == r.params
    assert task.evaluate(best, "test")["mse"] == pytest.approx(r.test["mse"], rel=1e-5)
    last = seqbench.load_model(out, "last")
    x, _ = next(task.batches("test", 8))
    model.eval()
    torch.testing.assert_close(last.eval()(x), model(x))
    assert not list(out.glob(".*.tmp")), "no temporary files left behind"


def test_out_dir_with_other_content_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    task = tiny_adding()
    with pytest.raises(seqbench.SeqbenchError, match="not empty.*--overwrite"):
        seqbench.train(tiny_model(task), task, TrainConfig(epochs=1), out_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_load_model_refuses_garbage(tmp_path):
    task = tiny_adding()
    seqbench.train(tiny_model(task), task, TrainConfig(epochs=1), out_dir=tmp_path, progress=False)
    (tmp_path / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(seqbench.SeqbenchError, match="cannot load checkpoint"):
        seqbench.load_model(tmp_path)
    with pytest.raises(seqbench.SeqbenchError, match="not found"):
        seqbench.load_model(tmp_path / "nope")


def test_nan_inputs_and_divergence_are_clear_errors():
    class NaNTask(type(tiny_adding())):
        def _batch(self, split, start, size):
            x, y = super()._batch(split, start, size)
            x[0, 0, 0] = float("nan")
            return x, y

    task = NaNTask(seq_len=12, n_train=32)
    with pytest.raises(seqbench.SeqbenchError, match="NaN/inf inputs"):
        seqbench.train(tiny_model(task), task, TrainConfig(epochs=1), progress=False)
    task = tiny_adding()
    with pytest.raises(seqbench.SeqbenchError, match="diverged.*lower the learning rate"):
        seqbench.train(tiny_model(task), task, TrainConfig(epochs=3, optimizer="sgd", lr=1e12), progress=False)


@pytest.mark.parametrize("bad,match", [({"optimizer": "adagrad"}, "unknown optimizer"),
                                       ({"schedule": "cosine"}, "unknown schedule"),
                                       ({"lr": -1.0}, "lr must be"), ({"epochs": 0}, "epochs must be"),
                                       ({"clip": 0.0}, "clip must be")])
def test_bad_train_config(bad, match):
    task = tiny_adding()
    with pytest.raises(seqbench.SeqbenchError, match=match):
        seqbench.train(tiny_model(task), task, TrainConfig(**bad), progress=False)


def test_model_task_dimension_mismatch():
    task = tiny_adding()
    with pytest.raises(seqbench.SeqbenchError, match="needs 2 -> 1"):
        seqbench.train(seqbench.create_model("lstm", 3, 1, hidden=4), task, progress=False)


@pytest.mark.parametrize("when", ["at compile", "at the first call"])
def test_compile_falls_back_to_eager_with_a_warning(monkeypatch, when):
    """Where torch.compile is unavailable or its kernels fail to build, --compile trains in eager
    mode (same curve), with a warning."""
    task = tiny_adding()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, seed=3)
    eager = seqbench.train(tiny_model(task), task, cfg, progress=False)

    def failing(*a, **k):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(torch, "compile", failing if when == "at compile" else lambda fn: failing)
    with pytest.warns(UserWarning, match="eager"):
        fallback = seqbench.train(tiny_model(task), task, TrainConfig(epochs=2, batch_size=32, lr=1e-2, seed=3,
                                                                      compile=True), progress=False)
    assert [r["train_loss"] for r in fallback.history] == [r["train_loss"] for r in eager.history]


def test_for_task_rejects_unknown_keys_and_bad_types():
    task = tiny_adding()
    with pytest.raises(seqbench.SeqbenchError, match="unknown training option.*lrr"):
        TrainConfig.for_task(task, lrr=0.1)
    task.recommended = {**task.recommended, "embed_dim": 8}  # a task may not smuggle in non-training keys
    with pytest.raises(seqbench.SeqbenchError, match="unknown training option.*embed_dim"):
        TrainConfig.for_task(task)
    with pytest.raises(seqbench.SeqbenchError, match="epochs must be an integer"):
        TrainConfig(epochs="3").validate()


def test_weight_decay_spares_biases_norms_and_lru_parameters():
    from seqbench.train.trainer import param_groups
    model = seqbench.create_model("lru", 2, 3, hidden=8, layers=1)
    decay, rest = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    no_decay = {names[id(p)].split(".")[-1] for p in rest["params"]}
    assert {"nu_log", "theta_log", "bias"} <= no_decay and rest["weight_decay"] == 0.0


@pytest.mark.parametrize("optimizer", ["adamw", "rmsprop", "sgd"])
def test_decay_shrinks_matrices_only(optimizer):
    """With a zero loss, only weight decay moves parameters: matrices shrink, vectors stay."""
    class ZeroLoss(type(tiny_adding())):
        def loss(self, out, target):
            return out.sum() * 0.0

    task = ZeroLoss(seq_len=12, n_train=64, n_valid=16, n_test=16)
    model = tiny_model(task)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seqbench.train(model, task, TrainConfig(epochs=1, batch_size=32, optimizer=optimizer, lr=0.1, weight_decay=0.5),
                   progress=False)
    for n, p in model.named_parameters():
        if p.dim() >= 2:
            assert p.norm() < before[n].norm(), n
        else:
            assert torch.equal(p, before[n]), n


def test_dropout_is_on_in_training_off_in_eval_and_seeded(model_name):
    if model_name in ("gru", "lstm", "rnn"):
        kwargs = {"layers": 2}  # torch's recurrent dropout sits between layers
    else:
        kwargs = {}
    torch.manual_seed(0)
    m = seqbench.create_model(model_name, 2, 3, hidden=8, dropout=0.5, **kwargs)
    x = torch.randn(4, 20, 2)
    m.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(1)
    b = m(x)
    c = m(x)
    assert torch.equal(a, b) and not torch.equal(a, c), "dropout must be random, and repeatable under a seed"
    m.eval()
    assert torch.equal(m(x), m(x))


def test_trellisnet_auxiliary_loss_trains_every_level_output():
    task = tiny_adding()
    torch.manual_seed(0)
    m = seqbench.create_model("trellisnet", 2, 1, hidden=8, levels=4, dilations=[1, 2], aux_freq=2)
    x, y = next(task.batches("train", 8))
    m.train()
    out = m(x)
    assert len(m.aux_outputs) == 1 and m.aux_outputs[0].shape == out.shape
    r1 = seqbench.train(m, task, TrainConfig(epochs=1, batch_size=32, aux_weight=0.5, seed=1), progress=False)
    torch.manual_seed(0)
    m2 = seqbench.create_model("trellisnet", 2, 1, hidden=8, levels=4, dilations=[1, 2], aux_freq=2)
    r2 = seqbench.train(m2, task, TrainConfig(epochs=1, batch_size=32, aux_weight=0.0, seed=1), progress=False)
    assert r1.history[0]["train_loss"] > r2.history[0]["train_loss"], "the auxiliary loss is part of the objective"


def test_token_model_round_trips_through_a_run_directory(tmp_path):
    task = seqbench.create_task("ptb_char", seq_len=16, valid_len=8, max_tokens=400)
    model = seqbench.create_model("tcn", task.d_in, task.d_out, embed_dim=8, hidden=8, levels=2, kernel_size=3)
    seqbench.train(model, task, TrainConfig(epochs=1, batch_size=8, optimizer="adam", lr=1e-3), out_dir=tmp_path / "r",
                   progress=False)
    loaded = seqbench.load_model(tmp_path / "r", "last").eval()
    x, _ = next(task.batches("test", 4))
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert loaded.config == model.config


def test_a_directly_built_model_reloads(tmp_path):
    from seqbench.models.tcn import TCN
    task = tiny_adding()
    model = TCN(2, 1, hidden=6, levels=2, kernel_size=3)
    seqbench.train(model, task, TrainConfig(epochs=1), out_dir=tmp_path / "r", progress=False)
    assert seqbench.count_params(seqbench.load_model(tmp_path / "r")) == seqbench.count_params(model)


@pytest.mark.parametrize("model_cfg,which,match", [
    (None, "best", "must be a mapping"),
    ([1, 2], "best", "must be a mapping"),
    ({"name": "tcn"}, "best", "must be a mapping with name, d_in, d_out"),
    ({"name": "tcn", "d_in": 2, "d_out": 1, "causal": True, "hidden": 60000, "levels": 8, "kernel_size": 7,
      "dropout": 0.0}, "best", "GiB to train"),
    ({"name": "tcn", "d_in": 2, "d_out": 1, "causal": True, "hidden": 9, "levels": 2, "kernel_size": 3,
      "dropout": 0.0}, "best", "does not match"),
    ("keep", "../x/last", "which must be 'best' or 'last'"),
])
def test_load_model_refuses_bad_configs(tmp_path, model_cfg, which, match):
    task = tiny_adding()
    seqbench.train(tiny_model(task), task, TrainConfig(epochs=1), out_dir=tmp_path, progress=False)
    if model_cfg != "keep":
        cfg = json.loads((tmp_path / "config.json").read_text())
        cfg["model"] = model_cfg
        (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(seqbench.SeqbenchError, match=match):
        seqbench.load_model(tmp_path, which)


def test_max_time_stops_between_epochs_keeping_the_best():
    """A wall-clock limit: no epoch starts after it; the result is the best epoch's, as always."""
    task = tiny_adding(n_train=64)
    res = seqbench.train(tiny_model(task), task, TrainConfig(epochs=10**6, batch_size=32, max_time=0.5),
                         progress=False)
    assert 1 <= len(res.history) < 10**6
    assert res.best_valid["mse"] == min(row["valid_mse"] for row in res.history)
    with pytest.raises(seqbench.SeqbenchError, match="max_time"):
        TrainConfig(max_time=0.0).validate()


def test_every_run_directory_has_a_model_card(tmp_path):
    """README.md with YAML front matter (what model hubs read): the model, its size, the task, the
    test metrics beside the trivial baseline, and the data's fingerprint where the data is a file."""
    yaml = pytest.importorskip("yaml", reason="the bench extra is not installed (make installs it)")
    rng = np.random.default_rng(0)
    rows = [f"{s},{t},{rng.normal() + (s % 2):.3f},{s % 2}" for s in range(30) for t in range(5)]
    (tmp_path / "d.csv").write_text("series,step,a,label\n" + "\n".join(rows) + "\n")
    task = seqbench.create_task("custom", path=str(tmp_path / "d.csv"))
    model = seqbench.model_for_task("gru", task, params=1000)
    res = seqbench.train(model, task, TrainConfig(epochs=2), out_dir=tmp_path / "run", progress=False)
    text = (tmp_path / "run" / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "seqbench" and meta["model_name"] == "gru" and meta["params"] == res.params
    assert meta["metrics"] == [{"name": k, "split": "test", "value": pytest.approx(v, 1e-5)} for k, v in res.test.items()]
    assert meta["trivial_baseline"]["value"] == pytest.approx(task.trivial_on("test"), 1e-5)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["data_fingerprint"] == config["data"] and "d.csv" in json.dumps(config["data"])
    assert "seqbench predict RUN" in text and f"{res.params:,} parameters" in text
