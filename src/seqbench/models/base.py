"""The sequence-model contract every zoo model follows.

    y = model(x)                      # x: (B, L, d_in) float -> y: (B, L, d_out)
    model.causal                      # True: y[:, t] depends only on x[:, :t+1]
    model.receptive_field             # int (steps of input seen by one output), or None if unbounded
    state = model.init_state(B)       # streaming (causal models that support it)
    y_t, state = model.step(x_t, state)   # x_t: (B, d_in) -> y_t: (B, d_out), equals model(x)[:, t]
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

import torch
from torch import nn

from seqbench.errors import SeqbenchError


ENGINES = ("auto", "numpy", "torch")


class StateSpec(NamedTuple):
    """One piece of a streaming state, as an exported step takes and returns it."""
    name: str
    shape: tuple[int, ...]   # at the batch size asked for
    dtype: torch.dtype
    doc: str
    batch_axis: int | None = 0  # where the batch is (None: shared by the whole batch, e.g. a position)


class ExportStep(nn.Module):
    """A model's step as a pure function for export: ``forward(x, *state) -> (y, *next_state)``,
    with no Python-side state, NumPy, complex numbers or data-dependent control flow, so that
    torch.export traces it. ``specs(batch)`` names, shapes and types every piece of the state; a new
    stream starts from zeros. Built by ``SeqModel.export_step`` on a ``plain_copy`` of the model."""

    def specs(self, batch: int) -> list[StateSpec]:
        raise NotImplementedError


class SeqModel(nn.Module):
    """Base class: input checks, capability flags and the streaming interface."""

    causal: bool = True
    supports_step: bool = False       # streams with init_state / step when causal
    supports_non_causal: bool = True  # can be built with causal=False
    takes_tokens: bool = False        # input is token ids (B, L) int64, not features (TokenModel)
    default_choice: bool = False      # what an expert tries first on a new task (recommend trains it first)
    int8: bool = False                # dynamic int8 quantization pays for its step (seqbench.models.quantize)
    registry_name: str | None = None  # set by @register_model
    aux_outputs: list[torch.Tensor] | tuple = ()  # outputs of intermediate levels from the last training
    #                                               forward, for an auxiliary loss (TrellisNet aux_freq)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap each subclass's ``__init__`` so the model records its own ``config``: the arguments
        it was built with, under its registered name. A model built directly (``TCN(1, 10, ...)``)
        round-trips through ``model_from_config`` / ``load_model`` like one from ``create_model``."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self).__init__ is __init__:  # the most-derived constructor's arguments
                bound = sig.bind(self, *args, **kw)
                bound.apply_defaults()
                cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in bound.arguments.items() if k != "self"}
                self._config = {"name": type(self).registry_name or type(self).__name__, **cfg}
        cls.__init__ = __init__

    def __init__(self, d_in: int, d_out: int, causal: bool = True):
        super().__init__()
        for label, v in (("d_in", d_in), ("d_out", d_out)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise SeqbenchError(f"{label} must be a positive integer, got {v!r}")
        self.d_in, self.d_out, self.causal = d_in, d_out, bool(causal)

    @classmethod
    def searchable(cls, config: dict[str, Any]) -> set[str]:
        """The training-time hyperparameters a search may vary for this model built with ``config``:
        only those it uses (a search varying a value the model ignores would rank copies)."""
        return {"dropout"} if "dropout" in inspect.signature(cls.__init__).parameters else set()

    @property
    def config(self) -> dict[str, Any]:
        """The arguments that rebuild this model: ``seqbench.model_from_config(model.config)``."""
        return dict(self._config)

    @property
    def receptive_field(self) -> int | None:
        return None

    def describe(self) -> str:
        """A short human description of the model's shape, e.g. '8 levels x 25, k=7'."""
        return ""

    def check_input(self, x: torch.Tensor, *, step: bool = False) -> None:
        """Raise a one-line SeqbenchError for a wrong shape or dtype."""
        want = "(B, d_in)" if step else "(B, L, d_in)"
        ndim = 2 if step else 3
        if not isinstance(x, torch.Tensor):
            raise SeqbenchError(f"expected a torch.Tensor of shape {want}, got {type(x).__name__}")
        if x.dim() != ndim or x.shape[-1] != self.d_in:
            raise SeqbenchError(
                f"{type(self).__name__} expects input of shape {want} with d_in={self.d_in}, "
                f"got {tuple(x.shape)}; reshape to (batch, length, features)" if not step else
                f"{type(self).__name__}.step expects input of shape {want} with d_in={self.d_in}, "
                f"got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise SeqbenchError(f"{type(self).__name__} expects a floating-point input, got {x.dtype}; "
                                "convert with x.float()")

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        """The last step's output only: (B, 1, d_out), equal to ``self(x)[:, -1:]``.

        Tasks that read one prediction per sequence (seq-MNIST, adding) train and evaluate through
        this; models that can skip the work only other steps need override it.
        """
        return self(x)[:, -1:]

    # -- streaming ---------------------------------------------------------------------------
    # Subclasses that stream set ``supports_step = True`` and implement ``_init_state`` and
    # ``_step`` (one sample); ``_step_chunk`` defaults to a loop over ``_step`` and is overridden
    # where a chunk can be computed more cheaply at once.
    def init_state(self, batch_size: int = 1, engine: str = "auto") -> Any:
        """Streaming state for ``batch_size`` sequences that start now (empty history).

        ``engine`` picks how a single step computes: "torch" ops, or "numpy" on views of the
        state's tensors (CPU float models that have such a path: the TCN; a step is dozens of tiny
        ops, where NumPy's call overhead is a fraction of torch's). "auto": NumPy where it applies."""
        self._check_streamable()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SeqbenchError(f"batch_size must be a positive integer, got {batch_size!r}")
        if engine not in ENGINES:
            raise SeqbenchError(f"unknown streaming engine {engine!r}; use one of {', '.join(ENGINES)}")
        return self._init_state(batch_size, engine)

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Advance the stream: x (B, d_in) -> y (B, d_out), or a chunk x (B, C, d_in) -> (B, C, d_out).

        Equals ``self(x_full)[:, t]`` for the same weights. Streaming is inference: call
        ``model.eval()`` first (steps apply no dropout); outputs carry no autograd history. The TCN,
        TrellisNet, the LRU and (on its NumPy engine) the Transformer fold their weights into the
        state when ``init_state`` is called: after changing the weights, start a new state.
        """
        self._check_streamable()
        chunk = isinstance(x, torch.Tensor) and x.dim() == self._chunk_ndim
        self.check_input(x, step=not chunk)
        if not chunk and self._step_is_torch_free(state):  # nothing for autograd to see: skip its guard
            return self._step(x, state)
        with torch.inference_mode():
            return self._step_chunk(x, state) if chunk else self._step(x, state)

    _chunk_ndim = 3  # a chunk is (B, C, d_in); a single step has one dimension less

    def _step_is_torch_free(self, state: Any) -> bool:
        """True where ``_step`` can build no autograd history (a NumPy fast path; at most torch ops on
        tensors made from its arrays): entering inference mode would cost a fifth of a 70K TCN's step."""
        return False

    def _init_state(self, batch_size: int, engine: str) -> Any:
        raise NotImplementedError

    def _step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def _step_chunk(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        ys = []
        for t in range(x.shape[1]):
            y, state = self._step(x[:, t], state)
            ys.append(y)
        return torch.stack(ys, dim=1), state

    def _check_streamable(self) -> None:
        if not self.causal:
            raise SeqbenchError(f"{type(self).__name__} was built with causal=False: a non-causal model "
                                "sees the future and cannot stream; build it with causal=True")
        if not self.supports_step:
            raise SeqbenchError(f"{type(self).__name__} does not support step-by-step streaming")

    def _param_like(self) -> torch.Tensor:
        return next(self.parameters())

    # -- deployment hooks (seqbench export, compress and recommend read these; they name no model) --
    def export_step(self, max_len: int) -> ExportStep:
        """This (plain, eval-mode) model's step as an ``ExportStep``; ``max_len`` bounds a stream
        where the state grows with it (a KV cache). Streaming models that can be exported override it."""
        raise SeqbenchError(f"no exportable step for {type(self).__name__}; export the full-sequence model "
                            "(without --streaming), or give the model an export_step (README, 'Add a model')")

    def export_forward(self) -> nn.Module:
        """The full-sequence forward to export (this model, unless its forward is not traceable,
        e.g. complex arithmetic, which ONNX lacks)."""
        return self

    export_fixed_length: str | None = None  # why the exported full-sequence graph has a fixed length, if it does

    @classmethod
    def search_shapes(cls, seq_len: int) -> list[dict[str, Any]]:
        """Architectures a search should try at each size for sequences of ``seq_len`` (options
        besides the width): one, the defaults, unless a model knows better."""
        return [{}]


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


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; weight-normed convs count g and v, as stored."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)




def empirical_receptive_field(model: SeqModel, length: int, *, batch: int = 8, seed: int = 0) -> int:
    """Measure how many input steps influence the last output, by a gradient probe.

    Runs the model in eval mode in float64 on random input of ``length`` steps and counts the
    span of input positions whose gradient w.r.t. y[:, -1] is non-zero (for non-causal models,
    the output at the middle of the sequence). Returns that span (a lower bound if ``length``
    is shorter than the true receptive field).
    """
    was_training = model.training
    orig_dtype = next(model.parameters()).dtype
    model.eval().double()
    try:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, length, model.d_in, generator=g, dtype=torch.float64, requires_grad=True)
        y = model(x)
        t = length - 1 if model.causal else length // 2
        y[:, t].sum().backward()
        nz = (x.grad.abs().sum(dim=(0, 2)) > 0).nonzero().flatten()
        return int(nz.max() - nz.min() + 1) if len(nz) else 0
    finally:
        model.to(orig_dtype).train(was_training)
