"""A run directory, as one object: its layout and its loading (``seqbench.Run`` adds what can be
done with a run: predict, export, compress; the trainer needs only this part).

Layout (all written atomically): ``config.json`` (model, task, training settings, what the task
fitted on its data, the data files' fingerprints; a compressed variant's recipe), ``best.pt`` (the
best-on-valid weights), ``last.pt`` (the whole training state, for ``--resume``), ``history.jsonl``
and ``result.json`` (written last). Weights are loaded with ``weights_only=True``: no pickled code
runs. Everything read from a run is checked before anything is allocated.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqbench.errors import SeqbenchError

CONFIG, BEST, LAST, HISTORY, RESULT = "config.json", "best.pt", "last.pt", "history.jsonl", "result.json"


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__


class RunDir:
    """A run directory written by ``seqbench train`` (or a sweep, recommend's winner, a compressed
    variant). ``Run.open`` checks that it is one; its parts load on demand."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        run = cls(path)
        if not (run.path / CONFIG).is_file():
            raise SeqbenchError(f"{run.path} is not a seqbench run directory: {CONFIG} not found (give a directory "
                                "written by seqbench train, or recommend's winner/)")
        run.config  # noqa: B018 - parsed and checked now
        return run

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        path = self.path / CONFIG
        try:
            cfg = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise SeqbenchError(f"{path} is not a valid seqbench run config ({type(e).__name__}: {e})") from None
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or \
                not {"name", "d_in", "d_out"} <= set(cfg["model"]):
            raise SeqbenchError(f"{path}: 'model' must be a mapping with name, d_in, d_out and the model's options")
        if not isinstance(cfg.get("task", {}), dict):
            raise SeqbenchError(f"{path}: 'task' must be a mapping of the task's name and options")
        recipe = cfg.get("compress") or {}
        if not isinstance(recipe, dict) or recipe.get("quantize") not in (None, "int8"):
            raise SeqbenchError(f"{path}: 'compress' must be a mapping like {{\"quantize\": \"int8\"}}, got "
                                f"{str(recipe)[:60]}")
        return cfg

    @property
    def fitted(self) -> dict[str, Any]:
        """What the task fitted on its training data (class names, normalization, vocabulary...)."""
        return self.config.get("fitted") or {}

    @property
    def result(self) -> dict[str, Any] | None:
        """result.json (written when the run finished), or None for a run still training or killed."""
        try:
            return json.loads((self.path / RESULT).read_text())
        except (OSError, ValueError):
            return None

    def model(self, which: str = "best") -> nn.Module:
        """The trained model: ``best`` (best-on-valid weights) or ``last`` (the last finished epoch).
        An int8 variant (``compress --quantize int8``) is re-derived from its float weights."""
        from seqbench.models.registry import model_from_config
        if which not in ("best", "last"):
            raise SeqbenchError(f"which must be 'best' or 'last', got {which!r}")
        ckpt = self.path / (BEST if which == "best" else LAST)
        if not ckpt.is_file():
            raise SeqbenchError(f"{ckpt} not found; is {self.path} a seqbench run directory?")
        try:
            model = model_from_config(self.config["model"])
        except SeqbenchError as e:
            raise SeqbenchError(f"{self.path / CONFIG}: {e}") from None
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - corrupted, truncated, empty or not a state_dict
            raise SeqbenchError(f"cannot load checkpoint {ckpt}: {_first_line(e)}; it is damaged: train the run "
                                "again") from None
        if isinstance(state, dict) and "optimizer" in state and "model" in state:  # last.pt: the training state
            state = state["model"]
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            first = str(e).strip().splitlines()
            raise SeqbenchError(f"checkpoint {ckpt} does not match {self.path / CONFIG} "
                                f"({first[1].strip() if len(first) > 1 else first[0] if first else type(e).__name__})"
                                ) from None
        if (self.config.get("compress") or {}).get("quantize") == "int8":
            from seqbench.models.quantize import quantize_int8
            model = quantize_int8(model)
        return model

    def task(self):
        """The task, rebuilt from the options recorded with the run."""
        from seqbench.tasks.registry import create_task
        cfg = dict(self.config.get("task") or {})
        if "name" not in cfg:
            raise SeqbenchError(f"{self.path / CONFIG}: 'task' has no name")
        return create_task(cfg.pop("name"), **cfg)
