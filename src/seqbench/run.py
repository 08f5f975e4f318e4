"""``seqbench.Run``: a trained run directory and what can be done with it.

    run = seqbench.Run.open("runs/x")
    run.config, run.fitted, run.result       # what config.json and result.json record
    model = run.model()                      # best.pt ("last": the last epoch's weights)
    task = run.task()                        # rebuilt from its recorded options
    run.predict("new.csv")                   # a DataFrame
    run.export("step.onnx", streaming=True)  # ONNX / torch.export, with the streaming state
    run.compress("small/", prune=0.5)        # variants, each a run directory
"""
from __future__ import annotations

import os
from typing import Any

from seqbench.train.runs import RunDir


class Run(RunDir):
    def predict(self, input: str | os.PathLike, batch_size: int = 256):
        """Predictions on new data (a pandas DataFrame); see ``seqbench.predict``."""
        from seqbench.predict import predict
        return predict(self.path, input, batch_size)

    def export(self, out: str | os.PathLike, fmt: str | None = None, **kwargs: Any) -> dict:
        """ONNX or torch.export file of the model (``streaming=True``: one step with its state)."""
        from seqbench.export import export_run
        return export_run(self.path, out, fmt, **kwargs)

    def compress(self, out: str | os.PathLike, **kwargs: Any) -> list[dict]:
        """Compressed variants under ``out`` (``quantize``, ``prune``, ``distill_into``)."""
        from seqbench.compress import compress_run
        return compress_run(self.path, out, **kwargs)
