"""Faults a user meets for real: kill -9 and resume, two sweeps on one database, a module in the
working directory that shadows the standard library, a read-only results database."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import trial_rows, wait_for
from seqbench.bench import Store, grid_trials, run_sweep

SEQBENCH = str(Path(sys.executable).parent / "seqbench")  # the console script, as a user runs it
ADDING = ["--task", "adding", "--task-opt", "seq_len=40", "--task-opt", "n_train=1600", "--task-opt", "n_valid=64",
          "--task-opt", "n_test=64"]


def _lines(path):
    try:
        return len(Path(path).read_text().splitlines())
    except OSError:
        return 0


def _epoch(run) -> int:
    """The epoch the run's last.pt holds (0 before the first); last.pt is replaced atomically."""
    try:
        return torch.load(Path(run) / "last.pt", weights_only=True)["epoch"]
    except (OSError, RuntimeError, KeyError, EOFError):
        return 0


def _weights(run):
    return torch.load(Path(run) / "last.pt", weights_only=True)["model"]


def test_kill_9_then_resume_reaches_the_uninterrupted_weights(tmp_path):
    argv = [SEQBENCH, "train", *ADDING, "--model", "tcn", "--params", "3k", "--model-opt", "dropout=0.1",
            "--epochs", "6", "--threads", "1", "--no-progress", "--seed", "3"]
    subprocess.run(argv + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    proc = subprocess.Popen(argv + ["--out", str(tmp_path / "cut")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # the checkpoint, not the history line written just before it: killing between the two is a
        # kill after epoch 1 (a CI run once caught that window)
        assert wait_for(lambda: _epoch(tmp_path / "cut") >= 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    killed_at = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"]
    assert 2 <= killed_at < 6, "the run should be killed mid-training"
    done = subprocess.run(argv + ["--out", str(tmp_path / "cut"), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert whole.keys() == cut.keys()
    for k in whole:
        assert torch.equal(whole[k], cut[k]), k
    assert _lines(tmp_path / "cut" / "history.jsonl") == 6
    # resuming a finished run trains nothing more and reports the same result
    again = subprocess.run(argv + ["--out", str(tmp_path / "cut"), "--resume"], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.splitlines()[0] == done.stdout.splitlines()[0]


def test_resume_refuses_other_settings(tmp_path):
    argv = [SEQBENCH, "train", *ADDING, "--model", "gru", "--params", "2k", "--epochs", "1", "--no-progress"]
    subprocess.run(argv + ["--out", str(tmp_path / "r")], check=True, capture_output=True)
    bad = subprocess.run(argv + ["--out", str(tmp_path / "r"), "--resume", "--lr", "0.1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "lr=0.1" in bad.stderr and bad.stderr.count("\n") == 1
    none = subprocess.run(argv + ["--out", str(tmp_path / "empty"), "--resume"], capture_output=True, text=True)
    assert none.returncode == 2 and "no run to resume" in none.stderr


def test_an_interrupted_overwrite_leaves_the_old_run_whole(tmp_path):
    """--overwrite builds the new run beside the old one: killed midway, the old run still loads."""
    import seqbench
    out = tmp_path / "run"
    argv = [SEQBENCH, "train", *ADDING, "--model", "tcn", "--params", "3k", "--epochs", "1", "--no-progress",
            "--out", str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    wider = [a.replace("3k", "6k") for a in argv] + ["--overwrite", "--epochs", "50"]
    proc = subprocess.Popen(wider, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: any(_lines(p / "history.jsonl") for p in tmp_path.glob(".run.partial-*")))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    seqbench.load_model(out)  # config and weights still match
    subprocess.run(wider[:-2] + ["--epochs", "1"], check=True, capture_output=True)  # a finished overwrite swaps in
    assert seqbench.count_params(seqbench.load_model(out)) > 4000
    assert not list(tmp_path.glob(".run.*")), "no partial or old copies left behind"


TINY = {"seq_len": 30, "n_train": 512, "n_valid": 32, "n_test": 32}


def _bench(db, models="tcn,gru,rnn,lstm", seeds="0,1", epochs=2, extra=()):
    argv = [SEQBENCH, "bench", "--db", str(db), "--tasks", "adding", "--models", models, "--params", "3k",
            "--seeds", seeds, "--epochs", str(epochs), "--workers", "1", "--no-progress", *extra]
    for k, v in TINY.items():
        argv += ["--task-opt", f"{k}={v}"]
    return argv


def test_two_sweeps_on_one_database_train_each_trial_once(tmp_path):
    db = tmp_path / "r.db"
    a = subprocess.Popen(_bench(db), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert wait_for(lambda: any(r["status"] == "running" for r in trial_rows(db)))
    b = subprocess.Popen(_bench(db), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out_a, _ = a.communicate(timeout=600)
    out_b, _ = b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, (out_a, out_b)
    rows = trial_rows(db)
    assert len(rows) == 8 and all(r["status"] == "done" for r in rows)
    assert [r["attempts"] for r in rows] == [1] * 8, "a trial was trained twice"
    # the second sweep accounts for all 8: trained now, already done, or finished by the other
    m = re.search(r"8 trials: (\d+) already done, (\d+) finished now(?:, (\d+) finished by another sweep)?, 0 failed",
                  out_b)
    assert m and sum(int(g or 0) for g in m.groups()) == 8, out_b


def test_a_killed_second_sweep_loses_no_finished_trial(tmp_path):
    """The second sweep is killed while it trains a trial: nothing either sweep finished changes."""
    db = tmp_path / "r.db"
    a = subprocess.Popen(_bench(db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: any(r["status"] == "running" for r in trial_rows(db)))
    b = subprocess.Popen(_bench(db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mine = f":{b.pid}:"  # the second sweep's claims (owner host:pid:token)
    assert wait_for(lambda: any(r["status"] == "running" and mine in (r["owner"] or "") for r in trial_rows(db))), \
        "the second sweep never held a trial to be killed in"
    finished = {r["key"]: r["finished"] for r in trial_rows(db) if r["status"] == "done"}
    b.send_signal(signal.SIGKILL)
    a.wait(600)
    b.wait(30)
    rows = {r["key"]: r for r in trial_rows(db)}
    assert all(rows[k]["status"] == "done" and rows[k]["finished"] == f for k, f in finished.items())
    subprocess.run(_bench(db), check=True, capture_output=True)  # the rerun finishes the rest, once
    rows = trial_rows(db)
    assert all(r["status"] == "done" for r in rows) and len(rows) == 8
    assert all(r["finished"] == finished[r["key"]] for r in rows if r["key"] in finished)


def test_a_killed_sweep_resumes_its_trial_mid_training(tmp_path):
    """kill -9 during a trial's third epoch: the rerun resumes that trial from its checkpoint and
    ends with exactly the result of an uninterrupted run."""
    argv = _bench(tmp_path / "cut.db", models="gru", seeds="0", epochs=6)
    subprocess.run(_bench(tmp_path / "whole.db", models="gru", seeds="0", epochs=6), check=True, capture_output=True)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = Path(f"{tmp_path / 'cut.db'}.runs")
    try:
        assert wait_for(lambda: any(_lines(p / "history.jsonl") >= 2 for p in runs.glob("*")))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert trial_rows(tmp_path / "cut.db")[0]["status"] == "running"
    subprocess.run(argv, check=True, capture_output=True)
    cut, whole = trial_rows(tmp_path / "cut.db")[0], trial_rows(tmp_path / "whole.db")[0]
    assert cut["status"] == "done" and cut["attempts"] == 2 and '"resumed": true' in cut["env"]
    strip = lambda h: [{k: v for k, v in row.items() if k != "train_time"} for row in json.loads(h)]  # noqa: E731
    assert cut["test_metric"] == whole["test_metric"] and strip(cut["history"]) == strip(whole["history"])
    import seqbench
    model = seqbench.load_model(runs / cut["key"])  # the trial's directory is an ordinary run
    assert seqbench.count_params(model) == cut["params"]


def test_a_module_in_the_working_directory_is_not_imported_by_a_sweep(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    marker = tmp_path / "imported"
    (work / "concurrent.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit('shadowed')\n")
    proc = subprocess.run(_bench(tmp_path / "r.db", models="gru", seeds="0", epochs=1), cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not marker.exists(), "the sweep imported ./concurrent.py"
    assert all(r["status"] == "done" for r in trial_rows(tmp_path / "r.db"))


def _read_only(*paths):
    """Make files and directories read-only, for root too (root ignores permission bits: the
    immutable attribute binds it). Returns an undo function."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        return lambda: [p.chmod(m) for p, m in modes.items()]
    res = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot make a file read-only for root on this file system ({res.stderr.strip()})")
    return lambda: subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True)


def test_a_read_only_database_is_a_clear_error_and_still_reports(tmp_path):
    pytest.importorskip("matplotlib", reason="the bench extra is not installed (make installs it)")
    db = tmp_path / "ro" / "r.db"
    db.parent.mkdir()
    run_sweep(grid_trials(["adding"], ["gru"], [0], ["2k"], TINY, None, {"epochs": 1}), db, progress=False)
    shutil.rmtree(f"{db}.runs")
    undo = _read_only(db, db.parent)
    try:
        bench = subprocess.run(_bench(db, models="gru", seeds="0,1", epochs=1), capture_output=True, text=True)
        assert bench.returncode == 2 and bench.stderr.count("\n") == 1, bench.stderr
        assert "read-only" in bench.stderr
        report = subprocess.run([SEQBENCH, "report", str(db), "--out", str(tmp_path / "rep")], capture_output=True,
                                text=True)
        assert report.returncode == 0, report.stderr
        assert "gru" in (tmp_path / "rep" / "report.md").read_text()
        with Store(db, readonly=True) as store:
            assert [r["status"] for r in store.rows()] == ["done"]
    finally:
        undo()
