"""Export a trained model outside Python: ONNX or a ``torch.export`` program (``.pt2``).

Two graphs can be exported from a run directory:

* the full-sequence model: ``x (B, L, d_in) -> y (B, L, d_out)`` (token models: ids ``(B, L)``),
  batch and length dynamic;
* with ``streaming=True``, one step as a pure function whose state is explicit inputs and outputs:
  ``(x, state_0, ..., state_n) -> (y, next_state_0, ..., next_state_n)``. Feed the next state back
  in at the next step; a new stream starts from zeros (``StreamingStep.state_spec`` gives each
  piece's name, shape and dtype; they are also written to ``<out>.json`` beside the file).

The pure step functions below are written for export (no Python-side state, no NumPy, no complex
numbers, no data-dependent control flow); tests check them against each model's own ``step``.
"""
from __future__ import annotations

import importlib.util
import io as io_module
import json
import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import SeqbenchError

FORMATS = ("onnx", "pt2")
OPSET = 18


class StateSpec(NamedTuple):
    name: str
    shape: tuple[int, ...]   # at the batch size asked for; dimension 1 of every piece but `position` is the batch
    dtype: torch.dtype
    doc: str


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode with every parametrization (weight norm) folded into plain weights.

    Rebuilt from the model's config rather than deep-copied: a deep copy shares the parametrized
    class torch generates per module, and folding the copy would break the original."""
    from torch.nn.utils import parametrize
    from seqbench.models.registry import model_from_config
    p = next(model.parameters())
    fresh = model_from_config(model.config).to(device=p.device, dtype=p.dtype)
    fresh.load_state_dict(model.state_dict())
    for m in fresh.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    for q in fresh.parameters():
        q.requires_grad_(False)
    return fresh.eval()


class _Step(nn.Module):
    """One model's pure step. Subclasses define ``specs(batch)`` and ``forward(x, *state)``."""

    def specs(self, batch: int) -> list[StateSpec]:
        raise NotImplementedError


class _TCNStep(_Step):
    """State: per conv, its last (k-1)*d inputs, time-major (B, (k-1)d, C_in)."""

    def __init__(self, m):
        super().__init__()
        self.m, self.k = m, m.kernel_size

    def specs(self, batch):
        out = []
        for i, (block, d) in enumerate(zip(self.m.blocks, self.m.dilations)):
            for j, conv in ((1, block.conv1), (2, block.conv2)):
                out.append(StateSpec(f"block{i}_conv{j}", (batch, (self.k - 1) * d, conv.in_channels),
                                     conv.weight.dtype, f"the last {(self.k - 1) * d} inputs of block {i}'s conv {j}"))
        return out

    def forward(self, x, *state):
        B, new, s = x.shape[0], [], iter(state)
        h = x
        for block, d in zip(self.m.blocks, self.m.dilations):
            a = h
            for conv in (block.conv1, block.conv2):
                full = torch.cat([next(s), a[:, None]], dim=1)  # (B, (k-1)d + 1, C_in), oldest first
                new.append(full[:, 1:])
                taps = full[:, ::d].reshape(B, -1)  # the k taps, (B, k * C_in)
                w = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1)  # (C_out, k * C_in)
                a = F.relu(F.linear(taps, w, conv.bias))
            res = h if block.downsample is None else F.linear(h, block.downsample.weight[:, :, 0], block.downsample.bias)
            h = F.relu(a + res)
        return (self.m.head(h), *new)


class _RNNStep(_Step):
    """State: h (layers, B, H), and c for an LSTM."""

    def __init__(self, m):
        super().__init__()
        self.m, self.lstm = m, isinstance(m.rnn, nn.LSTM)

    def specs(self, batch):
        shape, dt = (self.m.layers, batch, self.m.hidden), self.m.head.weight.dtype
        out = [StateSpec("h", shape, dt, "hidden state per layer (layers, B, hidden)")]
        if self.lstm:
            out.append(StateSpec("c", shape, dt, "cell state per layer (layers, B, hidden)"))
        return out

    def forward(self, x, *state):
        out, nxt = self.m.rnn(x[:, None], tuple(state) if self.lstm else state[0])
        return (self.m.head(out[:, 0]), *(nxt if self.lstm else (nxt,)))


class _LRUStep(_Step):
    """State: each layer's complex state as two real tensors, (B, N) real and imaginary parts."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        with torch.no_grad():  # lambda and gamma * B, folded once
            for i, block in enumerate(m.blocks):
                lru = block.lru
                lam = torch.exp(lru.log_lambda())
                g = torch.exp(lru.gamma_log)[:, None]
                self.register_buffer(f"lam{i}", torch.stack([lam.real, lam.imag]).to(lru.D.dtype))
                self.register_buffer(f"bg{i}", torch.stack([lru.B_re * g, lru.B_im * g]))

    def specs(self, batch):
        dt = self.m.head.weight.dtype
        return [StateSpec(f"layer{i}_{part}", (batch, self.m.state_dim), dt, f"layer {i}'s state, {part} part")
                for i in range(self.m.layers) for part in ("re", "im")]

    def forward(self, x, *state):
        h, new = self.m.embed(x), []
        for i, block in enumerate(self.m.blocks):
            lam, bg, lru = getattr(self, f"lam{i}"), getattr(self, f"bg{i}"), block.lru
            xr, xi = state[2 * i], state[2 * i + 1]
            u = block.norm(h)
            xr, xi = (lam[0] * xr - lam[1] * xi + F.linear(u, bg[0]),
                      lam[0] * xi + lam[1] * xr + F.linear(u, bg[1]))
            new += [xr, xi]
            h = block.mix(h, F.linear(xr, lru.C_re) - F.linear(xi, lru.C_im) + lru.D * u)
        return (self.m.head(self.m.norm(h)), *new)


class _TransformerStep(_Step):
    """State: per layer a key and a value cache (B, heads, max_len, head_dim), and ``position``, the
    number of steps taken (int64, shape (1,)); a stream holds at most ``max_len`` steps: from step
    ``max_len + 1`` on, the output is NaN (start a new stream, or export with a larger ``max_len``)."""

    def __init__(self, m, max_len: int):
        super().__init__()
        self.m, self.max_len = m, max_len

    def specs(self, batch):
        dt, shape = self.m.head.weight.dtype, (batch, self.m.heads, self.max_len, self.m.head_dim)
        out = [StateSpec("position", (1,), torch.int64, "steps taken so far (the next step's position)")]
        for i in range(self.m.layers):
            out += [StateSpec(f"layer{i}_keys", shape, dt, f"layer {i}'s key cache (rotated keys)"),
                    StateSpec(f"layer{i}_values", shape, dt, f"layer {i}'s value cache")]
        return out

    def forward(self, x, position, *caches):
        from seqbench.models.transformer import rotary
        B, m = x.shape[0], self.m
        slots = torch.arange(self.max_len, device=x.device)
        here = (slots == position)[None, None, :, None]  # this step's slot
        hidden_future = slots > position  # (M,): not yet written
        h, new = m.embed(x), []
        for i, block in enumerate(m.blocks):
            qkv = block.qkv(block.ln1(h)).view(B, 3, block.heads, block.head_dim)
            q = rotary(qkv[:, 0, :, None], position)  # (B, heads, 1, D)
            k = rotary(qkv[:, 1, :, None], position)
            keys = torch.where(here, k, caches[2 * i])
            values = torch.where(here, qkv[:, 2, :, None], caches[2 * i + 1])
            new += [keys, values]
            scores = (q @ keys.transpose(-1, -2)) / math.sqrt(block.head_dim)  # (B, heads, 1, M)
            att = torch.softmax(scores.masked_fill(hidden_future, float("-inf")), dim=-1) @ values
            h = h + block.proj(att.reshape(B, -1))
            h = h + block.mlp(block.ln2(h))
        y = m.head(m.ln_f(h))
        # past max_len steps the cache is full and attention would be wrong: the output says so (NaN)
        y = torch.where(position < self.max_len, y, torch.full_like(y, float("nan")))
        return (y, position + 1, *new)


class _TrellisStep(_Step):
    """State: the last (k-1)*max(d) inputs, and for each level j >= 1 the previous level's last
    (k-1)*d_j hidden outputs and last d_j cell states (time-major, oldest first)."""

    def __init__(self, m):
        super().__init__()
        self.m, self.k = m, m.kernel_size
        self.span = (self.k - 1) * max(m.level_dilations)

    def specs(self, batch):
        m, dt = self.m, self.m.head.weight.dtype
        out = [StateSpec("inputs", (batch, self.span, m.d_in), dt, f"the last {self.span} inputs")]
        for j, d in enumerate(m.level_dilations[1:], start=1):
            out += [StateSpec(f"level{j}_h", (batch, (self.k - 1) * d, m.hidden), dt,
                              f"level {j - 1}'s last {(self.k - 1) * d} hidden outputs"),
                    StateSpec(f"level{j}_c", (batch, d, m.hidden), dt, f"level {j - 1}'s last {d} cell states")]
        return out

    def forward(self, x, xs, *hist):
        m, k, B, H = self.m, self.k, x.shape[0], self.m.hidden
        w = m.conv.weight  # (4H, d_in + H, k)
        w_x = w[:, :m.d_in].permute(0, 2, 1).reshape(4 * H, -1)
        w_h = w[:, m.d_in:].permute(0, 2, 1).reshape(4 * H, -1)
        full = torch.cat([xs, x[:, None]], dim=1)  # (B, span + 1, d_in)
        new = [full[:, 1:]]
        h = c = None
        for j, d in enumerate(m.level_dilations):
            taps = full[:, self.span - (k - 1) * d::d].reshape(B, -1)
            pre = F.linear(taps, w_x, m.conv.bias)
            if j == 0:
                c_prev = torch.zeros_like(pre[:, :H])
            else:
                hs = torch.cat([hist[2 * j - 2], h[:, None]], dim=1)
                cs = torch.cat([hist[2 * j - 1], c[:, None]], dim=1)
                new += [hs[:, 1:], cs[:, 1:]]
                pre = pre + F.linear(hs[:, ::d].reshape(B, -1), w_h)
                c_prev = cs[:, 0]
            i, o, g, f = pre.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return (m.head(h), *new)


class _TokenStep(_Step):
    """A token model: ids (B,) int64 -> embedding -> the inner model's step -> tied decoder."""

    def __init__(self, m, inner: _Step):
        super().__init__()
        self.m, self.inner = m, inner

    def specs(self, batch):
        return self.inner.specs(batch)

    def forward(self, x, *state):
        y, *new = self.inner(self.m.embed(x), *state)
        return (self.m.decode(y), *new)


class StreamingStep(nn.Module):
    """A causal zoo model's step as a pure function: ``forward(x, *state) -> (y, *next_state)``.

    ``x``: (B, d_in) float (token models: (B,) int64 ids); ``y``: (B, d_out). ``init_state(B)`` gives
    the zeros a new stream starts from; ``state_spec(B)`` names and shapes every piece. ``max_len``
    bounds a Transformer's KV cache (ignored by the other models)."""

    def __init__(self, model: nn.Module, max_len: int = 1024):
        super().__init__()
        from seqbench.models.embedding import TokenModel
        if not getattr(model, "causal", False) or not getattr(model, "supports_step", False):
            raise SeqbenchError(f"{type(model).__name__} cannot stream (it is not causal, or has no step); "
                                "export the full-sequence model instead (without --streaming)")
        if not isinstance(max_len, int) or max_len < 1:
            raise SeqbenchError(f"max_len must be a positive integer, got {max_len!r}")
        model = plain_copy(model)
        self.token = isinstance(model, TokenModel)
        self.step_fn = _TokenStep(model, _step_for(model.inner, max_len)) if self.token else _step_for(model, max_len)
        self.d_in, self.d_out, self.dtype = model.d_in, model.d_out, next(model.parameters()).dtype

    def state_spec(self, batch_size: int = 1) -> list[StateSpec]:
        return self.step_fn.specs(batch_size)

    def init_state(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(s.shape, dtype=s.dtype) for s in self.state_spec(batch_size))

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        if self.token:
            return torch.zeros(batch_size, dtype=torch.int64)
        return torch.zeros(batch_size, self.d_in, dtype=self.dtype)

    def forward(self, x, *state):
        return self.step_fn(x, *state)


def _step_for(model: nn.Module, max_len: int) -> _Step:
    from seqbench.models.lru import LRU
    from seqbench.models.rnn import _Recurrent
    from seqbench.models.tcn import TCN
    from seqbench.models.transformer import Transformer
    from seqbench.models.trellisnet import TrellisNet
    for cls, make in ((TCN, _TCNStep), (_Recurrent, _RNNStep), (LRU, _LRUStep), (TrellisNet, _TrellisStep),
                      (Transformer, lambda m: _TransformerStep(m, max_len))):
        if isinstance(model, cls):
            return make(model)
    raise SeqbenchError(f"no exportable step for {type(model).__name__}; export the full-sequence model "
                        "(without --streaming), or add a step for it in seqbench.export")


class FullSequence(nn.Module):
    """The whole-sequence forward for export (weights folded, eval mode). The LRU's complex scan is
    recomputed in real arithmetic, since ONNX has no complex tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from seqbench.models.lru import LRU
        self.m = plain_copy(model)
        self.token = hasattr(self.m, "inner")  # a TokenModel around a zoo model
        self.real_lru = isinstance(self.m.inner if self.token else self.m, LRU)

    def forward(self, x):
        if not self.token:
            return _lru_forward_real(self.m, x) if self.real_lru else self.m(x)
        h = self.m.embed(x)  # ids are not range-checked in the graph (TokenModel.encode does it in Python)
        return self.m.decode(_lru_forward_real(self.m.inner, h) if self.real_lru else self.m.inner(h))


def _lru_forward_real(m, x):
    """``LRU.forward`` with each complex quantity as a (real, imaginary) pair: the same chunked scan
    (the chunk count follows the length, so an exported LRU has a fixed length)."""
    h = m.embed(x)
    for block in m.blocks:
        u = block.norm(h)
        y = _lru_scan_real(block.lru, u, m.chunk)
        if block.lru_rev is not None:
            y = y + _lru_scan_real(block.lru_rev, u.flip(1), m.chunk).flip(1)
        h = block.mix(h, y)
    return m.head(m.norm(h))


def _lru_scan_real(lru, u, chunk: int):
    Bsz, L, _ = u.shape
    g = torch.exp(lru.gamma_log)[:, None]
    bu_re, bu_im = F.linear(u, lru.B_re * g), F.linear(u, lru.B_im * g)  # (B, L, N)
    a, b = -torch.exp(lru.nu_log), torch.exp(lru.theta_log)  # log lambda = a + ib
    C = min(chunk, L)
    n = -(-L // C)
    pad = (0, 0, 0, n * C - L)
    bu_re, bu_im = (F.pad(t, pad).view(Bsz, n, C, -1) for t in (bu_re, bu_im))
    steps = torch.arange(C, device=u.device, dtype=u.dtype)
    lag = steps[:, None] - steps[None, :]
    mag = torch.exp(a[:, None, None] * lag.clamp(min=0)) * (lag >= 0)  # (N, C, C), lower triangular
    p_re, p_im = mag * torch.cos(b[:, None, None] * lag), mag * torch.sin(b[:, None, None] * lag)
    ein = lambda p, q: torch.einsum("nts,bksn->bktn", p, q)
    in_re, in_im = ein(p_re, bu_re) - ein(p_im, bu_im), ein(p_re, bu_im) + ein(p_im, bu_re)
    k = steps[:, None] + 1  # lambda^1 .. lambda^C
    l_re, l_im = torch.exp(a * k) * torch.cos(b * k), torch.exp(a * k) * torch.sin(b * k)  # (C, N)
    c_re = c_im = bu_re.new_zeros(Bsz, bu_re.shape[-1])
    xs_re, xs_im = [], []
    for i in range(n):
        xs_re.append(in_re[:, i] + l_re * c_re[:, None] - l_im * c_im[:, None])
        xs_im.append(in_im[:, i] + l_re * c_im[:, None] + l_im * c_re[:, None])
        c_re, c_im = xs_re[-1][:, -1], xs_im[-1][:, -1]
    x_re = torch.cat(xs_re, 1)[:, :L]
    x_im = torch.cat(xs_im, 1)[:, :L]
    return F.linear(x_re, lru.C_re) - F.linear(x_im, lru.C_im) + lru.D * u


# -- writing and checking exported files -----------------------------------------------------
def _io_spec(module: nn.Module, streaming: bool, length: int | None, fixed_length: bool) -> dict:
    """Names, shapes ('batch' / 'length' symbolic) and dtypes of the graph's inputs and outputs."""
    if not streaming:
        m, token = module.m, module.token
        L = length if fixed_length else "length"
        x = {"name": "x", "shape": ["batch", L] if token else ["batch", L, m.d_in],
             "dtype": "int64" if token else "float32", "doc": "token ids" if token else "the input sequence"}
        return {"inputs": [x], "outputs": [{"name": "y", "shape": ["batch", L, m.d_out], "dtype": "float32",
                                            "doc": "the output at every step"}]}
    specs = module.state_spec(2)

    def shape(sp):  # the spec at batch 2 names where the batch goes
        return [d if sp.name == "position" or d != 2 or i != (1 if sp.name in ("h", "c") else 0) else "batch"
                for i, d in enumerate(sp.shape)]
    state = [{"name": sp.name, "shape": shape(sp), "dtype": str(sp.dtype).removeprefix("torch."), "doc": sp.doc}
             for sp in specs]
    x = {"name": "x", "shape": ["batch"] if module.token else ["batch", module.d_in],
         "dtype": "int64" if module.token else "float32", "doc": "this step's input"}
    y = {"name": "y", "shape": ["batch", module.d_out], "dtype": "float32", "doc": "this step's output"}
    return {"inputs": [x, *state], "outputs": [y, *[{**s, "name": f"next_{s['name']}"} for s in state]]}


def _dynamic(module: nn.Module, streaming: bool, fixed_length: bool):
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    if not streaming:
        return ({0: batch} if fixed_length else {0: batch, 1: torch.export.Dim("length", min=2, max=1 << 24)},)
    return ({0: batch}, tuple({} if sp.name == "position" else {1 if sp.name in ("h", "c") else 0: batch}
                              for sp in module.state_spec(2)))


def export_model(model: nn.Module, out: str | Path, fmt: str = "onnx", *, streaming: bool = False,
                 max_len: int = 1024, length: int = 64, meta: dict | None = None) -> dict:
    """Export ``model`` to ``out`` (.onnx or .pt2) and write ``<out>.json`` describing its inputs and
    outputs. Returns that description. Batch (and, except for the LRU, length) are dynamic."""
    from seqbench.models.lru import LRU
    from seqbench.utils import atomic_write
    if fmt not in FORMATS:
        raise SeqbenchError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise SeqbenchError(f"cannot write {out}: directory {out.parent} does not exist")
    if not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise SeqbenchError(f"--length must be an integer >= 2, got {length!r}")
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise SeqbenchError(f"--max-len: max_len must be a positive integer, got {max_len!r}")
    from seqbench.memory import check_bytes, training_bytes
    module = StreamingStep(model, max_len) if streaming else FullSequence(model)
    if streaming:  # the example state, the reference's and the checked one's: before any is allocated
        need = 3 * sum(math.prod(sp.shape) * sp.dtype.itemsize for sp in module.state_spec(2))
        check_bytes(need, f"the streaming state at --max-len {max_len:,}", "give a smaller --max-len")
    else:
        tokens = getattr(model, "inner", None) is not None
        check_bytes(training_bytes(model, model.d_in, 2, length, tokens), f"tracing at --length {length:,}",
                    "give a smaller --length (batch and length stay dynamic in the exported graph)")
    fixed_length = lru = not streaming and isinstance(getattr(model, "inner", model), LRU)
    if streaming:
        args = (module.example_input(2), *module.init_state(2))
    elif module.token:
        args = (torch.zeros(2, length, dtype=torch.int64),)
    else:
        args = (torch.randn(2, length, model.d_in, dtype=next(model.parameters()).dtype),)
    import logging
    import warnings
    quiet = logging.getLogger("torch.onnx")  # its registry logs a line per missing torchvision op
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            ep, exporter, fixed_length = _export(module, fmt, args, streaming, fixed_length, out, length, model)
        finally:
            quiet.setLevel(level)
    desc = {"format": fmt, "exporter": exporter, "streaming": streaming, **_io_spec(module, streaming, length, fixed_length),
            **({"max_len": max_len} if streaming else {}), **({"fixed_length": length} if fixed_length else {}),
            **({"fixed_reason": "this model's chunked scan is unrolled at the traced length" if lru else
                "torch.export fixes the length of torch's fused LSTM/GRU/RNN kernels; the ONNX export keeps "
                "it dynamic"} if fixed_length else {}),
            **(meta or {})}
    atomic_write(out.with_name(out.name + ".json"), lambda tmp: Path(tmp).write_text(json.dumps(desc, indent=1)))
    return desc


def _export(module, fmt, args, streaming, fixed_length, out, length, model):
    """Trace, pick the exporter that keeps the dynamic dimensions, and write ``out``."""
    from seqbench.utils import atomic_write
    ep, exporter = _trace(module, args, streaming, fixed_length), "torch.export"
    if ep is None and not streaming and not fixed_length:
        # the length cannot stay dynamic through torch.export (torch's fused RNN kernels specialize it):
        # ONNX gets the classic exporter, whose LSTM/GRU/RNN ops keep it; a .pt2 gets a fixed length
        if fmt == "onnx":
            exporter = "torch.onnx (classic)"
        else:
            fixed_length = True
            ep = _trace(module, args, streaming, fixed_length)
    if ep is None and exporter == "torch.export":
        raise SeqbenchError(f"torch.export could not trace {type(model).__name__}'s "
                            f"{'step' if streaming else 'forward'}; export the other graph, or file an issue")
    io = _io_spec(module, streaming, length, fixed_length)
    names_in, names_out = [s["name"] for s in io["inputs"]], [s["name"] for s in io["outputs"]]
    if fmt == "pt2":
        def write(tmp):
            buf = io_module.BytesIO()
            torch.export.save(ep, buf)
            Path(tmp).write_bytes(buf.getvalue())
    else:
        from seqbench.data import require
        require("onnxscript", extra="export", why="ONNX export")
        onnx = require("onnx", extra="export", why="ONNX export")

        def write(tmp):
            if ep is not None:
                torch.onnx.export(ep, args, input_names=names_in, output_names=names_out, opset_version=OPSET,
                                  dynamo=True, verbose=False).save(str(tmp))
            else:
                axes = {"x": {0: "batch", 1: "length"}, "y": {0: "batch", 1: "length"}}
                torch.onnx.export(module, args, str(tmp), input_names=names_in, output_names=names_out,
                                  opset_version=OPSET, dynamo=False, dynamic_axes=axes)
            proto = onnx.load(str(tmp))
            _name_dims(proto, io)  # exporters leave some output dims fixed at the example's sizes
            onnx.save(proto, str(tmp))
    atomic_write(out, write)
    return ep, exporter, fixed_length


def _trace(module, args, streaming: bool, fixed_length: bool):
    """torch.export's program with dynamic batch (and length), or None where it cannot keep them."""
    try:
        return torch.export.export(module, args, dynamic_shapes=_dynamic(module, streaming, fixed_length))
    except Exception:  # noqa: BLE001 - a constraint violation or an untraceable op: the caller falls back
        return None


def _name_dims(proto, io: dict) -> None:
    for value, spec in zip([*proto.graph.input, *proto.graph.output], [*io["inputs"], *io["outputs"]]):
        dims = value.type.tensor_type.shape.dim
        for dim, want in zip(dims, spec["shape"]):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want


def verify(model: nn.Module, out: str | Path, *, steps: int = 32, batch: int = 2, seed: int = 0) -> float:
    """Run the exported file (onnxruntime / torch.export.load) against the model in PyTorch on random
    input; return the largest absolute difference over outputs and next states."""
    import numpy as np
    out = Path(out)
    desc = json.loads(out.with_name(out.name + ".json").read_text())
    g = torch.Generator().manual_seed(seed)
    token = desc["inputs"][0]["dtype"] == "int64"

    def draw(*shape):
        return (torch.randint(0, model.d_in, shape, generator=g) if token
                else torch.randn(*shape, generator=g, dtype=next(model.parameters()).dtype))
    if desc["format"] == "onnx":
        from seqbench.data import require
        ort = require("onnxruntime", extra="export", why="checking an ONNX export")
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        run = lambda *a: [torch.from_numpy(np.asarray(v)) for v in sess.run(None, dict(zip(names, [t.numpy() for t in a])))]
    else:
        prog = torch.export.load(str(out)).module()
        def run(*a):
            y = prog(*a)
            return [y] if isinstance(y, torch.Tensor) else list(y)
    ref = model.eval()
    err = 0.0
    with torch.no_grad():
        if not desc["streaming"]:
            L = desc.get("fixed_length", steps)
            x = draw(batch, L) if token else draw(batch, L, model.d_in)
            return float((run(x)[0] - ref(x)).abs().max())
        step = StreamingStep(ref, desc.get("max_len", 1024))
        st_ref = step.init_state(batch)
        st_out = step.init_state(batch)
        bounded = any(s.name == "position" for s in step.state_spec(1))  # a stream of at most max_len steps
        n = desc.get("max_len", steps) + 2 if bounded else steps  # past the limit too: NaN, as documented
        for _ in range(n):
            x = draw(batch) if token else draw(batch, model.d_in)
            y, *st_ref = step(x, *st_ref)
            y2, *st_out = run(x, *st_out)
            err = max(err, _diff(y2, y), *(_diff(a, b) for a, b in zip(st_out, st_ref)))
    return err


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference; NaN where both are NaN counts as equal, NaN on one side as inf."""
    both = torch.isnan(a) & torch.isnan(b)
    if (torch.isnan(a) ^ torch.isnan(b)).any():
        return float("inf")
    return float((a - b).abs().masked_fill(both, 0).max()) if a.numel() else 0.0


def export_run(run_dir: str | Path, out: str | Path, fmt: str | None = None, *, streaming: bool = False,
               max_len: int = 1024, length: int = 64, check: bool = True) -> dict:
    """Export a run directory's model (``best.pt``) to ``out``. ``fmt`` defaults to the extension
    (.onnx / .pt2). The description written beside it (``<out>.json``) carries the run's model
    config, task and fitted preprocessing (the graph takes inputs already normalized as at training).
    ``check``: run the file against PyTorch and record the largest difference (``max_abs_diff``)."""
    from seqbench.train.trainer import load_model
    from seqbench.utils import atomic_write
    out = Path(out)
    suffix = out.suffix.lstrip(".").lower()
    fmt = fmt or suffix
    if fmt not in FORMATS:
        raise SeqbenchError(f"cannot tell the export format from {out.name!r}; use --format onnx or pt2 "
                            "(or an .onnx / .pt2 file name)")
    if suffix in FORMATS and suffix != fmt:
        raise SeqbenchError(f"--format {fmt} does not match the file name {out.name!r}; name it *.{fmt}")
    if out.is_dir():
        raise SeqbenchError(f"--out {out} is a directory; give a file name, e.g. {out / ('model.' + fmt)}")
    if not out.parent.is_dir():
        raise SeqbenchError(f"cannot write {out}: directory {out.parent} does not exist")
    run = Path(run_dir)
    model = load_model(run)
    cfg = json.loads((run / "config.json").read_text())
    if (cfg.get("compress") or {}).get("quantize"):
        raise SeqbenchError(f"{run} is an int8 variant (torch dynamic quantization does not export); export the "
                            f"float run it came from ({cfg['compress'].get('from', 'its source')})")
    meta = {"model": cfg.get("model"), "task": cfg.get("task"), "preprocessing": cfg.get("fitted") or {}}
    desc = export_model(model, out, fmt, streaming=streaming, max_len=max_len, length=length, meta=meta)
    if check and not (fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None):
        desc["max_abs_diff"] = verify(model, out, steps=64)
        desc["checked"] = "random inputs, batch 2, " + (
            (f"{max_len + 2} steps (past max_len: NaN)" if "max_len" in desc and any(
                s["name"] == "position" for s in desc["inputs"]) else "64 steps") if streaming else "one sequence")
        atomic_write(out.with_name(out.name + ".json"), lambda tmp: Path(tmp).write_text(json.dumps(desc, indent=1)))
    return desc
