"""Your own data as users bring it: text, string labels, your own split, normalization fitted on
train only, transforms for forecasting, options that do not apply, your own task code."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import seqbench
from seqbench.cli import main

SEQBENCH = str(Path(sys.executable).parent / "seqbench")


def story(path: Path, chars: int = 60_000) -> Path:
    """A text with structure a character model can learn (a small grammar), written like prose."""
    rng = np.random.default_rng(0)
    subj = ["the cat", "a dog", "the old man", "my sister", "the river", "a small bird", "the king"]
    verb = ["sees", "likes", "follows", "paints", "finds", "remembers"]
    obj = ["the moon", "a red apple", "the garden", "an open door", "the sea", "a quiet song"]
    lines = []
    while sum(len(line) + 1 for line in lines) < chars:
        lines.append(f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)}.")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_text_file_trains_a_character_model_that_beats_unigram(tmp_path, capsys):
    path = story(tmp_path / "story.txt")
    code = main(["train", "--task", "custom", "--task-opt", f"path={path}", "--model", "tcn", "--params", "50k",
                 "--epochs", "2", "--no-progress", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0, err
    bpc, trivial = (float(v) for v in __import__("re").search(r"test bpc: (\S+)\s+trivial baseline: (\S+)", out).groups())
    assert bpc < 0.8 * trivial, out
    assert "kind=lm" in err and "level=char" in err and "seq_len=128" in err  # resolved options, printed
    fitted = json.loads((tmp_path / "run" / "config.json").read_text())["fitted"]
    assert "<unk>" in fitted["vocab"] and "_" in fitted["vocab"]  # spaces are '_', as in ptb_char
    assert seqbench.load_model(tmp_path / "run").d_in == len(fitted["vocab"])


def test_word_level_and_token_ids(tmp_path):
    words = seqbench.create_task("custom", path=str(story(tmp_path / "s.txt", 20_000)), level="word", seq_len=16,
                                 valid_len=8)
    assert words.metric.name == "ppl" and "moon." in words.vocab and words.trivial_baseline > 1
    ids = np.random.default_rng(0).integers(0, 50, size=5000)
    np.savez(tmp_path / "ids.npz", tokens=ids)
    t = seqbench.create_task("custom", path=str(tmp_path / "ids.npz"), seq_len=32, valid_len=16)
    assert t.kind == "lm" and t.d_in == 50 and t.input_kind == "tokens"
    x, (y, mask) = next(t.batches("train", 4))
    assert x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])
    np.savez(tmp_path / "ambiguous.npz", x=np.arange(60).reshape(6, 10) % 7, y=np.arange(60).reshape(6, 10) % 5)
    with pytest.raises(seqbench.SeqbenchError, match="are they token ids.*kind=lm.*kind=per_step"):
        seqbench.create_task("custom", path=str(tmp_path / "ambiguous.npz"))
    assert seqbench.create_task("custom", path=str(tmp_path / "ambiguous.npz"), kind="per_step").kind == "per_step"


def labelled(path: Path, n: int = 60, names=("walk", "run", "sit"), split=None, shift=0.0) -> Path:
    rng = np.random.default_rng(3)
    head = "series,step,a,b,label" + (",split" if split else "")
    rows = []
    for s in range(n):
        c = s % len(names)
        for t in range(5):
            row = f"{s},{t},{rng.normal() + c + shift:.3f},{rng.normal() * 5 + 10:.3f},{names[c]}"
            rows.append(row + (f",{split(s)}" if split else ""))
    path.write_text(head + "\n" + "\n".join(rows) + "\n")
    return path


def test_string_labels_are_encoded_and_saved_with_the_run(tmp_path):
    t = seqbench.create_task("custom", path=str(labelled(tmp_path / "d.csv")))
    assert t.kind == "classification" and t.classes == ["run", "sit", "walk"] and t.d_out == 3
    seqbench.train(seqbench.create_model("gru", 2, 3, hidden=4), t, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["fitted"]["classes"] == ["run", "sit", "walk"]


def test_a_split_column_fractions_a_test_file_and_stratification(tmp_path):
    marks = lambda s: "test" if s % 10 == 0 else ("valid" if s % 10 == 1 else "train")  # noqa: E731
    t = seqbench.create_task("custom", path=str(labelled(tmp_path / "d.csv", split=marks)))
    assert (t.sizes["test"], t.sizes["valid"], t.sizes["train"]) == (6, 6, 48)
    f = seqbench.create_task("custom", path=str(labelled(tmp_path / "e.csv", n=90)), split="0.5,0.25,0.25")
    # each split gets its share of the whole (90 x 0.5 / 0.25 / 0.25), to within one sequence
    assert f.sizes["train"] == 45 and {f.sizes["valid"], f.sizes["test"]} == {22, 23}
    for s in ("train", "valid", "test"):  # stratified: every class in every split, in proportion
        counts = np.bincount(f.data[s][1], minlength=3)
        assert counts.min() >= 0.8 * counts.max(), (s, counts)
    test_file = labelled(tmp_path / "test.csv", n=9)
    g = seqbench.create_task("custom", path=str(labelled(tmp_path / "g.csv")), test_path=str(test_file))
    assert g.sizes["test"] == 9 and g.sizes["train"] + g.sizes["valid"] == 60
    with pytest.raises(seqbench.SeqbenchError, match="three fractions"):
        seqbench.create_task("custom", path=str(tmp_path / "g.csv"), split="0.9,0.2")
    # the CLI reads split=0.5,0.25,0.25 as a tuple of numbers: the same split
    assert main(["train", "--task", "custom", "--task-opt", f"path={tmp_path / 'e.csv'}", "--task-opt",
                 "split=0.5,0.25,0.25", "--model", "gru", "--params", "1k", "--epochs", "1", "--no-progress"]) == 0


def test_normalization_is_fitted_on_train_only(tmp_path):
    marks = lambda s: "test" if s >= 50 else ("valid" if s >= 40 else "train")  # noqa: E731
    path = labelled(tmp_path / "d.csv", split=marks)
    raw = seqbench.create_task("custom", path=str(path))
    norm = seqbench.create_task("custom", path=str(path), normalize="feature")
    x_train = raw.data["train"][0].reshape(-1, 2)
    mean, std = x_train.mean(0), x_train.std(0)
    np.testing.assert_allclose(norm.fitted()["normalize"]["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(norm.data["test"][0], (raw.data["test"][0] - mean) / std, rtol=1e-4, atol=1e-5)
    assert abs(norm.data["train"][0].reshape(-1, 2).mean(0)).max() < 1e-5
    series = seqbench.create_task("custom", path=str(path), normalize="series")
    per = series.data["test"][0]
    np.testing.assert_allclose(per.mean(axis=1), 0, atol=1e-5)


def test_differencing_turns_forecasts_back_into_values(tmp_path):
    """A random walk: a model that predicts 'no change' in the differenced series scores exactly
    the naive forecast, on the original scale."""
    walk = 100 + np.cumsum(np.random.default_rng(0).normal(size=400))
    (tmp_path / "walk.csv").write_text("price\n" + "\n".join(f"{v:.4f}" for v in walk) + "\n")
    t = seqbench.create_task("custom", path=str(tmp_path / "walk.csv"), transform="diff", lookback=10)

    class NoChange(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), x.shape[1], 1), -t.mean / t.std)  # a scaled zero difference

    assert t.evaluate(NoChange(), "test")["mae"] == pytest.approx(t.trivial_baseline, rel=1e-6)
    with pytest.raises(seqbench.SeqbenchError, match="transform"):
        seqbench.create_task("custom", path=str(tmp_path / "walk.csv"), transform="sqrt")


def test_forecast_folds_roll_the_origin_forward_and_keep_the_test_windows(tmp_path):
    """fold=i/k on a series: rolling-origin validation. Each fold validates on a later block of the
    windows before the test part, trains only on windows whose targets end before that block, and
    keeps the test windows; fold=all trains on train+valid."""
    t = np.arange(240)
    (tmp_path / "s.csv").write_text("value\n" + "\n".join(f"{np.sin(v / 2) + 0.01 * v:.4f}" for v in t) + "\n")
    opts = dict(path=str(tmp_path / "s.csv"), kind="forecast", lookback=24, horizon=3, season=12)
    plain = seqbench.create_task("custom", **opts)
    folds = [seqbench.create_task("custom", **opts, fold=f"{i}/5") for i in range(5)]
    for i, f in enumerate(folds):
        assert (f.origins["test"] == plain.origins["test"]).all()
        assert f.origins["train"].max() + f.horizon <= f.origins["valid"].min()  # no validation target in training
        if i:
            assert folds[i - 1].origins["valid"].max() < f.origins["valid"].min()
        assert f.trivial_on("valid") > 0
    assert folds[-1].origins["valid"].max() == plain.origins["valid"].max()
    refit = seqbench.create_task("custom", **opts, fold="all")
    assert refit.origins["train"].max() == plain.origins["valid"].max()
    with pytest.raises(seqbench.SeqbenchError, match="rolling-origin validation needs blocks"):
        seqbench.create_task("custom", **{**opts, "horizon": 12}, fold="0/20")  # blocks of 8 steps
    plain = seqbench.create_task("forecast:airpassengers")  # the bundled series take it too (recommend's CV)
    first, last = (seqbench.create_task("forecast:airpassengers", fold=f) for f in ("0/3", "2/3"))
    assert (last.origins["test"] == plain.origins["test"]).all() and last.config()["fold"] == "2/3"
    assert last.origins["valid"].max() == plain.origins["valid"].max()
    assert first.origins["train"].max() + first.horizon <= first.origins["valid"].min()
    with pytest.raises(seqbench.SeqbenchError, match=r"forecast:airpassengers: fold='5/3' must be I/K"):
        seqbench.create_task("forecast:airpassengers", fold="5/3")


@pytest.mark.parametrize("opts,match", [
    ({"lookback": 10}, r"option\(s\) lookback do not apply to d.csv \(read as kind=classification\)"),
    ({"level": "word"}, r"level do not apply"),
    ({"transform": "diff"}, r"transform do not apply"),
])
def test_options_that_do_not_apply_are_errors(tmp_path, opts, match):
    with pytest.raises(seqbench.SeqbenchError, match=match):
        seqbench.create_task("custom", path=str(labelled(tmp_path / "d.csv")), **opts)


PLUGIN = '''
import numpy as np
import seqbench
from seqbench.tasks import ClassificationTask


@seqbench.register_task("parity")
class Parity(ClassificationTask):
    """Is the number of positive steps even? (a user's own task, from the public base class)"""
    name = "parity"
    recommended = {"epochs": 1, "batch_size": 16}

    def __init__(self, seq_len: int = 8, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        for split, n in (("train", 64), ("valid", 16), ("test", 16)):
            x = rng.normal(size=(n, seq_len, 1)).astype("float32")
            self._set_split(split, x, ((x > 0).sum(axis=(1, 2)) % 2).astype("int64"))
        self.d_in, self.seq_len = 1, seq_len
        self._finish_classes()
'''


def test_a_plugin_module_is_imported_by_the_cli_and_the_trial_processes(tmp_path):
    (tmp_path / "my_tasks.py").write_text(PLUGIN)
    proc = subprocess.run([SEQBENCH, "bench", "--import", "my_tasks", "--db", str(tmp_path / "r.db"), "--tasks",
                           "parity", "--models", "gru,tcn", "--params", "2k", "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 finished now, 0 failed" in proc.stdout
    train = subprocess.run([SEQBENCH, "train", "--import", str(tmp_path / "my_tasks.py"), "--task", "parity",
                            "--model", "gru", "--params", "2k", "--no-progress"], capture_output=True, text=True)
    assert train.returncode == 0 and "test accuracy" in train.stdout, train.stderr
    missing = subprocess.run([SEQBENCH, "train", "--import", "no_such_module", "--task", "parity", "--model", "gru"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "--import no_such_module: no module" in missing.stderr


def test_patience_stops_early(tmp_path, capsys):
    task = seqbench.create_task("adding", seq_len=10, n_train=64, n_valid=16, n_test=16)
    torch.manual_seed(0)
    r = seqbench.train(seqbench.create_model("gru", 2, 1, hidden=4), task,
                       seqbench.TrainConfig(epochs=30, optimizer="sgd", lr=1e-12, early_stop=2), progress=False)
    assert len(r.history) < 30 and len(r.history) - r.best_epoch == 2
    assert main(["train", "--task", "adding", "--task-opt", "seq_len=10", "--task-opt", "n_train=64", "--task-opt",
                 "n_valid=16", "--task-opt", "n_test=16", "--model", "gru", "--params", "1k", "--epochs", "30",
                 "--optimizer", "sgd", "--lr", "1e-12", "--patience", "2", "--no-progress"]) == 0
    assert "early_stop=2" in capsys.readouterr().err
