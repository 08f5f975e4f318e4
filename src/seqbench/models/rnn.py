"""Recurrent baselines: LSTM, GRU and Elman RNN (torch's native modules) with a linear readout.

``causal=False`` makes them bidirectional (the readout sees both directions). The LSTM's forget
gates start with bias 1 (Gers et al. 2000; Jozefowicz et al. 2015; Keras' default), so the cell
keeps its memory from the first step: with torch's default (bias ~0) a 70K LSTM on seq-MNIST stayed
at chance for 940 Adam steps (train loss ln 10 throughout); with bias 1 it moved within 300 steps.
"""
from __future__ import annotations

import torch
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import ExportStep, SeqModel, StateSpec
from seqbench.models.registry import register_model


class _Recurrent(SeqModel):
    rnn_cls: type[nn.RNNBase]
    supports_step = True
    int8 = True  # torch's int8 LSTM/GRU/RNN kernels: the step measured faster than float at most sizes

    def __init__(self, d_in: int, d_out: int, causal: bool = True, hidden: int = 128, layers: int = 1,
                 dropout: float = 0.0):
        super().__init__(d_in, d_out, causal)
        if hidden < 1 or layers < 1:
            raise SeqbenchError(f"{type(self).__name__.lower()} needs hidden and layers >= 1, "
                                f"got hidden={hidden}, layers={layers}")
        self.hidden, self.layers = hidden, layers
        self.rnn = self.rnn_cls(d_in, hidden, layers, batch_first=True,
                                dropout=dropout if layers > 1 else 0.0, bidirectional=not causal)
        self.head = nn.Linear(hidden * (1 if causal else 2), d_out)
        if self.rnn.mode == "LSTM":
            with torch.no_grad():  # gates are ordered [input, forget, cell, output]
                for name, b in self.rnn.named_parameters():
                    if name.startswith("bias_"):
                        b[hidden:2 * hidden] = 1.0 if name.startswith("bias_ih") else 0.0

    @classmethod
    def searchable(cls, config: dict) -> set[str]:
        return {"dropout"} if config.get("layers", 1) > 1 else set()  # torch applies it between layers only

    def export_step(self, max_len: int) -> ExportStep:
        return RecurrentExportStep(self)

    def describe(self) -> str:
        return f"{self.layers} layer{'s' * (self.layers > 1)} x {self.hidden}" + \
            ("" if self.causal else ", bidirectional")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        out, _ = self.rnn(x)  # (B, L, H * directions)
        return self.head(out)

    def _init_state(self, batch_size: int, engine: str):
        p = next(self.parameters(), None)  # none in an int8 (dynamically quantized) copy: float32 on the CPU
        h = torch.zeros(self.layers, batch_size, self.hidden, device=None if p is None else p.device,
                        dtype=torch.float32 if p is None else p.dtype)
        return (h, h.clone()) if self.rnn.mode == "LSTM" else h  # (an int8 LSTM is no nn.LSTM subclass)

    def _step(self, x_t, state):
        out, state = self.rnn(x_t.unsqueeze(1), state)  # (B, 1, H)
        return self.head(out[:, 0]), state

    def _step_chunk(self, x, state):
        out, state = self.rnn(x, state)  # the whole chunk in one cuDNN/oneDNN call
        return self.head(out), state


@register_model("lstm")
class LSTM(_Recurrent):
    """Long short-term memory network (torch.nn.LSTM) with a linear readout."""
    rnn_cls = nn.LSTM


@register_model("gru")
class GRU(_Recurrent):
    """Gated recurrent unit network (torch.nn.GRU) with a linear readout."""
    rnn_cls = nn.GRU


@register_model("rnn")
class RNN(_Recurrent):
    """Elman RNN with tanh (torch.nn.RNN) and a linear readout."""
    rnn_cls = nn.RNN


class RecurrentExportStep(ExportStep):
    """State: h (layers, B, H), and c for an LSTM."""

    def __init__(self, m):
        super().__init__()
        self.m, self.lstm = m, isinstance(m.rnn, nn.LSTM)

    def specs(self, batch):
        shape, dt = (self.m.layers, batch, self.m.hidden), self.m.head.weight.dtype
        out = [StateSpec("h", shape, dt, "hidden state per layer (layers, B, hidden)", 1)]
        if self.lstm:
            out.append(StateSpec("c", shape, dt, "cell state per layer (layers, B, hidden)", 1))
        return out

    def forward(self, x, *state):
        out, nxt = self.m.rnn(x[:, None], tuple(state) if self.lstm else state[0])
        return (self.m.head(out[:, 0]), *(nxt if self.lstm else (nxt,)))
