import sqlite3
import time
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


def trial_rows(db) -> list[dict]:
    """Every trial row of a (possibly live) results database; [] before the table exists."""
    con = sqlite3.connect(db, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM trials")]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def wait_for(cond, timeout: float = 120.0) -> bool:
    """Poll ``cond`` until it holds (True) or ``timeout`` seconds pass (False)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False
