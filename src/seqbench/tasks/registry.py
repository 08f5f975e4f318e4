"""Task registry: ``@register_task`` on a Task class, ``create_task`` to build one.

A name may carry a variant after a colon (``"tsc:GunPoint"``); it is passed as ``variant=``.
"""
from __future__ import annotations

import fnmatch
import inspect

from seqbench.errors import SeqbenchError
from seqbench.tasks.base import Task
from seqbench.utils import suggest

_TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    def wrap(cls: type[Task]) -> type[Task]:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is already registered")
        _TASKS[name] = cls
        return cls
    return wrap


def list_tasks(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return sorted(n for n in _TASKS if fnmatch.fnmatch(n, pattern))


def get_task_class(name: str) -> type[Task]:
    _ensure_loaded()
    family = name.split(":", 1)[0]
    if family not in _TASKS:
        raise SeqbenchError(f"unknown task {name!r}{suggest(family, list(_TASKS))}; "
                            f"choose one of: {', '.join(sorted(_TASKS))}")
    return _TASKS[family]


def create_task(name: str, **cfg) -> Task:
    """Build a task by name; keyword arguments configure it (``seq_len``, ``seed``, sizes...)."""
    cls = get_task_class(name)
    if ":" in name:
        cfg["variant"] = name.split(":", 1)[1]
    valid = list(inspect.signature(cls).parameters)  # __init__'s, or __new__'s for factory classes
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise SeqbenchError(f"unknown option(s) {', '.join(unknown)} for task {name!r}; "
                            f"valid options: {', '.join(valid) or 'none'}")
    return cls(**cfg)


def _ensure_loaded() -> None:
    import seqbench.tasks.custom  # noqa: F401
    import seqbench.tasks.forecast  # noqa: F401
    import seqbench.tasks.language  # noqa: F401
    import seqbench.tasks.mnist  # noqa: F401
    import seqbench.tasks.music  # noqa: F401
    import seqbench.tasks.synthetic  # noqa: F401
    import seqbench.tasks.tsc  # noqa: F401
