"""Exported graphs (ONNX in onnxruntime, torch.export programs) compute what the model computes:
the streaming step with its state as explicit inputs/outputs, for every causal model, and the
full-sequence forward."""
import json

import numpy as np
import pytest
import torch

import seqbench
from seqbench.cli import main
from seqbench.export import StreamingStep, export_model, verify

from conftest import small_model

pytest.importorskip("onnxruntime")  # `make test` installs it (the export extra); elsewhere skip cleanly
# small but real shapes: several levels/layers, so every piece of state is exercised
OPTS = {"tcn": dict(levels=3, kernel_size=3), "trellisnet": dict(levels=5, dilations=[1, 2, 4]),
        "rnn": dict(layers=2), "lstm": dict(layers=2), "gru": {}, "lru": {}, "transformer": {}}


def model_for(name):
    return small_model(name, **OPTS.get(name, {})).eval()


@pytest.mark.parametrize("name", seqbench.list_models())
def test_pure_step_equals_the_model_forward(name):
    """The export step (no Python-side state) reproduces model(x) step by step, at batch 3."""
    model = model_for(name)
    step = StreamingStep(model, max_len=50)
    x = torch.randn(3, 50, model.d_in)
    state, ys = step.init_state(3), []
    for t in range(50):
        y, *state = step(x[:, t], *state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", seqbench.list_models())
def test_onnx_streaming_step_matches_pytorch(name, tmp_path):
    """onnxruntime vs PyTorch: outputs and every next state within 1e-4 over 200 steps, at batch 1 and 3."""
    model = model_for(name)
    desc = export_model(model, tmp_path / "step.onnx", "onnx", streaming=True, max_len=256)
    names = [s["name"] for s in desc["inputs"]]
    assert names[0] == "x" and [s["name"] for s in desc["outputs"]] == ["y", *[f"next_{n}" for n in names[1:]]]
    assert json.loads((tmp_path / "step.onnx.json").read_text())["inputs"] == desc["inputs"]
    for batch, steps in ((1, 200), (3, 60)):
        assert verify(model, tmp_path / "step.onnx", steps=steps, batch=batch, seed=batch) < 1e-4


def test_the_documented_state_shapes_are_the_graphs(tmp_path):
    """The JSON names every input with its shape: a consumer can build the zero state from it alone."""
    ort = pytest.importorskip("onnxruntime")
    model = model_for("transformer")
    desc = export_model(model, tmp_path / "t.onnx", "onnx", streaming=True, max_len=32)
    sess = ort.InferenceSession(str(tmp_path / "t.onnx"))
    batch = 2
    feed = {s["name"]: np.zeros([batch if d == "batch" else d for d in s["shape"]], dtype=s["dtype"])
            for s in desc["inputs"]}
    outs = sess.run(None, feed)
    assert outs[0].shape == (batch, model.d_out)
    assert [o.shape for o in outs[1:]] == [feed[s["name"]].shape for s in desc["inputs"][1:]]
    assert int(outs[1][0]) == 1  # position advanced


@pytest.mark.parametrize("name", seqbench.list_models())
def test_onnx_full_sequence_matches_pytorch_at_another_length(name, tmp_path):
    model = model_for(name)
    desc = export_model(model, tmp_path / "full.onnx", "onnx", length=40)
    assert verify(model, tmp_path / "full.onnx", steps=23, batch=3) < 1e-4  # 23 != the example's 40
    assert ("fixed_length" in desc) == (name == "lru")  # the LRU's chunked scan unrolls


@pytest.mark.parametrize("name", ["tcn", "lstm", "transformer"])
def test_pt2_programs_match(name, tmp_path):
    model = model_for(name)
    export_model(model, tmp_path / "m.pt2", "pt2", streaming=True, max_len=64)
    assert verify(model, tmp_path / "m.pt2", steps=20, batch=2) < 1e-5
    export_model(model, tmp_path / "f.pt2", "pt2")
    assert verify(model, tmp_path / "f.pt2", steps=30, batch=2) < 1e-5


def test_a_token_model_exports_with_id_inputs(tmp_path):
    model = seqbench.create_model("tcn", 30, 30, embed_dim=8, hidden=8, levels=2).eval()
    desc = export_model(model, tmp_path / "lm.onnx", "onnx", streaming=True)
    assert desc["inputs"][0] == {"name": "x", "shape": ["batch"], "dtype": "int64", "doc": "this step's input"}
    assert verify(model, tmp_path / "lm.onnx", steps=40) < 1e-4
    export_model(model, tmp_path / "lmf.onnx", "onnx")
    assert verify(model, tmp_path / "lmf.onnx", steps=40) < 1e-4


def test_export_does_not_change_the_model():
    """Folding weight norm for export works on a rebuilt copy: the trained model keeps its (g, v)."""
    model = model_for("tcn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    StreamingStep(model)
    x = torch.randn(2, 20, model.d_in)
    model(x)  # still runs
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_export_cli_from_a_run_directory(tmp_path, capsys):
    task = seqbench.create_task("adding", seq_len=20, n_train=64, n_valid=16, n_test=16)
    seqbench.train(seqbench.create_model("tcn", 2, 1, hidden=6, levels=2), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "run"), "--out", str(out), "--streaming"]) == 0
    text = capsys.readouterr().out
    assert "checked against PyTorch" in text and "block0_conv1" in text
    desc = json.loads((tmp_path / "m.onnx.json").read_text())
    assert desc["max_abs_diff"] < 1e-4 and desc["task"]["name"] == "adding" and desc["model"]["name"] == "tcn"


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/m.txt"], "cannot tell the export format"),
    (["--out", "{tmp}/m.onnx", "--format", "pt2"], "does not match the file name"),
    (["--out", "{tmp}/m.onnx", "--length", "1"], "length must be an integer >= 2"),
    (["--out", "{tmp}/nodir/m.onnx"], "does not exist"),
    (["--out", "{tmp}/m.onnx", "--streaming", "--max-len", "0"], "max_len must be a positive integer"),
])
def test_export_cli_bad_input(tmp_path, capsys, argv, message):
    task = seqbench.create_task("adding", seq_len=10, n_train=32, n_valid=8, n_test=8)
    seqbench.train(seqbench.create_model("gru", 2, 1, hidden=4), task, seqbench.TrainConfig(epochs=1),
                   out_dir=tmp_path / "run", progress=False)
    assert main(["export", str(tmp_path / "run"), *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".*.tmp"))


def test_a_non_causal_model_cannot_stream(tmp_path):
    model = small_model("gru", causal=False).eval()
    with pytest.raises(seqbench.SeqbenchError, match="cannot stream"):
        export_model(model, tmp_path / "x.onnx", streaming=True)
    export_model(model, tmp_path / "x.onnx")  # the full sequence exports
    assert verify(model, tmp_path / "x.onnx", steps=15) < 1e-4
