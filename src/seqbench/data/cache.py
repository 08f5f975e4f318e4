"""A cache of preprocessed arrays under ``$SEQBENCH_CACHE`` (default ``~/.cache/seqbench``).

Each entry is one ``.npz`` written atomically (temp file + rename) with a manifest of every
array's shape, dtype and sha256 stored beside the arrays; a load that does not match its manifest
(a torn or tampered file) is discarded and rebuilt, so a crash mid-write never poisons the cache.
NPZ files are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from seqbench.utils import atomic_write

def cache_dir() -> Path:
    return Path(os.environ.get("SEQBENCH_CACHE") or Path.home() / ".cache" / "seqbench")


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _manifest(arrays: dict[str, np.ndarray]) -> str:
    return json.dumps({k: [list(v.shape), v.dtype.str, _digest(v)] for k, v in sorted(arrays.items())})


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        manifest = str(arrays.pop("__manifest__"))
        if manifest != _manifest(arrays):
            raise ValueError("contents do not match the manifest")
        return arrays
    except Exception as e:  # noqa: BLE001 - any unreadable entry is rebuilt
        warnings.warn(f"seqbench cache entry {path} is unreadable ({e}); rebuilding it")
        return None


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray]], version: int) -> dict[str, np.ndarray]:
    """The arrays cached under ``key``, built with ``build()`` and stored on first use. Each dataset
    passes its own preprocessing ``version`` (bumped when its preprocessing changes), so changing
    one dataset's preprocessing rebuilds that dataset's entries only."""
    path = cache_dir() / f"{key}.v{version}.npz"
    if path.exists():
        arrays = _load(path)
        if arrays is not None:
            return arrays
    arrays = {k: np.asarray(v) for k, v in build().items()}
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, __manifest__=np.array(_manifest(arrays)), **arrays)
    atomic_write(path, write)
    return arrays
