import re
import subprocess
import sys

import pytest

from seqbench.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_budget_table_within_5_percent(capsys):
    code, out, _ = run(capsys, "models", "--params", "70k", "--d-in", "1", "--d-out", "10")
    assert code == 0
    rows = [line for line in out.splitlines()[2:] if line.strip()]
    import seqbench
    assert [r.split()[0] for r in rows] == seqbench.list_models()
    for r in rows:
        pct = float(re.search(r"([+-]\d+\.\d)%", r).group(1))
        assert abs(pct) <= 5.0, r


def test_tasks_table(capsys):
    code, out, _ = run(capsys, "tasks")
    assert code == 0 and "0.1767" in out and "unavailable" not in out
    listed = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    for name in ["adding", "copy_memory", "smnist", "pmnist", "smnist:digits", "chorales", "ptb_word", "ptb_char",
                 "tsc:GunPoint", "tsc:ArrowHead", "tsc:ItalyPowerDemand", "tsc:BasicMotions", "tsc:JapaneseVowels",
                 "tsc:PLAID", "forecast:sunspots", "forecast:airpassengers", "forecast:co2"]:
        assert name in listed, name
    assert "custom" in out


def test_train_on_a_real_task(capsys):
    code, out, _ = run(capsys, "train", "--task", "smnist:digits", "--model", "tcn", "--model-opt", "levels=4",
                       "--model-opt", "hidden=12", "--epochs", "1", "--no-progress", "--threads", "1")
    assert code == 0 and "test accuracy:" in out and "trivial baseline: 0.07333" in out


def test_missing_extra_names_it():
    from seqbench.data import require
    import seqbench
    with pytest.raises(seqbench.SeqbenchError, match=r"seqbench\[data\]"):
        require("sktime_not_installed_anywhere", why="tsc:GunPoint")


def test_train_prints_metric_baseline_and_paper(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--task", "adding", "--model", "tcn", "--params", "5k", "--epochs", "1",
                         "--steps-per-epoch", "3", "--task-opt", "seq_len=16", "--task-opt", "n_valid=32",
                         "--task-opt", "n_test=32", "--model-opt", "levels=2", "--out", str(tmp_path / "run"),
                         "--no-progress")
    assert code == 0, err
    # Table 1 is at T=600: at T=16 no number, but the note says where the paper's is from
    assert re.search(r"test mse: \S+\s+trivial baseline: 0\.1767\s+paper \(tcn\): - \[Table 1, T=600.*this task: T=16", out)
    assert (tmp_path / "run" / "best.pt").is_file()


@pytest.mark.parametrize("argv,match", [
    (["train", "--task", "adding", "--model", "tnc"], "unknown model 'tnc'"),
    (["train", "--task", "nope", "--model", "tcn"], "unknown task 'nope'"),
    (["train", "--task", "adding", "--model", "tcn", "--params", "12"], "impossible"),
    (["train", "--task", "adding", "--model", "tcn", "--params", "lots"], "cannot read 'lots' as a count"),
    (["train", "--task", "adding", "--model", "tcn", "--task-opt", "seq_len"], "KEY=VALUE"),
    (["train", "--task", "adding", "--model", "tcn", "--optimizer", "adagrad"], "unknown optimizer"),
    (["models", "--params", "70k", "--d-in", "0"], "d_in must be a positive integer"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("seqbench: error: ") and re.search(match, err), err


def test_existing_out_dir_is_refused_before_work(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    code, _, err = run(capsys, "train", "--task", "adding", "--model", "tcn", "--out", str(tmp_path))
    assert code == 2 and "not empty" in err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_console_script_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "seqbench.cli", "train", "--task", "adding", "--model", "xyz"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown model 'xyz'" in proc.stderr


def test_report_bad_paths_exit_2_with_one_line(capsys, tmp_path):
    """A missing or non-database file, and an --out that is a file or can't be created."""
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 100)
    cases = [([str(tmp_path / "missing.db"), "--out", str(tmp_path / "rep")], "does not exist"),
             ([str(junk), "--out", str(tmp_path / "rep")], "not a seqbench results database")]
    for db_args, match in cases:
        code, _, err = run(capsys, "report", *db_args)
        assert code == 2 and err.count("\n") == 1 and match in err, err
    assert not (tmp_path / "rep").exists()


def test_an_unwritable_out_is_a_one_line_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # --out under a regular file: the directory can't be made (OSError), whoever runs the test
    code, _, err = run(capsys, "train", "--task", "adding", "--model", "tcn", "--params", "2k", "--epochs", "1",
                       "--task-opt", "seq_len=10", "--task-opt", "n_train=32", "--out", str(blocker / "run"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("seqbench: error: ") and str(blocker) in err, err


def test_every_training_setting_can_be_set_from_the_cli(capsys, tmp_path):
    """--train-opt reaches the TrainConfig fields that have no flag of their own; a flag wins."""
    import json
    code, _, err = run(capsys, "train", "--task", "adding", "--task-opt", "seq_len=8", "--task-opt", "n_train=32",
                       "--model", "gru", "--params", "2k", "--epochs", "1", "--train-opt", "weight_decay=0.01",
                       "--train-opt", "gamma=0.5", "--train-opt", "eval_batch_size=7", "--train-opt", "epochs=9",
                       "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 0, err
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (train["weight_decay"], train["gamma"], train["eval_batch_size"], train["epochs"]) == (0.01, 0.5, 7, 1)
    code, _, err = run(capsys, "train", "--task", "adding", "--model", "gru", "--train-opt", "wd=1")
    assert code == 2 and "unknown --train-opt wd" in err


def test_old_spellings_work_for_one_release_with_a_deprecation_line(capsys, tmp_path):
    """--patience (now --early-stop), bench --budget (now --scale) and recommend --seeds N (now
    --repeats N): each still works, and says what replaces it."""
    code, _, err = run(capsys, "train", "--task", "adding", "--model", "tcn", "--patience", "0")
    assert code == 2 and "--patience N (early stopping) is deprecated" in err and "--early-stop" in err
    code, _, err = run(capsys, "bench", "--db", str(tmp_path / "r.db"), "--suite", "tcn-paper", "--budget", "quick",
                       "--models", "tcn", "--epochs", "0")
    assert code == 2 and "use --scale" in err and "epochs must be >= 1" in err
    code, _, err = run(capsys, "recommend", "--task", "adding", "--seeds", "0", "--db", str(tmp_path / "q.db"))
    assert code == 2 and "use --repeats N" in err and "seeds must be a positive integer" in err
