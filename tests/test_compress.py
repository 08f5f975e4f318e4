"""Compressed variants: pruning keeps the channels that matter and yields a plain smaller TCN, int8
runs reload and stream exactly, distillation's loss does what it says, and every variant is a run
directory that loads and runs."""
import json

import pytest
import torch

import seqbench
from seqbench.cli import main
from seqbench.compress import DistillTask, Soft, prune_model, quantize_int8
from seqbench.models.tcn import TCN


def tcn_with_dead_channels(dead):
    """A TCN whose residual channels ``dead`` are zero everywhere (written as 0, read with weight 0)."""
    torch.manual_seed(0)
    m = TCN(3, 4, hidden=8, levels=3, kernel_size=3).eval()
    with torch.no_grad():
        for i, block in enumerate(m.blocks):
            for conv in (block.conv1, block.conv2):
                pw = conv.parametrizations.weight
                pw.original0[dead] = 0.0   # g = 0: the effective rows are exactly zero
                conv.bias[dead] = 0.0
                if conv is block.conv2 or i > 0:
                    pw.original1[:, dead] = 0.0  # columns reading a dead channel
            if block.downsample is not None:
                block.downsample.weight[dead] = 0.0
                block.downsample.bias[dead] = 0.0
        m.head.weight[:, dead] = 0.0
    return m


def test_pruning_removes_the_dead_channels_and_keeps_the_function():
    dead = [1, 4, 6, 7]
    m = tcn_with_dead_channels(dead)
    small = prune_model(m, 0.5)
    assert type(small) is TCN and small.hidden == 4
    assert seqbench.count_params(small) < seqbench.count_params(m) / 2
    x = torch.randn(2, 30, 3)
    torch.testing.assert_close(small.eval()(x), m(x), atol=1e-5, rtol=1e-5)
    # a plain model: rebuilds from its config and reloads its own state dict
    again = seqbench.model_from_config(small.config)
    again.load_state_dict(small.state_dict())
    torch.testing.assert_close(again.eval()(x), m(x), atol=1e-5, rtol=1e-5)


def test_pruning_refuses_what_it_cannot_do():
    with pytest.raises(seqbench.SeqbenchError, match="removes channels of models that support it"):
        prune_model(seqbench.create_model("gru", 3, 4, hidden=8), 0.5)
    with pytest.raises(seqbench.SeqbenchError, match=r"in \(0, 1\)"):
        prune_model(TCN(3, 4, hidden=8, levels=2), 1.0)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_int8_recurrent_models_are_close_to_float_and_stream(name):
    torch.manual_seed(0)
    m = seqbench.create_model(name, 3, 4, hidden=32).eval()
    q = quantize_int8(m)
    x = torch.randn(2, 40, 3)
    yf, yq = m(x), q(x)
    assert (yq - yf).abs().max() < 0.05 * yf.abs().max()  # int8 weights: close, not equal
    assert not torch.equal(yq, yf)
    state, ys = q.init_state(2), []
    for t in range(40):
        y, state = q.step(x[:, t], state)
        ys.append(y)
    # activations are quantized per call (a step's range vs the whole sequence's): close, within int8 error
    assert (torch.stack(ys, 1) - yq).abs().max() < 0.02 * yq.abs().max()
    with pytest.raises(seqbench.SeqbenchError, match="applies to lstm, gru and rnn"):
        quantize_int8(seqbench.create_model("tcn", 3, 4, hidden=8, levels=2))


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "mse"])
def test_distillation_loss(kind):
    """alpha=0 is the task's loss; a student equal to the teacher sits at the soft term's minimum."""
    class Stub:
        soft_targets = kind
        def loss(self, out, target):
            return ((out - target) ** 2).mean()
    teacher = torch.randn(4, 5, 6)
    y = torch.randn(4, 5, 6)
    t0 = DistillTask(Stub(), torch.nn.Identity(), temperature=2.0, alpha=0.0)
    out = torch.randn(4, 5, 6)
    assert t0.loss(out, Soft(y, teacher)).item() == pytest.approx(Stub().loss(out, y).item())
    t1 = DistillTask(Stub(), torch.nn.Identity(), temperature=2.0, alpha=1.0)
    student = teacher.clone().requires_grad_()
    t1.loss(student, Soft(y, teacher)).backward()
    assert student.grad.abs().max() < 1e-6
    moved = (teacher + torch.randn_like(teacher)).requires_grad_()
    assert t1.loss(moved, Soft(y, teacher)) > t1.loss(student, Soft(y, teacher))
    with pytest.raises(seqbench.SeqbenchError, match="--temperature > 0"):
        DistillTask(Stub(), torch.nn.Identity(), temperature=0.0)


def train_run(tmp_path, model, name="run", task="smnist:digits", **opts):
    task = seqbench.create_task(task) if isinstance(task, str) else task
    torch.manual_seed(0)
    m = seqbench.create_model(model, task.d_in, task.d_out, **opts)
    seqbench.train(m, task, seqbench.TrainConfig.for_task(task, epochs=1), out_dir=tmp_path / name, progress=False)
    return tmp_path / name, task


@pytest.fixture(scope="module")
def tcn_run(tmp_path_factory):
    small = seqbench.create_task("copy_memory", T=10, n_train=256, n_valid=64, n_test=64)  # softmax per step
    return train_run(tmp_path_factory.mktemp("tcn"), "tcn", task=small, hidden=8, levels=3)


def test_compress_cli_writes_run_directories_that_load_and_run(tmp_path, capsys, tcn_run):
    run, task = tcn_run
    assert main(["compress", str(run), "--prune", "0.5", "--distill-into", "gru:2k", "--epochs", "1",
                 "--out", str(tmp_path / "small"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| original | tcn" in out and "pruned 50% + fine-tuned" in out and "distilled into gru:2k" in out
    assert "test loss" in out
    assert (tmp_path / "small" / "compression.md").read_text().strip() in out
    x, _ = next(iter(task.batches("test", 4)))
    for variant in ("pruned", "distilled-gru", "scratch-gru"):
        m = seqbench.load_model(tmp_path / "small" / variant).eval()
        assert m(x).shape == (4, 30, 10)
        assert json.loads((tmp_path / "small" / variant / "result.json").read_text())["test"]["loss"] > 0
    assert seqbench.load_model(tmp_path / "small" / "pruned").hidden == 4


def test_compress_int8_run_reloads_quantized(tmp_path, capsys):
    from seqbench.compress import compress_run
    run, task = train_run(tmp_path, "lstm", hidden=16)
    rows = compress_run(run, tmp_path / "q", quantize="int8", progress=False)
    assert rows[1]["params"] == rows[0]["params"] > 0  # the int8 model's own count reads 0: the original's
    kept = "note" not in rows[1]  # written only where it measured faster than float here
    assert (tmp_path / "q" / "int8").exists() == kept
    assert kept == (rows[1]["step_ms"] < rows[0]["step_ms"])
    if not kept:
        assert "not written" in (tmp_path / "q" / "compression.md").read_text()
        return
    q = seqbench.load_model(tmp_path / "q" / "int8")
    assert any("quantized" in type(mod).__module__ for mod in q.modules())
    acc = task.evaluate(q, "test")["accuracy"]
    assert acc == pytest.approx(json.loads((tmp_path / "q" / "int8" / "result.json").read_text())["test"]["accuracy"])
    assert main(["export", str(tmp_path / "q" / "int8"), "--out", str(tmp_path / "q.onnx")]) == 2
    assert "is an int8 variant" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to do"),
    (["--quantize", "int8"], "applies to lstm, gru and rnn"),
    (["--prune", "1.5"], r"in (0, 1)"),
    (["--distill-into", "resnet:1k"], "takes MODEL:PARAMS"),
    (["--distill-into", "gru"], "takes MODEL:PARAMS"),
    (["--prune", "0.5", "--epochs", "0"], "--epochs must be a positive integer"),
    (["--distill-into", "gru:2k", "--temperature", "0"], "--temperature > 0"),
    (["--distill-into", "gru:2k", "--alpha", "1.5"], "0 <= --alpha <= 1"),
    (["--distill-into", "gru:2k", "--alpha", "nan"], "0 <= --alpha <= 1"),
])
def test_compress_cli_bad_input(tmp_path, capsys, argv, message, tcn_run):
    run, _ = tcn_run
    assert main(["compress", str(run), "--out", str(tmp_path / "c"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "c").exists()
