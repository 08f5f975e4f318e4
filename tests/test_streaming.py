"""Exact streaming: stepping through a sequence reproduces the full forward for every causal model."""
import sys

import pytest
import torch

import seqbench
from conftest import small_model
from seqbench.models.registry import get_model_entry

STREAMING = [n for n in seqbench.list_models() if get_model_entry(n).cls.supports_step]


@pytest.fixture(params=["numpy", "torch"], ids=["numpy-fast-path", "torch-ops"])
def engine(request):
    """Run each streaming test through both single-step engines (NumPy on CPU, torch elsewhere)."""
    return request.param


def small_streamer(name):
    cfg = {"tcn": {"levels": 4, "kernel_size": 3},  # receptive field 31
           "trellisnet": {"levels": 5, "dilations": [1, 2, 4]},  # receptive field 11
           "lru": {"chunk": 16}}.get(name, {})
    m = small_model(name, **cfg).eval()
    with torch.no_grad():  # off their initial values (LayerNorm gains of exactly 1, zero biases), so a
        for p in m.parameters():  # step that folds weights wrongly cannot pass by luck
            p.add_(0.1 * torch.randn_like(p))
    return m


def test_every_model_streams():
    assert set(STREAMING) == {"tcn", "trellisnet", "transformer", "lru", "lstm", "gru", "rnn"}


@pytest.mark.parametrize("name", STREAMING)
@pytest.mark.parametrize("batch", [1, 4])
def test_step_by_step_matches_forward(name, batch, engine):
    m = small_streamer(name)
    L = 80  # longer than twice the receptive fields above, so the buffers slide back
    x = torch.randn(batch, L, 3)
    with torch.no_grad():
        full = m(x)
    state = m.init_state(batch, engine)
    steps = []
    for t in range(L):
        y_t, state = m.step(x[:, t], state)
        assert y_t.shape == (batch, 4)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", STREAMING)
@pytest.mark.parametrize("batch", [1, 4])
def test_random_chunks_match_forward(name, batch, engine):
    """Chunks of random length, with single steps between them (a step after a chunk that grew or
    slid the state must see it)."""
    m = small_streamer(name)
    g = torch.Generator().manual_seed(batch)
    L = 90
    x = torch.randn(batch, L, 3)
    with torch.no_grad():
        full = m(x)
    state, t, outs = m.init_state(batch, engine), 0, []
    while t < L:
        c = int(torch.randint(1, 24, (1,), generator=g))
        y, state = m.step(x[:, t:t + c], state)
        assert y.shape == (batch, min(c, L - t), 4)
        outs.append(y)
        t += c
        for _ in range(int(torch.randint(0, 3, (1,), generator=g))):
            if t < L:
                y, state = m.step(x[:, t], state)
                assert y.shape == (batch, 4)
                outs.append(y[:, None])
                t += 1
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", STREAMING)
def test_states_are_independent(name, engine):
    """Two streams from one model do not share history."""
    m = small_streamer(name)
    x = torch.randn(1, 20, 3)
    s1, s2 = m.init_state(1, engine), m.init_state(1, engine)
    for t in range(20):
        m.step(torch.randn(1, 3) * 5, s2)  # noise into the second stream
        y1, s1 = m.step(x[:, t], s1)
    with torch.no_grad():
        torch.testing.assert_close(y1, m(x)[:, -1], rtol=0, atol=1e-5)


def test_non_causal_models_refuse_to_stream():
    m = seqbench.create_model("tcn", 1, 1, hidden=4, levels=2, causal=False)
    with pytest.raises(seqbench.SeqbenchError, match="causal=False.*cannot stream"):
        m.init_state(1)
    with pytest.raises(seqbench.SeqbenchError, match="cannot stream"):
        m.step(torch.zeros(1, 1), None)


def test_step_input_checks():
    m = small_streamer("tcn")
    state = m.init_state(2)
    with pytest.raises(seqbench.SeqbenchError, match=r"\(B, d_in\)"):
        m.step(torch.zeros(2, 5), state)
    with pytest.raises(seqbench.SeqbenchError, match="batch_size must be a positive integer"):
        m.init_state(0)
    with pytest.raises(seqbench.SeqbenchError, match="unknown streaming engine 'jax'"):
        m.init_state(1, "jax")
    with pytest.raises(seqbench.SeqbenchError, match="NumPy streaming engine needs CPU float32/float64"):
        small_streamer("tcn").to(torch.bfloat16).init_state(1, "numpy")


def test_the_engine_is_the_one_asked_for():
    m = small_streamer("tcn")
    assert m.init_state(1).numpy and m.init_state(1, "numpy").numpy and not m.init_state(1, "torch").numpy


def test_tcn_stream_mixes_steps_and_chunks_in_float64(engine):
    m = small_streamer("tcn").double()
    x = torch.randn(2, 150, 3, dtype=torch.float64)
    with torch.no_grad():
        full = m(x)
    state, outs, t = m.init_state(2, engine), [], 0
    for c in [1, 1, 40, 1, 3, 1, 70, 1, 1, 32]:
        y, state = m.step(x[:, t] if c == 1 else x[:, t:t + c], state)
        outs.append(y if c > 1 else y[:, None])
        t += c
    assert y.dtype == torch.float64
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=0, atol=1e-10)


def test_tcn_without_input_projection_streams_exactly(engine):
    """d_in == hidden: the first block adds its raw (signed) input, so its last ReLU is not a no-op;
    the step skips that ReLU only where the block input is a previous block's output."""
    torch.manual_seed(0)
    m = seqbench.create_model("tcn", 5, 2, hidden=5, levels=3, kernel_size=3).eval()
    assert m.blocks[0].downsample is None
    x = torch.randn(2, 40, 5) * 3
    with torch.no_grad():
        full = m(x)
    state, steps = m.init_state(2, engine), []
    for t in range(40):
        y, state = m.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-5)


def test_trellisnet_with_a_wider_kernel_streams_exactly(engine):
    """The step sums the input's per-tap projections at each dilation's lags: check k=3 too."""
    torch.manual_seed(0)
    m = seqbench.create_model("trellisnet", 3, 4, hidden=8, kernel_size=3, levels=4, dilations=[1, 3]).eval()
    x = torch.randn(2, 40, 3)
    with torch.no_grad():
        full = m(x)
    state = m.init_state(2, engine)
    steps = torch.stack([m.step(x[:, t], state)[0] for t in range(40)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scipy", [True, False], ids=["scipy-erf", "without-scipy"])
def test_transformer_streams_past_its_rotary_blocks_in_float64(engine, scipy, monkeypatch):
    """The NumPy step computes rotary angles a block of positions at a time and its GELU with SciPy's
    erf where SciPy is installed (torch's GELU otherwise): 600 positions, across block edges, with a
    chunk in between, equal the full forward."""
    if not scipy:
        monkeypatch.setitem(sys.modules, "scipy.special", None)  # as if SciPy were not installed
    m = small_streamer("transformer").double()
    x = torch.randn(2, 600, 3, dtype=torch.float64)
    with torch.no_grad():
        full = m(x)
    state, outs, t = m.init_state(2, engine), [], 0
    for c in [250, *[1] * 20, 300, *[1] * 30]:
        y, state = m.step(x[:, t] if c == 1 else x[:, t:t + c], state)
        outs.append(y if c > 1 else y[:, None])
        t += c
    # rotary angles are float32 in both (as torch computes them), and NumPy's float32 cos may differ
    # from torch's by an ulp: ~1e-9 here, where a wrong angle or GELU is off by far more
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=0, atol=1e-8)
