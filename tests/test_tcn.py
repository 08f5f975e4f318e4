import math

import pytest
import torch

import seqbench


@pytest.mark.parametrize("levels,k", [(1, 2), (4, 3), (8, 7), (5, 8)])
def test_receptive_field_formula(levels, k):
    m = seqbench.create_model("tcn", 1, 1, levels=levels, kernel_size=k, hidden=4)
    assert m.receptive_field == 1 + 2 * (k - 1) * (2 ** levels - 1)


@pytest.mark.parametrize("levels,k,causal", [(4, 3, True), (3, 4, False), (5, 2, True)])
def test_receptive_field_probe(levels, k, causal):
    m = seqbench.create_model("tcn", 2, 1, levels=levels, kernel_size=k, hidden=16, causal=causal)
    assert seqbench.empirical_receptive_field(m, m.receptive_field + 30) == m.receptive_field


def test_init_takes_effect_under_weight_norm():
    """The effective conv weight at step 0 is the U(+-1/sqrt(fan_in)) draw (g = ||v||)."""
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 1, 1, levels=2, kernel_size=7, hidden=64)
    conv = m.blocks[1].conv1
    fan_in = 64 * 7
    w = conv.weight
    torch.testing.assert_close(w, conv.parametrizations.weight.original1)  # v itself
    assert w.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6
    assert abs(w.std().item() - 1 / math.sqrt(3 * fan_in)) < 0.1 / math.sqrt(3 * fan_in)


def test_padding_is_left_only_when_causal():
    m = seqbench.create_model("tcn", 1, 1, levels=3, kernel_size=3, hidden=4)
    for i, block in enumerate(m.blocks):
        assert block.padding == (2 * 2 ** i, 0)
        assert block.conv1.padding == (0,)  # no both-sides padding to chop off


def test_fold_weight_norm_keeps_the_function_and_streams():
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 2, 3, levels=3, hidden=6, kernel_size=3).eval()
    x = torch.randn(2, 40, 2)
    with torch.no_grad():
        y = m(x)
    m.fold_weight_norm()
    assert not any("parametrizations" in k for k in m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-6)
    state = m.init_state(2)
    ys = torch.stack([m.step(x[:, t], state)[0] for t in range(40)], 1)
    torch.testing.assert_close(ys, y, rtol=1e-5, atol=1e-5)




@pytest.mark.parametrize("causal", [True, False])
def test_full_forward_gradients_match_finite_differences(causal):
    """The channels-last full forward (pads, height-1 2-D convs, residual 1x1) in float64: gradients
    for the input and every parameter against finite differences, causal and centred."""
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 2, 3, causal=causal, levels=2, hidden=3, kernel_size=3).double()
    names, params = zip(*m.named_parameters())
    x = torch.randn(2, 9, 2, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x,))
    assert torch.autograd.gradcheck(f, (x, *(p.detach().clone().requires_grad_() for p in params)))


def test_any_input_memory_layout_gives_the_same_outputs():
    """The channels-last forward reads x's memory as it is: strided and transposed inputs give what
    their contiguous copies give, full sequence and last step, with gradients."""
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 3, 4, levels=3, hidden=5, kernel_size=3)
    base = torch.randn(2, 3, 60)
    for x in (base.transpose(1, 2), base.transpose(1, 2)[:, ::2], base.transpose(1, 2).contiguous()[:, 1::3]):
        torch.testing.assert_close(m(x), m(x.contiguous()))
        torch.testing.assert_close(m.forward_last(x), m(x.contiguous())[:, -1:], rtol=1e-5, atol=1e-6)
    x = base.transpose(1, 2).requires_grad_()
    m(x).sum().backward()
    xc = base.transpose(1, 2).contiguous().requires_grad_()
    m(xc).sum().backward()
    torch.testing.assert_close(x.grad, xc.grad)
