"""Contract tests run over every registered model (new models are covered automatically)."""

import pytest
import torch

import seqbench
from seqbench.models.registry import get_model_entry
from conftest import small_model


def non_causal_unsupported(name):
    return not get_model_entry(name).cls.supports_non_causal


@pytest.mark.parametrize("causal", [True, False])
def test_output_shape_and_finite(model_name, causal):
    if not causal and non_causal_unsupported(model_name):
        with pytest.raises(seqbench.SeqbenchError, match="causal"):
            small_model(model_name, causal=False)
        return
    m = small_model(model_name, causal=causal)
    y = m(torch.randn(2, 17, 3))
    assert y.shape == (2, 17, 4)
    assert torch.isfinite(y).all()
    assert m.causal is causal


def test_every_parameter_gets_a_gradient(model_name):
    m = small_model(model_name)
    m(torch.randn(3, 40, 3)).pow(2).mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{model_name}: no gradient reaches {pname}"


def test_causal_models_ignore_the_future(model_name):
    m = small_model(model_name).eval()
    x = torch.randn(2, 50, 3)
    t = 29
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(2, 50 - t - 1, 3) * 10
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    torch.testing.assert_close(y[:, :t + 1], y2[:, :t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:]), "future change should change later outputs"


def test_non_causal_models_see_the_future(model_name):
    if non_causal_unsupported(model_name):
        pytest.skip(f"{model_name} is causal only (building it non-causal is tested as a clear error)")
    m = small_model(model_name, causal=False).eval()
    x = torch.randn(2, 30, 3)
    x2 = x.clone()
    x2[:, 20:] += 1.0
    with torch.no_grad():
        assert not torch.allclose(m(x)[:, 10], m(x2)[:, 10])


@pytest.mark.parametrize("causal", [True, False])
def test_receptive_field_matches_gradient_probe(model_name, causal):
    if not causal and non_causal_unsupported(model_name):
        pytest.skip(f"{model_name} is causal only")
    m = small_model(model_name, causal=causal, **_shallow(model_name))
    rf = m.receptive_field
    if rf is None:  # unbounded (recurrent): the last output depends on the first input
        assert seqbench.empirical_receptive_field(m, 60) == 60
    else:
        assert seqbench.empirical_receptive_field(m, rf + 40) == rf


def _shallow(name):
    # keep receptive fields small enough to probe cheaply
    return {"tcn": {"levels": 3, "kernel_size": 3},
            "trellisnet": {"levels": 4, "kernel_size": 2, "dilations": [1, 2]}}.get(name, {})


@pytest.mark.parametrize("d_in,d_out,budget", [(1, 10, 70_000), (2, 1, 70_000), (88, 88, 300_000)])
def test_budget_solver_within_5_percent(model_name, d_in, d_out, budget):
    m = seqbench.create_model(model_name, d_in, d_out, params=budget)
    assert abs(seqbench.count_params(m) - budget) / budget <= 0.05


def test_impossible_budget_is_a_clear_error(model_name):
    with pytest.raises(seqbench.SeqbenchError, match="impossible"):
        seqbench.create_model(model_name, 1, 10, params=10)


def test_coarse_budget_warns_with_the_closest_width():
    with pytest.warns(UserWarning, match=r"tcn: closest width hidden=\d+ gives [\d,]+ params, [+-]\d+\.\d%"):
        seqbench.create_model("tcn", 1, 10, params=6000)


def test_budget_accepts_human_counts():
    a = seqbench.create_model("lstm", 1, 10, params="70k")
    b = seqbench.create_model("lstm", 1, 10, params=70_000)
    assert seqbench.count_params(a) == seqbench.count_params(b)


def test_same_seed_same_weights(model_name):
    a, b = small_model(model_name), small_model(model_name)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_bad_input_shape_and_dtype(model_name):
    m = small_model(model_name)
    with pytest.raises(seqbench.SeqbenchError, match=r"shape \(B, L, d_in\)"):
        m(torch.randn(2, 10, 5))
    with pytest.raises(seqbench.SeqbenchError, match="shape"):
        m(torch.randn(10, 3))
    with pytest.raises(seqbench.SeqbenchError, match="floating-point"):
        m(torch.ones(2, 10, 3, dtype=torch.long))


def test_unknown_model_and_option():
    with pytest.raises(seqbench.SeqbenchError, match="unknown model 'tnc'.*did you mean 'tcn'"):
        seqbench.create_model("tnc", 1, 1)
    with pytest.raises(seqbench.SeqbenchError, match="unknown option.*levles.*valid options"):
        seqbench.create_model("tcn", 1, 1, levles=3)
    with pytest.raises(seqbench.SeqbenchError, match="d_in must be a positive integer"):
        seqbench.create_model("tcn", 0, 1)


def test_model_rebuilds_from_config(model_name):
    m = small_model(model_name)
    again = seqbench.model_from_config(m.config)
    assert seqbench.count_params(again) == seqbench.count_params(m)
    again.load_state_dict(m.state_dict())


def test_every_model_learns_a_lag_task(model_name):
    """y[t] = x[t-2]: every causal model should fit it far below the trivial MSE of 1."""
    m = small_model(model_name, 1, 1, **_shallow(model_name))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = torch.randn(16, 24, 1, generator=g)
        loss = (m(x)[:, 2:] - x[:, :-2]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(64, 24, 1, generator=g)
    with torch.no_grad():
        mse = (m(x)[:, 2:] - x[:, :-2]).pow(2).mean().item()
    assert mse < 0.1, f"{model_name} did not learn the lag task (mse {mse:.3f})"


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        seqbench.register_model("tcn")(get_model_entry("tcn").cls)


def test_list_models_pattern():
    assert seqbench.list_models("*ru") == ["gru", "lru"]
    assert {"tcn", "lstm", "gru", "rnn"} <= set(seqbench.list_models())


@pytest.mark.parametrize("length", [1, 6, 37, 200])
def test_forward_last_equals_last_step_of_forward(model_name, length):
    m = small_model(model_name).eval()
    x = torch.randn(2, length, 3)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_last(x), m(x)[:, -1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("levels,k", [(3, 2), (5, 3), (4, 7)])
def test_tcn_forward_last_gradients_match_full_forward(levels, k):
    """The decimated last-step path trains the same function: equal gradients for every parameter."""
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 2, 3, hidden=6, levels=levels, kernel_size=k)
    x = torch.randn(3, 90, 2)
    m(x)[:, -1].pow(2).sum().backward()
    full = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.forward_last(x)[:, -1].pow(2).sum().backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, full[n], rtol=1e-4, atol=1e-6, msg=n)
