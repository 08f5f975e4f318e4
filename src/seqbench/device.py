"""Where training runs: ``--device auto|cpu|cuda[:N]|mps`` and ``--precision 32|bf16|16``.

    device = resolve_device("auto")          # cuda if torch sees one, else mps, else cpu
    x, y = to_device((x, y), device)         # tensors, tuples of tensors; pinned + non_blocking on CUDA
    with autocast(device, "bf16"): ...       # mixed precision (fp16 adds a gradient scaler: grad_scaler)
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from seqbench.errors import SeqbenchError

PRECISIONS = ("32", "bf16", "16")


def available_devices() -> list[str]:
    """Every device type torch reports usable here: always "cpu", then "cuda" and "mps" if present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """A torch.device for ``name``; an unavailable one is a one-line error saying what is there."""
    name = str(name)
    if name == "auto":
        return torch.device(available_devices()[-1] if len(available_devices()) > 1 else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SeqbenchError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SeqbenchError(f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if dev.type not in available_devices():
        why = ("this torch build has no CUDA" if dev.type == "cuda" and not torch.backends.cuda.is_built()
               else "no such device is visible")
        raise SeqbenchError(f"--device {name}: {why} (available here: {', '.join(available_devices())}); "
                            "use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SeqbenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise SeqbenchError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "16" and device.type == "cpu":
        raise SeqbenchError("--precision 16 (float16 autocast) needs a GPU; on CPU use --precision bf16 or 32")


def to_device(obj: Any, device: torch.device) -> Any:
    """Move a batch (a tensor, or tuples/lists of them) to ``device``; on CUDA through pinned memory
    with a non-blocking copy, so the copy overlaps the previous step's work."""
    if isinstance(obj, torch.Tensor):
        if obj.device == device:
            return obj
        if device.type == "cuda" and obj.device.type == "cpu":
            return obj.pin_memory().to(device, non_blocking=True)
        return obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple takes its fields positionally
        return type(obj)(*(to_device(o, device) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    return obj


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` ("32": none)."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str):
    """A gradient scaler for float16 (its small range underflows gradients); None otherwise."""
    if precision != "16":
        return None
    return torch.amp.GradScaler(device.type)


def model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
