"""Real task families load a real (small) slice of their data and behave as users rely on."""
import numpy as np
import pytest
import torch

import seqbench
from seqbench.data import cached_arrays
from seqbench.tasks.arrays import last_step
from seqbench.train import TrainConfig


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # one cache for the whole session, so sktime/music21 parsing runs once
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_smnist_full_slice():
    t = seqbench.create_task("smnist", n_train=128, n_valid=32, n_test=64)
    x, y = next(t.batches("train", 16))
    assert x.shape == (16, 784, 1) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64 and t.d_out == 10 and t.seq_len == 784
    assert t.sizes == {"train": 128, "valid": 32, "test": 64}
    assert 0.05 < t.trivial_baseline < 0.3  # majority class on 64 test digits
    assert t.paper.values["tcn"] == 0.99  # same unit as the metric (a fraction)


def test_pmnist_is_one_fixed_permutation_of_smnist():
    s = seqbench.create_task("smnist:digits")
    p = seqbench.create_task("pmnist:digits")
    p2 = seqbench.create_task("pmnist:digits", perm_seed=1)
    xs, xp, xp2 = (t.data["train"][0][:, :, 0] for t in (s, p, p2))
    perm = np.random.default_rng(0).permutation(64)
    np.testing.assert_array_equal(xp, xs[:, perm])
    assert not np.array_equal(xp, xp2)
    np.testing.assert_array_equal(s.data["test"][1], p.data["test"][1])


def test_tcn_learns_digits():
    """A small TCN well above chance on the 8x8 digits after two epochs (64-step sequences)."""
    task = seqbench.create_task("smnist:digits")
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 1, 10, levels=5, hidden=24, kernel_size=3)
    r = seqbench.train(m, task, TrainConfig(epochs=3, batch_size=32, lr=5e-3), progress=False)
    assert r.test["accuracy"] > 0.6, r.history


def test_tsc_gunpoint_znormalized():
    t = seqbench.create_task("tsc:GunPoint")
    x = t.data["train"][0]
    assert x.shape[1:] == (150, 1) and t.d_out == 2
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-4)
    assert t.sizes["train"] + t.sizes["valid"] == 50 and t.sizes["test"] == 150


def test_tsc_folds_partition_the_archive_train_per_class():
    """fold=I/K: K stratified folds of the archive's train part, each validating once (each class
    dealt evenly over the folds), the test part untouched; fold=all trains on all of train."""
    plain = seqbench.create_task("tsc:BasicMotions")
    k = 5
    folds = [seqbench.create_task("tsc:BasicMotions", fold=f"{i}/{k}") for i in range(k)]
    n = plain.num_samples("train") + plain.num_samples("valid")
    valid = [f.data["valid"][0] for f in folds]
    assert sum(len(v) for v in valid) == n and all(f.num_samples("train") + len(v) == n for f, v in zip(folds, valid))
    pool = np.concatenate([plain.data["train"][0], plain.data["valid"][0]])
    assert sorted(map(bytes, np.concatenate(valid))) == sorted(map(bytes, pool))  # each sequence validates once
    per_class = np.array([np.bincount(f.data["valid"][1], minlength=plain.num_classes) for f in folds])
    assert (per_class.max(0) - per_class.min(0) <= 1).all()  # stratified
    assert all(np.array_equal(f.data["test"][0], plain.data["test"][0]) for f in folds)
    refit = seqbench.create_task("tsc:BasicMotions", fold="all")
    assert refit.num_samples("train") == n and refit.config()["fold"] == "all"
    with pytest.raises(seqbench.SeqbenchError, match="fold='5/5' must be I/K"):
        seqbench.create_task("tsc:BasicMotions", fold="5/5")


def test_tsc_multivariate_and_variable_length():
    bm = seqbench.create_task("tsc:BasicMotions")
    assert bm.d_in == 6 and bm.d_out == 4
    jv = seqbench.create_task("tsc:JapaneseVowels")
    assert jv.d_in == 12 and jv.variable_length and jv.info()["seq_len"] == "7-29"


@pytest.mark.parametrize("model_name", ["tcn", "lstm", "transformer"])
def test_padding_never_changes_a_prediction(model_name):
    """The same series padded to different lengths gets the same output."""
    task = seqbench.create_task("tsc:JapaneseVowels")
    m = seqbench.create_model(model_name, task.d_in, task.d_out, params="10k").eval()
    x, (y, lengths) = next(task.batches("test", 8))
    with torch.no_grad():
        a = last_step(task.predict(m, x), lengths)
        padded = torch.cat([x, torch.randn(8, 13, task.d_in)], dim=1)  # garbage after the end
        b = last_step(task.predict(m, padded), lengths)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_variable_length_refuses_non_causal_models():
    task = seqbench.create_task("tsc:JapaneseVowels")
    m = seqbench.create_model("tcn", task.d_in, task.d_out, params="10k", causal=False)
    x, _ = next(task.batches("test", 4))
    with pytest.raises(seqbench.SeqbenchError, match="causal"):
        task.predict(m, x)


def test_forecast_split_scaling_and_naive():
    t = seqbench.create_task("forecast:airpassengers")
    x, y = next(t.batches("train", 4))
    assert x.shape == (4, 36, 1) and y.shape == (4, 13) and t.d_out == 12  # [last observed value, 12 targets]
    series = np.asarray(__import__("pmdarima").datasets.load_airpassengers(as_series=False), float)
    assert t.mean == pytest.approx(series[:int(144 * 0.7)].mean())  # fit on train only
    assert 0 < t.trivial_baseline < 100 and set(t.naive) == {"mae", "rmse", "smape"}
    m = seqbench.create_model("gru", 1, 12, params="10k")
    metrics = t.evaluate(m, "test")
    assert set(metrics) == {"mae", "rmse", "smape"}


def test_forecast_co2_gaps_filled_and_sunspots():
    co2 = seqbench.create_task("forecast:co2")
    assert all(np.isfinite(co2.data[s][0]).all() for s in co2.data)
    sun = seqbench.create_task("forecast:sunspots", lookback=48, horizon=6)
    assert sun.data["test"][0].shape[1:] == (48, 1) and sun.d_out == 6


def test_unknown_variants_are_clear_errors():
    for name, match in [("tsc:GunPont", "GunPoint"), ("forecast:sunspot", "sunspots"), ("smnist:tiny", "digits")]:
        with pytest.raises(seqbench.SeqbenchError, match=match):
            seqbench.create_task(name)


def test_cache_rebuilds_a_corrupt_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(10.0)}
    np.testing.assert_array_equal(cached_arrays("k", build, 1)["a"], np.arange(10.0))
    cached_arrays("k", build, 1)
    assert len(calls) == 1  # second call read the cache
    path = next(tmp_path.glob("k.*.npz"))
    path.write_bytes(path.read_bytes()[:40])  # a torn write
    with pytest.warns(UserWarning, match="rebuilding"):
        np.testing.assert_array_equal(cached_arrays("k", build, 1)["a"], np.arange(10.0))
    assert len(calls) == 2 and not list(tmp_path.glob(".*tmp"))
    cached_arrays("k", build, 2)  # a new preprocessing version of this dataset: rebuilt
    assert len(calls) == 3


def test_chorales_piano_rolls_next_step():
    t = seqbench.create_task("chorales", n_pieces=6)
    assert t.d_in == t.d_out == 88 and t.variable_length and sum(t.sizes.values()) == 6
    x, (y, lengths) = next(t.batches("train", 2))
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(x[i, 1:n], y[i, :n - 1])  # the target is the next frame
        assert x[i, :n].sum(-1).max() <= 6  # four voices sampled per frame (a voice may split)
    assert np.isfinite(t.trivial_baseline) and t.trivial_baseline > 0
    m = seqbench.create_model("tcn", 88, 88, levels=2, hidden=16, kernel_size=3)
    r = seqbench.train(m, t, TrainConfig(epochs=2, batch_size=2, lr=1e-2), progress=False)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]  # it learns something


def test_chorale_roll_of_one_score_matches_its_notes():
    from seqbench.tasks.music import chorale_paths, piano_roll
    path = chorale_paths()[0]
    coarse, fine = piano_roll(path, 1), piano_roll(path, 4)
    assert coarse.shape[1] == 88 and abs(len(fine) - 4 * len(coarse)) <= 4
    np.testing.assert_array_equal(fine[::4][:len(coarse)], coarse[:len(fine[::4])])


@pytest.mark.parametrize("name,metric", [("ptb_word", "ppl"), ("ptb_char", "bpc")])
def test_ptb_windows_score_every_token_once(name, metric):
    t = seqbench.create_task(name, seq_len=30, valid_len=10, max_tokens=2000)
    assert t.metric.name == metric and t.d_in == t.d_out == t.vocab_size
    scored = 0
    for x, (y, mask) in t.batches("test", 16):
        assert x.shape[1] == 30 and x.dtype == torch.int64
        torch.testing.assert_close(x[:, 1:], y[:, :-1])
        scored += int(mask.sum())
    assert scored == len(t.streams["test"]) - 1
    m = seqbench.model_for_task("gru", t, params="200k", embed_dim=16)
    metrics = t.evaluate(m, "test")
    assert metric in metrics and metrics[metric] > 0


def test_ptb_word_is_mikolovs_treebank():
    t = seqbench.create_task("ptb_word")
    assert t.vocab_size == 10000 and len(t.streams["valid"]) == 73760 and "<unk>" in t.vocab


def test_token_model_streams_and_rejects_bad_ids():
    m = seqbench.create_model("tcn", 40, 40, embed_dim=8, levels=3, hidden=8, kernel_size=3).eval()
    x = torch.randint(0, 40, (2, 25))
    state = m.init_state(2)
    ys = torch.stack([m.step(x[:, i], state)[0] for i in range(20)], 1)
    chunk, state = m.step(x[:, 20:], state)  # ids (B, C): a chunk
    torch.testing.assert_close(torch.cat([ys, chunk], 1), m(x), rtol=1e-5, atol=1e-5)
    # tied decoder: the vocabulary x embed_dim matrix exists once
    assert [n for n, p in m.named_parameters() if p.shape == (40, 8)] == ["embed.weight"]
    with pytest.raises(seqbench.SeqbenchError, match="0..39"):
        m(torch.full((1, 5), 40))
    with pytest.raises(seqbench.SeqbenchError, match="integer token ids"):
        m(torch.randn(1, 5))
    with pytest.raises(seqbench.SeqbenchError, match="does not cover the embedding"):
        seqbench.create_model("lstm", 10000, 10000, embed_dim=600, params="1M")
