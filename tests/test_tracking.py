"""Experiment tracking: what a run logs to TensorBoard or MLflow is read back through their own APIs."""
import pytest
import torch

import seqbench
from seqbench.train import TrainConfig


def _run(tmp_path, log):
    task = seqbench.create_task("adding", seq_len=12, n_train=64, n_valid=32, n_test=32)
    torch.manual_seed(0)
    model = seqbench.create_model("tcn", task.d_in, task.d_out, levels=2, kernel_size=3, hidden=8)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, log=log)
    return seqbench.train(model, task, cfg, out_dir=tmp_path / "run", progress=False)


def test_tensorboard_events_hold_every_epoch_and_the_test_metric(tmp_path):
    pytest.importorskip("tensorboard", reason="the track extra is not installed (make installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    res = _run(tmp_path, "tensorboard")
    ev = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    valid = [e.value for e in ev.Scalars("valid/mse")]
    assert valid == pytest.approx([row["valid_mse"] for row in res.history], rel=1e-6)
    assert [e.step for e in ev.Scalars("train/loss")] == [1, 2, 3]
    assert ev.Scalars("test/mse")[0].value == pytest.approx(res.test["mse"], rel=1e-6)


def test_mlflow_run_holds_config_metrics_and_the_model(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the track extra is not installed (make installs it)")
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts land beside the store
    res = _run(tmp_path, "mlflow")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seqbench").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["train.lr"] == "0.01"
    assert run.data.params["model.name"] == "tcn" and run.data.params["task.name"] == "adding"
    hist = client.get_metric_history(run.info.run_id, "valid_mse")
    assert [m.value for m in sorted(hist, key=lambda m: m.step)] == pytest.approx(
        [row["valid_mse"] for row in res.history], rel=1e-6)
    assert run.data.metrics["test_mse"] == pytest.approx(res.test["mse"], rel=1e-6)
    assert {"best.pt", "config.json", "README.md"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_an_unknown_logger_is_one_line():
    with pytest.raises(seqbench.SeqbenchError, match="unknown logger 'wandb'; use one of: tensorboard, mlflow"):
        TrainConfig(log="wandb").validate()
