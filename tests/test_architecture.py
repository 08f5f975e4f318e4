"""The house's shape, tested: no import circle between training and what consumes its runs, files
that are one thing, deployment code that names no model, and a model written in a user's own
module against the documented contract that gets every path the zoo gets."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import seqbench

SRC = Path(seqbench.__file__).parent
SEQBENCH = str(Path(sys.executable).parent / "seqbench")


def _imports(path: Path) -> set[str]:
    """seqbench modules a file imports, at any depth (module-level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqbench"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("seqbench"))
    return out


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    mods = {_module(p): p for p in SRC.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}


def _reaches(graph, start: str, target_prefix: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m != start and m.startswith(target_prefix):
            return True
        todo += graph.get(m, ())
    return False


def test_training_never_imports_what_consumes_its_runs():
    graph = _graph()
    for consumer in ("seqbench.compress", "seqbench.export", "seqbench.predict", "seqbench.recommend",
                     "seqbench.bench"):
        assert not _reaches(graph, "seqbench.train.trainer", consumer), consumer


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_is_over_about_500_lines(path):
    assert len(path.read_text().splitlines()) <= 550, f"{path.name}: split it into modules that are one thing each"


@pytest.mark.parametrize("path", [SRC / "export.py", SRC / "compress.py", *sorted((SRC / "recommend").glob("*.py"))],
                         ids=lambda p: p.name)
def test_deployment_code_names_no_model(path):
    """Export, compress and recommend work through the model contract's hooks: no zoo module is
    imported and no model's name is a string constant there (a plugin model gets the same paths)."""
    tree = ast.parse(path.read_text())
    zoo = {"seqbench.models." + m for m in ("tcn", "rnn", "lru", "transformer", "trellisnet", "embedding")}
    assert not (_imports(path) & zoo)
    names = set(seqbench.list_models())
    consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not (consts & names)


PLUGIN = '''
import torch
from torch import nn

import seqbench
from seqbench.models.base import ExportStep, StateSpec


class EMAStep(ExportStep):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def specs(self, batch):
        return [StateSpec("h", (batch, self.m.hidden), torch.float32, "the running average", 0)]

    def forward(self, x, h):
        h = self.m.decay * h + self.m.inp(x)
        return self.m.head(torch.tanh(h)), h


@seqbench.register_model("ema", width_arg="hidden")
class EMA(seqbench.SeqModel):
    """An exponential moving average of a projection of the input, read out linearly."""
    supports_step = True

    def __init__(self, d_in, d_out, causal=True, hidden=16, dropout=0.0):
        super().__init__(d_in, d_out, causal)
        self.hidden, self.decay = hidden, 0.9
        self.inp, self.head = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        self.check_input(x)
        u, h, ys = self.drop(self.inp(x)), torch.zeros(x.shape[0], self.hidden), []
        for t in range(x.shape[1]):
            h = self.decay * h + u[:, t]
            ys.append(self.head(torch.tanh(h)))
        return torch.stack(ys, 1)

    def _init_state(self, batch_size, engine):
        return torch.zeros(batch_size, self.hidden)

    def _step(self, x_t, h):
        h = self.decay * h + self.inp(x_t)
        return self.head(torch.tanh(h)), h

    def export_step(self, max_len):
        return EMAStep(self)
'''


def test_a_plugin_model_gets_every_path_without_touching_seqbench(tmp_path):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed (make installs it)")
    pytest.importorskip("optuna", reason="the search extra is not installed (make installs it)")
    (tmp_path / "my_models.py").write_text(PLUGIN)

    def run(*argv):
        p = subprocess.run([SEQBENCH, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-1500:]
        return p.stdout + p.stderr
    task = ["--task", "adding", "--task-opt", "seq_len=12", "--task-opt", "n_train=64", "--task-opt", "n_valid=16",
            "--task-opt", "n_test=16"]
    run("train", "--import", "my_models.py", *task, "--model", "ema", "--params", "2k", "--epochs", "1",
        "--out", "run", "--no-progress")
    out = run("export", "run", "--import", "my_models.py", "--out", "step.onnx", "--streaming")
    diff = float(re.search(r"max \|difference\| ([0-9.e+-]+)", out).group(1))
    assert diff < 1e-5 and "h ('batch', " in out  # the model's own state, as an ONNX input and output
    out = run("recommend", "--import", "my_models.py", *task, "--models", "ema,gru", "--max-params", "2k",
              "--time-budget", "20", "--max-epochs", "1", "--db", "r.db", "--no-progress")
    assert re.search(r"\bema @", out), out[-1500:]


def test_every_extension_point_is_one_registry():
    """Models, tasks, executors and export formats: the same small registry, the same errors."""
    from seqbench.bench.executors import EXECUTORS
    from seqbench.export import FORMATS
    from seqbench.models.registry import MODELS
    from seqbench.registry import Registry
    from seqbench.tasks.registry import TASKS
    for reg, known in ((MODELS, "tcn"), (TASKS, "adding"), (EXECUTORS, "local"), (FORMATS, "onnx")):
        assert isinstance(reg, Registry) and known in reg.names()
        with pytest.raises(seqbench.SeqbenchError, match=rf"unknown {reg.kind} 'nope'.*choose one of: .*{known}"):
            reg.get("nope")
        with pytest.raises(ValueError, match="already registered"):
            reg.register(known, reg.get(known))
