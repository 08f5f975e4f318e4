"""Trellis network (Bai, Kolter, Koltun 2019, arXiv:1810.06682).

A TCN whose levels all share one convolution (weight tying across depth) and whose input is
injected at every level. Level j turns the hidden sequence of level j-1 into the next with a
gated, LSTM-like activation (Sec. 4.1):

    [i, o, g, f] = W_x * x + W_h * h^{(j-1)}            (causal conv, kernel k, dilation d_j)
    c^{(j)}_t    = sigmoid(f) * c^{(j-1)}_{t-d_j} + sigmoid(i) * tanh(g)
    h^{(j)}_t    = sigmoid(o) * tanh(c^{(j)}_t)

The input term W_x * x is the same at every level, so it is computed once per forward (once per
distinct dilation), and weight norm is evaluated once per forward. The default depth and
dilation schedule are the paper's seq-MNIST ones (11 levels, 1,1,2,...,512: receptive field 1025);
the weights are shared, so depth costs compute but no parameters. Dropout is variational: one
mask per sequence, shared across time and levels. ``aux_freq`` > 0 reads the shared head every
``aux_freq`` levels into ``model.aux_outputs`` for an auxiliary loss (``TrainConfig.aux_weight``).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import ExportStep, SeqModel, StateSpec
from seqbench.models.registry import register_model
from seqbench.models.streaming import SlidingBuffer, use_numpy_for
from seqbench.models.tcn import weight_normed_conv


@register_model("trellisnet", width_arg="hidden")
class TrellisNet(SeqModel):
    """Trellis network: one weight-tied conv at every level, input injection, gated cells (Bai et al. 2019)."""

    supports_step = True
    supports_non_causal = False

    def __init__(self, d_in: int, d_out: int, causal: bool = True, hidden: int = 64, levels: int = 11,
                 kernel_size: int = 2, dilations: tuple[int, ...] | list[int] = (1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                 dropout: float = 0.0,
                 aux_freq: int = 0):
        super().__init__(d_in, d_out, causal)
        if not causal:
            raise SeqbenchError("trellisnet is causal by construction (its cells carry c from the past); "
                                "use causal=True, or a tcn/transformer/lru for non-causal work")
        dilations = list(dilations)
        if hidden < 1 or levels < 1 or kernel_size < 2 or not dilations or min(dilations) < 1:
            raise SeqbenchError(f"trellisnet needs hidden, levels >= 1, kernel_size >= 2 and dilations >= 1, "
                                f"got hidden={hidden}, levels={levels}, kernel_size={kernel_size}, "
                                f"dilations={dilations}")
        self.hidden, self.levels, self.kernel_size = hidden, levels, kernel_size
        self.level_dilations = [dilations[j % len(dilations)] for j in range(levels)]  # cycled
        self.dropout, self.aux_freq = dropout, aux_freq
        self.conv = weight_normed_conv(d_in + hidden, 4 * hidden, kernel_size)  # the one conv shared by all levels
        self.head = nn.Linear(hidden, d_out)
        self.aux_outputs: list[torch.Tensor] = []

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.level_dilations)

    def export_step(self, max_len: int) -> ExportStep:
        return TrellisExportStep(self)

    def describe(self) -> str:
        d = self.level_dilations
        shown = d if len(d) <= 6 else [*d[:4], "...", d[-1]]  # short enough for tables
        dil = "" if set(d) == {1} else ", dilations " + ", ".join(map(str, shown))
        return f"{self.levels} levels x {self.hidden} (tied), k={self.kernel_size}{dil}"

    def _split_weight(self):
        w = self.conv.weight  # weight norm evaluated here, once
        return w[:, :self.d_in], w[:, self.d_in:], self.conv.bias  # W_x, W_h, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        B, L, _ = x.shape
        k, H = self.kernel_size, self.hidden
        w_x, w_h, b = self._split_weight()
        xt = x.transpose(1, 2)  # (B, d_in, L)
        injected = {d: F.conv1d(F.pad(xt, ((k - 1) * d, 0)), w_x, b, dilation=d)  # (B, 4H, L)
                    for d in set(self.level_dilations)}
        mask = None
        if self.training and self.dropout > 0:  # variational: one mask over time and levels
            mask = torch.bernoulli(torch.full((B, H, 1), 1 - self.dropout, device=x.device)) / (1 - self.dropout)
        h = c = torch.zeros(B, H, L, device=x.device, dtype=x.dtype)
        self.aux_outputs = []
        for j, d in enumerate(self.level_dilations):
            pre = injected[d] if j == 0 else injected[d] + F.conv1d(F.pad(h, ((k - 1) * d, 0)), w_h, dilation=d)
            i, o, g, f = pre.chunk(4, dim=1)  # each (B, H, L)
            c_prev = F.pad(c, (d, 0))[..., :L]  # c^{(j-1)} shifted d steps into the past
            c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            if mask is not None:
                h = h * mask
            if self.training and self.aux_freq and (j + 1) % self.aux_freq == 0 and j + 1 < self.levels:
                self.aux_outputs.append(self.head(h.transpose(1, 2)))
        return self.head(h.transpose(1, 2))  # (B, L, d_out)

    # -- streaming: rings of x, and of each level's h and c, as deep as that level looks back ----
    def _init_state(self, batch_size: int, engine: str) -> dict:
        """Histories as sliding buffers and the tied weights folded once (weight norm applied)."""
        k, H, like = self.kernel_size, self.hidden, self._param_like()
        w_x, w_h, b = (t.detach() for t in self._split_weight())
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        w_x, w_h, b = w_x[order], w_h[order], b[order]  # gates as [i, o, f, g]: one sigmoid covers three
        head = (self.head.weight.detach().t().contiguous(), self.head.bias.detach())
        if use_numpy_for(like, engine):
            return self._init_numpy_state(batch_size, w_x, w_h, b, head)
        # the input's projection through each tap, once per step: P(t) = [x_t W_x[0] | ... | x_t W_x[k-1]];
        # level inputs then sum P's slices at the right lags, for every dilation, without a matmul
        return {"xp": SlidingBuffer(batch_size, k * 4 * H, (k - 1) * max(self.level_dilations) + 1, like),
                # level j reads level j-1's [h, c] history: h at k taps, c at lag d_j (within the window)
                "hc": [SlidingBuffer(batch_size, 2 * H, (k - 1) * d + 1, like) for d in self.level_dilations],
                "w_x": w_x.permute(1, 2, 0).reshape(self.d_in, -1).contiguous(),  # (d_in, k*4H): tap-major
                "w_h": w_h.permute(2, 1, 0).reshape(-1, 4 * H).contiguous(),  # (k*H, 4H), taps in (j, c) order
                "b": b, "head": head, "numpy": False}

    def _init_numpy_state(self, batch_size: int, w_x, w_h, b, head) -> dict:
        """For the NumPy step, level j's history holds [c, h, x, 1] (level j-1's c and h, the input,
        a constant 1), so one matmul over its taps applies W_h, W_x and the bias together; and
        sigmoid(a) = (1 + tanh(a/2)) / 2 with the halving (exact in floating point) folded into the
        i, o, f rows, so one tanh covers all four gates."""
        k, H, like = self.kernel_size, self.hidden, self._param_like()
        half = torch.ones(4 * H, dtype=b.dtype)
        half[:3 * H] = 0.5
        w_x, w_h, b = w_x * half[:, None, None], w_h * half[:, None, None], b * half
        bias = torch.zeros(k, 1, 4 * H, dtype=b.dtype)
        bias[-1, 0] = b  # once, on the newest tap
        w = torch.cat([w_h.permute(2, 1, 0), w_x.permute(2, 1, 0), bias], 1)  # (k, H + d_in + 1, 4H)
        arr = lambda t: np.ascontiguousarray(t.numpy())  # noqa: E731
        return {"levels": [SlidingBuffer(batch_size, 2 * H + self.d_in, (k - 1) * d + 1, like, True, ones=True)
                           for d in self.level_dilations],
                "w": arr(w.reshape(-1, 4 * H)), "w0": arr(w[:, H:].reshape(-1, 4 * H)),  # level 0: no h
                "head": tuple(map(arr, head)), "numpy": True}

    def _step_is_torch_free(self, state: dict) -> bool:
        return state["numpy"]

    def _step(self, x_t: torch.Tensor, state: dict):
        if state["numpy"]:
            return self._step_numpy(x_t.numpy(), state)
        B, k = x_t.shape[0], self.kernel_size
        H, G = self.hidden, 4 * self.hidden
        xp = state["xp"]
        xp.push(x_t @ state["w_x"])
        injected = {}
        for d in set(self.level_dilations):  # sum_j x_{t-(k-1-j)d} W_x[j] + b
            acc = state["b"] + xp.lag((k - 1) * d)[:, :G]
            for j in range(1, k):
                acc = acc + xp.lag((k - 1 - j) * d)[:, j * G:(j + 1) * G]
            injected[d] = acc
        for j, d in enumerate(self.level_dilations):
            if j == 0:  # level 0 reads an all-zero hidden state
                pre, c_prev = injected[d], 0.0
            else:
                hc = state["hc"][j]
                pre = hc.taps(k, d)[..., :H].reshape(B, -1) @ state["w_h"] + injected[d]
                c_prev = hc.lag(d)[:, H:]
            s = torch.sigmoid(pre[:, :3 * H])  # i, o, f at once
            c = s[:, 2 * H:] * c_prev + s[:, :H] * torch.tanh(pre[:, 3 * H:])
            h = s[:, H:2 * H] * torch.tanh(c)
            if j + 1 < self.levels:  # level j+1 reads level j's history
                state["hc"][j + 1].push(torch.cat([h, c], 1))
        return h @ state["head"][0] + state["head"][1], state

    def _step_numpy(self, x: np.ndarray, state: dict):
        """The step above on NumPy (state from ``_init_numpy_state``), in place where it can be:
        each level's c, h and the input are written straight into the next level's history."""
        B, k, H = x.shape[0], self.kernel_size, self.hidden
        levels, w, half = state["levels"], state["w"], x.dtype.type(0.5)
        last = self.levels - 1
        levels[0].advance()[:, 2 * H:] = x
        for j, d in enumerate(self.level_dilations):
            hist = levels[j]
            buf, p = hist.buf, hist.p
            if j == 0:  # level 0 reads an all-zero hidden state: the input's taps only
                pre = buf[:, p - (k - 1) * d:p + 1:d, 2 * H:].reshape(B, -1) @ state["w0"]
            else:
                pre = buf[:, p - (k - 1) * d:p + 1:d, H:].reshape(B, -1) @ w
            np.tanh(pre, out=pre)
            s = pre[:, :3 * H]
            s *= half
            s += half  # sigmoid(i), sigmoid(o), sigmoid(f)
            if j < last:
                out = levels[j + 1].advance()
                out[:, 2 * H:] = x
            else:
                out = np.empty((B, 2 * H), pre.dtype)
            c, h = out[:, :H], out[:, H:2 * H]
            if j == 0:
                np.multiply(s[:, :H], pre[:, 3 * H:], out=c)
            else:
                np.multiply(s[:, 2 * H:], buf[:, p - d, :H], out=c)
                c += s[:, :H] * pre[:, 3 * H:]
            np.tanh(c, out=h)
            h *= s[:, H:2 * H]
        return torch.from_numpy(h @ state["head"][0] + state["head"][1]), state


class TrellisExportStep(ExportStep):
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
