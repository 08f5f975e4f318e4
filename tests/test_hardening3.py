"""Cases found by the third hardening pass (issue 23): each once ran code it should not have, lost a
user's file, answered wrongly without a word, or failed with a traceback after work had started."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import trial_rows

SEQBENCH = str(Path(sys.executable).parent / "seqbench")  # the console script, as a user runs it


def cls_csv(path: Path, n: int = 12, steps: int = 4, cols=("f", "g"), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    head = "series,step," + ",".join(cols) + ",label\n"
    rows = "".join(f"{s},{t}," + ",".join(f"{rng.normal() + (s % 2):.3f}" for _ in cols) + f",{s % 2}\n"
                   for s in range(n) for t in range(steps))
    path.write_text(head + rows)
    return path


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_decoy_module_in_the_working_directory_is_never_imported(tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="the ray extra is not installed (make installs it)")
    work = tmp_path / "project"
    work.mkdir()
    cls_csv(work / "cls.csv")
    marker = tmp_path / "imported"
    for name in ("pyarrow", "concurrent"):  # pandas may import pyarrow; torch imports concurrent
        (work / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\nraise SystemExit('decoy')\n")
    argv = [SEQBENCH, "bench", "--executor", executor, "--db", str(tmp_path / "r.db"), "--tasks", "custom",
            "--task-opt", "path=cls.csv", "--models", "gru", "--params", "2k", "--epochs", "1", "--no-progress"]
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"})
    assert not marker.exists(), f"imported the decoy: {marker.read_text()}"
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["status"] for r in trial_rows(tmp_path / "r.db")] == ["done"]


# -- user files are never replaced or deleted ------------------------------------------------------
def train_small(tmp_path, model="tcn", name="run", **opts):
    import seqbench
    task = seqbench.create_task("copy_memory", T=10, n_train=128, n_valid=32, n_test=32)
    m = seqbench.create_model(model, task.d_in, task.d_out, params="2k", **opts)
    seqbench.train(m, task, seqbench.TrainConfig.for_task(task, epochs=1), out_dir=tmp_path / name, progress=False)
    return tmp_path / name


@pytest.mark.parametrize("argv,where", [
    (["compress", "{run}", "--prune", "0.5", "--epochs", "1", "--out", "{d}/userdir", "--no-progress"], "pruned"),
    (["compress", "{run}", "--quantize", "int8", "--out", "{d}/userdir", "--no-progress"], "int8"),
    (["recommend", "--task", "adding", "--task-opt", "seq_len=8", "--models", "gru", "--max-params", "2k",
      "--time-budget", "20", "--db", "{d}/r.db", "--out", "{d}/userdir", "--no-progress"], "winner"),
    (["recommend", "--task", "adding", "--task-opt", "seq_len=8", "--models", "gru", "--max-params", "2k",
      "--time-budget", "20", "--db", "{d}/r.db", "--out", "{d}/userdir", "--no-progress"], ""),
])
def test_a_users_files_under_out_are_refused_before_any_work(tmp_path, capsys, argv, where):
    from seqbench.cli import main
    run = train_small(tmp_path, "gru" if "int8" in argv else "tcn")
    note = tmp_path / "userdir" / where / "notes.txt"
    note.parent.mkdir(parents=True)
    note.write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.replace("{run}", str(run)).replace("{d}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.txt" in err[0] and "did not write" in err[0], err
    assert note.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == before


def test_rerunning_compress_replaces_its_own_variant_and_keeps_a_users_file(tmp_path, capsys):
    from seqbench.cli import main
    run = train_small(tmp_path)
    argv = ["compress", str(run), "--prune", "0.5", "--epochs", "1", "--out", str(tmp_path / "c"), "--no-progress"]
    assert main(argv) == 0
    first = (tmp_path / "c" / "pruned" / "best.pt").stat().st_ino
    (tmp_path / "c" / "mine.txt").write_text("kept")  # beside seqbench's outputs: refused, then kept
    assert main(argv) == 2 and "mine.txt" in capsys.readouterr().err
    (tmp_path / "c" / "mine.txt").unlink()
    assert main(argv) == 0
    assert (tmp_path / "c" / "pruned" / "best.pt").stat().st_ino != first  # swapped in whole
    assert json.loads((tmp_path / "c" / "pruned" / "result.json").read_text())["test"]["loss"] > 0
    assert not list((tmp_path / "c").glob(".*partial*"))


# -- changed data is never mistaken for the old data -----------------------------------------------
def test_resume_refuses_a_data_file_that_changed(tmp_path, capsys):
    from seqbench.cli import main
    data = cls_csv(tmp_path / "cls.csv")
    argv = ["train", "--task", "custom", "--task-opt", f"path={data}", "--task-opt", "normalize=feature", "--model",
            "gru", "--params", "2k", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    cls_csv(data, seed=1)  # new values, same name: new normalization statistics
    saved = (tmp_path / "run" / "config.json").read_text()
    assert main(argv[:-1] + ["--epochs", "2", "--resume", "--no-progress"]) == 2
    assert "the data changed" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.json").read_text() == saved


def test_a_sweep_keys_every_data_file_by_content(tmp_path):
    from seqbench.bench.sweep import make_trial
    train, test = cls_csv(tmp_path / "train.csv"), cls_csv(tmp_path / "t.csv", seed=2)
    opts = {"path": str(train), "test_path": str(test)}
    before = make_trial("custom", "gru", 0, params="2k", task_opts=opts)
    assert make_trial("custom", "gru", 0, params="2k", task_opts=opts)["key"] == before["key"]
    cls_csv(test, seed=3)
    after = make_trial("custom", "gru", 0, params="2k", task_opts=opts)
    assert after["key"] != before["key"] and after["task_opts"]["test_path"] == str(test.resolve())


# -- a test file is read by column name ------------------------------------------------------------
def _reorder(src: Path, dst: Path, order) -> Path:
    import pandas as pd
    pd.read_csv(src)[list(order)].to_csv(dst, index=False)
    return dst


def test_a_test_file_is_matched_to_the_training_file_by_column_name(tmp_path):
    import seqbench
    train = cls_csv(tmp_path / "train.csv", n=20)
    test = cls_csv(tmp_path / "test.csv", n=10, seed=5)
    same = seqbench.create_task("custom", path=str(train), test_path=str(test))
    swapped = seqbench.create_task("custom", path=str(train), test_path=str(
        _reorder(test, tmp_path / "swapped.csv", ["series", "step", "g", "label", "f"])))
    np.testing.assert_array_equal(swapped.data["test"][0], same.data["test"][0])
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(test.read_text().replace(",g,", ",h,", 1))
    with pytest.raises(seqbench.SeqbenchError, match="has no feature column 'g'"):
        seqbench.create_task("custom", path=str(train), test_path=str(renamed))
    extra = tmp_path / "extra.csv"
    import pandas as pd
    pd.read_csv(test).assign(h=1.0).to_csv(extra, index=False)
    with pytest.raises(seqbench.SeqbenchError, match="has a column 'h' that train.csv lacks"):
        seqbench.create_task("custom", path=str(train), test_path=str(extra))


def test_classes_only_in_test_are_warned_about(tmp_path):
    import seqbench
    train = cls_csv(tmp_path / "train.csv", n=20)
    test = tmp_path / "test.csv"
    test.write_text(cls_csv(tmp_path / "t.csv", n=6).read_text().replace(",1\n", ",7\n"))
    with pytest.warns(UserWarning, match=r"class\(es\) '7' occur in valid/test but never in training"):
        seqbench.create_task("custom", path=str(train), test_path=str(test))


# -- predict ---------------------------------------------------------------------------------------
def _var_npz(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 9, size=30)
    x = rng.normal(size=(30, 8, 2))
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    np.savez(path, x=x, y=(x[:, 0, 0] > 0).astype(int), lengths=lengths)
    return path


@pytest.mark.parametrize("causal", [True, False])
def test_a_sequence_gets_the_same_prediction_alone_or_batched(tmp_path, causal):
    import seqbench
    from seqbench.predict import predict
    data = _var_npz(tmp_path / "d.npz")
    z = np.load(data)
    np.savez(tmp_path / "fixed.npz", x=z["x"], y=z["y"])  # non-causal models train on equal lengths
    task = seqbench.create_task("custom", path=str(tmp_path / "fixed.npz"))
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 2, 2, hidden=8, levels=2, causal=causal)
    seqbench.train(m, task, seqbench.TrainConfig(epochs=1), out_dir=tmp_path / "run", progress=False)
    np.savez(tmp_path / "new.npz", x=z["x"], lengths=z["lengths"])  # new data: no labels, no ids
    batched = predict(tmp_path / "run", tmp_path / "new.npz")
    assert list(batched["id"]) == list(range(30))  # ids default to the rows, 0..N-1
    short = int(np.argmin(z["lengths"]))
    np.savez(tmp_path / "one.npz", x=z["x"][short:short + 1, :z["lengths"][short]])
    alone = predict(tmp_path / "run", tmp_path / "one.npz")
    np.testing.assert_allclose(alone.filter(like="p_").to_numpy()[0],
                               batched.filter(like="p_").to_numpy()[short], rtol=1e-5, atol=1e-6)


def test_npz_predictions_load_without_pickle(tmp_path):
    import seqbench
    from seqbench.cli import main
    data = cls_csv(tmp_path / "cls.csv", n=20)
    seqbench.train(seqbench.create_model("gru", 2, 2, hidden=4), seqbench.create_task("custom", path=str(data)),
                   seqbench.TrainConfig(epochs=1), out_dir=tmp_path / "run", progress=False)
    assert main(["predict", str(tmp_path / "run"), "--input", str(data), "--out", str(tmp_path / "p.npz")]) == 0
    z = np.load(tmp_path / "p.npz", allow_pickle=False)
    assert z["prediction"].dtype.kind == "U" and set(z["prediction"]) <= {"0", "1"} and len(z["id"]) == 20


# -- deployment: exports that stay honest -----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_transformer_stream_past_max_len_says_so(tmp_path, fmt):
    import seqbench
    import torch
    from seqbench.export import export_run
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="the export extra is not installed (make installs it)")
    task = seqbench.create_task("adding", seq_len=10, n_train=32, n_valid=8, n_test=8)
    torch.manual_seed(0)
    seqbench.train(seqbench.create_model("transformer", 2, 1, params="3k"), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    desc = export_run(tmp_path / "run", tmp_path / f"s.{fmt}", streaming=True, max_len=20)
    assert desc["max_abs_diff"] < 1e-4 and "22 steps" in desc["checked"]  # the check ran past the limit
    if fmt == "onnx":
        import onnxruntime as ort
        sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
        run = lambda x, st: sess.run(None, {"x": x, **dict(zip([i.name for i in sess.get_inputs()][1:], st))})
    else:
        prog = torch.export.load(str(tmp_path / "s.pt2")).module()
        run = lambda x, st: [t.numpy() for t in prog(torch.from_numpy(x), *map(torch.from_numpy, st))]
    state = [np.zeros([1 if d == "batch" else d for d in s["shape"]], dtype=s["dtype"]) for s in desc["inputs"][1:]]
    finite = []
    for t in range(25):
        y, *state = run(np.full((1, 2), 0.5, dtype=np.float32), state)
        finite.append(bool(np.isfinite(y).all()))
    assert finite == [True] * 20 + [False] * 5


@pytest.mark.parametrize("argv,match", [
    (["--streaming", "--max-len", "100000000"], r"streaming state at --max-len 100,000,000 needs about [\d,.]+ GiB"),
    (["--length", "100000000"], r"tracing at --length 100,000,000 needs about [\d,.]+ GiB"),
    (["--max-len", "-1"], r"max_len must be a positive integer"),
    (["--max-len", "0"], r"max_len must be a positive integer"),
])
def test_export_sizes_that_cannot_fit_are_refused_first(tmp_path, capsys, argv, match):
    import re

    import seqbench
    from seqbench.cli import main
    task = seqbench.create_task("adding", seq_len=10, n_train=32, n_valid=8, n_test=8)
    seqbench.train(seqbench.create_model("transformer", 2, 1, params="3k"), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".*"))


# -- one line and exit 2, before any work ------------------------------------------------------------
@pytest.fixture
def bad(tmp_path):
    import pandas as pd
    import seqbench
    cls_csv(tmp_path / "cls.csv")
    np.savez(tmp_path / "ids.npz", tokens=np.array([0, 1, 2**40, 3] * 50))
    pd.DataFrame({"series": [0, 0, 1, 1, 2, 2], "f": [1.0, 2, 3, 4, 5, 6],
                  "label": [[1], [1], [0], [0], [1], [1]]}).to_parquet(tmp_path / "listlabel.parquet")
    task = seqbench.create_task("adding", seq_len=10, n_train=32, n_valid=8, n_test=8)
    seqbench.train(seqbench.create_model("gru", 2, 1, hidden=4), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    seqbench.train(seqbench.create_model("gru", 2, 2, hidden=4), seqbench.create_task("custom", path=str(
        tmp_path / "cls.csv"), normalize="feature"), seqbench.TrainConfig(epochs=1), out_dir=tmp_path / "crun",
        progress=False)
    (tmp_path / "costs.json").write_text('{"seqbench_costs": 1, "machine": "m", "batch": 1, "entries": []}')
    (tmp_path / "adir").mkdir()
    return tmp_path


def _tamper(run: Path, edit) -> Path:
    cfg = json.loads((run / "config.json").read_text())
    edit(cfg)
    (run / "config.json").write_text(json.dumps(cfg))
    return run


TRAIN = ["train", "--model", "tcn", "--epochs", "1", "--no-progress"]
REC = ["recommend", "--task", "adding", "--task-opt", "seq_len=8", "--models", "gru", "--db", "{d}/r.db",
       "--no-progress"]
HOSTILE = [
    (TRAIN + ["--task", "adding", "--task-opt", "seq_len=100000000"], r"needs about [\d,.]+ GiB of memory"),
    (TRAIN + ["--task", "copy_memory", "--task-opt", "T=1000000000"], r"needs about [\d,.]+ GiB of memory"),
    (REC + ["--batch", "1000000000"], r"at --batch 1,000,000,000 .*needs about [\d,.]+ GiB"),
    (REC + ["--max-params", "5g"], r"needs about [\d,.]+ GiB to train"),
    (TRAIN + ["--task", "custom", "--task-opt", "path={d}/ids.npz"], r"token ids run up to 1,099,511,627,776"),
    (TRAIN + ["--task", "adding", "--model-opt", "levels=1000000"], r"levels of 'tcn' is 1,000,000; seqbench builds"),
    (TRAIN + ["--task", "adding", "--import", "nosuchpkg.sub"], r"--import nosuchpkg.sub: no module of that name"),
    (TRAIN + ["--task", "custom", "--task-opt", "path={d}/cls.csv", "--task-opt", "split=nan,0.5,0.5"],
     r"three fractions"),
    (TRAIN + ["--task", "adding", "--task-opt", "seed=" + "(" * 100_000], r"a value of 100,000 characters"),
    (TRAIN + ["--task", "custom", "--task-opt", "path={d}/listlabel.parquet"], r"column 'label' holds lists"),
    (REC + ["--costs", "{d}/costs.json"], r"is not a seqbench costs file"),
    (TRAIN + ["--task", "custom", "--task-opt", "path={d}/cls.csv", "--task-opt", "fold=5/5"], r"fold='5/5' must be I/K"),
    (TRAIN + ["--task", "adding", "--train-opt", "gamma=2"], r"gamma \(the LR decay factor\) must be in \(0, 1\]"),
    (REC + ["--out", "{d}/cls.csv"], r"--out .*cls.csv is a file"),
    (["compress", "{d}/crun", "--distill-into", "gru:2k", "--temperature", "inf", "--out", "{d}/c"],
     r"--temperature must be a finite number"),
    (["report", "{d}/r.db", "--out", ""], r"--out is empty|does not exist"),
    (["bench", "--db", "{d}/r.db", "--tasks", "adding", "--models", "gru", "--address", "1.2.3.4:6379"],
     r"--address joins a Ray cluster"),
    (["profile", "--task", "adding", "--models", "gru", "--out", "{d}/adir"], r"give a file to write"),
    (["export", "{d}/run", "--out", "{d}/adir", "--format", "onnx"], r"is a directory; give a file name"),
]


@pytest.mark.parametrize("argv,match", HOSTILE, ids=[f"{i}" for i in range(len(HOSTILE))])
def test_hostile_input_is_one_line_exit_2_before_any_work(bad, capsys, argv, match):
    import re

    from seqbench.cli import main
    before = sorted(str(p) for p in bad.rglob("*"))
    code = main([a.replace("{d}", str(bad)) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("seqbench: error: ")]
    assert code == 2 and len(lines) == 1 and re.search(match, lines[0]), err[-600:]
    assert "Traceback" not in err
    assert sorted(str(p) for p in bad.rglob("*")) == before  # nothing written


TAMPERED = [
    ("crun", lambda c: c.update(compress=[1]), "best.pt", r"'compress' must be a mapping"),
    ("crun", lambda c: c["model"].update(layers=1_000_000), "best.pt", r"seqbench builds at most"),
    ("crun", lambda c: c["fitted"].update(classes=["a"]), "predict", r"classes must be 2 names"),
    ("crun", lambda c: c["fitted"]["normalize"].update(mean=[0.0]), "predict", r"2 means and positive stds"),
    ("crun", lambda c: c["fitted"].update(normalize={"how": "magic"}), "predict", r"unknown normalization"),
]


@pytest.mark.parametrize("run,edit,what,match", TAMPERED, ids=[str(i) for i in range(len(TAMPERED))])
def test_a_tampered_run_directory_is_one_line_exit_2(bad, capsys, run, edit, what, match):
    import re

    from seqbench.cli import main
    _tamper(bad / run, edit)
    argv = ["predict", str(bad / run), "--input", str(bad / "cls.csv")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and re.search(match, err) and "Traceback" not in err, err[-600:]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_a_damaged_checkpoint_is_one_line_exit_2(bad, capsys, content):
    from seqbench.cli import main
    (bad / "crun" / "best.pt").write_bytes(content)
    assert main(["predict", str(bad / "crun"), "--input", str(bad / "cls.csv")]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err
    (bad / "run" / "last.pt").write_bytes(content)
    assert main(["train", "--task", "adding", "--task-opt", "seq_len=10", "--task-opt", "n_train=32", "--task-opt",
                 "n_valid=8", "--task-opt", "n_test=8", "--model", "gru", "--model-opt", "hidden=4", "--epochs", "2",
                 "--out", str(bad / "run"), "--resume", "--no-progress"]) == 2
    assert "is damaged" in capsys.readouterr().err


def test_a_forecast_runs_tampered_fitted_is_refused(tmp_path, capsys):
    import seqbench
    from seqbench.cli import main
    (tmp_path / "s.csv").write_text("v\n" + "\n".join(f"{np.sin(i / 4):.4f}" for i in range(120)) + "\n")
    task = seqbench.create_task("custom", path=str(tmp_path / "s.csv"), lookback=8)
    seqbench.train(seqbench.create_model("gru", 1, 1, hidden=4), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    for edit, match in ((lambda c: c["fitted"].update(lookback=0), "lookback=0"),
                        (lambda c: c["fitted"].update(transform="cube"), "unknown transform 'cube'")):
        saved = (tmp_path / "run" / "config.json").read_text()
        _tamper(tmp_path / "run", edit)
        assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "s.csv")]) == 2
        assert match in capsys.readouterr().err
        (tmp_path / "run" / "config.json").write_text(saved)


# -- recommend: the baseline comparison uses the noise rule of ties --------------------------------
def _ranked(valid, step_ms=0.1, epochs=3, candidate="tcn @2K"):
    from seqbench.recommend import Ranked
    return Ranked(candidate=candidate, model="tcn", shape="", params=2000, step_ms=step_ms, mem_mb=1, lr=1e-3,
                  dropout=0, valid=valid, valid_std=None, seeds=1, epochs=epochs, train_time=1, run_dir="")


@pytest.mark.parametrize("best,trivial,noise,wins", [
    (0.1729, 0.1730, 0.005, False),   # the stock-price case: a 'win' far inside the noise
    (0.1600, 0.1730, 0.005, True),    # clear of the noise
    (0.1729, 0.1730, None, True),     # no noise estimate: strictly better wins
    (0.1740, 0.1730, 0.005, False),   # worse
])
def test_beating_the_baseline_uses_the_noise_rule_of_ties(best, trivial, noise, wins):
    from seqbench.recommend import choose
    other = _ranked(best + 0.001, step_ms=0.01, candidate="gru @2K")
    winner, close = choose([_ranked(best), other], trivial, False, noise)
    assert (winner is not None) == wins
    if wins and noise:  # the other is within the same noise: a tie, the cheaper step wins
        assert close == [other] and winner is other


# -- messages that say what is true ----------------------------------------------------------------
def test_a_fixed_length_export_gives_its_own_reason(tmp_path):
    import seqbench
    from seqbench.export import export_model
    lstm = seqbench.create_model("lstm", 2, 1, hidden=4)
    assert "LSTM/GRU/RNN" in export_model(lstm, tmp_path / "l.pt2", "pt2")["fixed_reason"]
    lru = seqbench.create_model("lru", 2, 1, params="3k")
    assert "chunked scan" in export_model(lru, tmp_path / "r.pt2", "pt2")["fixed_reason"]


def test_the_digits_variant_claims_no_paper_figure(capsys):
    import seqbench
    from seqbench.cli import main
    pytest.importorskip("sklearn", reason="the data extra is not installed (make installs it)")
    assert seqbench.create_task("smnist:digits").paper.values == {}
    assert main(["train", "--task", "smnist:digits", "--task-opt", "n_train=64", "--task-opt", "n_valid=16",
                 "--task-opt", "n_test=16", "--model", "gru", "--params", "2k", "--epochs", "1", "--no-progress"]) == 0
    assert "paper (gru): -" in capsys.readouterr().out


def test_recommend_varies_only_what_a_candidate_uses(tmp_path):
    """One-layer torch RNNs have no dropout: the search neither reports one nor ranks copies that
    differ only in it; the TCN's dropout is searched."""
    import seqbench
    from seqbench.models.registry import get_model_entry
    from seqbench.recommend import Limits
    assert get_model_entry("gru").cls.searchable({"layers": 1}) == set()
    assert get_model_entry("gru").cls.searchable({"layers": 2}) == {"dropout"}
    assert get_model_entry("tcn").cls.searchable({}) == {"dropout"}
    rec = seqbench.recommend("adding", Limits(max_params=2_000), budget=12, models=["gru"], db=tmp_path / "r.db",
                             max_epochs=1, progress=False, task_opts={"seq_len": 8, "n_train": 64, "n_valid": 16,
                                                                     "n_test": 16})
    assert len(rec.ranked) >= 2 and all(r.dropout is None for r in rec.ranked)
    assert len({(r.candidate, r.lr) for r in rec.ranked}) == len(rec.ranked)


@pytest.mark.parametrize("best,default,noise,winner", [
    (0.80, 0.79, 0.02, "default"),   # better, but inside the noise: the default first try stays
    (0.90, 0.79, 0.02, "best"),      # measurably better: replaced
    (0.80, 0.80, None, "default"),   # no noise estimate: only strictly better replaces it
])
def test_the_default_first_try_is_replaced_only_by_something_measurably_better(best, default, noise, winner):
    from seqbench.recommend import choose
    rows = [_ranked(best, step_ms=0.01, candidate="gru @2K"), _ranked(default, candidate="tcn @2K")]
    rows[1].default = True
    won, _ = choose(rows, 0.5, True, noise)
    assert won is (rows[1] if winner == "default" else rows[0])


def test_a_stratified_split_gives_validation_its_share_and_says_when_it_is_too_small(tmp_path):
    """50 classes of 6 sequences: rounding per class shortchanged validation; now each
    split gets its share of the whole, every class keeps a training sequence, and a validation
    split with fewer sequences than classes is warned about."""
    import seqbench
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(50), 6)
    path = tmp_path / "many.csv"
    path.write_text("series,step,f,label\n" + "".join(f"{s},{t},{rng.normal():.3f},{labels[s]}\n"
                                                     for s in range(300) for t in range(3)))
    with pytest.warns(UserWarning, match="validation holds 45 sequence\\(s\\) for 50 classes"):
        task = seqbench.create_task("custom", path=str(path))
    assert (task.sizes["train"], task.sizes["valid"], task.sizes["test"]) == (210, 45, 45)
    assert len(np.unique(task.data["train"][1])) == 50


def test_threads_pin_blas_as_well_as_torch():
    """The NumPy step engines run on BLAS: --threads (and recommend's cost measurement) pins its
    threads with torch's, or an unpinned OpenBLAS spins a thread per core on every tiny matmul."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from seqbench.utils import pin_threads
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restore the BLAS setting afterwards
        pin_threads(1)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas) and torch.get_num_threads() == 1
    torch.set_num_threads(before)


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    """atomic_write leaves its temp file only if killed mid-write; the next write of that file removes
    a temp whose writer is gone (not one a live writer still holds)."""
    from seqbench.utils import atomic_write_text
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".m.onnx.{dead.stdout.strip()}.abc.tmp"
    live = tmp_path / f".m.onnx.{os.getpid()}.def.tmp"
    stale.write_text("half"), live.write_text("in progress")
    atomic_write_text(tmp_path / "m.onnx", "whole")
    assert not stale.exists() and live.exists() and (tmp_path / "m.onnx").read_text() == "whole"


def test_compress_reports_pruning_before_fine_tuning_and_int8_params(tmp_path):
    from seqbench.compress import compress_run
    run = train_small(tmp_path)
    rows = compress_run(run, tmp_path / "c", prune=0.5, epochs=1, progress=False)
    pruned = rows[1]
    assert "before_finetune" in pruned and pruned["finetune_epochs"] == 1 and "(1 epoch)" in pruned["variant"]
    table = (tmp_path / "c" / "compression.md").read_text()
    assert "before fine-tuning" in table and "weights (serialized)" in table


def test_recommendation_json_names_its_files(tmp_path):
    import seqbench
    from seqbench.recommend import Limits
    rec = seqbench.recommend("adding", Limits(max_params=2_000), budget=10, models=["gru"], db=tmp_path / "r.db",
                             max_epochs=1, progress=False, out=tmp_path / "rec",
                             task_opts={"seq_len": 8, "n_train": 64, "n_valid": 16, "n_test": 16})
    saved = json.loads((tmp_path / "rec" / "recommendation.json").read_text())
    assert saved["paths"] and saved["paths"] == rec.paths
    assert all(Path(p).exists() for p in saved["paths"].values())
