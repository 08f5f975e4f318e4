"""Predictions on new files reproduce the in-process evaluation, with the training preprocessing."""
import numpy as np
import pandas as pd
import pytest
import torch

import seqbench
from seqbench.cli import main
from seqbench.predict import predict


def write(path, rows, head="series,step,a,b,label"):
    path.write_text(head + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_predict_round_trip_on_a_custom_csv(tmp_path, capsys):
    """Train on a CSV with class names and feature normalization, predict on its test sequences
    written to a new file (labels dropped): the same classes and accuracy as task.evaluate."""
    rng = np.random.default_rng(0)
    names = ["low", "high"]
    rows = [(s, t, round(rng.normal() + 2 * (s % 2) + 5, 3), round(rng.normal() * 10, 3), names[s % 2])
            for s in range(60) for t in range(6)]
    path = write(tmp_path / "train.csv", rows)
    task = seqbench.create_task("custom", path=str(path), normalize="feature")
    torch.manual_seed(0)
    model = seqbench.create_model("gru", 2, 2, hidden=8)
    seqbench.train(model, task, seqbench.TrainConfig(epochs=8, lr=1e-2), out_dir=tmp_path / "run", progress=False)
    expected = task.evaluate(seqbench.load_model(tmp_path / "run"), "test")["accuracy"]
    # the test split's sequences, as raw rows without labels (ids kept)
    raw = pd.read_csv(path)
    new = raw[raw["series"].isin(task.split_ids["test"])].drop(columns=["label"])
    assert len(new) == 6 * task.sizes["test"]
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "preds.csv")]) == 0
    preds = pd.read_csv(tmp_path / "preds.csv")
    truth = raw.groupby("series")["label"].first()
    acc = float((preds["prediction"].to_numpy() == truth.loc[preds["id"]].to_numpy()).mean())
    assert acc == pytest.approx(expected)
    assert set(preds.columns) == {"id", "prediction", "p_high", "p_low"}
    np.testing.assert_allclose(preds["p_high"] + preds["p_low"], 1, rtol=1e-5)


def test_predict_a_forecast_from_the_end_of_the_series(tmp_path):
    walk = 50 + np.cumsum(np.random.default_rng(0).normal(size=300))
    (tmp_path / "s.csv").write_text("v\n" + "\n".join(f"{v:.4f}" for v in walk) + "\n")
    task = seqbench.create_task("custom", path=str(tmp_path / "s.csv"), transform="diff", lookback=8, horizon=3)
    seqbench.train(seqbench.create_model("gru", 1, 3, hidden=4), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    df = predict(tmp_path / "run", tmp_path / "s.csv")
    assert list(df["h"]) == [1, 2, 3] and np.isfinite(df["prediction"]).all()
    assert abs(df["prediction"].iloc[0] - walk[-1]) < 10  # differences are added back onto the last value


def test_predict_refuses_what_it_cannot_do(tmp_path, capsys):
    task = seqbench.create_task("adding", seq_len=10, n_train=32, n_valid=8, n_test=8)
    seqbench.train(seqbench.create_model("gru", 2, 1, hidden=4), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    (tmp_path / "x.csv").write_text("series,a\n0,1\n")
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "x.csv")]) == 2
    assert "predictions on new files need a run trained on your own" in capsys.readouterr().err
