"""Measured properties of a task's data, before anything trains: what kind of prediction it asks
for, its size, and the structure of its sequences (how far back dependence reaches, periodicity,
noise, trend). The portfolio (``portfolio.py``) compares data sets by these; the instant answer
quotes them as its reason.

Dependence is measured where the data shows it: for per-step targets, the correlation of the target
with the input k steps back (a lag task's dependence is invisible in its input alone); otherwise the
input's own autocorrelation."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

KINDS = ("classification", "regression", "per-step", "forecast", "tokens")
MAX_SEQS = 256   # sequences sampled from the training split


def kind_of(task) -> str:
    from seqbench.tasks.forecast import WindowForecast
    if task.input_kind == "tokens":
        return "tokens"
    if isinstance(task, WindowForecast):
        return "forecast"
    if task.output_steps == "last":
        return "classification" if task.soft_targets == "softmax" else "regression"
    return "per-step"


def _sample(task) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Up to MAX_SEQS training inputs (N, L, C) as floats, per-step targets (N, L) or None, lengths (N,)."""
    x, target = next(iter(task.batches("train", MAX_SEQS, shuffle_seed=0)))
    x = x.numpy().astype(np.float64)
    if x.ndim == 2:  # token ids: not a magnitude; the structure is in which token follows which
        x = x[..., None]
    n, L = x.shape[:2]
    lengths = np.full(n, L)
    if isinstance(target, (tuple, list)):  # (target, lengths) of a variable-length batch
        target, extra = target[0], target[1]
        if hasattr(extra, "shape") and tuple(extra.shape) == (n,):
            lengths = extra.numpy()
    y = target.numpy() if hasattr(target, "numpy") else None
    per_step = y is not None and y.ndim >= 2 and y.shape[1] == L and task.output_steps == "all"
    if per_step:
        y = y.reshape(n, L, -1).astype(np.float64)
        y = y[..., int(np.argmax(y.reshape(-1, y.shape[2]).var(0)))]  # the most variable target unit
    return x, y if per_step else None, lengths


def _corr_by_lag(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """corr(a_t, b_{t-k}) for k = 0..L-1, pooled over sequences (real steps only), via the FFT."""
    n, L = a.shape
    mask = np.arange(L)[None, :] < lengths[:, None]
    a = np.where(mask, a - (a * mask).sum(1, keepdims=True) / lengths[:, None], 0.0)
    b = np.where(mask, b - (b * mask).sum(1, keepdims=True) / lengths[:, None], 0.0)
    size = 1 << (2 * L - 1).bit_length()
    fa, fb = np.fft.rfft(a, size), np.fft.rfft(b, size)
    cross = np.fft.irfft(fa * np.conj(fb), size)[:, :L].sum(0)
    pairs = np.maximum(1, (np.maximum(lengths[:, None] - np.arange(L)[None, :], 0)).sum(0))
    scale = math.sqrt(max((a * a).sum() * (b * b).sum(), 1e-300)) / mask.sum()
    return cross / pairs / scale, pairs


def measure(task) -> dict[str, Any]:
    """The task's properties (plain numbers, JSON-ready); see the module docstring."""
    kind = kind_of(task)
    n_train = task.num_samples("train")
    classes = task.d_out if kind == "classification" else 0
    L = int(task.seq_len) if str(task.seq_len).isdigit() else int(getattr(task, "max_len", 0) or 0)
    props: dict[str, Any] = {"kind": kind, "length": 0, "channels": int(task.d_in), "classes": int(classes),
                             "n_train": int(n_train), "per_class": round(n_train / classes, 1) if classes else 0.0,
                             "memory": 0, "period": 0, "noise": 0.0, "trend": 0.0}
    x, y, lengths = _sample(task)
    L = x.shape[1]
    props["length"] = int(L)
    if kind == "tokens":  # ids, not magnitudes: dependence of the most frequent token's indicator
        ids = x[..., 0]
        top = np.bincount(ids.astype(np.int64).ravel()).argmax()
        x = (ids == top).astype(np.float64)[..., None]
        y = None if y is None else (y == top).astype(np.float64)
    variance = x.reshape(-1, x.shape[2]).var(0)
    channels = [x[..., c] for c in np.argsort(-variance)[:16] if variance[c] > 0] or [x[..., 0]]
    acf = np.mean([_corr_by_lag(c, c, lengths)[0] for c in channels], axis=0)
    if y is not None:
        xcf, pairs = zip(*[_corr_by_lag(y, c, lengths) for c in channels])
        dep, pairs = np.max(np.abs(xcf), axis=0), pairs[0]
    else:
        dep, pairs = np.abs(acf), _corr_by_lag(channels[0], channels[0], lengths)[1]
    # significant: beyond 4 standard errors of a zero correlation, and at least 0.1
    sig = np.nonzero((dep[1:] > np.maximum(0.1, 4 / np.sqrt(pairs[1:]))) & (pairs[1:] >= 16))[0]
    props["memory"] = int(sig[-1] + 1) if len(sig) else 0
    below = np.nonzero(acf[1:] < 0)[0]
    if len(below):  # the highest autocorrelation peak after the first zero crossing
        k0 = int(below[0]) + 1
        k = k0 + int(np.argmax(acf[k0:max(k0 + 1, L // 2)]))
        if acf[k] > 0.3:
            props["period"] = k
    props["noise"] = round(float(np.clip(1 - acf[1] ** 2, 0, 1)) if L > 1 else 1.0, 3)
    t = np.arange(L, dtype=np.float64)
    trend = [abs(np.corrcoef(t[:m], c[i, :m])[0, 1]) for c in channels[:4] for i, m in enumerate(lengths)
             if m > 2 and c[i, :m].std() > 0]
    props["trend"] = round(float(np.mean(trend)) if trend else 0.0, 3)
    return props


def try_measure(task) -> dict[str, Any] | None:
    """``measure``, or None with a warning where a task's batches are not what it expects (a
    plugin task's own target types): the portfolio is skipped, the search is not."""
    try:
        return measure(task)
    except Exception as e:  # noqa: BLE001 - any task's data: the instant answer is optional
        import warnings
        warnings.warn(f"could not measure {task.name!r}'s data for the portfolio ({type(e).__name__}: {e}); "
                      "searching without it")
        return None


def describe(props: dict[str, Any]) -> str:
    """One line a user reads: the data as seqbench measured it."""
    width = f"a vocabulary of {props['channels']:,}" if props["kind"] == "tokens" else \
        f"{props['channels']} channel{'s' * (props['channels'] != 1)}"
    size = f"{props['n_train']:,} training sequences of {props['length']:,} steps x {width}"
    if props["classes"]:
        size += f", {props['classes']} classes (~{props['per_class']:g} per class)"
    parts = [f"{props['kind']}: {size}"]
    if props["memory"]:
        parts.append(f"dependence reaches ~{props['memory']} steps back")
    else:
        parts.append("no dependence across steps measurable")
    if props["period"]:
        parts.append(f"period ~{props['period']} steps")
    if props["trend"] > 0.5:
        parts.append(f"trending (|corr with time| {props['trend']:.2f})")
    return "; ".join(parts)
