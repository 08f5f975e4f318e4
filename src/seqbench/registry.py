"""One small registry for every extension point: models, tasks, executors and export formats.

    MODELS = Registry("model", load=...)     # ``load`` imports the built-in entries on first use
    MODELS.register("tcn", entry)            # refuses a duplicate name
    MODELS.get("tcn"); MODELS.names("t*")    # unknown names: a one-line error with a suggestion

Installed packages add entries through the ``seqbench.plugins`` entry-point group: each advertised
module is imported once, before any registry answers, and registers what it defines.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

from seqbench.errors import SeqbenchError
from seqbench.utils import load_entry_point_plugins, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, load: Callable[[], None] | None = None) -> None:
        self.kind, self._load, self._entries = kind, load, {}
        self._loaded = load is None

    def _ensure(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._load()
        load_entry_point_plugins()

    def register(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name is a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        self._ensure()
        if not isinstance(name, str):
            raise SeqbenchError(f"a {self.kind} name is a string, got {name!r}")
        if name not in self._entries:
            raise SeqbenchError(f"unknown {self.kind} {name!r}{suggest(name, list(self._entries))}; "
                                f"choose one of: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        self._ensure()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
