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


@pytest.mark.parametrize("kind,normalize", [("classification", "feature"), ("regression", "series"),
                                            ("per_step", "none")])
def test_predictions_equal_the_model_on_the_tasks_own_test_split(tmp_path, kind, normalize):
    """For every kind of sequence data and normalization: predict() on the test sequences, written
    as a new file without targets, gives the model's outputs on the task's own (preprocessed) split."""
    rng = np.random.default_rng(1)
    col = {"classification": "label", "regression": "label", "per_step": "target"}[kind]
    rows = []
    for s in range(40):
        n = 4 + s % 3  # variable lengths
        value = round(float(rng.normal()), 3)  # one per sequence
        for t in range(n):
            y = {"classification": ["a", "b"][s % 2], "regression": value,
                 "per_step": round(float(rng.normal()), 3)}[kind]
            rows.append((s, t, round(float(rng.normal() * 3 + 2), 3), y))
    path = write(tmp_path / "d.csv", rows, head=f"series,step,a,{col}")
    task = seqbench.create_task("custom", path=str(path), kind=kind, normalize=normalize)
    torch.manual_seed(0)
    model = seqbench.create_model("gru", 1, task.d_out, hidden=4)
    seqbench.train(model, task, seqbench.TrainConfig(epochs=1), out_dir=tmp_path / "run", progress=False)
    model = seqbench.load_model(tmp_path / "run").eval()
    raw = pd.read_csv(path)
    new = raw[raw["series"].isin(task.split_ids["test"])].drop(columns=[col])
    new.to_csv(tmp_path / "new.csv", index=False)
    preds = predict(tmp_path / "run", tmp_path / "new.csv")
    x, _, lengths = task.data["test"]
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    ids = task.split_ids["test"]
    if kind == "per_step":
        expect = [float(out[i, t, 0]) for i in range(len(ids)) for t in range(lengths[i])]
        np.testing.assert_allclose(preds["prediction"], expect, rtol=1e-4, atol=1e-5)
        return
    last = out[torch.arange(len(ids)), torch.from_numpy(lengths - 1)]
    by_id = preds.set_index("id").loc[ids]
    if kind == "regression":
        np.testing.assert_allclose(by_id["prediction"], last[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(by_id["p_b"], torch.softmax(last, -1)[:, 1].numpy(), rtol=1e-4, atol=1e-5)


def test_predict_on_a_float32_npz_keeps_its_dtype_and_still_refuses_nan(tmp_path, capsys):
    """New data in an NPZ is held as stored (float32: its own size, converted a batch at a time), and
    predicts what the same numbers in float64 predict; a NaN in its last row is still refused, with
    nothing written."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 12, 2)).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=x, y=(x[:, -1, 0] > 0).astype(np.int64))
    task = seqbench.create_task("custom", path=str(tmp_path / "train.npz"), normalize="feature")
    seqbench.train(seqbench.create_model("gru", 2, task.d_out, hidden=4), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    new = rng.normal(size=(30, 12, 2)).astype(np.float32)
    np.savez(tmp_path / "new32.npz", x=new)
    np.savez(tmp_path / "new64.npz", x=new.astype(np.float64))
    from seqbench.data.files import load_file
    held = load_file(tmp_path / "new32.npz", id_col="series", time_col="step", label_col="label",
                     target_col="target", value_col=None, features=None, need_target=False)["x"]
    assert held[0].dtype == np.float32
    pd.testing.assert_frame_equal(predict(tmp_path / "run", tmp_path / "new32.npz"),
                                  predict(tmp_path / "run", tmp_path / "new64.npz"))
    new[-1, 5, 1] = np.nan
    np.savez(tmp_path / "bad.npz", x=new)
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "bad.npz"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "has NaN/inf values" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
