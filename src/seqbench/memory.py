"""Memory a piece of work will need, estimated before it starts, so that a size that cannot fit is
a one-line error naming the GiB needed instead of a run killed by the kernel minutes later."""
from __future__ import annotations

import os

import torch

from seqbench.errors import SeqbenchError

PROBE_LENGTHS = (128, 256, 512)  # long enough that chunked scans are linear, short enough to be instant


def available_bytes() -> int:
    """Memory available to a new allocation now (``MemAvailable``), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 50  # unknown: do not refuse


def check_bytes(need: float, what: str, fix: str) -> None:
    """Refuse ``what`` when it needs more memory than is available, with both figures and the fix."""
    have = available_bytes()
    if need > have:
        raise SeqbenchError(f"{what} needs about {need / 2**30:,.1f} GiB of memory but {have / 2**30:.1f} GiB are "
                            f"available; {fix}")


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors a training forward keeps for backward (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t.device.type != "meta":
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        return t

    was = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
            out = model(x)
        seen[out.untyped_storage().data_ptr()] = out.untyped_storage().nbytes()
    finally:
        model.train(was)
    return sum(seen.values())


def training_bytes(model: torch.nn.Module, d_in: int, batch: int, length: int, tokens: bool = False) -> float:
    """Activation memory of one training step at (batch, length), measured on batch-1 probes at a few
    lengths and extrapolated (exact for memory linear or quadratic in length, like attention's)."""
    def probe(L: int) -> int:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, d_in, (1, L), generator=g) if tokens else torch.randn(1, L, d_in, generator=g)
        return _saved_bytes(model, x)
    if length <= PROBE_LENGTHS[-1]:
        return float(probe(length)) * batch
    (l0, l1, l2), (m0, m1, m2) = PROBE_LENGTHS, [probe(L) for L in PROBE_LENGTHS]
    quad = max(0.0, ((m2 - m1) / (l2 - l1) - (m1 - m0) / (l1 - l0)) / (l2 - l0))  # second difference
    lin = (m2 - m1) / (l2 - l1) - quad * (l2 + l1)
    at = m2 + lin * (length - l2) + quad * (length**2 - l2**2)
    return max(float(at), float(m2)) * batch


def check_training_memory(model: torch.nn.Module, task, batch_size: int) -> None:
    """Refuse, before any work, a training step whose activations and batch cannot fit in memory."""
    batch = min(batch_size, max(1, task.num_samples("train")))
    L = int(task.seq_len)
    tokens = task.input_kind == "tokens"
    data = batch * L * (1 if tokens else task.d_in) * 4 * 2  # the batch and its targets
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) * 4  # + grads, Adam moments
    if (data + weights) * 8 < available_bytes() and batch * L <= 1 << 16:
        return  # clearly small: no probe needed
    need = training_bytes(model, task.d_in, batch, L, tokens) + data + weights
    check_bytes(need, f"a training step ({batch} sequences of {L:,} steps, {type(model).__name__})",
                "use shorter sequences (seq_len / T), a smaller --batch-size or a smaller model")
