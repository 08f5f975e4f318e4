"""Task registry: ``@register_task`` on a Task class (or a factory function returning a Task),
``create_task`` to build one.

A name may carry a variant after a colon (``"tsc:GunPoint"``); it is passed as ``variant=``.
Options are checked against the constructor's signature before anything is loaded: unknown names,
wrong types (an integer where it says int), seeds outside [0, 2**63) and counts below 1 are
one-line errors.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable

from seqbench.errors import SeqbenchError
from seqbench.tasks.base import Task
from seqbench.registry import Registry
from seqbench.utils import check_seed, describe_type, matches_type


@dataclass(frozen=True)
class TaskEntry:
    name: str
    factory: Callable[..., Task]      # a Task subclass, or a function returning a Task
    listed_variants: tuple[str, ...]  # what `seqbench tasks` lists: "" = the plain name, else name:variant

    def option_names(self) -> list[str]:
        return list(inspect.signature(self.factory).parameters)

    def check_options(self, cfg: dict[str, Any]) -> None:
        valid = self.option_names()
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise SeqbenchError(f"unknown option(s) {', '.join(unknown)} for task {self.name!r}; "
                                f"valid options: {', '.join(valid) or 'none'}")
        init = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        hints = typing.get_type_hints(init)
        for key, value in cfg.items():
            hint = hints.get(key)
            if hint is not None and not matches_type(value, hint):
                raise SeqbenchError(f"task option {key} of {self.name!r} must be {describe_type(hint)}, got {value!r}")
            if key.endswith("seed"):
                check_seed(value, f"task option {key}")
            elif isinstance(value, int) and not isinstance(value, bool) and key in POSITIVE and value < 1:
                raise SeqbenchError(f"task option {key} of {self.name!r} must be >= 1, got {value!r}")


# integer task options that count or measure something: at least 1
POSITIVE = {"seq_len", "T", "n_train", "n_valid", "n_test", "lookback", "horizon", "season", "valid_len",
            "max_tokens", "n_pieces", "steps_per_quarter"}

def _load_builtin() -> None:  # importing the task modules runs their @register_task decorators
    import seqbench.tasks.custom  # noqa: F401
    import seqbench.tasks.forecast  # noqa: F401
    import seqbench.tasks.language  # noqa: F401
    import seqbench.tasks.mnist  # noqa: F401
    import seqbench.tasks.music  # noqa: F401
    import seqbench.tasks.probes  # noqa: F401
    import seqbench.tasks.synthetic  # noqa: F401
    import seqbench.tasks.tsc  # noqa: F401


TASKS: Registry[TaskEntry] = Registry("task", load=_load_builtin)


def register_task(name: str, *, listed_variants: tuple[str, ...] | None = None):
    """Add a task (a Task subclass or a factory function) under ``name``; refuses duplicates.
    ``listed_variants`` defaults to the class attribute of that name (or just the plain name)."""
    def wrap(factory):
        variants = listed_variants if listed_variants is not None else getattr(factory, "listed_variants", ("",))
        TASKS.register(name, TaskEntry(name, factory, tuple(variants)))
        return factory
    return wrap


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.names(pattern)


def get_task_entry(name: str) -> TaskEntry:
    if not isinstance(name, str):
        raise SeqbenchError(f"a task name is a string such as 'adding', got {name!r}")
    return TASKS.get(name.split(":", 1)[0])


def create_task(name: str, **cfg) -> Task:
    """Build a task by name; keyword arguments configure it (``seq_len``, ``seed``, sizes...)."""
    entry = get_task_entry(name)
    if ":" in name:
        cfg["variant"] = name.split(":", 1)[1]
    entry.check_options(cfg)
    task = entry.factory(**cfg)
    # the options that built it, so config() rebuilds it (a task's own config() adds what it resolved)
    task._recorded = {k: v for k, v in cfg.items() if k != "variant"}
    return task
