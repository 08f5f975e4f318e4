"""Export a trained model outside Python: ONNX or a ``torch.export`` program (``.pt2``).

Two graphs can be exported from a run directory:

* the full-sequence model: ``x (B, L, d_in) -> y (B, L, d_out)`` (token models: ids ``(B, L)``),
  batch and length dynamic;
* with ``streaming=True``, one step as a pure function whose state is explicit inputs and outputs:
  ``(x, state_0, ..., state_n) -> (y, next_state_0, ..., next_state_n)``. Feed the next state back
  in at the next step; a new stream starts from zeros (``StreamingStep.state_spec`` gives each
  piece's name, shape and dtype; they are also written to ``<out>.json`` beside the file).

Both come from the model's own hooks (``SeqModel.export_step``, ``export_forward``): each model
file writes its step as a pure function (no Python-side state, no NumPy, no complex numbers, no
data-dependent control flow), and tests check it against the model's own ``step``. File formats
are registered (``FORMATS``: onnx, pt2), each a writer and a loader for the built-in check.
"""
from __future__ import annotations

import importlib.util
import io as io_module
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import StateSpec, plain_copy  # noqa: F401 (re-exported: export's API)
from seqbench.registry import Registry

OPSET = 18


@dataclass(frozen=True)
class ExportFormat:
    """A file format: ``write(ep, module, args, io, tmp)`` writes the traced program (``ep``, or None
    where torch.export could not keep the length dynamic and the format falls back to tracing
    ``module``), and ``load(path)`` returns a function running the file on tensors (for the check).
    ``dynamic_fallback``: whether the format can keep a length torch.export fixes."""
    name: str
    write: Callable[..., None]
    load: Callable[[Path], Callable[..., list[torch.Tensor]]]
    dynamic_fallback: bool = False
    can_run: Callable[[], bool] = lambda: True


FORMATS: Registry[ExportFormat] = Registry("export format")


def register_format(fmt: ExportFormat) -> ExportFormat:
    return FORMATS.register(fmt.name, fmt)


def _write_pt2(ep, module, args, io, tmp) -> None:
    buf = io_module.BytesIO()
    torch.export.save(ep, buf)
    Path(tmp).write_bytes(buf.getvalue())


def _load_pt2(path: Path):
    prog = torch.export.load(str(path)).module()

    def run(*a):
        y = prog(*a)
        return [y] if isinstance(y, torch.Tensor) else list(y)
    return run


def _write_onnx(ep, module, args, io, tmp) -> None:
    from seqbench.data import require
    require("onnxscript", extra="export", why="ONNX export")
    onnx = require("onnx", extra="export", why="ONNX export")
    names_in, names_out = [s["name"] for s in io["inputs"]], [s["name"] for s in io["outputs"]]
    if ep is not None:
        torch.onnx.export(ep, args, input_names=names_in, output_names=names_out, opset_version=OPSET,
                          dynamo=True, verbose=False).save(str(tmp))
    else:  # the classic exporter, whose recurrent ops keep the length dynamic
        axes = {"x": {0: "batch", 1: "length"}, "y": {0: "batch", 1: "length"}}
        torch.onnx.export(module, args, str(tmp), input_names=names_in, output_names=names_out,
                          opset_version=OPSET, dynamo=False, dynamic_axes=axes)
    proto = onnx.load(str(tmp))
    _name_dims(proto, io)  # exporters leave some output dims fixed at the example's sizes
    onnx.save(proto, str(tmp))


def _load_onnx(path: Path):
    import numpy as np

    from seqbench.data import require
    ort = require("onnxruntime", extra="export", why="checking an ONNX export")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return lambda *a: [torch.from_numpy(np.asarray(v)) for v in sess.run(None, dict(zip(names, [t.numpy() for t in a])))]


register_format(ExportFormat("onnx", _write_onnx, _load_onnx, dynamic_fallback=True,
                             can_run=lambda: importlib.util.find_spec("onnxruntime") is not None))
register_format(ExportFormat("pt2", _write_pt2, _load_pt2))


class StreamingStep(nn.Module):
    """A causal model's step as a pure function: ``forward(x, *state) -> (y, *next_state)``, from
    the model's own ``export_step`` hook.

    ``x``: (B, d_in) float (token models: (B,) int64 ids); ``y``: (B, d_out). ``init_state(B)`` gives
    the zeros a new stream starts from; ``state_spec(B)`` names and shapes every piece. ``max_len``
    bounds a stream whose state grows with its length (a KV cache); other models ignore it."""

    def __init__(self, model: nn.Module, max_len: int = 1024):
        super().__init__()
        if not getattr(model, "causal", False) or not getattr(model, "supports_step", False):
            raise SeqbenchError(f"{type(model).__name__} cannot stream (it is not causal, or has no step); "
                                "export the full-sequence model instead (without --streaming)")
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise SeqbenchError(f"max_len must be a positive integer, got {max_len!r}")
        model = plain_copy(model)
        self.step_fn = model.export_step(max_len)
        self.token = getattr(model, "takes_tokens", False)
        self.d_in, self.d_out, self.dtype = model.d_in, model.d_out, next(model.parameters()).dtype
        self.max_steps = getattr(self.step_fn, "max_steps", None)  # a stream's limit, if it has one

    def state_spec(self, batch_size: int = 1) -> list[StateSpec]:
        return self.step_fn.specs(batch_size)

    def init_state(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(s.shape, dtype=s.dtype) for s in self.state_spec(batch_size))

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        if self.token:
            return torch.zeros(batch_size, dtype=torch.int64)
        return torch.zeros(batch_size, self.d_in, dtype=self.dtype)

    def forward(self, x, *state):
        return self.step_fn(x, *state)


class FullSequence(nn.Module):
    """The whole-sequence forward for export (weights folded, eval mode), from the model's own
    ``export_forward`` hook."""

    def __init__(self, model: nn.Module):
        super().__init__()
        m = plain_copy(model)
        self.token, self.d_in, self.d_out = getattr(m, "takes_tokens", False), m.d_in, m.d_out
        self.net = m.export_forward() if hasattr(m, "export_forward") else m  # the only submodule ("graph" would clash with fx)

    def forward(self, x):
        return self.net(x)


# -- writing and checking exported files -----------------------------------------------------
def _io_spec(module: nn.Module, streaming: bool, length: int | None, fixed_length: bool) -> dict:
    """Names, shapes ('batch' / 'length' symbolic) and dtypes of the graph's inputs and outputs."""
    if not streaming:
        m, token = module, module.token
        L = length if fixed_length else "length"
        x = {"name": "x", "shape": ["batch", L] if token else ["batch", L, m.d_in],
             "dtype": "int64" if token else "float32", "doc": "token ids" if token else "the input sequence"}
        return {"inputs": [x], "outputs": [{"name": "y", "shape": ["batch", L, m.d_out], "dtype": "float32",
                                            "doc": "the output at every step"}]}
    specs = module.state_spec(2)

    def shape(sp):
        return ["batch" if i == sp.batch_axis else d for i, d in enumerate(sp.shape)]
    state = [{"name": sp.name, "shape": shape(sp), "dtype": str(sp.dtype).removeprefix("torch."), "doc": sp.doc}
             for sp in specs]
    x = {"name": "x", "shape": ["batch"] if module.token else ["batch", module.d_in],
         "dtype": "int64" if module.token else "float32", "doc": "this step's input"}
    y = {"name": "y", "shape": ["batch", module.d_out], "dtype": "float32", "doc": "this step's output"}
    return {"inputs": [x, *state], "outputs": [y, *[{**s, "name": f"next_{s['name']}"} for s in state]]}


def _dynamic(module: nn.Module, streaming: bool, fixed_length: bool):
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    if not streaming:
        return ({0: batch} if fixed_length else {0: batch, 1: torch.export.Dim("length", min=2, max=1 << 24)},)
    return ({0: batch}, tuple({} if sp.batch_axis is None else {sp.batch_axis: batch}
                              for sp in module.state_spec(2)))


def export_model(model: nn.Module, out: str | Path, fmt: str = "onnx", *, streaming: bool = False,
                 max_len: int = 1024, length: int = 64, meta: dict | None = None) -> dict:
    """Export ``model`` to ``out`` (.onnx or .pt2) and write ``<out>.json`` describing its inputs and
    outputs. Returns that description. Batch and length are dynamic, except where the model says
    its graph's length is fixed (``export_fixed_length``) or torch.export fixes it."""
    from seqbench.utils import atomic_write
    FORMATS.get(fmt)  # an unknown format: one line naming the known ones
    out = Path(out)
    if not out.parent.is_dir():
        raise SeqbenchError(f"cannot write {out}: directory {out.parent} does not exist")
    if not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise SeqbenchError(f"--length must be an integer >= 2, got {length!r}")
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise SeqbenchError(f"--max-len: max_len must be a positive integer, got {max_len!r}")
    from seqbench.memory import check_bytes, training_bytes
    module = StreamingStep(model, max_len) if streaming else FullSequence(model)
    if streaming:  # the example state, the reference's and the checked one's: before any is allocated
        need = 3 * sum(math.prod(sp.shape) * sp.dtype.itemsize for sp in module.state_spec(2))
        check_bytes(need, f"the streaming state at --max-len {max_len:,}", "give a smaller --max-len")
    else:
        tokens = getattr(model, "takes_tokens", False)
        check_bytes(training_bytes(model, model.d_in, 2, length, tokens), f"tracing at --length {length:,}",
                    "give a smaller --length (batch and length stay dynamic in the exported graph)")
    own_reason = None if streaming else getattr(model, "export_fixed_length", None)
    fixed_length = own_reason is not None
    if streaming:
        args = (module.example_input(2), *module.init_state(2))
    elif module.token:
        args = (torch.zeros(2, length, dtype=torch.int64),)
    else:
        args = (torch.randn(2, length, model.d_in, dtype=next(model.parameters()).dtype),)
    import logging
    import warnings
    quiet = logging.getLogger("torch.onnx")  # its registry logs a line per missing torchvision op
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            ep, exporter, fixed_length = _export(module, fmt, args, streaming, fixed_length, out, length, model)
        finally:
            quiet.setLevel(level)
    desc = {"format": fmt, "exporter": exporter, "streaming": streaming, **_io_spec(module, streaming, length, fixed_length),
            **({"max_len": max_len} if streaming else {}), **({"fixed_length": length} if fixed_length else {}),
            **({"fixed_reason": own_reason or "torch.export fixes the length of this model's fused kernels "
                "(torch's LSTM/GRU/RNN); the ONNX export keeps it dynamic"} if fixed_length else {}),
            **(meta or {})}
    atomic_write(out.with_name(out.name + ".json"), lambda tmp: Path(tmp).write_text(json.dumps(desc, indent=1)))
    return desc


def _export(module, fmt, args, streaming, fixed_length, out, length, model):
    """Trace, pick the exporter that keeps the dynamic dimensions, and write ``out``."""
    from seqbench.utils import atomic_write
    ep, exporter = _trace(module, args, streaming, fixed_length), "torch.export"
    if ep is None and not streaming and not fixed_length:
        # the length cannot stay dynamic through torch.export (fused recurrent kernels specialize it):
        # ONNX gets the classic exporter, whose recurrent ops keep it; a .pt2 gets a fixed length
        if FORMATS.get(fmt).dynamic_fallback:
            exporter = "torch.onnx (classic)"
        else:
            fixed_length = True
            ep = _trace(module, args, streaming, fixed_length)
    if ep is None and exporter == "torch.export":
        raise SeqbenchError(f"torch.export could not trace {type(model).__name__}'s "
                            f"{'step' if streaming else 'forward'}; export the other graph, or file an issue")
    io = _io_spec(module, streaming, length, fixed_length)
    atomic_write(out, lambda tmp: FORMATS.get(fmt).write(ep, module, args, io, tmp))
    return ep, exporter, fixed_length


def _trace(module, args, streaming: bool, fixed_length: bool):
    """torch.export's program with dynamic batch (and length), or None where it cannot keep them."""
    try:
        return torch.export.export(module, args, dynamic_shapes=_dynamic(module, streaming, fixed_length))
    except Exception:  # noqa: BLE001 - a constraint violation or an untraceable op: the caller falls back
        return None


def _name_dims(proto, io: dict) -> None:
    for value, spec in zip([*proto.graph.input, *proto.graph.output], [*io["inputs"], *io["outputs"]]):
        dims = value.type.tensor_type.shape.dim
        for dim, want in zip(dims, spec["shape"]):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want


def verify(model: nn.Module, out: str | Path, *, steps: int = 32, batch: int = 2, seed: int = 0) -> float:
    """Run the exported file (onnxruntime / torch.export.load) against the model in PyTorch on random
    input; return the largest absolute difference over outputs and next states."""
    out = Path(out)
    desc = json.loads(out.with_name(out.name + ".json").read_text())
    g = torch.Generator().manual_seed(seed)
    token = desc["inputs"][0]["dtype"] == "int64"

    def draw(*shape):
        return (torch.randint(0, model.d_in, shape, generator=g) if token
                else torch.randn(*shape, generator=g, dtype=next(model.parameters()).dtype))
    run = FORMATS.get(desc["format"]).load(out)
    ref = model.eval()
    err = 0.0
    with torch.no_grad():
        if not desc["streaming"]:
            L = desc.get("fixed_length", steps)
            x = draw(batch, L) if token else draw(batch, L, model.d_in)
            return float((run(x)[0] - ref(x)).abs().max())
        step = StreamingStep(ref, desc.get("max_len", 1024))
        st_ref = step.init_state(batch)
        st_out = step.init_state(batch)
        bounded = step.max_steps is not None  # a stream of at most max_len steps
        n = step.max_steps + 2 if bounded else steps  # past the limit too: NaN, as documented
        for _ in range(n):
            x = draw(batch) if token else draw(batch, model.d_in)
            y, *st_ref = step(x, *st_ref)
            y2, *st_out = run(x, *st_out)
            err = max(err, _diff(y2, y), *(_diff(a, b) for a, b in zip(st_out, st_ref)))
    return err


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference; NaN where both are NaN counts as equal, NaN on one side as inf."""
    both = torch.isnan(a) & torch.isnan(b)
    if (torch.isnan(a) ^ torch.isnan(b)).any():
        return float("inf")
    return float((a - b).abs().masked_fill(both, 0).max()) if a.numel() else 0.0


def export_run(run_dir: str | Path, out: str | Path, fmt: str | None = None, *, streaming: bool = False,
               max_len: int = 1024, length: int = 64, check: bool = True) -> dict:
    """Export a run directory's model (``best.pt``) to ``out``. ``fmt`` defaults to the extension
    (.onnx / .pt2). The description written beside it (``<out>.json``) carries the run's model
    config, task and fitted preprocessing (the graph takes inputs already normalized as at training).
    ``check``: run the file against PyTorch and record the largest difference (``max_abs_diff``)."""
    from seqbench.train.runs import RunDir
    from seqbench.utils import atomic_write
    out = Path(out)
    suffix = out.suffix.lstrip(".").lower()
    fmt = fmt or suffix
    if fmt not in FORMATS:
        raise SeqbenchError(f"cannot tell the export format from {out.name!r}; use --format onnx or pt2 "
                            "(or an .onnx / .pt2 file name)")
    if suffix in FORMATS and suffix != fmt:
        raise SeqbenchError(f"--format {fmt} does not match the file name {out.name!r}; name it *.{fmt}")
    if out.is_dir():
        raise SeqbenchError(f"--out {out} is a directory; give a file name, e.g. {out / ('model.' + fmt)}")
    if not out.parent.is_dir():
        raise SeqbenchError(f"cannot write {out}: directory {out.parent} does not exist")
    run = RunDir.open(run_dir)
    model, cfg = run.model(), run.config
    if (cfg.get("compress") or {}).get("quantize"):
        raise SeqbenchError(f"{run.path} is an int8 variant (torch dynamic quantization does not export); export the "
                            f"float run it came from ({cfg['compress'].get('from', 'its source')})")
    meta = {"model": cfg.get("model"), "task": cfg.get("task"), "preprocessing": cfg.get("fitted") or {}}
    desc = export_model(model, out, fmt, streaming=streaming, max_len=max_len, length=length, meta=meta)
    if check and FORMATS.get(fmt).can_run():
        desc["max_abs_diff"] = verify(model, out, steps=64)
        bounded = streaming and StreamingStep(model, max_len).max_steps is not None
        desc["checked"] = "random inputs, batch 2, " + (
            (f"{max_len + 2} steps (past max_len: NaN)" if bounded else "64 steps") if streaming else "one sequence")
        atomic_write(out.with_name(out.name + ".json"), lambda tmp: Path(tmp).write_text(json.dumps(desc, indent=1)))
    return desc
