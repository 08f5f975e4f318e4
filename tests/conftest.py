import warnings

import pytest
import torch

import seqbench

torch.set_num_threads(2)


def small_model(name: str, d_in: int = 3, d_out: int = 4, causal: bool = True, **cfg):
    """A small instance of any zoo model (test-sized budget), seeded."""
    torch.manual_seed(0)
    with warnings.catch_warnings():  # tiny budgets can miss by >5%; the warning is tested on its own
        warnings.simplefilter("ignore")
        return seqbench.create_model(name, d_in, d_out, params=cfg.pop("params", 6000), causal=causal, **cfg)


@pytest.fixture(params=seqbench.list_models())
def model_name(request):
    return request.param
