"""Dynamic int8 quantization (int8 weights, activations quantized on the fly) of a model's recurrent
layers and linear maps, for the models that declare it pays (``SeqModel.int8``)."""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from seqbench.errors import SeqbenchError


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model`` (a token model is judged by the model inside it)."""
    inner = getattr(model, "inner", model)
    if not getattr(inner, "int8", False):
        name = getattr(inner, "config", {}).get("name", type(inner).__name__)
        raise SeqbenchError(f"--quantize int8 applies to lstm, gru and rnn runs; {name} is not quantized because "
                            "int8 measured slower than its float step on this CPU (see BENCHMARKS.md, 'Compression'); "
                            "try --prune (tcn) or --distill-into")
    engine = "x86" if "x86" in torch.backends.quantized.supported_engines else torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():  # torch deprecates its quantized tensor types in favour of torchao (GPU-first)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.LSTM, nn.GRU, nn.RNN, nn.Linear},
                                                      dtype=torch.qint8)
