"""Devices: training on every device torch reports here (CPU everywhere; CUDA/MPS where present),
mixed precision, checkpoints that load on CPU, and a clear error for a device that is not there."""
import pytest
import torch

import seqbench
from seqbench.cli import main
from seqbench.device import available_devices, resolve_device, to_device

DEVICES = available_devices()


def tiny(task, **kw):
    torch.manual_seed(0)
    return seqbench.create_model("tcn", task.d_in, task.d_out, hidden=6, levels=2, kernel_size=3, **kw)


@pytest.mark.parametrize("device", DEVICES)
def test_training_runs_on_every_available_device_and_reloads_on_cpu(device, tmp_path):
    task = seqbench.create_task("adding", seq_len=12, n_train=128, n_valid=32, n_test=32)
    model = tiny(task)
    r = seqbench.train(model, task, seqbench.TrainConfig(epochs=2, device=device), out_dir=tmp_path / "r",
                       progress=False)
    assert next(model.parameters()).device.type == device and 0 <= r.test["mse"] < 100
    cpu = seqbench.load_model(tmp_path / "r")  # weights written from CPU copies
    assert next(cpu.parameters()).device.type == "cpu"
    x, _ = next(task.batches("test", 4))
    torch.testing.assert_close(cpu.eval()(x), model.eval()(x.to(device)).cpu(), rtol=1e-4, atol=1e-5)
    state = model.init_state(2)  # streaming state lives where the model does
    y, state = model.step(x[:2, 0].to(device), state)
    assert y.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_every_task_kind_scores_on_the_device(device):
    """Masks, lengths and per-split baselines follow the model's device (variable lengths, tokens)."""
    for name, opts in [("tsc:JapaneseVowels", {}), ("ptb_char", {"seq_len": 12, "valid_len": 6, "max_tokens": 300}),
                       ("forecast:lynx", {})]:
        task = seqbench.create_task(name, **opts)
        kw = {"embed_dim": 8} if task.input_kind == "tokens" else {}
        model = seqbench.create_model("gru", task.d_in, task.d_out, hidden=4, **kw).to(device)
        metrics = task.evaluate(model, "valid")
        assert all(v == v for v in metrics.values()), (name, metrics)


@pytest.mark.parametrize("name,opts", [("adding", {"seq_len": 12}),  # last step: the TCN's decimated path
                                       ("copy_memory", {"T": 8})])  # every step: its full (channels-last) forward
def test_bf16_autocast_trains_on_cpu(name, opts):
    task = seqbench.create_task(name, n_train=64, n_valid=16, n_test=16, **opts)
    r = seqbench.train(tiny(task), task, seqbench.TrainConfig(epochs=1, device="cpu", precision="bf16"),
                       progress=False)
    assert r.history[0]["train_loss"] == r.history[0]["train_loss"]  # finite, not NaN
    with pytest.raises(seqbench.SeqbenchError, match="needs a GPU"):
        seqbench.TrainConfig(device="cpu", precision="16").validate()
    with pytest.raises(seqbench.SeqbenchError, match="unknown precision"):
        seqbench.TrainConfig(precision="8").validate()


@pytest.mark.filterwarnings("ignore:.*closest width")  # a 3K budget is not met exactly by every model
@pytest.mark.parametrize("model", seqbench.list_models())
def test_every_model_trains_under_bf16_autocast(model):
    """--precision bf16 reaches every model's own code under autocast (the LRU's complex scan takes
    its B u from a real matmul, the TCN its channels-last convs): one epoch, finite loss."""
    task = seqbench.create_task("copy_memory", T=8, n_train=64, n_valid=16, n_test=16)
    losses, moved = {}, {}
    for precision in ("32", "bf16"):
        torch.manual_seed(0)
        m = seqbench.create_model(model, task.d_in, task.d_out, params=3000)
        before = [p.detach().clone() for p in m.parameters()]
        r = seqbench.train(m, task, seqbench.TrainConfig(epochs=1, batch_size=32, device="cpu", precision=precision),
                           progress=False)
        losses[precision] = r.history[0]["train_loss"]
        moved[precision] = any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert moved["bf16"], "no weight changed under bf16"
    # the same training in lower precision: the loss agrees to bf16's few digits, not exactly
    assert abs(losses["bf16"] - losses["32"]) < 0.05 * losses["32"], losses


def test_a_missing_device_is_a_one_line_error(capsys):
    missing = "cuda" if "cuda" not in DEVICES else f"cuda:{torch.cuda.device_count()}"
    code = main(["train", "--task", "adding", "--model", "tcn", "--device", missing, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--device {missing}" in err, err
    assert ("available here" in err) if missing == "cuda" else ("visible" in err), err
    with pytest.raises(seqbench.SeqbenchError, match="unknown device"):
        resolve_device("tpu-ish")
    assert resolve_device("auto").type == DEVICES[-1]


def test_batches_move_with_their_structure():
    x, y, mask = torch.zeros(2, 3), torch.ones(2), torch.ones(2, 3, dtype=torch.bool)
    moved = to_device((x, (y, mask)), torch.device("cpu"))
    assert moved[0] is x and moved[1][1] is mask
