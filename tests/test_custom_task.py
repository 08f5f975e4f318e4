"""The user's own data: documented layouts load; malformed files always give a one-line error."""
import string

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seqbench
from seqbench.train import TrainConfig


def write_csv(path, rows, header="series,step,f1,f2,label"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def classification_rows(n=20, length=6, signal=0.0):
    """Label s % 2; with ``signal`` the first feature is shifted by +-signal per class (learnable)."""
    rng = np.random.default_rng(0)
    return [(s, t, round(float(rng.normal() + signal * (2 * (s % 2) - 1)), 3), round(float(rng.normal()), 3), s % 2)
            for s in range(n) for t in range(length)]


def test_csv_classification_loads_and_trains(tmp_path):
    path = write_csv(tmp_path / "d.csv", classification_rows(n=80, signal=1.5))
    t = seqbench.create_task("custom", path=str(path))
    assert t.kind == "classification" and t.d_in == 2 and t.d_out == 2 and t.seq_len == 6
    assert sum(t.sizes.values()) == 80
    torch.manual_seed(0)
    m = seqbench.create_model("gru", 2, 2, params="2k")
    r = seqbench.train(m, t, TrainConfig(epochs=15, batch_size=8, lr=1e-2), progress=False)
    assert r.test["accuracy"] >= 0.9 > t.trivial_baseline, (r.test, t.trivial_baseline)


def test_csv_rows_are_ordered_by_step_and_ragged_lengths_pad(tmp_path):
    rows = [(0, 1, 2.0, 0, 1), (0, 0, 1.0, 0, 1)] + [(s, t, float(t), 0, s % 2) for s in range(1, 9)
                                                     for t in range(s % 3 + 1)]
    t = seqbench.create_task("custom", path=str(write_csv(tmp_path / "d.csv", rows)))
    assert t.variable_length
    all_x = np.concatenate([t.data[s][0] for s in t.data])
    first = [x for x in all_x if x[0, 0] == 1.0 and x[1, 0] == 2.0]
    assert first, "series 0 should be sorted by its step column"


def test_npz_regression_and_per_step(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", x=rng.normal(size=(30, 12, 3)), y=rng.normal(size=30))
    t = seqbench.create_task("custom", path=str(tmp_path / "r.npz"))
    assert t.kind == "regression" and t.metric.name == "mse" and t.trivial_baseline > 0
    lengths = rng.integers(4, 13, size=30)
    np.savez(tmp_path / "p.npz", x=rng.normal(size=(30, 12)), y=rng.normal(size=(30, 12)), lengths=lengths)
    p = seqbench.create_task("custom", path=str(tmp_path / "p.npz"))
    assert p.kind == "per_step" and p.output_steps == "all" and p.variable_length
    m = seqbench.create_model("tcn", 1, 1, hidden=8, levels=3)
    metrics = p.evaluate(m, "test")
    assert np.isfinite(metrics["mse"])


def test_forecast_from_a_one_column_csv(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("value\n" + "\n".join(str(np.sin(i / 5) + i / 50) for i in range(200)))
    t = seqbench.create_task("custom", path=str(path), horizon=3, season=31)
    assert t.kind == "forecast"
    assert t.d_out == 3 and t.metric.name == "mae" and np.isfinite(t.trivial_baseline)


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    ("", "empty"),
    ("series,step,f1,label\n", "empty"),
    ("series,step,f1\n0,0,1\n", "'label' column"),
    ("series,step,f1,label\n0,0,abc,1\n1,0,2,0\n2,0,1,1\n", "non-numeric value 'abc'"),
    ("series,step,f1,label\n0,0,,1\n1,0,2,0\n2,0,1,1\n", "missing/NaN"),
    ("series,step,f1,label\n0,0,inf,1\n1,0,2,0\n2,0,1,1\n", "NaN/inf"),
    ("series,step,f1,label\n0,0,1,1\n1,0,2,1\n2,0,1,1\n", "only one class"),
    ("series,step,f1,label\n0,0,1,1\n0,1,2,0\n2,0,1,1\n", "more than one 'label'"),
    ("series,step,f1,label\n0,0,1,1\n1,0,2,0\n", "at least 3"),
    ("a,b\n1,2\n", "2 columns"),
])
def test_malformed_csv_names_the_problem(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(seqbench.SeqbenchError, match=match):
        seqbench.create_task("custom", path=str(path))


@pytest.mark.parametrize("arrays,match", [
    ({"x": np.zeros((4, 5))}, "no array 'y'"),
    ({"x": np.zeros((4, 5)), "y": np.zeros(3)}, "4 sequences but 'y' has 3"),
    ({"x": np.full((4, 5), np.nan), "y": np.zeros(4)}, "NaN/inf"),
    ({"x": np.zeros((4, 5)), "y": np.zeros(4), "lengths": np.array([1, 2, 9, 3])}, "lengths"),
    ({"x": np.array(["a", "b", "c"]), "y": np.zeros(3)}, "not numeric"),
    ({"series": np.zeros((3, 3))}, "1-D"),
])
def test_malformed_npz_names_the_problem(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(seqbench.SeqbenchError, match=match):
        seqbench.create_task("custom", path=str(tmp_path / "bad.npz"))


def test_wrong_extension_and_kind(tmp_path):
    (tmp_path / "d.json").write_text("x")
    with pytest.raises(seqbench.SeqbenchError, match="unsupported file type"):
        seqbench.create_task("custom", path=str(tmp_path / "d.json"))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(seqbench.SeqbenchError, match="fewer than seq_len"):
        seqbench.create_task("custom", path=str(tmp_path / "d.txt"))
    path = write_csv(tmp_path / "d.csv", classification_rows())
    with pytest.raises(seqbench.SeqbenchError, match="unknown kind"):
        seqbench.create_task("custom", path=str(path), kind="clustering")
    with pytest.raises(seqbench.SeqbenchError, match="one label per sequence, not data for kind=per_step"):
        seqbench.create_task("custom", path=str(path), kind="per_step")


_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(st.binary(max_size=300), st.sampled_from([".csv", ".npz", ".parquet"]))
def test_random_bytes_give_a_clear_error(tmp_path, data, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    try:
        task = seqbench.create_task("custom", path=str(path))
    except seqbench.SeqbenchError as e:
        assert "\n" not in str(e) and str(path) in str(e)  # one line that names the file
        return
    assert suffix == ".csv", "random bytes loaded as an NPZ/Parquet file"  # only text can happen to parse
    x, _ = next(task.batches("train", 4))
    assert torch.isfinite(x).all()


cell = st.one_of(st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.text(string.printable, max_size=4),
                 st.just(""))


@_SETTINGS
@given(st.lists(st.lists(cell, min_size=1, max_size=5), min_size=0, max_size=12),
       st.sampled_from(["series,step,f1,label", "series,f1,target", "value", "series,f1", "f1,f2,label", ""]))
def test_random_tables_never_give_a_traceback(tmp_path, rows, header):
    path = tmp_path / "t.csv"
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    try:
        task = seqbench.create_task("custom", path=str(path))
    except seqbench.SeqbenchError as e:
        assert "\n" not in str(e)
        return
    x, _ = next(task.batches("train", 4))  # whatever loads is usable
    assert torch.isfinite(x).all()
