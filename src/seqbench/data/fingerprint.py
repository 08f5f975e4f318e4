"""Data files named by task options, identified by content: a sweep keys its trials on them, a
resumed run checks them, so new data under an old name is never mistaken for the old data.

A task option names a data file when it is called ``path`` or ends in ``_path`` (``test_path``).
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from seqbench.errors import SeqbenchError


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex); memoized on (path, size, mtime) so a sweep hashes a file once."""
    st = os.stat(path)
    return _digest(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_options(opts: dict) -> list[str]:
    """The options of ``opts`` that name a data file."""
    return [k for k, v in opts.items() if (k == "path" or k.endswith("_path")) and isinstance(v, str) and v]


def data_identity(task_opts: dict) -> tuple[dict, dict | None]:
    """``task_opts`` with every data file's path made absolute (trial processes may run elsewhere),
    and the files' identity: ``{"file", "sha256"}`` of ``path``, and ``{option: {"file", "sha256"}}``
    of every other file option. None when no option names a file."""
    opts, ident = dict(task_opts), {}
    for k in file_options(task_opts):
        p = Path(os.path.expanduser(opts[k])).resolve()
        if not p.is_file():
            raise SeqbenchError(f"{opts[k]}: no such file; give the path of a .csv, .parquet, .npz or .txt file")
        opts[k] = str(p)
        entry = {"file": p.name, "sha256": file_digest(p)}
        if k == "path":
            ident.update(entry)
        else:
            ident[k] = entry
    return opts, ident or None


def changed_files(task_opts: dict, identity: dict | None) -> list[str]:
    """The data files whose content is no longer what ``identity`` recorded (or that are gone)."""
    out = []
    for k in file_options(task_opts):
        want = identity.get("sha256") if k == "path" else (identity.get(k) or {}).get("sha256")
        if want is None:
            continue
        try:
            if file_digest(task_opts[k]) != want:
                out.append(task_opts[k])
        except OSError:
            out.append(task_opts[k])
    return out
