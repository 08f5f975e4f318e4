"""Linear recurrent unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences", arXiv:2303.06349).

Each layer is a diagonal complex linear recurrence (Sec. 3)

    x_t = lambda * x_{t-1} + gamma * (B u_t),     y_t = Re(C x_t) + D * u_t,
    lambda = exp(-exp(nu) + i exp(theta))         (|lambda| < 1 for any nu: stable by construction)
    gamma  = sqrt(1 - |lambda|^2)                 (normalization, Sec. 3.3)

with |lambda| initialized uniformly on a ring [r_min, r_max] (Sec. 3.2). Layers sit in residual
blocks: x + GLU(GELU(LRU(LayerNorm(x)))). Training runs a chunked parallel scan: inside a chunk
of ``chunk`` steps the recurrence is one matmul with the lower-triangular matrix of powers
lambda^(t-s); a short loop over chunks carries the state between them. ``causal=False`` adds a
second recurrence over the reversed sequence (bidirectional).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import ExportStep, SeqModel, StateSpec
from seqbench.models.dropout import FastDropout
from seqbench.models.registry import register_model
from seqbench.models.streaming import layer_norm, sigmoid, use_numpy_for


class LRULayer(nn.Module):
    def __init__(self, dim: int, state_dim: int, r_min: float, r_max: float, max_phase: float):
        super().__init__()
        u1, u2 = torch.rand(state_dim), torch.rand(state_dim)
        # ring init: |lambda|^2 uniform on [r_min^2, r_max^2], phase uniform on [0, max_phase]
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2)))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2 + 1e-8))
        lam_abs = torch.exp(-torch.exp(self.nu_log.detach()))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - lam_abs ** 2)))
        self.B_re = nn.Parameter(torch.randn(state_dim, dim) / math.sqrt(2 * dim))
        self.B_im = nn.Parameter(torch.randn(state_dim, dim) / math.sqrt(2 * dim))
        self.C_re = nn.Parameter(torch.randn(dim, state_dim) / math.sqrt(state_dim))
        self.C_im = nn.Parameter(torch.randn(dim, state_dim) / math.sqrt(state_dim))
        self.D = nn.Parameter(torch.randn(dim))

    def log_lambda(self) -> torch.Tensor:
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))  # (N,)

    def inputs(self, u: torch.Tensor) -> torch.Tensor:
        """gamma * B u: (..., H) real -> (..., N) complex, as one real matmul (u is real: a complex
        one would do 4x the work) whose output rows interleave real and imaginary parts."""
        B = torch.stack([self.B_re, self.B_im], 1) * torch.exp(self.gamma_log)[:, None, None]  # (N, 2, H)
        out = u @ B.reshape(-1, B.shape[-1]).t()  # (..., 2N): re_0, im_0, re_1, im_1, ...
        # the scan stays in the weights' precision: autocast may hand back bf16, which has no complex type
        return torch.view_as_complex(out.to(self.B_re.dtype).unflatten(-1, (-1, 2)))

    def readout(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Re(C x) + D u: (..., N) complex, (..., H) -> (..., H) real."""
        return x.real @ self.C_re.t() - x.imag @ self.C_im.t() + self.D * u

    def forward(self, u: torch.Tensor, chunk: int, x0: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """u: (B, L, H) -> y (B, L, H) and the final state (B, N), starting from state x0."""
        Bsz, L, _ = u.shape
        bu = self.inputs(u)  # (B, L, N)
        loglam = self.log_lambda()
        C = min(chunk, L)
        n_chunks = -(-L // C)
        bu = F.pad(bu, (0, 0, 0, n_chunks * C - L)).view(Bsz, n_chunks, C, -1)
        steps = torch.arange(C, device=u.device)
        lag = steps[:, None] - steps[None, :]  # (C, C): t - s
        # lambda^0..lambda^C: C + 1 complex exps per state, not C^2 (torch's complex exp is scalar code)
        pw = torch.exp(loglam[:, None] * torch.arange(C + 1, device=u.device))  # (N, C + 1)
        powers = pw[:, lag.clamp(min=0)] * (lag >= 0)  # (N, C, C) lambda^(t-s), lower triangular
        inner = torch.einsum("nts,bksn->bktn", powers, bu)  # within-chunk scan, zero initial state
        lam_pows = pw[:, 1:].t()  # (C, N): lambda^1..lambda^C
        carry = bu.new_zeros(Bsz, bu.shape[-1]) if x0 is None else x0
        carries = []
        # L / C iterations carry the state across chunks. The chunks' last states are split off once:
        # indexing inner[:, k, -1] in the loop made each backward zero-fill a gradient of inner's size
        for last in inner[:, :, -1].unbind(1):
            carries.append(carry)
            carry = last + lam_pows[-1] * carry
        x = inner + lam_pows[None, None] * torch.stack(carries, 1)[:, :, None]  # (B, nC, C, N)
        x = x.reshape(Bsz, n_chunks * C, -1)[:, :L]
        return self.readout(x, u), x[:, -1]

    def step(self, u_t: torch.Tensor, x: torch.Tensor):  # u_t: (B, H), x: (B, N) complex
        x = torch.exp(self.log_lambda()) * x + self.inputs(u_t)
        return self.readout(x, u_t), x


class LRUBlock(nn.Module):
    def __init__(self, dim: int, state_dim: int, r_min: float, r_max: float, max_phase: float, dropout: float,
                 bidirectional: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.lru = LRULayer(dim, state_dim, r_min, r_max, max_phase)
        self.lru_rev = LRULayer(dim, state_dim, r_min, r_max, max_phase) if bidirectional else None
        self.glu = nn.Linear(dim, 2 * dim)
        self.drop = FastDropout(dropout)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + self.drop(F.glu(self.glu(F.gelu(y)), dim=-1))

    def forward(self, x: torch.Tensor, chunk: int) -> torch.Tensor:
        u = self.norm(x)
        y = self.lru(u, chunk)[0]
        if self.lru_rev is not None:
            y = y + self.lru_rev(u.flip(1), chunk)[0].flip(1)
        return self.mix(x, y)


@register_model("lru", width_arg="hidden")
class LRU(SeqModel):
    """Linear recurrent unit: stable diagonal complex recurrences in residual blocks (Orvieto et al. 2023)."""

    supports_step = True

    def __init__(self, d_in: int, d_out: int, causal: bool = True, hidden: int = 64, layers: int = 2,
                 state_dim: int | None = None, r_min: float = 0.9, r_max: float = 0.999,
                 max_phase: float = 2 * math.pi, dropout: float = 0.0, chunk: int = 64):
        super().__init__(d_in, d_out, causal)
        if hidden < 1 or layers < 1 or chunk < 1 or not 0 <= r_min < r_max < 1:
            raise SeqbenchError(f"lru needs hidden, layers, chunk >= 1 and 0 <= r_min < r_max < 1, got "
                                f"hidden={hidden}, layers={layers}, chunk={chunk}, r_min={r_min}, r_max={r_max}")
        self.hidden, self.layers, self.chunk = hidden, layers, chunk
        self.state_dim = state_dim or hidden
        self.embed = nn.Linear(d_in, hidden)
        self.blocks = nn.ModuleList(LRUBlock(hidden, self.state_dim, r_min, r_max, max_phase, dropout,
                                             bidirectional=not causal) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, d_out)

    export_fixed_length = "its chunked scan is unrolled at the traced length"

    def export_step(self, max_len: int) -> ExportStep:
        return LRUExportStep(self)

    def export_forward(self) -> nn.Module:
        return LRUExportForward(self)

    def describe(self) -> str:
        return f"{self.layers} layers x {self.hidden}, state {self.state_dim}" + ("" if self.causal else ", bidirectional")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.embed(x)  # (B, L, hidden)
        for block in self.blocks:
            h = block(h, self.chunk)
        return self.head(self.norm(h))

    def _init_state(self, batch_size: int, engine: str) -> dict:
        """Complex states per layer, and the step's weights folded once (lambda, gamma * B): a step
        is then a handful of small matmuls, on NumPy views where that applies (a fifth of torch's
        per-op overhead at batch 1)."""
        p = self._param_like()
        dtype = torch.complex128 if p.dtype == torch.float64 else torch.complex64
        states = [torch.zeros(batch_size, self.state_dim, dtype=dtype, device=p.device) for _ in self.blocks]
        fast = use_numpy_for(p, engine)
        arr = (lambda t: np.ascontiguousarray(t.detach().numpy())) if fast else (lambda t: t.detach())
        layers = []
        with torch.no_grad():
            for block in self.blocks:
                lru = block.lru
                Bg = torch.complex(lru.B_re, lru.B_im).to(dtype) * torch.exp(lru.gamma_log)[:, None]
                layers.append((arr(block.norm.weight), arr(block.norm.bias), block.norm.eps,
                               arr(torch.exp(lru.log_lambda()).to(dtype)), arr(Bg.t()), arr(lru.C_re.t()),
                               arr(lru.C_im.t()), arr(lru.D), arr(block.glu.weight.t()), arr(block.glu.bias)))
        return {"x": states, "xs": [s.numpy() for s in states] if fast else states, "layers": layers,
                "embed": (arr(self.embed.weight.t()), arr(self.embed.bias)),
                "norm": (arr(self.norm.weight), arr(self.norm.bias), self.norm.eps),
                "head": (arr(self.head.weight.t()), arr(self.head.bias)), "numpy": fast}

    def _step_is_torch_free(self, state: dict) -> bool:
        return state["numpy"]  # NumPy, and one torch GELU (exact erf) on a tensor that needs no grad

    def _step(self, x_t: torch.Tensor, state: dict):
        fast = state["numpy"]
        h = (x_t.numpy() if fast else x_t) @ state["embed"][0] + state["embed"][1]
        for x, (g, b, eps, lam, Bg, C_re, C_im, D, Wglu, bglu) in zip(state["xs"], state["layers"]):
            u = layer_norm(h, g, b, eps)
            x *= lam  # in place: the state tensor is updated where it lives
            x += u @ Bg if fast else u.to(Bg.dtype) @ Bg  # NumPy promotes real @ complex; torch needs it said
            y = x.real @ C_re - x.imag @ C_im + D * u
            z = F.gelu(torch.from_numpy(y)).numpy() if fast else F.gelu(y)
            a = z @ Wglu + bglu
            half = a.shape[-1] // 2
            h = h + a[:, :half] * sigmoid(a[:, half:])
        out = layer_norm(h, *state["norm"]) @ state["head"][0] + state["head"][1]
        return (torch.from_numpy(out) if fast else out), state

    def _step_chunk(self, x: torch.Tensor, state: dict):
        h = self.embed(x)  # the parallel scan, started from the carried states
        for i, block in enumerate(self.blocks):
            y, last = block.lru(block.norm(h), self.chunk, state["x"][i])
            state["x"][i].copy_(last)
            h = block.mix(h, y)
        return self.head(self.norm(h)), state


class LRUExportStep(ExportStep):
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




class LRUExportForward(nn.Module):
    """``LRU.forward`` with each complex quantity as a (real, imaginary) pair (ONNX has no complex
    tensors): the same chunked scan, so the graph's length is fixed at the traced one."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return _lru_forward_real(self.m, x)


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
