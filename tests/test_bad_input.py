"""Bad input that once gave a traceback, a wrong answer or a misleading message: every case is now
one line on stderr, ``seqbench: error: ...``, saying what is wrong, and exit code 2."""
import re

import numpy as np
import pytest

from seqbench.cli import main

ADD = ["train", "--task", "adding", "--model", "tcn", "--params", "3k", "--epochs", "1", "--no-progress"]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    rows = "".join(f"{s},{t},{rng.normal():.3f},{s % 2}\n" for s in range(12) for t in range(4))
    (tmp_path / "cls.csv").write_text("series,step,f,label\n" + rows)
    (tmp_path / "sparse.csv").write_text("series,step,f,label\n" + "".join(
        f"{s},{t},{rng.normal():.3f},{0 if s % 2 else 1_000_000_000}\n" for s in range(12) for t in range(4)))
    (tmp_path / "series.csv").write_text("value\n" + "".join(f"{np.sin(i / 3):.3f}\n" for i in range(80)))
    np.savez(tmp_path / "scalar_y.npz", x=np.zeros((5, 4)), y=np.float64(1.0))
    np.savez(tmp_path / "complex.npz", x=np.ones((6, 4)) * (1 + 2j), y=np.arange(6) % 2)
    (tmp_path / "junk.npz").write_bytes(bytes(range(256)) * 4)
    import pandas as pd
    pd.DataFrame({"series": [[1, 2], [3], [4]], "f": [1.0, 2.0, 3.0], "label": [0, 1, 0]}).to_parquet(
        tmp_path / "listid.parquet")
    (tmp_path / "seeds.toml").write_text('tasks = ["adding"]\nmodels = ["tcn"]\nseeds = ["a"]\n')
    (tmp_path / "models.toml").write_text('tasks = ["adding"]\nmodels = "tcn"\n')
    (tmp_path / "rundir").mkdir()
    (tmp_path / "book.txt").write_text("the cat sat on the mat.\n" * 200)
    return tmp_path


def custom(path, *opts):
    return ["train", "--task", "custom", "--task-opt", f"path={path}", *sum((["--task-opt", o] for o in opts), []),
            "--model", "gru", "--params", "2k", "--epochs", "1", "--no-progress"]


REC = ["recommend", "--task", "custom", "--task-opt", "path={d}/cls.csv", "--models", "gru", "--max-params", "2k",
       "--db", "{d}/rec.db", "--no-progress"]


def bench(*extra):
    return ["bench", "--db", "{d}/r.db", "--tasks", "adding", "--models", "gru", "--params", "2k", "--no-progress",
            "--task-opt", "seq_len=10", *extra]


CASES = [
    (ADD + ["--task-opt", "seed=abc"], r"task option seed of 'adding' must be an integer, got 'abc'"),
    (ADD + ["--task-opt", "seed=-1"], r"task option seed must be an integer from 0 to 2\*\*63-1, got -1"),
    (ADD + ["--task-opt", "seed=1.5"], r"seed of 'adding' must be an integer, got 1.5"),
    (custom("{d}/cls.csv", "seed=abc"), r"seed of 'custom' must be an integer"),
    (["train", "--task", "pmnist", "--model", "tcn", "--task-opt", "perm_seed=abc"], r"perm_seed of 'pmnist' must be"),
    (ADD + ["--seed", "1180591620717411303424"], r"--seed must be an integer from 0 to 2\*\*63-1"),
    (ADD + ["--model-opt", "levels=abc"], r"levels of 'tcn' must be an integer, got 'abc'"),
    (ADD + ["--model-opt", "levels=2.5"], r"levels of 'tcn' must be an integer, got 2.5"),
    (ADD + ["--model-opt", "dropout=2"], r"dropout of 'tcn' is a probability in \[0, 1\), got 2"),
    (ADD + ["--model-opt", "dropout=-0.5"], r"dropout of 'tcn' is a probability"),
    (ADD + ["--model-opt", "dropout=abc"], r"dropout of 'tcn' must be a number, got 'abc'"),
    (["train", "--task", "adding", "--model", "tcn", "--model-opt", "hidden=1e5"], r"hidden of 'tcn' must be an integer"),
    (["train", "--task", "adding", "--model", "lstm", "--model-opt", "hidden=100000"], r"needs about [\d,.]+ GiB to train"),
    (["train", "--task", "adding", "--model", "tcn", "--params", "5g"], r"needs about [\d,.]+ GiB to train"),
    (["train", "--task", "adding", "--model", "lstm", "--model-opt", "dropout=5"], r"dropout of 'lstm' is a probability"),
    (custom("{d}/sparse.csv"), r"labels run up to 1,000,000,000 for 2 distinct classes"),
    (custom("{d}/series.csv", "season=-1"), r"season of 'custom' must be >= 1, got -1"),
    (custom("{d}/series.csv", "season=abc"), r"season of 'custom' must be an integer( \(or None\))?, got 'abc'"),
    (custom("{d}/scalar_y.npz"), r"'y' is a single number"),
    (custom("{d}/complex.npz"), r"array 'x' is complex"),
    (custom("{d}/junk.npz"), r"is not an NPZ archive"),
    (custom("{d}/listid.parquet"), r"column 'series' holds lists"),
    (custom("{d}/cls.csv", "features=f,label"), r"names the 'label' column.*leak"),
    (["train", "--task", "forecast:sunspots", "--model", "tcn", "--task-opt", "horizon=0"], r"horizon of 'forecast' must be >= 1"),
    (["train", "--task", "copy_memory", "--model", "tcn", "--task-opt", "T=0"], r"task option T of 'copy_memory' must be >= 1"),
    (ADD + ["--out", ""], r"--out is empty"),
    (ADD + ["--out", "{d}/rundir", "--resume"], r"no run to resume"),
    (["bench", "--db", "{d}/r.db", "--config", "{d}/seeds.toml"], r"each of seeds must be an integer"),
    (["bench", "--db", "{d}/r.db", "--config", "{d}/models.toml"], r"models must be a list"),
    (bench("--epochs", "0"), r"epochs must be >= 1"),
    (bench("--task-opt", "seq_len=-1"), r"seq_len of 'adding' must be >= 1"),
    (bench("--executor", "slurm"), r"unknown executor 'slurm'"),
    (["report", "{d}/rundir", "--out", "{d}/rep"], r"is a directory"),
    # options added for your own data, devices, early stopping, recommend and predict
    (custom("{d}/cls.csv", "normalize=zscore"), r"normalize='zscore' is not one of none, series, feature"),
    (custom("{d}/book.txt", "level=byte"), r"level='byte' is not one of char, word"),
    (custom("{d}/book.txt", "seq_len=0"), r"seq_len of 'custom' must be >= 1"),
    (custom("{d}/cls.csv", "split=0.5,0.5,0.5"), r"three fractions train,valid,test summing to 1"),
    (custom("{d}/cls.csv", "test_path={d}/missing.csv"), r"missing.csv: no such file"),
    (custom("{d}/cls.csv", "transform=diff"), r"transform do not apply to cls.csv"),
    (ADD + ["--precision", "8"], r"unknown precision '8'"),
    (ADD + ["--early-stop", "0"], r"--early-stop \(early_stop\) must be >= 1"),
    (ADD + ["--patience", "0"], r"--early-stop \(early_stop\) must be >= 1"),  # the old spelling, for now
    (ADD + ["--device", "tpu-ish"], r"unknown device 'tpu-ish'"),
    (bench("--workers", "0"), r"--workers must be a positive integer, got 0"),
    (bench("--precision", "bf17"), r"unknown precision 'bf17'"),
    (REC + ["--max-step-ms", "-1"], r"max_step_ms must be a positive number"),
    (REC + ["--max-memory-mb", "0"], r"max_memory_mb must be a positive number"),
    (REC + ["--repeats", "0"], r"seeds must be a positive integer"),
    (REC + ["--max-epochs", "0"], r"max_epochs must be a positive integer"),
    (REC + ["--max-trials", "0"], r"max_trials must be a positive integer"),
    (REC + ["--workers", "0"], r"--workers must be a positive integer"),
    (REC + ["--executor", "slurm"], r"unknown executor 'slurm'"),
    (REC + ["--costs", "{d}/missing.json"], r"is not a seqbench costs file"),
    (["predict", "{d}/rundir", "--input", "{d}/cls.csv"], r"is not a seqbench run directory"),
    (["profile", "--task", "adding", "--batch", "0", "--out", "{d}/c.json"], r"batch must be a positive integer"),
]


@pytest.mark.parametrize("argv,match", CASES, ids=[re.sub(r"\W+", "_", m)[:40] for _, m in CASES])
def test_bad_input_is_one_line_exit_2(capsys, files, argv, match):
    code = main([a.replace("{d}", str(files)) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("seqbench: error: ")]
    assert code == 2, err
    assert len(lines) == 1 and err.endswith(lines[0] + "\n"), err
    assert re.search(match, lines[0]), lines[0]
    assert "Traceback" not in err and "np.int64" not in err


def test_bench_refuses_before_creating_anything(capsys, files):
    assert main([a.replace("{d}", str(files)) for a in bench("--epochs", "0")]) == 2
    assert not (files / "r.db").exists() and not list(files.glob("r.db*"))


def test_budget_warning_is_one_clean_line(capsys, tmp_path):
    code = main(["train", "--task", "adding", "--task-opt", "seq_len=8", "--task-opt", "n_train=32", "--task-opt",
                 "n_valid=8", "--task-opt", "n_test=8", "--model", "tcn", "--params", "2k", "--epochs", "1",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    warning = [ln for ln in err.splitlines() if "closest width" in ln]
    assert warning == [w for w in warning if w.startswith("seqbench: warning: tcn: closest width hidden=")]
    assert len(warning) == 1 and "UserWarning" not in err and ".py:" not in err
