"""The straightforward TCN that seqbench's is measured against (issue 6).

A plain transcription of the TCN paper's original block structure: each dilated conv pads
(k-1)*d zeros on *both* sides, computes the extra right-hand outputs, and chops them off again
(with a ``.contiguous()`` copy); weight norm is recomputed on every conv call; the head reads the
last step only for last-step tasks. It holds the same parameters, under the same names, as
``seqbench.create_model("tcn", ...)``, so ``load_state_dict`` moves weights between the two and
tests/test_tcn_reference.py checks that they compute the same function.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Chomp1d(nn.Module):
    def __init__(self, chomp: int):
        super().__init__()
        self.chomp = chomp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :-self.chomp].contiguous() if self.chomp else x


class RefTemporalBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        pad = (kernel_size - 1) * dilation
        self.conv1 = weight_norm(nn.Conv1d(c_in, c_out, kernel_size, padding=pad, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(c_out, c_out, kernel_size, padding=pad, dilation=dilation))
        self.chomp = Chomp1d(pad)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu(self.chomp(self.conv1(x))))
        out = self.dropout(self.relu(self.chomp(self.conv2(out))))
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


class ReferenceTCN(nn.Module):
    """x: (B, L, d_in) -> (B, L, d_out), or (B, d_out) from the last step with ``last_only``."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 25, levels: int = 8, kernel_size: int = 7,
                 dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            RefTemporalBlock(d_in if i == 0 else hidden, hidden, kernel_size, 2 ** i, dropout)
            for i in range(levels))
        self.head = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        if last_only:
            return self.head(h[:, :, -1])
        return self.head(h.transpose(1, 2))


def reference_like(model: nn.Module) -> ReferenceTCN:
    """A ReferenceTCN with ``model``'s shape and a copy of its weights."""
    ref = ReferenceTCN(model.d_in, model.d_out, model.hidden, model.levels, model.kernel_size,
                       model.blocks[0].dropout.p)
    ref.load_state_dict(model.state_dict())
    return ref
