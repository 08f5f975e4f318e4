"""seqbench's TCN computes the same function as the straightforward transcription it is measured
against in benchmarks/train_throughput.py (same weights, float32)."""
import os
import sys

import pytest
import torch

import seqbench

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
from reference_tcn import reference_like  # noqa: E402


@pytest.mark.parametrize("d_in,hidden,levels,k", [(1, 25, 8, 7), (2, 24, 4, 8), (3, 3, 3, 2)])
def test_same_function_as_reference(d_in, hidden, levels, k):
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", d_in, 10, hidden=hidden, levels=levels, kernel_size=k).eval()
    ref = reference_like(m).eval()
    x = torch.randn(4, 300, d_in)
    with torch.no_grad():
        y, y_ref = m(x), ref(x)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ref(x, last_only=True), y_ref[:, -1], rtol=1e-5, atol=1e-5)


def test_same_gradients_as_reference():
    torch.manual_seed(1)
    m = seqbench.create_model("tcn", 1, 10, hidden=8, levels=3, kernel_size=3)
    ref = reference_like(m)
    x = torch.randn(2, 50, 1)
    m(x).square().mean().backward()
    ref(x).square().mean().backward()
    grads = dict(ref.named_parameters())
    for name, p in m.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-4, atol=1e-6, msg=name)
