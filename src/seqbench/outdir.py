"""Output directories that seqbench fills over several writes (``recommend --out``, ``compress --out``).

What seqbench writes there is listed in a manifest (``.seqbench-manifest``), so a rerun replaces its
own files and never one of the user's: a directory holding anything else is refused before any work.
A subdirectory (a variant, the winner's run) is built beside its destination and swapped in whole.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from seqbench.errors import SeqbenchError

MANIFEST = ".seqbench-manifest"
PARTIAL = ".partial-"  # infix of directories being built (removed when found stale)


def exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step where the OS can (Linux ``renameat2(RENAME_EXCHANGE)``), else
    with two renames; either way ``b`` is never a mix of the two."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2)  # AT_FDCWD, RENAME_EXCHANGE
        if rc == 0:
            return
    except (OSError, AttributeError):
        pass
    tmp = Path(tempfile.mkdtemp(prefix=f".{b.name}.old-", dir=b.parent)) / "x"
    os.replace(b, tmp)
    os.replace(a, b)
    os.replace(tmp, a)
    tmp.parent.rmdir()


def replace_dir(work: Path, dest: Path) -> None:
    """Move the finished directory ``work`` to ``dest``, replacing what was there as a whole."""
    if dest.exists():
        exchange(work, dest)
        shutil.rmtree(work, ignore_errors=True)
    else:
        os.replace(work, dest)


class OutDir:
    """``OutDir(path).check()`` before any work; then ``write`` files and ``put_dir`` directories."""

    def __init__(self, path: str | os.PathLike, flag: str = "--out") -> None:
        if not str(path).strip():
            raise SeqbenchError(f"{flag} is empty; give a directory, e.g. {flag} out/")
        self.path, self.flag = Path(path), flag

    def _manifest(self) -> set[str]:
        try:
            return set(json.loads((self.path / MANIFEST).read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return set()

    def _record(self, rels: list[str]) -> None:
        from seqbench.utils import atomic_write_json
        files = self._manifest() | set(rels)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / MANIFEST, {"written_by": "seqbench", "files": sorted(files)})

    def foreign(self, sub: str = "") -> list[str]:
        """Files under ``path/sub`` that seqbench did not write (relative to ``path``)."""
        root = self.path / sub
        if not root.is_dir():
            return []
        mine = self._manifest()
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if PARTIAL not in d]  # our own half-built directories
            for f in filenames:
                rel = os.path.relpath(os.path.join(dirpath, f), self.path)
                if rel != MANIFEST and rel not in mine and not (PARTIAL in f and f.startswith(".")):
                    out.append(rel)
        return sorted(out)

    def check(self) -> "OutDir":
        """Refuse, before any work, a file, or a directory holding anything seqbench did not write."""
        if self.path.exists() and not self.path.is_dir():
            raise SeqbenchError(f"{self.flag} {self.path} is a file; give a directory")
        foreign = self.foreign()
        if foreign:
            raise SeqbenchError(f"{self.flag} {self.path} holds {foreign[0]}"
                                f"{f' and {len(foreign) - 1} more file(s)' if len(foreign) > 1 else ''}, which "
                                f"seqbench did not write; choose a new or empty {self.flag}, or move them away")
        parent = next(p for p in [self.path, *self.path.absolute().parents] if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise SeqbenchError(f"{self.flag} {self.path}: cannot write under {parent}; check the path and its "
                                "permissions")
        for stale in self.path.glob(f".*{PARTIAL}*"):  # left by an interrupted earlier run
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        return self

    def write(self, rel: str, write: Callable[[str], Any]) -> Path:
        """Write one file atomically (``write(tmp_path)``), recorded as seqbench's."""
        from seqbench.utils import atomic_write
        self._refuse_foreign(rel)
        self._record([rel])
        atomic_write(self.path / rel, write)
        return self.path / rel

    def write_text(self, rel: str, text: str) -> Path:
        return self.write(rel, lambda tmp: Path(tmp).write_text(text))

    def staging(self, name: str) -> Path:
        """A fresh directory to build ``name`` in, beside its destination."""
        self.path.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}{PARTIAL}", dir=self.path))

    def put_dir(self, work: Path, name: str) -> Path:
        """Swap the finished directory ``work`` in as ``name``, replacing seqbench's earlier one."""
        self._refuse_foreign(name)
        rels = [os.path.relpath(os.path.join(d, f), work) for d, _, fs in os.walk(work) for f in fs]
        self._record([os.path.join(name, r) for r in rels])
        replace_dir(work, self.path / name)
        return self.path / name

    def _refuse_foreign(self, rel: str) -> None:
        target = self.path / rel
        foreign = self.foreign(rel) if target.is_dir() else ([rel] if target.exists() and rel not in
                                                              self._manifest() else [])
        if foreign:
            raise SeqbenchError(f"{self.flag} {self.path}: {foreign[0]} was not written by seqbench; refusing "
                                "to replace it (move it away, or choose another directory)")
