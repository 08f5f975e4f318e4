"""Small helpers shared across seqbench: number parsing, atomic writes, seeding."""
from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from seqbench.errors import SeqbenchError

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_count(text: str | int) -> int:
    """Parse a human count such as "70k", "1.5M", "70_000" or 70000 into an int."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
        if not m:
            raise SeqbenchError(f"cannot read {text!r} as a count; write it like 70000, 70k or 1.5M")
        value = int(round(float(m.group(1).replace("_", "")) * _SUFFIX[m.group(2).lower()]))
    if value <= 0:
        raise SeqbenchError(f"count must be positive, got {text!r}")
    return value


def pin_threads(n: int) -> None:
    """Run torch and the BLAS libraries NumPy uses on ``n`` threads. torch's own setting leaves
    OpenBLAS with a thread per core: the NumPy step engines' tiny matmuls then spin those threads,
    and a streaming step measured 23 ms instead of 0.08 ms on a loaded machine."""
    torch.set_num_threads(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so a run is repeatable on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import glob
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed writer
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the file gets the permissions open() would give
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, _write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def suggest(name: str, valid: list[str]) -> str:
    """'did you mean' hint for unknown names."""
    import difflib
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_seed(seed: Any, what: str = "seed") -> int:
    """A seed is an integer in [0, 2**63): torch and NumPy take any such value."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise SeqbenchError(f"{what} must be an integer from 0 to 2**63-1, got {seed!r}")
    return seed


def matches_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a constructor annotation (int, float, str, bool, None, unions, lists)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        inner = args[0] if args else object
        return isinstance(value, (list, tuple)) and len(value) > 0 and all(matches_type(v, inner) for v in value)
    return True  # a type we do not check


def describe_type(hint: Any) -> str:
    """An annotation in words, for error messages: 'an integer', 'a number (or None)'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(parts)) + (" (or None)" if type(None) in args else "")
    if origin in (list, tuple):
        return f"a non-empty list of {describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def load_plugin(spec: str) -> str:
    """Import the user's module that registers tasks or models: a file path (``my_tasks.py``) or a
    module name importable from the working directory (``my_tasks``). Returns the resolved file path,
    which trial processes load the same way. Importing twice is a no-op."""
    import importlib
    import importlib.util
    import sys
    path = Path(os.path.expanduser(spec))
    if spec.endswith(".py") or os.sep in spec:
        if not path.is_file():
            raise SeqbenchError(f"--import {spec}: no such file")
        path = path.resolve()
        name = f"seqbench_plugin_{path.stem}"
        if name in sys.modules:
            return str(path)
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except SeqbenchError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's code: say where it failed, in one line
            del sys.modules[name]
            raise SeqbenchError(f"--import {spec} failed: {type(e).__name__}: {e}") from None
        return str(path)
    try:
        found = importlib.util.find_spec(spec) if spec.isidentifier() or "." in spec else None
    except (ImportError, ValueError):  # a dotted name whose parent package does not exist
        found = None
    if found is None:
        local = Path.cwd() / f"{spec.replace('.', os.sep)}.py"
        if local.is_file():
            return load_plugin(str(local))
        raise SeqbenchError(f"--import {spec}: no module of that name (give a module on the Python path or a .py file)")
    try:
        module = importlib.import_module(spec)
    except Exception as e:  # noqa: BLE001
        raise SeqbenchError(f"--import {spec} failed: {type(e).__name__}: {e}") from None
    return str(Path(module.__file__).resolve()) if getattr(module, "__file__", None) else spec


_PLUGINS_LOADED = False


def load_entry_point_plugins() -> None:
    """Modules advertised by installed packages under the ``seqbench.plugins`` entry-point group
    (once per process; both registries call this before they answer)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points
    for ep in entry_points(group="seqbench.plugins"):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break seqbench
            import warnings
            warnings.warn(f"seqbench plugin {ep.name} ({ep.value}) failed to load: {type(e).__name__}: {e}")
