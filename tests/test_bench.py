"""Sweeps, the results store, crash safety, executors and the report, run for real on tiny trials."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqbench
from conftest import wait_for
from seqbench.bench import Store, file_trials, grid_trials, run_sweep, suite_trials, write_report
from seqbench.bench.sweep import trial_key
from seqbench.tables import fmt

TINY = {"seq_len": 20, "n_train": 128, "n_valid": 32, "n_test": 32}


def tiny_trials(models=("tcn", "gru"), seeds=(0, 1), **task_opts):
    return grid_trials(["adding"], list(models), list(seeds), ["3k"], {**TINY, **task_opts}, None, {"epochs": 1})


def test_trial_keys_are_stable_and_distinct():
    a, b = tiny_trials(), tiny_trials()
    assert [t["key"] for t in a] == [t["key"] for t in b]
    assert len({t["key"] for t in a}) == len(a) == 4
    t = dict(a[0])
    t["seed"] = 9
    assert trial_key(t) != a[0]["key"]


def test_tcn_paper_suite():
    quick = suite_trials("tcn-paper", "quick", ["tcn", "lstm"], [0, 1])
    tasks = {t["task"] for t in quick}
    assert {"adding", "copy_memory", "smnist", "pmnist", "chorales", "ptb_char"} <= tasks
    assert "ptb_word" not in tasks  # 13M params: standard and full only
    tcn = next(t for t in quick if t["task"] == "adding" and t["model"] == "tcn")
    lstm = next(t for t in quick if t["task"] == "adding" and t["model"] == "lstm")
    assert tcn["model_opts"] == {"levels": 8, "kernel_size": 8} and lstm["model_opts"] == {}
    assert tcn["params"] == lstm["params"] == 70_000
    full = suite_trials("tcn-paper", "full", ["tcn"], [0])
    assert next(t for t in full if t["task"] == "adding")["task_opts"] == {"seq_len": 600}
    with pytest.raises(seqbench.SeqbenchError, match="unknown suite"):
        suite_trials("nope", "quick", ["tcn"], [0])


@pytest.mark.parametrize("suffix,text", [
    (".toml", 'tasks = ["adding"]\nmodels = ["tcn", "gru"]\nseeds = [0, 1]\nparams = ["3k"]\n[task_opts]\nseq_len = 20\n'),
    (".yaml", "tasks: [adding]\nmodels: [tcn, gru]\nseeds: [0, 1]\nparams: [3k]\ntask_opts: {seq_len: 20}\n"),
])
def test_sweep_files(tmp_path, suffix, text):
    path = tmp_path / f"s{suffix}"
    path.write_text(text)
    trials = file_trials(path)
    assert len(trials) == 4 and {t["model"] for t in trials} == {"tcn", "gru"}
    assert all(t["task_opts"] == {"seq_len": 20} and t["params"] == 3000 for t in trials)
    path.write_text("tasks: [ = \n")  # neither TOML nor YAML
    with pytest.raises(seqbench.SeqbenchError, match="does not parse"):
        file_trials(path)


def test_local_sweep_records_everything_and_reruns_nothing(tmp_path):
    db = tmp_path / "r.db"
    trials = tiny_trials()
    s = run_sweep(trials, db, workers=2, progress=False)
    assert (s.done, s.failed, s.skipped) == (4, 0, 0)
    with Store(db) as store:
        rows = store.rows()
        assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
        r = rows[0]
        assert r["metric"] == "mse" and r["params"] > 2000 and r["train_time"] > 0 and r["samples_per_sec"] > 0
        assert r["peak_mem_mb"] > 50 and r["infer_ms"] > 0 and len(json.loads(r["history"])) == 1
        env = json.loads(r["env"])
        assert env["torch"] and env["threads"] == max(1, (os.cpu_count() or 1) // 2) and "cpu" in env
        assert json.loads(r["config"])["task_opts"] == TINY
        finished = {r["key"]: r["finished"] for r in rows}
    s2 = run_sweep(trials, db, workers=2, progress=False)
    assert (s2.skipped, s2.done) == (4, 0)
    with Store(db) as store:
        assert {r["key"]: r["finished"] for r in store.rows()} == finished


def test_a_bad_sweep_is_refused_before_any_trial_runs(tmp_path):
    db = tmp_path / "r.db"
    bad = grid_trials(["adding"], ["tcn"], [0], [None], TINY, {"levels": -1}, {"epochs": 1})
    with pytest.raises(seqbench.SeqbenchError, match="levels of 'tcn' must be >= 1"):
        run_sweep(tiny_trials(seeds=(0,)) + bad, db, workers=2, progress=False)
    assert not db.exists()
    for task_opts, train, match in [({**TINY, "seq_len": -1}, {"epochs": 1}, "seq_len of .adding. must be >= 1"),
                                    (TINY, {"epochs": 0}, "epochs must be >= 1"),
                                    (TINY, {"epoch": 2}, "unknown training option")]:
        with pytest.raises(seqbench.SeqbenchError, match=match):
            run_sweep(grid_trials(["adding"], ["gru"], [0], ["3k"], task_opts, None, train), db, progress=False)


def test_a_failing_trial_fails_alone(tmp_path):
    """A trial that fails at run time (here: unvalidated bad options) fails alone; the rest finish."""
    db = tmp_path / "r.db"
    bad = grid_trials(["adding"], ["tcn"], [0], [None], TINY, {"levels": -1}, {"epochs": 1})
    s = run_sweep(tiny_trials(seeds=(0,)) + bad, db, workers=2, progress=False, validate=False)
    assert (s.done, s.failed) == (2, 1)
    with Store(db) as store:
        failed = store.rows("failed")
        assert len(failed) == 1 and "SeqbenchError" in failed[0]["error"] and "levels" in failed[0]["error"]


def _column(db, sql):
    """The first column of a query on a live sweep's database ([] before the table exists)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return [r[0] for r in con.execute(sql)]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _running_pids(db):
    return _column(db, "SELECT pid FROM trials WHERE status = 'running' AND pid IS NOT NULL")


def _statuses(db):
    return _column(db, "SELECT status FROM trials")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_killed_trial_process_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A trial killed from outside (as the OOM killer would) fails with its signal; the rest finish."""
    db = tmp_path / "r.db"
    slow = grid_trials(["adding"], ["lstm"], [0], ["3k"], {**TINY, "seq_len": 400, "n_train": 6400}, None,
                       {"epochs": 3})
    import threading
    box = {}
    th = threading.Thread(target=lambda: box.update(s=run_sweep(slow + tiny_trials(seeds=(0,)), db, workers=1,
                                                                  progress=False)))
    th.start()
    slow_pid = lambda: _column(db, "SELECT pid FROM trials WHERE status = 'running' AND model = 'lstm'")  # noqa: E731
    assert wait_for(lambda: slow_pid() and slow_pid()[0] and _alive(slow_pid()[0]))
    os.kill(slow_pid()[0], signal.SIGKILL)
    th.join(300)
    s = box["s"]
    assert (s.done, s.failed) == (2, 1)
    assert "killed by signal 9" in next(iter(s.errors.values()))


def test_kill_9_the_sweep_then_resume(tmp_path):
    """kill -9 mid-sweep, rerun the same command: every trial exactly once, finished ones kept."""
    db = tmp_path / "r.db"
    argv = [sys.executable, "-m", "seqbench.cli", "bench", "--db", str(db), "--tasks", "adding", "--models",
            "tcn,gru,rnn", "--params", "3k", "--seeds", "0,1", "--epochs", "1", "--workers", "1", "--no-progress"]
    for k, v in {**TINY, "seq_len": 200, "n_train": 1024}.items():  # ~1-2 s per trial: time to kill mid-sweep
        argv += ["--task-opt", f"{k}={v}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _statuses(db).count("done") >= 2 and _running_pids(db)), _statuses(db)
        trial_pids = _running_pids(db)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert wait_for(lambda: not any(_alive(p) for p in trial_pids), timeout=5), "trial processes outlived the sweep"
    with Store(db) as store:
        before = {r["key"]: r["finished"] for r in store.rows("done")}
        interrupted = len(store.rows("running"))
        assert store.integrity_ok() and 2 <= len(before) < 6 and interrupted >= 1
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with Store(db) as store:
        rows = store.rows()
        assert store.integrity_ok()
        assert len(rows) == 6 and len({r["key"] for r in rows}) == 6 and all(r["status"] == "done" for r in rows)
        after = {r["key"]: r["finished"] for r in rows}
        assert all(after[k] == v for k, v in before.items())  # finished before the kill: kept, not rerun
        assert sum(r["attempts"] for r in rows) == 6 + interrupted  # each interrupted trial ran again, once


def test_ray_executor_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (make installs it)")
    db = tmp_path / "r.db"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = run_sweep(tiny_trials(seeds=(0,)), db, executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert (s.done, s.failed) == (2, 0)
    with Store(db) as store:
        assert all(r["status"] == "done" and r["test_metric"] is not None for r in store.rows())


def test_export_and_bad_db(tmp_path):
    db = tmp_path / "r.db"
    run_sweep(tiny_trials(models=("gru",), seeds=(0,)), db, workers=1, progress=False)
    with Store(db) as store:
        csv = store.export(tmp_path / "r.csv")
        pq = store.export(tmp_path / "r.parquet")
    import pandas as pd
    assert len(pd.read_csv(csv)) == 1 and len(pd.read_parquet(pq)) == 1
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(seqbench.SeqbenchError, match="not a seqbench results database"):
        Store(tmp_path / "junk.db")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rep")
    db = tmp / "r.db"
    trials = tiny_trials() + [t for T in (10, 30) for t in grid_trials(
        ["copy_memory"], ["tcn", "gru"], [0], ["3k"], {"T": T, "n_train": 64, "n_valid": 32, "n_test": 32}, None,
        {"epochs": 1})] + grid_trials(["adding"], ["tcn", "gru"], [0], ["6k"], TINY, None, {"epochs": 1}) + grid_trials(
        ["adding"], ["tcn"], [0], ["2k"], {"seq_len": 600, "n_train": 32, "n_valid": 16, "n_test": 16}, None,
        {"epochs": 1})  # the paper's T: its Table 1 number stands beside
    run_sweep(trials, db, workers=2, progress=False)
    write_report(db, tmp / "out")
    return db, tmp / "out"


def test_report_table_respects_direction(report_dir):
    db, out = report_dir
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| adding") and "| 3K |" in line)
    with Store(db) as store:
        rows = [r for r in store.rows("done") if r["task"] == "adding" and r["budget"] == 3000]
    means = {m: np.mean([r["test_metric"] for r in rows if r["model"] == m]) for m in ("gru", "tcn")}
    best = min(means, key=means.get)  # mse: lower is better
    cells = row.split("|")[4:6]  # gru, tcn columns (sorted)
    assert ("**" in cells[0]) == (best == "gru") and ("**" in cells[1]) == (best == "tcn")
    paper_row = next(line for line in md.splitlines() if line.startswith("| adding (seq_len=600)"))
    assert paper_row.rstrip(" |").endswith("tcn 5.80e-05")  # the paper's TCN number in the reference column
    other = next(line for line in md.splitlines() if line.startswith("| copy_memory (T=10)"))
    assert other.rstrip(" |").endswith("| -")  # Table 1 is at T=1000: no number beside T=10
    assert "| 0.1767 |" in row  # the trivial baseline, from the store
    for png in ("learning_curves.png", "metric_vs_params.png", "effective_memory.png"):
        assert (out / png).stat().st_size > 5000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<script" not in html and "src=\"http" not in html


def test_report_keeps_budgets_apart(report_dir):
    """Two budgets of one task are two rows, each a mean over seeds of one model size."""
    db, out = report_dir
    md = (out / "report.md").read_text()
    rows = {b: next(line for line in md.splitlines() if line.startswith("| adding") and f"| {b} |" in line)
            for b in ("3K", "6K")}
    with Store(db) as store:
        done = store.rows("done")
    for budget, line in rows.items():
        tcn = [r for r in done if r["task"] == "adding" and r["model"] == "tcn" and r["budget"] == int(budget[0]) * 1000]
        cell = line.split("|")[5]
        n = len(tcn)
        assert f"(n={n})" in cell, (budget, cell)
        if n == 1:  # one seed: its value and n, no spread
            assert "±" not in cell and fmt(tcn[0]["test_metric"]) in cell
        else:
            assert f"{fmt(np.mean([r['test_metric'] for r in tcn]))} ±" in cell


def test_report_panels_use_each_tasks_metric(report_dir):
    from seqbench.bench.report import learning_curve_panels, summarize
    db, _ = report_dir
    with Store(db) as store:
        panels = learning_curve_panels(summarize(store.rows("done")))
    labels = {p["title"]: p["ylabel"] for p in panels}
    assert labels["adding (seq_len=20), 3K"] == "valid mse"
    assert labels["copy_memory (T=10), 3K"] == "valid loss"
    assert all(set(p["lines"]) == ({"tcn"} if "seq_len=600" in p["title"] else {"gru", "tcn"}) for p in panels)


def test_report_rows_are_per_dataset_and_reruns_see_new_data(tmp_path):
    """Two custom files are two rows; new data under the same file name is a new trial."""
    rng = np.random.default_rng(0)
    files = []
    for name in ("a", "b"):
        path = tmp_path / name / "data.csv"
        path.parent.mkdir()
        path.write_text("series,step,f,label\n" + "".join(f"{s},{t},{rng.normal():.3f},{s % 2}\n"
                                                         for s in range(20) for t in range(5)))
        files.append(path)
    db = tmp_path / "r.db"
    trials = [t for p in files for t in grid_trials(["custom"], ["gru"], [0], ["1k"], {"path": str(p)}, None,
                                                       {"epochs": 1})]
    assert len({t["key"] for t in trials}) == 2 and all(t["data"]["file"] == "data.csv" for t in trials)
    run_sweep(trials, db, workers=1, progress=False)
    write_report(db, tmp_path / "rep")
    custom_rows = [ln for ln in (tmp_path / "rep" / "report.md").read_text().splitlines() if ln.startswith("| custom") and "accuracy (max)" in ln]
    assert len(custom_rows) == 2 and all("(n=1)" in ln for ln in custom_rows)
    files[0].write_text(files[0].read_text() + "99,0,0.5,1\n")  # new data, same name
    again = grid_trials(["custom"], ["gru"], [0], ["1k"], {"path": str(files[0])}, None, {"epochs": 1})
    s = run_sweep(again, db, workers=1, progress=False)
    assert (s.skipped, s.done) == (0, 1)


def test_report_in_a_real_browser(report_dir, tmp_path):
    """Debian's chromium loads report.html from file with no console messages; the screenshot shows
    the table and the plots (matplotlib's line colours present, text-dense table region)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        assert not os.environ.get("CI"), "CI must run the browser test: `make test` installs chromium as root"
        pytest.skip("no Chromium: `make test` installs it where it may; else run 'sudo apt-get install chromium'")
    _, out = report_dir
    shot = tmp_path / "shot.png"
    res = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1280,2400", f"--screenshot={shot}", "--enable-logging=stderr", "--v=0",
                          (out / "report.html").resolve().as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    import matplotlib.image as mpimg
    img = (mpimg.imread(shot)[..., :3] * 255).astype(int)
    blue = (np.abs(img - [31, 119, 180]).sum(-1) < 40).sum()  # matplotlib's first line colour
    orange = (np.abs(img - [255, 127, 14]).sum(-1) < 40).sum()
    assert blue > 200 and orange > 200, (blue, orange)
    dark_rows = (img.mean(-1) < 100).any(axis=1)
    assert dark_rows[:400].sum() > 40  # headings and the results table near the top


def test_report_out_that_is_a_file_is_refused(report_dir, tmp_path):
    db, _ = report_dir
    target = tmp_path / "report"
    target.write_text("mine")
    with pytest.raises(seqbench.SeqbenchError, match="is a file"):
        write_report(db, target)
    assert target.read_text() == "mine"


SCRIPT_HEAD = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import seqbench
from seqbench.bench import grid_trials, run_sweep
print("SCRIPT RAN", flush=True)
TINY = {TINY!r}
"""


def test_an_unguarded_script_is_not_rerun_in_each_trial(tmp_path):
    """A script without `if __name__ == "__main__":` runs its sweep once: trial processes do not
    re-import it (multiprocessing's default would re-run the whole script in every trial)."""
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT_HEAD + f"""
s = run_sweep(grid_trials(["adding"], ["gru", "rnn"], [0], ["3k"], TINY, None, {{"epochs": 1}}),
              {str(tmp_path / "r.db")!r}, workers=2, progress=False)
print("done", s.done, "failed", s.failed, s.errors)
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("SCRIPT RAN") == 1, proc.stdout + proc.stderr[-2000:]
    assert "done 2 failed 0" in proc.stdout, proc.stdout


def test_a_model_registered_in_the_script_runs_in_a_sweep(tmp_path):
    """A model the user's script registers is available in the trial processes (the script is
    imported there, so its sweep sits under the __main__ guard)."""
    script = tmp_path / "custom.py"
    script.write_text(SCRIPT_HEAD + f"""
import torch

@seqbench.register_model("mymlp", width_arg="hidden")
class MyMLP(seqbench.SeqModel):
    '''A per-step MLP (receptive field 1).'''
    def __init__(self, d_in, d_out, causal=True, hidden=8):
        super().__init__(d_in, d_out, causal)
        self.net = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d_out))

    @property
    def receptive_field(self):
        return 1

    def forward(self, x):
        return self.net(x)

if __name__ == "__main__":
    s = run_sweep(grid_trials(["adding"], ["mymlp"], [0], ["1k"], TINY, None, {{"epochs": 1}}),
                  {str(tmp_path / "r.db")!r}, workers=1, progress=False)
    print("done", s.done, "failed", s.failed, s.errors)
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done 1 failed 0" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_memory_curves_keep_sizes_apart(report_dir):
    """The effective-memory plot: one curve per model and size with several T, in T order; a single
    T at another size is no curve and is not pooled into one."""
    from seqbench.bench.report import memory_curves, summarize
    db, _ = report_dir
    with Store(db) as store:
        rows = [r for r in store.rows("done") if r["task"] == "copy_memory"]
    groups = summarize(rows)
    lone = next(r for r in rows if r["model"] == "tcn" and json.loads(r["config"])["task_opts"]["T"] == 10)
    groups[("copy_memory (T=10)", 16_000, "tcn")] = [{**lone, "test": json.dumps({"acc": 1.0})}]
    curves = memory_curves(groups)
    assert set(curves) == {("tcn", 3000), ("gru", 3000)}
    for (model, _), by_t in curves.items():
        assert list(by_t) == [10, 30]
        for T, acc in by_t.items():
            (r,) = [r for r in rows if r["model"] == model and json.loads(r["config"])["task_opts"]["T"] == T]
            assert acc == json.loads(r["test"])["acc"]


def test_report_names_every_revision():
    """A store filled over several sittings ran at several revisions: the report says so, in the
    order the trials finished, instead of quoting one trial's."""
    from seqbench.bench.report import environment
    env = {"cpu": "AMD EPYC", "torch": "2.13.0+cpu", "seqbench": "0.1.0"}
    rows = [{"env": json.dumps({**env, "git": g}), "finished": t} for g, t in
            (("bbb", 3.0), ("aaa", 1.0), ("bbb", 2.0), ("ccc", 4.0))]
    assert environment(rows) == "Machine: AMD EPYC, torch 2.13.0+cpu, seqbench 0.1.0 (revisions aaa to ccc, 3 in all)"
    assert environment(rows[:1]).endswith("(bbb)")
    assert environment([{"env": json.dumps(env), "finished": 1.0}]).endswith("(no git)")
