"""Temporal convolutional network (Bai, Kolter, Koltun 2018, arXiv:1803.01271, Sec. 3).

A stack of residual blocks; block i has dilation 2^i and two [weight-normed dilated Conv1d ->
ReLU -> dropout] layers, plus a 1x1 conv on the residual path when the width changes.

Differences from the reference scripts, on purpose:
* Causal padding is applied on the left only, so no output is computed and then chopped.
* Activations are held channels-last, (B, C, 1, L) over the memory of (B, L, C), and each conv
  runs as a height-1 ``conv2d``: the same function, 1.5-2x faster on CPU (``conv_nhwc``).
* Initialization. The original ``weight.data.normal_(0, 0.01)`` runs after weight norm is
  attached and is a no-op (the weight is recomputed from g and v on every forward). Here the
  init is drawn into the conv weight *before* weight norm is attached, so the direction v is that
  draw and g = ||v|| per output channel: the effective weight at step 0 is exactly the draw.
  The draw is U(-1/sqrt(fan_in), 1/sqrt(fan_in)). We measured the alternatives on the adding
  problem (T=100, 750 Adam steps, seed 0; valid MSE, trivial 0.1767): this init 0.011,
  LeCun normal 0.039, He normal 0.13, and the paper's N(0, 0.01), made effective, 0.17 (it
  never left the plateau, even at T=20). See README, "TCN initialization".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from seqbench.models.base import ExportStep, SeqModel, StateSpec
from seqbench.models.dropout import FastDropout
from seqbench.models.registry import register_model
from seqbench.models.streaming import SlidingBuffer, use_numpy_for

def init_uniform_fan_in(weight: torch.Tensor) -> torch.Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in place; fan_in = in_channels * kernel_size."""
    bound = 1.0 / math.sqrt(weight[0].numel())
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def weight_normed_conv(c_in: int, c_out: int, kernel_size: int, dilation: int = 1) -> nn.Conv1d:
    """A weight-normed Conv1d whose effective weight at step 0 is the U(+-1/sqrt(fan_in)) draw."""
    conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)
    init_uniform_fan_in(conv.weight)  # before weight_norm, so v = this draw and g = ||v||
    return weight_norm(conv)


def conv_nhwc(x: torch.Tensor, conv: nn.Conv1d, stride: int = 1, dilation: int | None = None) -> torch.Tensor:
    """``conv`` on x of shape (B, C_in, 1, L) held channels-last (the memory of (B, L, C_in)), as a
    2-D convolution of height 1: -> (B, C_out, 1, L_out), channels-last as well. On CPU, oneDNN's
    channels-last convolutions at a TCN's widths run 1.5-2x faster than the (B, C, L) ones, forward
    and backward (BENCHMARKS.md, "Every-step training", fourth pass); cuDNN has fast NHWC kernels too.
    ``dilation`` defaults to the conv's own."""
    d = conv.dilation[0] if dilation is None else dilation
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, stride=(1, stride), dilation=(1, d))


class TemporalBlock(nn.Module):
    """Residual block: two dilated convs, each followed by ReLU and dropout."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float,
                 causal: bool):
        super().__init__()
        total = (kernel_size - 1) * dilation
        # causal: all padding on the left; otherwise centred (any odd step goes to the past)
        self.padding = (total, 0) if causal else (total - total // 2, total // 2)
        self.conv1 = weight_normed_conv(c_in, c_out, kernel_size, dilation)
        self.conv2 = weight_normed_conv(c_out, c_out, kernel_size, dilation)
        self.dropout = FastDropout(dropout)
        self.downsample = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, 1, L), channels-last (see ``conv_nhwc``) -> (B, C_out, 1, L), the same layout."""
        h = self.dropout(F.relu(conv_nhwc(F.pad(x, self.padding), self.conv1)))
        h = self.dropout(F.relu(conv_nhwc(F.pad(h, self.padding), self.conv2)))
        res = x if self.downsample is None else conv_nhwc(x, self.downsample)
        return F.relu(h + res)

    def forward_decimated(self, x: torch.Tensor) -> torch.Tensor:
        """The causal block on a sequence subsampled at its dilation d, ending at the last step.

        x (B, C_in, 1, n), channels-last, holds the steps t = L-1, L-1-d, L-1-2d, ... (oldest first):
        exactly the taps the block's convs read, so dilation d becomes dilation 1. Only outputs at
        L-1, L-1-2d, ... are returned (B, C_out, 1, ceil(n/2)): all that the next block (dilation 2d)
        reads.
        """
        k = self.conv1.kernel_size[0]
        h = self.dropout(F.relu(conv_nhwc(F.pad(x, (k - 1, 0)), self.conv1, dilation=1)))
        n = h.shape[-1]
        start = (n - 1) % 2  # conv2 at stride 2, aligned so its last window ends at the last step
        h = self.dropout(F.relu(conv_nhwc(F.pad(h, (k - 1 - start, 0)) if k - 1 >= start else h[..., start - k + 1:],
                                          self.conv2, stride=2, dilation=1)))
        res = x[..., start::2]
        if self.downsample is not None:
            res = conv_nhwc(res, self.downsample)
        return F.relu(h + res)


@register_model("tcn", width_arg="hidden")
class TCN(SeqModel):
    """Temporal convolutional network: dilated residual conv blocks (Bai et al. 2018)."""

    supports_step = True

    def __init__(self, d_in: int, d_out: int, causal: bool = True, hidden: int = 25, levels: int = 8,
                 kernel_size: int = 7, dropout: float = 0.0):
        super().__init__(d_in, d_out, causal)
        if levels < 1 or kernel_size < 1 or hidden < 1:
            from seqbench.errors import SeqbenchError
            raise SeqbenchError(f"tcn needs levels, kernel_size and hidden >= 1, got "
                                f"levels={levels}, kernel_size={kernel_size}, hidden={hidden}")
        self.hidden, self.levels, self.kernel_size = hidden, levels, kernel_size
        self.dilations = [2 ** i for i in range(levels)]
        self.blocks = nn.ModuleList(
            TemporalBlock(d_in if i == 0 else hidden, hidden, kernel_size, d, dropout, causal)
            for i, d in enumerate(self.dilations))
        self.head = nn.Linear(hidden, d_out)

    @property
    def receptive_field(self) -> int:
        # two convs per block, each extending the window by (k-1)*d: 1 + 2(k-1)(2^n - 1)
        return 1 + 2 * (self.kernel_size - 1) * sum(self.dilations)

    def pruned(self, amount: float) -> "TCN":
        """A narrower TCN without the ``amount`` fraction of residual channels that matter least.

        The residual stream's channels are shared by every block (identity shortcuts), so one set is
        kept throughout: a channel's importance is the L1 norm of every weight that reads or writes
        it (both convs of each block, the 1x1 shortcut, the head). The result is a plain ``TCN`` of
        the smaller width, computing what the kept channels computed (fine-tune it afterwards)."""
        from seqbench.models.base import plain_copy
        src = plain_copy(self)
        H = src.hidden
        keep_n = max(1, round(H * (1 - amount)))
        score = torch.zeros(H)
        for i, block in enumerate(src.blocks):
            for conv in (block.conv1, block.conv2):
                score += conv.weight.abs().sum(dim=(1, 2))  # writes channel c
                if conv is block.conv2 or i > 0:
                    score += conv.weight.abs().sum(dim=(0, 2))  # reads channel c
            if block.downsample is not None:
                score += block.downsample.weight.abs().sum(dim=(1, 2))
        score += src.head.weight.abs().sum(0)
        keep = torch.sort(torch.topk(score, keep_n).indices).values
        cfg = {k: v for k, v in self.config.items() if k != "name"}
        small = TCN(**{**cfg, "hidden": keep_n})
        with torch.no_grad():
            for i, (a, b) in enumerate(zip(src.blocks, small.blocks)):
                ins = slice(None) if i == 0 else keep
                _set_conv(b.conv1, a.conv1.weight[keep][:, ins], a.conv1.bias[keep])
                _set_conv(b.conv2, a.conv2.weight[keep][:, keep], a.conv2.bias[keep])
                if a.downsample is not None:
                    b.downsample.weight.copy_(a.downsample.weight[keep][:, ins])
                    b.downsample.bias.copy_(a.downsample.bias[keep])
            small.head.weight.copy_(src.head.weight[:, keep])
            small.head.bias.copy_(src.head.bias)
        return small


    default_choice = True  # the TCN paper's conclusion: a generic TCN is the sensible first try

    def export_step(self, max_len: int) -> ExportStep:
        return TCNExportStep(self)

    @classmethod
    def search_shapes(cls, seq_len: int) -> list[dict]:
        """Two kernel sizes, each deep enough for the receptive field to cover the sequence."""
        return [{"kernel_size": k, "levels": max(1, math.ceil(math.log2((seq_len - 1) / (2 * (k - 1)) + 1)))}
                for k in (7, 3)]

    def describe(self) -> str:
        return f"{self.levels} levels x {self.hidden}, k={self.kernel_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = x.transpose(1, 2).unsqueeze(2)  # (B, d_in, 1, L): channels-last, x's own memory
        for block in self.blocks:
            h = block(h)  # (B, hidden, 1, L)
        return self.head(h.squeeze(2).transpose(1, 2))  # (B, L, d_out)

    def fold_weight_norm(self) -> "TCN":
        """Replace each weight-normed conv's (g, v) by the plain weight g * v / ||v|| it computes, for
        inference and export (no per-forward norm; plain ``Conv1d`` state_dict keys). In place; the
        model computes the same function. Training afterwards trains the plain weights."""
        from torch.nn.utils import parametrize
        for block in self.blocks:
            for conv in (block.conv1, block.conv2):
                if parametrize.is_parametrized(conv, "weight"):
                    parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
        return self

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, d_out) == self(x)[:, -1:], computing only the conv outputs the last step depends on.

        Block i (dilation 2^i) only ever reads its input at steps L-1 - m 2^i, so each block runs
        on a subsampled sequence at dilation 1, and its second conv at stride 2: about 3L conv
        outputs in all instead of 2L per block (5.3x fewer FLOPs at 8 levels; BENCHMARKS.md).
        """
        if not self.causal:
            return super().forward_last(x)
        self.check_input(x)
        h = x.transpose(1, 2).unsqueeze(2)  # channels-last, as in forward
        for block in self.blocks:
            h = block.forward_decimated(h)
        return self.head(h[:, :, 0, -1:].transpose(1, 2))

    # -- streaming: one sliding buffer per conv holding its last (k-1)*d inputs --------------
    def _init_state(self, batch_size: int, engine: str) -> "TCNState":
        """Buffers plus the weights folded once (weight norm applied) in the step's layout."""
        k, like = self.kernel_size, self._param_like()
        fast = use_numpy_for(like, engine)
        arr = (lambda t: np.ascontiguousarray(t.detach().numpy())) if fast else (lambda t: t.detach().contiguous())
        blocks = []
        for block, d in zip(self.blocks, self.dilations):
            convs = []
            for conv in (block.conv1, block.conv2):
                w, b = conv.weight.detach(), conv.bias.detach()  # (C_out, C_in, k), (C_out,)
                # taps arrive as (k, C_in + 1) with a constant-1 channel: rows [W_j; 0] per tap j, and
                # the bias on the newest tap's ones row, so one matmul computes conv + bias
                w_aug = torch.cat([w.permute(2, 1, 0), torch.zeros(k, 1, w.shape[0], dtype=w.dtype)], dim=1)
                w_aug[-1, -1] = b
                convs.append(ConvState(SlidingBuffer(batch_size, w.shape[1], (k - 1) * d + 1, like, fast, ones=True),
                                       d, arr(w_aug.reshape(-1, w.shape[0])), w, b))
            down = block.downsample
            blocks.append(BlockState(convs[0], convs[1], None if down is None else ResidualProjection(
                arr(down.weight[:, :, 0].t()), arr(down.bias), down.weight.detach(), down.bias.detach())))
        zero = arr(torch.zeros(batch_size, self.hidden, dtype=like.dtype))
        plan = [StepPlan(b.conv1.buf, b.conv2.buf, b.conv1.w_step, b.conv2.w_step, (k - 1) * b.conv1.dilation,
                         b.conv1.dilation, blocks[i + 1].conv1.buf if i + 1 < len(blocks) else None,
                         b.down, zero, i == 0 or b.down is not None)
                for i, b in enumerate(blocks)]
        return TCNState(blocks, plan, out=arr(torch.zeros(batch_size, self.hidden, dtype=like.dtype)),
                        head_w=arr(self.head.weight.t()), head_b=arr(self.head.bias), numpy=fast)

    def _step_is_torch_free(self, state: "TCNState") -> bool:
        return state.numpy

    def _step(self, x_t: torch.Tensor, state: "TCNState"):
        """One sample through every level. Per conv: a strided view of its k taps, one matmul (bias
        folded in) written straight into the buffer of the conv that reads it next, an in-place ReLU."""
        fast, plan = state.numpy, state.plan
        B = x_t.shape[0]
        # np.dot (BLAS, less overhead than matmul) needs a contiguous out=: the buffer slot is one at B=1
        mm = (np.dot if B == 1 else np.matmul) if fast else torch.matmul
        relu = np.maximum if fast else torch.maximum  # relu(a, zero, out=a): in place
        h = plan[0].buf1.advance()  # the first conv's buffer slot for this input
        h[...] = x_t.detach().numpy() if fast else x_t
        for buf1, buf2, w1, w2, span, d, next_buf, down, zero, last_relu in plan:  # a tuple: unpacked at C speed
            a, p = buf2.advance(), buf1.p
            relu(mm(buf1.buf[:, p - span:p + 1:d].reshape(B, -1), w1, out=a), zero, out=a)  # conv1 -> conv2's buffer
            out = next_buf.advance() if next_buf is not None else state.out
            p = buf2.p
            relu(mm(buf2.buf[:, p - span:p + 1:d].reshape(B, -1), w2, out=out), zero, out=out)  # conv2 -> next block
            if down is None:
                out += h
            else:
                out += h @ down.w_step
                out += down.b_step
            h = relu(out, zero, out=out) if last_relu else out  # (B, hidden), where the next block reads it
        y = h @ state.head_w + state.head_b
        return (torch.from_numpy(y) if fast else y), state

    def _step_chunk(self, x: torch.Tensor, state: "TCNState"):
        """A chunk through every level as real convolutions over [history, chunk]."""
        h = x.transpose(1, 2)  # (B, d_in, C)
        for block in state.blocks:
            a = h
            for conv in (block.conv1, block.conv2):
                buf = conv.buf
                full = torch.cat([buf.recent(buf.window - 1).transpose(1, 2), a], dim=-1)  # (B, C_in, (k-1)d + C)
                buf.load(full.transpose(1, 2))
                a = F.conv1d(full, conv.w, conv.b, dilation=conv.dilation).relu_()
            res = h if block.down is None else F.conv1d(h, block.down.w, block.down.b)
            h = (a + res).relu_()
        return self.head(h.transpose(1, 2)), state


# -- the TCN's streaming state: named pieces, built once by init_state --------------------------
class ConvState(NamedTuple):
    buf: SlidingBuffer       # the conv's last (k-1)d+1 inputs (+ a ones channel for the bias)
    dilation: int
    w_step: Any              # (k * (C_in + 1), C_out): taps x [W; b], the step's one matmul
    w: torch.Tensor          # (C_out, C_in, k) and (C_out,): the folded weights, for chunks
    b: torch.Tensor


class ResidualProjection(NamedTuple):  # the 1x1 conv on a block's residual path
    w_step: Any              # (C_in, C_out), (C_out,): for a step
    b_step: Any
    w: torch.Tensor          # (C_out, C_in, 1), (C_out,): for a chunk
    b: torch.Tensor


class BlockState(NamedTuple):
    conv1: ConvState
    conv2: ConvState
    down: ResidualProjection | None


class StepPlan(NamedTuple):
    """One block's step, flattened for the per-sample loop."""
    buf1: SlidingBuffer      # conv1's input buffer (the block's input)
    buf2: SlidingBuffer      # conv2's input buffer (conv1's output is written straight into it)
    w1: Any
    w2: Any
    span: int                # (k-1) * d: the taps reach this far back
    dilation: int
    next_buf: SlidingBuffer | None  # where the block's output goes (the next block's conv1 buffer; None: `out`)
    down: ResidualProjection | None
    zero: Any                # zeros of the output's shape: np.maximum runs ~30% faster without broadcasting
    last_relu: bool          # a no-op where the block's input is a previous block's output (>= 0), since
    #                          relu(conv2) + input >= 0 already: skipping it changes nothing (~5% of a step)


@dataclass
class TCNState:
    blocks: list[BlockState]
    plan: list[StepPlan]
    out: Any                 # (B, hidden): the last block's output
    head_w: Any
    head_b: Any
    numpy: bool              # the step runs on NumPy views of the tensors


class TCNExportStep(ExportStep):
    """State: per conv, its last (k-1)*d inputs, time-major (B, (k-1)d, C_in)."""

    def __init__(self, m):
        super().__init__()
        self.m, self.k = m, m.kernel_size

    def specs(self, batch):
        out = []
        for i, (block, d) in enumerate(zip(self.m.blocks, self.m.dilations)):
            for j, conv in ((1, block.conv1), (2, block.conv2)):
                out.append(StateSpec(f"block{i}_conv{j}", (batch, (self.k - 1) * d, conv.in_channels),
                                     conv.weight.dtype, f"the last {(self.k - 1) * d} inputs of block {i}'s conv {j}",
                                     0))
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


def _set_conv(conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Give a weight-normed conv the effective weight ``weight``: v = weight, g = ||v|| per output."""
    pw = conv.parametrizations.weight
    pw.original1.copy_(weight)
    pw.original0.copy_(weight.flatten(1).norm(dim=1).view_as(pw.original0))
    conv.bias.copy_(bias)
