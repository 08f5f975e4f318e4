"""The training loop: optimizers, LR schedules, clipping, per-epoch evaluation, checkpoints.

    result = seqbench.train(model, task, TrainConfig(epochs=5, lr=2e-3), out_dir="runs/x")

Writes into ``out_dir`` (all atomically): ``config.json`` (model, task and train config),
``best.pt`` (the best-on-valid state_dict; load with ``seqbench.load_model``), ``last.pt`` (the
whole training state after the last finished epoch: ``train(..., resume=True)`` continues from it),
``history.jsonl`` (one JSON line per epoch) and ``result.json``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import tempfile
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import count_params
from seqbench.tasks.base import Task
from seqbench.train.runs import BEST, CONFIG, HISTORY, LAST, RESULT, _first_line
from seqbench.utils import (atomic_torch_save, atomic_write_json, atomic_write_text, check_seed, describe_type,
                            matches_type, seed_everything)

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("none", "step", "plateau")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"        # adam | adamw | rmsprop | sgd
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.0          # sgd only
    clip: float | None = None      # max global grad norm, applied after backward
    schedule: str = "none"         # none | step (x gamma every step_size epochs) | plateau
    step_size: int = 10            # epochs between decays for "step"
    gamma: float = 0.1             # decay factor for "step" and "plateau"
    patience: int = 0              # epochs without improvement before a plateau decay
    early_stop: int | None = None  # stop after this many epochs without a better valid metric (--patience)
    steps_per_epoch: int | None = None  # cap on optimizer steps per epoch (None: whole train set)
    max_time: float | None = None  # wall-clock seconds: no epoch starts after this much (None: all epochs)
    log: str | None = None         # experiment tracking: tensorboard | mlflow (the track extra)
    aux_weight: float = 0.0        # weight of auxiliary losses on model.aux_outputs (TrellisNet aux_freq)
    eval_batch_size: int = 256
    seed: int = 0
    compile: bool = False          # torch.compile the training forward (falls back to eager if it fails)
    device: str = "auto"           # auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps
    precision: str = "32"          # 32 | bf16 | 16 (autocast; 16 adds a gradient scaler)

    @classmethod
    def for_task(cls, task: Task, **overrides: Any) -> "TrainConfig":
        """The task's recommended settings, then ``overrides`` (None values are ignored).

        An unknown key, in the overrides or in the task's ``recommended``, is an error naming it."""
        fields = {f.name for f in dataclasses.fields(cls)}
        merged = {**task.recommended, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(merged) - fields)
        if unknown:
            raise SeqbenchError(f"unknown training option(s) {', '.join(unknown)}; "
                                f"valid: {', '.join(sorted(fields))}")
        return cls(**merged)

    def validate(self) -> None:
        """Raise a one-line SeqbenchError for a wrong type or an out-of-range value."""
        for name, hint in typing.get_type_hints(type(self)).items():  # the checks models and tasks use
            if not matches_type(getattr(self, name), hint):
                raise SeqbenchError(f"training option {name} must be {describe_type(hint)}, got {getattr(self, name)!r}")
        if self.optimizer not in OPTIMIZERS:
            raise SeqbenchError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise SeqbenchError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "eval_batch_size", "step_size"):
            if getattr(self, name) < 1:
                raise SeqbenchError(f"{name} must be >= 1, got {getattr(self, name)}")
        from seqbench.tracking import check_logger
        check_logger(self.log)
        if self.max_time is not None and not (math.isfinite(self.max_time) and self.max_time > 0):
            raise SeqbenchError(f"max_time must be a positive number of seconds, got {self.max_time!r}")
        if not self.lr > 0:
            raise SeqbenchError(f"lr must be a positive number, got {self.lr}")
        if self.clip is not None and not self.clip > 0:
            raise SeqbenchError(f"clip must be > 0 (or unset), got {self.clip}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise SeqbenchError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        for name in ("weight_decay", "momentum", "aux_weight", "patience"):
            if getattr(self, name) < 0:
                raise SeqbenchError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.early_stop is not None and self.early_stop < 1:
            raise SeqbenchError(f"--early-stop (early_stop) must be >= 1 epochs, got {self.early_stop}")
        if not 0 < self.gamma <= 1:
            raise SeqbenchError(f"gamma (the LR decay factor) must be in (0, 1], got {self.gamma}")
        check_seed(self.seed)
        from seqbench.device import check_precision, resolve_device
        check_precision(self.precision, resolve_device(self.device))


@dataclass
class TrainResult:
    test: dict[str, float]          # metrics on the test split, using the best-on-valid weights
    best_valid: dict[str, float]
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    params: int = 0
    receptive_field: int | None = None
    train_time: float = 0.0         # seconds spent in training steps (evaluation excluded)
    samples_per_sec: float = 0.0    # training throughput

    def metric(self, task: Task) -> float:
        return self.test[task.metric.name]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and conv kernels only: tensors with fewer than 2 dims (biases,
    norm gains, weight-norm magnitudes, the LRU's nu_log / theta_log) are exempt, as in nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0})
            if g["params"]]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def prepare_out_dir(out_dir: str | os.PathLike, overwrite: bool = False, resume: bool = False,
                    create: bool = True) -> Path:
    """Check ``out_dir`` before any work: new or empty (used as is), a run to resume, or, with
    ``overwrite``, an earlier run that will be replaced as a whole when the new one finishes.
    ``create=False`` only checks (a new directory's nearest existing parent must be a writable
    directory)."""
    if not str(out_dir).strip():
        raise SeqbenchError("--out is empty; give a directory for the run, e.g. --out runs/tcn-adding")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SeqbenchError(f"--out {out} is a file; give a directory path")
    taken = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / LAST).is_file() or not (out / CONFIG).is_file():
            raise SeqbenchError(f"--resume: {out} holds no run to resume (no config.json + last.pt); "
                                "start it without --resume")
        return out
    if taken and not overwrite:
        raise SeqbenchError(f"output directory {out} exists and is not empty; "
                            "choose a new --out, pass --overwrite to replace the run, or --resume to continue it")
    if taken:
        if not (out / CONFIG).is_file():
            raise SeqbenchError(f"--overwrite: {out} is not a seqbench run directory (no config.json); "
                                "refusing to replace it, choose another --out")
        if Path.cwd().resolve().is_relative_to(out.resolve()):
            raise SeqbenchError(f"--overwrite: {out} holds the current directory; choose another --out")
    elif create:
        out.mkdir(parents=True, exist_ok=True)  # fails here, before any work, if it cannot be made
    else:
        parent = next(p for p in [out, *out.absolute().parents] if p.exists())
        if not parent.is_dir():
            raise SeqbenchError(f"--out {out}: cannot make a directory under {parent}, which is a file")
        if not os.access(parent, os.W_OK):
            raise SeqbenchError(f"--out {out}: {parent} is not writable; check the path and its permissions")
    return out


@contextlib.contextmanager
def _run_directory(out: Path, replace: bool):
    """The directory a run writes into. A run that replaces an earlier one (``--overwrite``) is built
    beside it and swapped in at the end, so an interrupted run never mixes with the old one's files."""
    if not replace:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by an interrupted earlier --overwrite
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    from seqbench.outdir import replace_dir
    replace_dir(work, out)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
             "numpy_pos": int(np_state[2]), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(state["python"])


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints are written from CPU copies: they load anywhere, a GPU or none."""
    return {k: v.detach().cpu() for k, v in state.items()}


def run_config(model: nn.Module, task: Task, cfg: TrainConfig) -> dict[str, Any]:
    """What config.json records: the model, task and training settings that define a run."""
    from seqbench.data.fingerprint import data_identity
    out = {"model": model.config, "task": task.config(), "train": dataclasses.asdict(cfg), "fitted": task.fitted()}
    _, data = data_identity(task.config())
    return {**out, "data": data} if data else out


def check_resumable(out: Path, run_config: dict) -> None:
    """A resumed run must be the same run: same model, task and training settings (epochs may grow,
    and the limits on how long it runs, ``max_time`` and ``early_stop``, may change)."""
    try:
        saved = json.loads((out / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SeqbenchError(f"--resume: cannot read {out / 'config.json'} ({e})") from None
    want = json.loads(json.dumps(run_config, default=str))
    for part in ("model", "task", "train"):
        a, b = dict(saved.get(part) or {}), dict(want[part] or {})
        if part == "train":
            for k in ("epochs", "max_time", "early_stop"):
                a.pop(k, None), b.pop(k, None)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if diff:
            k = diff[0]
            raise SeqbenchError(f"--resume: the run in {out} has {part} {k}={a.get(k)!r}, this command "
                                f"{k}={b.get(k)!r}; resume with the same settings or start a new --out")
    if saved.get("data") != want.get("data") or saved.get("fitted") != want.get("fitted"):
        raise SeqbenchError(f"--resume: the data changed since the run in {out} started (its content, so what "
                            "the task fitted on it, differs); start a new --out to train on the new data")


def train(model: nn.Module, task: Task, cfg: TrainConfig | None = None, *,
          out_dir: str | os.PathLike | None = None, overwrite: bool = False, resume: bool = False,
          progress: bool | None = None, evaluate_test: bool = True) -> TrainResult:
    """Train ``model`` on ``task``; evaluate on valid each epoch and on test with the best weights.

    With ``out_dir``, every epoch leaves ``last.pt`` with the whole training state (weights,
    optimizer, schedule, RNG, history), so ``resume=True`` continues a killed run from its last
    finished epoch and ends with the same weights as an uninterrupted run. ``progress=None`` shows
    a progress bar only on a terminal. Same seed, same thread count: the same loss curve on CPU.
    ``evaluate_test=False`` never touches the test split (model selection on valid; ``result.test``
    is empty).
    """
    cfg = cfg or TrainConfig.for_task(task)
    cfg.validate()
    if model.d_in != task.d_in or model.d_out != task.d_out:
        raise SeqbenchError(f"model maps d_in={model.d_in} -> d_out={model.d_out} but task "
                            f"{task.name!r} needs {task.d_in} -> {task.d_out}")
    from seqbench.memory import check_training_memory
    check_training_memory(model, task, cfg.batch_size)  # before any work or output
    config = run_config(model, task, cfg)
    if out_dir is None:
        return _fit(model, task, cfg, None, None, progress, evaluate_test)
    out = prepare_out_dir(out_dir, overwrite, resume)
    if resume:
        check_resumable(out, config)
        try:
            state = torch.load(out / LAST, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated, tampered or not a checkpoint
            raise SeqbenchError(f"--resume: cannot load {out / 'last.pt'} ({_first_line(e)}); it is damaged: "
                                "start the run again with --overwrite") from None
        keys = {"model", "optimizer", "history", "best_valid", "best_epoch", "train_time", "seen", "epoch", "rng"}
        if not isinstance(state, dict) or not keys <= set(state) and "optimizer" in state:
            raise SeqbenchError(f"--resume: {out / 'last.pt'} is not a complete training state; start the run "
                                "again with --overwrite")
        if "optimizer" not in state:
            raise SeqbenchError(f"--resume: {out / 'last.pt'} holds weights only (written by an older seqbench); "
                                "start the run again")
        return _fit(model, task, cfg, out, state, progress, evaluate_test)
    with _run_directory(out, replace=out.is_dir() and any(out.iterdir())) as work:
        atomic_write_json(work / CONFIG, config)
        return _fit(model, task, cfg, work, None, progress, evaluate_test)


def _fit(model: nn.Module, task: Task, cfg: TrainConfig, out: Path | None, resume_state: dict | None,
         progress: bool | None, evaluate_test: bool = True) -> TrainResult:
    from tqdm.auto import tqdm

    from seqbench.device import autocast, grad_scaler, resolve_device, to_device
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)  # before the optimizer is built: its state lives beside the parameters
    forward = compiled_forward(task) if cfg.compile else task.predict
    opt = make_optimizer(cfg, model)
    scaler = grad_scaler(device, cfg.precision)
    metric = task.metric
    sched = _make_schedule(cfg, opt, metric)
    steps = task.num_batches("train", cfg.batch_size)
    if cfg.steps_per_epoch is not None:
        steps = min(steps, cfg.steps_per_epoch)

    history: list[dict[str, Any]] = []
    best_state, best_valid, best_epoch = None, None, 0
    train_time, seen, start = 0.0, 0, 1
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        opt.load_state_dict(resume_state["optimizer"])
        if sched is not None and resume_state.get("scheduler") is not None:
            sched.load_state_dict(resume_state["scheduler"])
        history, best_valid, best_epoch = resume_state["history"], resume_state["best_valid"], resume_state["best_epoch"]
        train_time, seen, start = resume_state["train_time"], resume_state["seen"], resume_state["epoch"] + 1
        best_state = torch.load(out / BEST, map_location=device, weights_only=True)
        _set_rng_state(resume_state["rng"])
    bar = tqdm(total=cfg.epochs * steps, initial=(start - 1) * steps, desc=f"{model.config.get('name', 'model')}"
               f" on {task.name}", unit="step", disable=(None if progress is None else not progress),
               dynamic_ncols=True, leave=False)
    tracker = None
    if cfg.log is not None:  # the configuration as hyperparameters; metrics per epoch; test and artifacts at the end
        from seqbench.tracking import Tracker
        tracker = Tracker(cfg.log, f"{model.config.get('name', 'model')} on {task.name}",
                          run_config(model, task, cfg), out)
    t_run = time.monotonic()
    try:
        for epoch in range(start, cfg.epochs + 1):
            if cfg.max_time is not None and epoch > start and time.monotonic() - t_run >= cfg.max_time:
                break  # out of wall-clock time: the best epoch so far stands
            model.train()
            loss_sum, n_steps = 0.0, 0
            t0 = time.perf_counter()
            batches = task.batches("train", cfg.batch_size, shuffle_seed=cfg.seed * 100_003 + epoch)
            for i, (x, y) in enumerate(batches):
                if i >= steps:
                    break
                if x.is_floating_point() and not torch.isfinite(x).all():
                    raise SeqbenchError(f"task {task.name!r} produced NaN/inf inputs in a training "
                                        "batch; clean the data (drop or impute missing values)")
                x, y = to_device((x, y), device)
                opt.zero_grad(set_to_none=True)
                with autocast(device, cfg.precision):
                    loss = task.loss(forward(model, x), y)
                    if cfg.aux_weight and model.aux_outputs:
                        loss = loss + cfg.aux_weight * sum(task.loss(a, y) for a in model.aux_outputs)
                if not torch.isfinite(loss):
                    raise SeqbenchError(f"training diverged: loss is {loss.item()} at epoch {epoch}, "
                                        f"step {i + 1}; lower the learning rate (now {cfg.lr}) or set --clip")
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler:
                    scaler.unscale_(opt)  # clip the true gradients
                if cfg.clip is not None:  # after backward, so the gradients exist to be clipped
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                loss_sum += loss.item()
                n_steps += 1
                seen += len(x)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss_sum / n_steps:.4g}")
            train_time += time.perf_counter() - t0

            valid = task.evaluate(model, "valid", cfg.eval_batch_size)
            lr = opt.param_groups[0]["lr"]
            row = {"epoch": epoch, "train_loss": loss_sum / max(n_steps, 1), "lr": lr,
                   "train_time": round(train_time, 3),
                   **{f"valid_{k}": v for k, v in valid.items()}}
            history.append(row)
            if tracker is not None:
                tracker.epoch(epoch, {k: v for k, v in row.items() if k != "epoch"})
            improved = best_valid is None or metric.better(valid[metric.name], best_valid[metric.name])
            if improved:
                best_valid, best_epoch = valid, epoch
                best_state = _clone(model.state_dict())
            if sched is not None:
                if cfg.schedule == "plateau":
                    sched.step(valid[metric.name])
                else:
                    sched.step()
            if out is not None:  # best first: a last.pt on disk always has its best.pt
                if improved:
                    atomic_torch_save(_cpu(best_state), out / BEST)
                atomic_write_text(out / HISTORY, "".join(json.dumps(r) + "\n" for r in history))
                atomic_torch_save({"model": _cpu(model.state_dict()), "optimizer": opt.state_dict(),
                                   "scheduler": None if sched is None else sched.state_dict(), "epoch": epoch,
                                   "history": history, "best_valid": best_valid, "best_epoch": best_epoch,
                                   "train_time": train_time, "seen": seen, "rng": _rng_state()}, out / LAST)
            bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.4g}",
                            **{f"valid_{metric.name}": f"{valid[metric.name]:.4g}"})
            if cfg.early_stop is not None and epoch - best_epoch >= cfg.early_stop:
                break  # early stopping: no better valid metric for early_stop epochs
    except BaseException:
        if tracker is not None:
            tracker.fail()
        raise
    finally:
        bar.close()

    test = {}
    if evaluate_test:
        last_state = _clone(model.state_dict())
        model.load_state_dict(best_state)
        test = task.evaluate(model, "test", cfg.eval_batch_size)
        model.load_state_dict(last_state)
    result = TrainResult(test=test, best_valid=best_valid, best_epoch=best_epoch, history=history,
                         params=count_params(model), receptive_field=model.receptive_field,
                         train_time=train_time, samples_per_sec=seen / train_time if train_time else 0.0)
    if out is not None:
        atomic_write_json(out / RESULT, dataclasses.asdict(result) | {"history": None})
        from seqbench.train.card import write_card
        write_card(out, task, dataclasses.asdict(result))
    if tracker is not None:
        tracker.finish(test, out)
    return result


def compiled_forward(task: Task):
    """``task.predict`` through torch.compile (inductor), falling back to eager with a warning when
    compilation is unavailable or fails. On the 2-core CPU it was measured slower than eager for
    the TCN (BENCHMARKS.md), so it is off by default."""
    import warnings

    try:
        fn = torch.compile(task.predict)
    except Exception as e:  # noqa: BLE001 - e.g. no compiler toolchain, unsupported platform
        warnings.warn(f"torch.compile unavailable ({type(e).__name__}: {e}); training in eager mode")
        return task.predict

    def forward(model, x):
        nonlocal fn
        try:
            return fn(model, x)
        except Exception as e:  # noqa: BLE001 - inductor errors surface at the first call
            if fn is task.predict:
                raise
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                          "training in eager mode")
            fn = task.predict
            return fn(model, x)
    return forward


def _make_schedule(cfg: TrainConfig, opt: torch.optim.Optimizer, metric):
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=metric.direction, factor=cfg.gamma,
                                                          patience=cfg.patience)
    return None


def load_model(run_dir: str | os.PathLike, which: str = "best") -> nn.Module:
    """Rebuild a trained model from a run directory: ``seqbench.Run.open(run_dir).model(which)``."""
    from seqbench.train.runs import RunDir
    return RunDir.open(run_dir).model(which)
