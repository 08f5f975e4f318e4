"""Token inputs for any zoo model: embedding -> model -> tied softmax decoder.

``create_model(name, d_in=vocab, d_out=vocab, embed_dim=E)`` builds a ``TokenModel``: token ids
(B, L) int64 -> logits (B, L, vocab). The inner zoo model maps E -> E features, and the decoder
reuses the embedding matrix (weight tying, as in the papers' language models) plus a bias.
Causality, receptive field and streaming (``step`` with x_t (B,) ids) are the inner model's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import ExportStep, SeqModel


class TokenModel(SeqModel):
    takes_tokens = True

    def __init__(self, inner: SeqModel, vocab_size: int, embed_dim: int, emb_dropout: float = 0.0):
        super().__init__(d_in=vocab_size, d_out=vocab_size, causal=inner.causal)
        self.inner = inner
        self.embed = nn.Embedding(vocab_size, embed_dim)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.supports_step = inner.supports_step

    @property
    def config(self):
        return {**self.inner.config, "d_in": self.d_in, "d_out": self.d_out, "embed_dim": self.embed.embedding_dim,
                "emb_dropout": self.emb_dropout.p}

    @property
    def receptive_field(self):
        return self.inner.receptive_field

    @property
    def aux_outputs(self):
        return [self.decode(a) for a in self.inner.aux_outputs]

    def export_step(self, max_len: int) -> ExportStep:
        return TokenExportStep(self, self.inner.export_step(max_len))

    def export_forward(self) -> nn.Module:
        return TokenExportForward(self)

    @property
    def export_fixed_length(self) -> str | None:
        return self.inner.export_fixed_length

    def describe(self) -> str:
        return f"embed {self.embed.embedding_dim} (tied) -> {self.inner.describe()}"

    def check_input(self, x: torch.Tensor, *, step: bool = False) -> None:
        want = "(B,)" if step else "(B, L)"
        if not isinstance(x, torch.Tensor) or x.dim() != (1 if step else 2):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise SeqbenchError(f"a token model expects token ids of shape {want}, got {shape}")
        if x.is_floating_point() or x.is_complex():
            raise SeqbenchError(f"a token model expects integer token ids, got {x.dtype}; use x.long()")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.d_in):
            raise SeqbenchError(f"token ids must be in 0..{self.d_in - 1}, got {int(x.min())}..{int(x.max())}")
        return self.emb_dropout(self.embed(x))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.embed.weight, self.decoder_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.decode(self.inner(self.encode(x)))

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.decode(self.inner.forward_last(self.encode(x)))

    _chunk_ndim = 2  # ids: a step is (B,), a chunk (B, C)

    def _step(self, x: torch.Tensor, state):
        y, state = self.inner.step(self.encode(x), state)
        return self.decode(y), state

    _step_chunk = _step  # the inner model tells a chunk from a step by its shape

    def _init_state(self, batch_size: int, engine: str):
        return self.inner.init_state(batch_size, engine)


class TokenExportStep(ExportStep):
    """A token model: ids (B,) int64 -> embedding -> the inner model's step -> tied decoder."""

    def __init__(self, m, inner: ExportStep):
        super().__init__()
        self.m, self.inner = m, inner

    def specs(self, batch):
        return self.inner.specs(batch)

    def forward(self, x, *state):
        y, *new = self.inner(self.m.embed(x), *state)
        return (self.m.decode(y), *new)


class TokenExportForward(nn.Module):
    """ids (B, L) -> embedding -> the inner model's export forward -> tied decoder (ids are not
    range-checked in the graph; ``TokenModel.encode`` does that in Python)."""

    def __init__(self, m):
        super().__init__()
        self.m, self.inner = m, m.inner.export_forward()

    def forward(self, x):
        return self.m.decode(self.inner(self.m.embed(x)))
