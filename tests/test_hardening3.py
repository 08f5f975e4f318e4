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
