"""Sliding buffers for exact step-by-step inference of convolutional models.

A ``SlidingBuffer`` keeps the last ``window`` values of a (B, C) stream in a linear array of
2 * window slots. Each push is one write at the next slot; when the array is full, the last
window - 1 values are copied back to the front (once every window + 1 pushes: O(1) amortized).
Because the window is always one contiguous run, the k taps of a dilated convolution are a
strided view (no gather), and a whole chunk of history is a plain slice.

The buffer holds either a torch tensor or, for the CPU fast path, a NumPy view of one (sharing
memory): at batch 1, a step is dozens of tiny ops, and NumPy's per-call overhead is a fraction of
torch's dispatch (measured: TCN step 0.155 ms vs 0.71 ms; see BENCHMARKS.md).
"""
from __future__ import annotations

import numpy as np
import torch

from seqbench.errors import SeqbenchError


class SlidingBuffer:
    """``ones=True`` appends a constant-1 channel, so taps @ [W; b] applies a bias in the matmul."""

    __slots__ = ("window", "channels", "full", "tensor", "buf", "p", "cap")

    def __init__(self, batch: int, channels: int, window: int, like: torch.Tensor, use_numpy: bool = False,
                 ones: bool = False):
        self.window, self.channels = max(int(window), 1), channels
        self.full = torch.zeros(batch, 2 * self.window, channels + ones, dtype=like.dtype, device=like.device)
        if ones:
            self.full[..., channels] = 1.0
        self.tensor = self.full[..., :channels]  # the stream itself, without the ones channel
        self.buf = self.full.numpy() if use_numpy else self.full  # same memory either way
        self.p = self.window - 1  # index of the newest value; zeros before it are the empty history
        self.cap = 2 * self.window

    def advance(self):
        """Make room for the next value and return its (B, C) slot, for a producer to write into
        (e.g. a matmul's ``out=``): no separate copy into the buffer."""
        p = self.p + 1
        if p == self.cap:  # full: slide the last window-1 values back to the front
            self.buf[:, :self.window - 1] = self.buf[:, p - self.window + 1:]
            p = self.window - 1
        self.p = p
        return self.buf[:, p, :self.channels]

    def push(self, x) -> None:
        """Append x: (B, C) as the newest value."""
        self.advance()[...] = x

    def taps(self, k: int, d: int):
        """(B, k, C) view of the values at lags (k-1)d, ..., d, 0 (oldest first); C+1 with ones."""
        return self.buf[:, self.p - (k - 1) * d:self.p + 1:d]

    def lag(self, d: int):
        """(B, C) value pushed d steps before the newest."""
        return self.buf[:, self.p - d, :self.channels]

    def recent(self, n: int) -> torch.Tensor:
        """(B, n, C) torch view of the last n values, oldest first."""
        return self.tensor[:, self.p - n + 1:self.p + 1]

    def load(self, seq: torch.Tensor) -> None:
        """Replace the history with the last ``window`` values of seq: (B, T, C), T >= window."""
        self.tensor[:, :self.window] = seq[:, -self.window:]
        self.p = self.window - 1


def use_numpy_for(like: torch.Tensor, engine: str) -> bool:
    """Whether a step runs on NumPy: asked for ("numpy") or by default ("auto") for CPU float32/float64
    weights; "numpy" on other devices or dtypes is an error."""
    applies = like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64)
    if engine == "numpy" and not applies:
        raise SeqbenchError(f"the NumPy streaming engine needs CPU float32/float64 weights, got {like.dtype} on "
                            f"{like.device}; use engine='torch'")
    return engine != "torch" and applies


# Element-wise pieces of the NumPy step engines (TCN, TrellisNet, LRU, Transformer), written so one
# function serves a NumPy array or a torch tensor (the "torch" engine runs the same step code).
def layer_norm(h, g, b, eps: float):
    """LayerNorm over the last dim, as torch computes it (biased variance)."""
    if isinstance(h, np.ndarray):
        c = h - h.mean(-1, keepdims=True)
        return c / np.sqrt((c * c).mean(-1, keepdims=True) + eps) * g + b
    return torch.nn.functional.layer_norm(h, h.shape[-1:], g, b, eps)


def sigmoid(a):
    """1 / (1 + e^-a); for arrays written with tanh, so large |a| cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * a)) if isinstance(a, np.ndarray) else torch.sigmoid(a)
