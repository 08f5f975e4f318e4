"""Experiment tracking where users already look: TensorBoard (through torch's own SummaryWriter) or
MLflow. Per epoch: the training loss and every validation metric; at the start, the configuration
as hyperparameters; at the end, the test metrics and (MLflow) the run directory's model, config and
model card as artifacts. Needs the ``track`` extra, imported only when asked for.

TensorBoard writes under the run directory (``<out>/tensorboard``; ``runs/`` without one), so
``tensorboard --logdir <out>`` shows it. MLflow logs to ``$MLFLOW_TRACKING_URI`` if set, else to
MLflow's own local default, ``sqlite:///mlflow.db`` in the working directory (MLflow 3 keeps the
plain-files store in maintenance only); ``mlflow ui`` opens it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from seqbench.errors import SeqbenchError

LOGGERS = ("tensorboard", "mlflow")
ARTIFACTS = ("best.pt", "config.json", "README.md", "result.json")


def check_logger(kind: str | None) -> None:
    if kind is not None and kind not in LOGGERS:
        raise SeqbenchError(f"unknown logger {kind!r}; use one of: {', '.join(LOGGERS)}")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


class Tracker:
    """One training run's log in TensorBoard or MLflow."""

    def __init__(self, kind: str, name: str, params: dict[str, Any], out: Path | None):
        from seqbench.data.optional import require
        check_logger(kind)
        self.kind, self.out = kind, out
        flat = _flat(params)
        if kind == "tensorboard":
            require("tensorboard", extra="track", why="--log tensorboard")
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(out / "tensorboard") if out is not None else None)
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(flat.items())))
        else:
            mlflow = self.mlflow = require("mlflow", extra="track", why="--log mlflow")
            import logging
            logging.getLogger("mlflow").setLevel(logging.WARNING)
            mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}")
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "seqbench")
            self.run = mlflow.start_run(run_name=name)
            mlflow.log_params(flat)

    def epoch(self, step: int, metrics: dict[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.kind == "tensorboard":
            for k, v in metrics.items():
                self.writer.add_scalar(k.replace("_", "/", 1), v, step)
        else:
            self.mlflow.log_metrics(metrics, step=step)

    def finish(self, test: dict[str, float], out: Path | None = None) -> None:
        """The final test metrics, and (MLflow) the run directory ``out``'s files as artifacts."""
        test = {f"test_{k}": float(v) for k, v in test.items()}
        if self.kind == "tensorboard":
            for k, v in test.items():
                self.writer.add_scalar(k.replace("_", "/", 1), v, 0)
            self.writer.close()
            return
        self.mlflow.log_metrics(test)
        for name in ARTIFACTS if out is not None else ():
            if (out / name).is_file():
                self.mlflow.log_artifact(str(out / name))
        self.mlflow.end_run()

    def fail(self) -> None:
        if self.kind == "tensorboard":
            self.writer.close()
        else:
            self.mlflow.end_run(status="FAILED")
