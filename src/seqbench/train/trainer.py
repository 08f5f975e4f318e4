"""The training loop: optimizers, LR schedules, clipping, per-epoch evaluation, checkpoints.

    result = seqbench.train(model, task, TrainConfig(epochs=5, lr=2e-3), out_dir="runs/x")

Writes into ``out_dir`` (all atomically): ``config.json`` (model, task and train config),
``best.pt`` / ``last.pt`` (state_dict only; load with ``seqbench.load_model``) and
``history.jsonl`` (one JSON line per epoch).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.base import count_params
from seqbench.tasks.base import Task
from seqbench.utils import atomic_torch_save, atomic_write_json, atomic_write_text, seed_everything

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
    steps_per_epoch: int | None = None  # cap on optimizer steps per epoch (None: whole train set)
    aux_weight: float = 0.0        # weight of auxiliary losses on model.aux_outputs (TrellisNet aux_freq)
    eval_batch_size: int = 256
    seed: int = 0
    compile: bool = False          # torch.compile the training forward (falls back to eager if it fails)

    @classmethod
    def for_task(cls, task: Task, **overrides: Any) -> "TrainConfig":
        """The task's recommended settings, then ``overrides`` (None values are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        merged = {k: v for k, v in task.recommended.items() if k in fields}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(merged) - fields)
        if unknown:
            raise SeqbenchError(f"unknown training option(s) {', '.join(unknown)}; "
                                f"valid: {', '.join(sorted(fields))}")
        return cls(**merged)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise SeqbenchError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise SeqbenchError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "eval_batch_size", "step_size"):
            if getattr(self, name) < 1:
                raise SeqbenchError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SeqbenchError(f"lr must be a positive number, got {self.lr}")
        if self.clip is not None and not self.clip > 0:
            raise SeqbenchError(f"clip must be > 0 (or unset), got {self.clip}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise SeqbenchError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")


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


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def prepare_out_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to mix a run into a directory that already holds something else."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SeqbenchError(f"--out {out} is a file; give a directory path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SeqbenchError(f"output directory {out} exists and is not empty; "
                            "choose a new --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def train(model: nn.Module, task: Task, cfg: TrainConfig | None = None, *,
          out_dir: str | os.PathLike | None = None, overwrite: bool = False,
          progress: bool | None = None) -> TrainResult:
    """Train ``model`` on ``task``; evaluate on valid each epoch and on test with the best weights.

    ``progress=None`` shows a progress bar only on a terminal. Same seed, same thread count:
    the same loss curve on CPU.
    """
    from tqdm.auto import tqdm

    cfg = cfg or TrainConfig.for_task(task)
    cfg.validate()
    if getattr(model, "d_in", task.d_in) != task.d_in or getattr(model, "d_out", task.d_out) != task.d_out:
        raise SeqbenchError(f"model maps d_in={model.d_in} -> d_out={model.d_out} but task "
                            f"{task.name!r} needs {task.d_in} -> {task.d_out}")
    out = prepare_out_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        atomic_write_json(out / "config.json", {"model": getattr(model, "config", None),
                                                "task": task.config(), "train": dataclasses.asdict(cfg)})
    seed_everything(cfg.seed)
    forward = compiled_forward(task) if cfg.compile else task.predict
    opt = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    metric = task.metric
    sched = _make_schedule(cfg, opt, metric)
    steps = task.num_batches("train", cfg.batch_size)
    if cfg.steps_per_epoch is not None:
        steps = min(steps, cfg.steps_per_epoch)

    history: list[dict[str, Any]] = []
    best_state, best_valid, best_epoch = None, None, 0
    train_time, seen = 0.0, 0
    bar = tqdm(total=cfg.epochs * steps, desc=f"{getattr(model, 'config', {}).get('name', 'model')}"
               f" on {task.name}", unit="step", disable=(None if progress is None else not progress),
               dynamic_ncols=True, leave=False)
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            loss_sum, n_steps = 0.0, 0
            t0 = time.perf_counter()
            batches = task.batches("train", cfg.batch_size, shuffle_seed=cfg.seed * 100_003 + epoch)
            for i, (x, y) in enumerate(batches):
                if i >= steps:
                    break
                if not torch.isfinite(x).all():
                    raise SeqbenchError(f"task {task.name!r} produced NaN/inf inputs in a training "
                                        "batch; clean the data (drop or impute missing values)")
                opt.zero_grad(set_to_none=True)
                loss = task.loss(forward(model, x), y)
                if cfg.aux_weight and getattr(model, "aux_outputs", None):
                    loss = loss + cfg.aux_weight * sum(task.loss(a, y) for a in model.aux_outputs)
                if not torch.isfinite(loss):
                    raise SeqbenchError(f"training diverged: loss is {loss.item()} at epoch {epoch}, "
                                        f"step {i + 1}; lower the learning rate (now {cfg.lr}) or set --clip")
                loss.backward()
                if cfg.clip is not None:  # after backward, so the gradients exist to be clipped
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
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
            improved = best_valid is None or metric.better(valid[metric.name], best_valid[metric.name])
            if improved:
                best_valid, best_epoch = valid, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out is not None:
                if improved:
                    atomic_torch_save(best_state, out / "best.pt")
                atomic_torch_save(model.state_dict(), out / "last.pt")
                atomic_write_text(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            if sched is not None:
                if cfg.schedule == "plateau":
                    sched.step(valid[metric.name])
                else:
                    sched.step()
            bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.4g}",
                            **{f"valid_{metric.name}": f"{valid[metric.name]:.4g}"})
    finally:
        bar.close()

    last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = task.evaluate(model, "test", cfg.eval_batch_size)
    model.load_state_dict(last_state)
    result = TrainResult(test=test, best_valid=best_valid, best_epoch=best_epoch, history=history,
                         params=count_params(model), receptive_field=getattr(model, "receptive_field", None),
                         train_time=train_time, samples_per_sec=seen / train_time if train_time else 0.0)
    if out is not None:
        atomic_write_json(out / "result.json", dataclasses.asdict(result) | {"history": None})
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
    """Rebuild a trained model from a run directory (config.json + best.pt/last.pt).

    Weights are loaded with ``weights_only=True``: no pickled code is ever executed.
    """
    from seqbench.models.registry import model_from_config
    run = Path(run_dir)
    cfg_path, ckpt = run / "config.json", run / f"{which}.pt"
    for p in (cfg_path, ckpt):
        if not p.is_file():
            raise SeqbenchError(f"{p} not found; is {run} a seqbench run directory?")
    try:
        config = json.loads(cfg_path.read_text())["model"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SeqbenchError(f"{cfg_path} is not a valid seqbench run config ({e})") from None
    model = model_from_config(config)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupted or not a state_dict
        raise SeqbenchError(f"cannot load checkpoint {ckpt}: {str(e).splitlines()[0]}") from None
    model.load_state_dict(state)
    return model
