"""FastDropout: nn.Dropout's distribution and expectation with a faster mask (issue 12)."""
import pytest
import torch

from seqbench.models.dropout import FastDropout, scaled_mask_like


@pytest.mark.parametrize("p", [0.05, 0.25, 0.5])
def test_keep_rate_scaling_and_mean(p):
    torch.manual_seed(0)
    x = torch.rand(400, 1000) + 0.5
    y = FastDropout(p).train()(x)
    kept = y != 0
    threshold = round(p * 65536)
    keep = 1 - threshold / 65536
    assert abs(kept.float().mean().item() - keep) < 4 * (keep * (1 - keep) / x.numel()) ** 0.5  # 4 sigma
    torch.testing.assert_close(y[kept], x[kept] * (1 / keep))  # kept values scaled by exactly 1 / keep
    assert abs(y.mean().item() - x.mean().item()) < 5e-3  # E[y] = x
    assert abs(keep - (1 - p)) < 2 ** -16  # p is quantized to 2^-16 at most


def test_seeded_like_torch_and_fresh_each_call():
    drop = FastDropout(0.3).train()
    x = torch.ones(64, 64)
    torch.manual_seed(7)
    a, b = drop(x), drop(x)
    torch.manual_seed(7)
    assert torch.equal(drop(x), a) and not torch.equal(a, b)


def test_gradient_is_the_same_mask_and_eval_is_identity():
    drop = FastDropout(0.2).train()
    x = torch.randn(32, 50, requires_grad=True)
    y = drop(x)
    y.backward(torch.ones_like(y))
    scale = 1 / (1 - round(0.2 * 65536) / 65536)
    torch.testing.assert_close(x.grad, (y != 0).float() * scale)
    drop.eval()
    assert drop(x) is x
    assert FastDropout(0.0).train()(x) is x
    m = scaled_mask_like(torch.ones(30, 50, dtype=torch.float64), 0.5)
    assert m.dtype == torch.float64 and m.shape == (30, 50) and set(m.unique().tolist()) == {0.0, 2.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_channels_last_input_keeps_its_layout_rate_and_mask(dtype):
    """The TCN's activations are channels-last (B, C, 1, L): the mask follows that layout, the output
    stays channels-last, the keep rate and scaling hold, and the gradient goes through the same mask."""
    torch.manual_seed(0)
    x = (torch.rand(8, 300, 1, 40) + 0.5).to(dtype).permute(0, 3, 2, 1).requires_grad_()  # (B, C, 1, L)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    y = FastDropout(0.25).train()(x)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    kept = y != 0
    keep = 1 - round(0.25 * 65536) / 65536
    assert abs(kept.float().mean().item() - keep) < 4 * (keep * (1 - keep) / x.numel()) ** 0.5
    torch.testing.assert_close(y[kept], x.detach()[kept] / keep)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.to(dtype) / keep)
