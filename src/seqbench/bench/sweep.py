"""Sweeps: models x tasks x seeds x budgets (plus overrides) expanded into trials with stable keys,
from command-line lists, a predefined suite, or a TOML/YAML file.

A trial is a plain dict (JSON-able): task, task_opts, model, model_opts, params, seed, train
(TrainConfig overrides) and, for a user's file, data (its name and sha256). Its key is a hash of
exactly those fields, so the same trial always has the same key and a rerun of the same sweep finds
the trials already done. Fields outside the key say how to run it: imports (the user's modules),
run (a shared run directory), keep_state (keep last.pt to continue later), test (score test or not).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from seqbench.data.fingerprint import data_identity, file_digest  # noqa: F401 (re-exported)
from seqbench.errors import SeqbenchError
from seqbench.utils import check_seed, parse_count

TRIAL_FIELDS = ("task", "task_opts", "model", "model_opts", "params", "seed", "train", "data")
BUDGETS = ("quick", "standard", "full")


def trial_key(trial: dict) -> str:
    canon = json.dumps({k: trial.get(k) for k in TRIAL_FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def make_trial(task: str, model: str, seed: int, *, params: int | str | None = None, task_opts: dict | None = None,
               model_opts: dict | None = None, train: dict | None = None) -> dict:
    if not isinstance(task, str) or not isinstance(model, str):
        raise SeqbenchError(f"task and model names are strings, got task={task!r}, model={model!r}")
    task_opts, data = data_identity(dict(task_opts or {}))
    t = {"task": task, "task_opts": task_opts, "model": model, "model_opts": dict(model_opts or {}),
         "params": None if params is None else parse_count(params), "seed": check_seed(seed), "train": dict(train or {})}
    if data is not None:
        t["data"] = data
    t["key"] = trial_key(t)
    return t


def validate_trials(trials: list[dict]) -> None:
    """Check a whole sweep once, before any trial starts: model names and options, training
    settings, and every distinct task configuration (built once each). A mistake is one error, not
    the same failure in every trial."""
    import seqbench
    from seqbench.models.registry import get_model_entry
    from seqbench.train import TrainConfig
    seen_tasks: dict[str, Any] = {}
    for t in trials:
        tkey = json.dumps([t["task"], t["task_opts"]], sort_keys=True, default=str)
        if tkey not in seen_tasks:
            seen_tasks[tkey] = seqbench.create_task(t["task"], **t["task_opts"])  # its errors name the task
        task = seen_tasks[tkey]
        entry = get_model_entry(t["model"])
        entry.check_options(t["model_opts"])
        TrainConfig.for_task(task, **{**t["train"], "seed": t["seed"]}).validate()


# The TCN paper's tasks with its per-task configurations (REFERENCE.md): parameter budget, the TCN's
# fixed shape (its width is solved to the budget like every model's), trainer settings, and how each
# budget level scales the data and the schedule. quick: minutes on 2 cores; full: the paper's.
TCN_PAPER: dict[str, dict[str, Any]] = {
    "adding": {"params": 70_000, "tcn": {"levels": 8, "kernel_size": 8},
               "train": {"optimizer": "adam", "lr": 2e-3, "batch_size": 32},
               # T=50, 600 Adam steps: measured, the TCN and GRU leave the plateau (MSE ~0.013, ~0.007)
               "quick": ({"seq_len": 50, "n_train": 6400, "n_valid": 500, "n_test": 500}, {"epochs": 3}),
               # standard: 9,400 Adam steps. Measured (seed 0): the TCN sits on the plateau (MSE 0.167) for
               # 5,000 steps at lr 2e-3 (and 2,500 at the script's 4e-3), leaves it in epoch 5 and ends at 1e-4
               "standard": ({"seq_len": 600}, {"epochs": 6}),
               "full": ({"seq_len": 600}, {"epochs": 20})},
    "copy_memory": {"params": 16_000, "tcn": {"levels": 8, "kernel_size": 8},
                    "train": {"optimizer": "rmsprop", "lr": 5e-4, "clip": 1.0, "batch_size": 32},
                    "quick": ({"T": 50, "n_train": 3200, "n_valid": 200, "n_test": 200}, {"epochs": 3}),
                    "standard": ({"T": 1000, "n_train": 6400}, {"epochs": 5}),
                    "full": ({"T": 1000}, {"epochs": 50})},
    "smnist": {"params": 70_000, "tcn": {"levels": 8, "kernel_size": 7, "dropout": 0.05},
               "train": {"optimizer": "adam", "lr": 2e-3, "batch_size": 64},
               "quick": ({"n_train": 1280, "n_valid": 500, "n_test": 1000}, {"epochs": 1}),
               # standard: 20K of the 50K training images, so an LSTM trial takes ~15 min on one core
               "standard": ({"n_train": 20_000}, {"epochs": 3}),
               "full": ({}, {"epochs": 20, "schedule": "step", "step_size": 10, "gamma": 0.1})},
    "pmnist": {"params": 70_000, "tcn": {"levels": 8, "kernel_size": 7, "dropout": 0.05},
               "train": {"optimizer": "adam", "lr": 2e-3, "batch_size": 64},
               "quick": ({"n_train": 1280, "n_valid": 500, "n_test": 1000}, {"epochs": 1}),
               # standard: 20K of the 50K training images, so an LSTM trial takes ~15 min on one core
               "standard": ({"n_train": 20_000}, {"epochs": 3}),
               "full": ({}, {"epochs": 20, "schedule": "step", "step_size": 10, "gamma": 0.1})},
    "chorales": {"params": 300_000, "tcn": {"levels": 2, "kernel_size": 3, "dropout": 0.25},
                 "train": {"optimizer": "adam", "lr": 1e-3, "clip": 0.2, "batch_size": 1},
                 "quick": ({"n_pieces": 100}, {"epochs": 3}),
                 "standard": ({}, {"epochs": 10}),
                 "full": ({}, {"epochs": 100})},
    "ptb_char": {"params": 3_000_000, "tcn": {"levels": 3, "kernel_size": 3, "dropout": 0.1},
                 "train": {"optimizer": "sgd", "lr": 4.0, "clip": 0.15, "batch_size": 32, "schedule": "plateau"},
                 "quick": ({"max_tokens": 100_000, "seq_len": 100, "valid_len": 80}, {"epochs": 2}, 150_000),
                 "standard": ({"max_tokens": 1_000_000}, {"epochs": 3}),
                 "full": ({}, {"epochs": 100})},
    "ptb_word": {"params": 13_000_000, "tcn": {"levels": 4, "kernel_size": 3, "dropout": 0.45},
                 "train": {"optimizer": "sgd", "lr": 4.0, "clip": 0.35, "batch_size": 16, "schedule": "plateau",
                           "gamma": 0.5},
                 "standard": ({"max_tokens": 300_000}, {"epochs": 2}),
                 "full": ({}, {"epochs": 100})},
}
SUITES = {"tcn-paper": TCN_PAPER}


def suite_trials(suite: str, budget: str, models: list[str], seeds: list[int],
                 tasks: list[str] | None = None) -> list[dict]:
    if suite not in SUITES:
        raise SeqbenchError(f"unknown suite {suite!r}; choose one of: {', '.join(SUITES)}")
    if budget not in BUDGETS:
        raise SeqbenchError(f"unknown budget {budget!r}; use quick, standard or full")
    spec = SUITES[suite]
    unknown = sorted(set(tasks or ()) - set(spec))
    if unknown:
        raise SeqbenchError(f"task(s) {', '.join(unknown)} are not in suite {suite!r} ({', '.join(spec)})")
    trials = []
    for task, cfg in spec.items():
        if (tasks and task not in tasks) or budget not in cfg:
            continue  # e.g. word-level PTB (13M params) has no quick version
        task_opts, train, *scaled = cfg[budget]
        params = scaled[0] if scaled else cfg["params"]
        for model in models:
            for seed in seeds:
                trials.append(make_trial(task, model, seed, params=params, task_opts=task_opts,
                                         model_opts=cfg["tcn"] if model == "tcn" else {},
                                         train={**cfg["train"], **train}))
    return trials


def grid_trials(tasks: list[str], models: list[str], seeds: list[int], params: list[int | str | None],
                task_opts: dict | None = None, model_opts: dict | None = None, train: dict | None = None) -> list[dict]:
    return [make_trial(task, model, seed, params=p, task_opts=task_opts, model_opts=model_opts, train=train)
            for task in tasks for model in models for p in params for seed in seeds]


def file_trials(path: str | Path) -> list[dict]:
    """A sweep from TOML or YAML: top-level ``tasks``, ``models``, ``seeds``, ``params`` (lists), and
    optional ``task_opts``, ``model_opts``, ``train`` tables; or ``suite`` + ``budget``."""
    path = Path(path)
    if not path.is_file():
        raise SeqbenchError(f"sweep file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            spec = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            from seqbench.data import require
            spec = require("yaml", extra="bench", why="YAML sweep files").safe_load(text)
        else:
            raise SeqbenchError(f"sweep file {path} must be .toml, .yaml or .yml")
    except SeqbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - parser errors
        raise SeqbenchError(f"sweep file {path} does not parse ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise SeqbenchError(f"sweep file {path} must be a table/mapping at the top level")
    allowed = {"tasks", "models", "seeds", "params", "task_opts", "model_opts", "train", "suite", "budget"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SeqbenchError(f"sweep file {path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    for key in ("tasks", "models", "seeds", "params"):
        if key in spec and not isinstance(spec[key], list):
            raise SeqbenchError(f"sweep file {path}: {key} must be a list, e.g. {key} = [...], got {spec[key]!r}")
    for key in ("task_opts", "model_opts", "train"):
        if key in spec and not isinstance(spec[key], dict):
            raise SeqbenchError(f"sweep file {path}: {key} must be a table of KEY = VALUE, got {spec[key]!r}")
    seeds = spec.get("seeds", [0])
    for s in seeds:
        check_seed(s, what=f"sweep file {path}: each of seeds")
    models = spec.get("models", [])
    if not models:
        raise SeqbenchError(f"sweep file {path} lists no models")
    if "suite" in spec:
        return suite_trials(spec["suite"], spec.get("budget", "quick"), models, seeds, spec.get("tasks"))
    if not spec.get("tasks"):
        raise SeqbenchError(f"sweep file {path} lists no tasks")
    return grid_trials(spec["tasks"], models, seeds, spec.get("params", [None]), spec.get("task_opts"),
                       spec.get("model_opts"), spec.get("train"))
