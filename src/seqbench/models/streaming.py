"""Ring buffers for exact step-by-step inference of convolutional models.

A ``RingBuffer`` keeps the last ``window`` values of a (B, C) stream. Every value is written twice,
at slot i and slot i + window, so the most recent ``window`` values are always one contiguous
slice of the flat buffer and the k taps of a dilated convolution are a strided view of it: a push
is one write, reading taps is a view, and no step ever touches more than the window.
"""
from __future__ import annotations

import torch


class RingBuffer:
    def __init__(self, batch: int, channels: int, window: int, like: torch.Tensor):
        self.window = max(int(window), 1)
        self.buf = torch.zeros(batch, channels, 2, self.window, dtype=like.dtype, device=like.device)
        self.flat = self.buf.view(batch, channels, 2 * self.window)
        self.pos = 0  # slot the next value goes to; history before the first push reads as zeros

    def push(self, x: torch.Tensor) -> None:
        """Append x: (B, C) as the newest value."""
        self.buf.select(3, self.pos).copy_(x.unsqueeze(-1))  # both copies in one write
        self.pos = (self.pos + 1) % self.window

    def taps(self, k: int, d: int) -> torch.Tensor:
        """(B, C, k) view of values at lags (k-1)d, ..., d, 0 (oldest first, newest last)."""
        end = self.pos + self.window  # one past the newest value in the flat buffer
        return self.flat[:, :, end - 1 - (k - 1) * d:end:d]

    def lag(self, d: int) -> torch.Tensor:
        """(B, C) value pushed d steps before the newest."""
        return self.flat[:, :, self.pos + self.window - 1 - d]

    def recent(self, n: int) -> torch.Tensor:
        """(B, C, n) view of the last n values, oldest first."""
        end = self.pos + self.window
        return self.flat[:, :, end - n:end]

    def load(self, seq: torch.Tensor) -> None:
        """Replace the contents with the last ``window`` values of seq: (B, C, T), T >= window."""
        last = seq[..., -self.window:]
        self.buf.copy_(last.unsqueeze(2).expand_as(self.buf))
        self.pos = 0
