import math

import pytest
import torch

import seqbench


def test_adding_structure():
    task = seqbench.create_task("adding", seq_len=50, n_train=64)
    x, y = next(task.batches("train", 64))
    assert x.shape == (64, 50, 2) and y.shape == (64,)
    marks = x[..., 1]
    assert torch.equal(marks.sum(1), torch.full((64,), 2.0))
    assert (marks[:, :25].sum(1) == 1).all() and (marks[:, 25:].sum(1) == 1).all()
    torch.testing.assert_close(y, (x[..., 0] * marks).sum(1))
    assert task.metric.name == "mse" and not task.metric.higher_is_better
    assert task.trivial_baseline == pytest.approx(0.1767)
    assert task.paper.values == {} and "T=600" in task.paper.note  # Table 1 is at T=600 only
    assert seqbench.create_task("adding", seq_len=600, n_train=8).paper.values["tcn"] == 5.8e-5


def test_adding_predicting_one_scores_the_trivial_level():
    task = seqbench.create_task("adding", seq_len=20, n_test=20_000)
    ones = lambda x: torch.ones(x.shape[0], x.shape[1], 1)  # noqa: E731
    mse = task.evaluate(_Const(ones), "test")["mse"]
    assert mse == pytest.approx(1 / 6, rel=0.03)


class _Const(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_copy_memory_structure_and_baseline():
    T = 30
    task = seqbench.create_task("copy_memory", T=T, n_test=2000)
    x, y = next(task.batches("test", 16))
    assert x.shape == (16, T + 20, 1) and y.shape == (16, T + 20)
    digits = x[:, :10, 0]
    assert ((digits >= 1) & (digits <= 8)).all()
    assert (x[:, 10:T + 9, 0] == 0).all() and (x[:, -11:, 0] == 9).all()
    assert torch.equal(y[:, -10:], digits.long()) and (y[:, :-10] == 0).all()

    def memoryless(x):  # blanks with certainty, then a uniform guess over the digits 1..8
        logits = torch.full((x.shape[0], x.shape[1], 10), -1e9)
        logits[:, :-10, 0] = 0
        logits[:, -10:, 1:9] = 0
        return logits
    loss = task.evaluate(_Const(memoryless), "test")["loss"]
    assert loss == pytest.approx(task.trivial_baseline, rel=1e-4)
    assert task.trivial_baseline == pytest.approx(10 * math.log(8) / (T + 20))


@pytest.mark.parametrize("name", ["adding", "copy_memory"])
def test_data_is_deterministic_per_seed(name):
    a = seqbench.create_task(name, seed=3)
    b = seqbench.create_task(name, seed=3)
    c = seqbench.create_task(name, seed=4)
    xa, _ = next(a.batches("valid", 8))
    xb, _ = next(b.batches("valid", 8))
    xc, _ = next(c.batches("valid", 8))
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    xt, _ = next(a.batches("train", 8))
    assert not torch.equal(xt, xa), "splits must differ"


def test_long_sequences_are_generated_per_batch():
    task = seqbench.create_task("adding", seq_len=1_000_000)  # would be 400 GB if materialized
    x, y = next(task.batches("train", 2))
    assert x.shape == (2, 1_000_000, 2)


def test_shuffled_order_covers_each_batch_once():
    task = seqbench.create_task("adding", seq_len=10, n_train=100)
    plain = [y for _, y in task.batches("train", 32)]
    shuffled = [y for _, y in task.batches("train", 32, shuffle_seed=1)]
    assert sorted(torch.cat(plain).tolist()) == sorted(torch.cat(shuffled).tolist())
    assert [len(y) for y in plain] == [32, 32, 32, 4]


def test_task_errors():
    with pytest.raises(seqbench.SeqbenchError, match="unknown task 'addng'.*did you mean 'adding'"):
        seqbench.create_task("addng")
    with pytest.raises(seqbench.SeqbenchError, match="unknown option.*seqlen.*valid options"):
        seqbench.create_task("adding", seqlen=3)
    with pytest.raises(seqbench.SeqbenchError, match="seq_len of 'adding' must be >= 1"):
        seqbench.create_task("adding", seq_len=0)
    with pytest.raises(seqbench.SeqbenchError, match="unknown split"):
        next(seqbench.create_task("adding").batches("dev", 4))
