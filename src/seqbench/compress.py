"""Smaller and faster variants of a trained run, each a run directory evaluated on the test split.

* ``int8``: dynamic quantization (int8 weights, activations quantized on the fly) of the recurrent
  layers and linear maps, for models that declare it pays (``SeqModel.int8``). The run directory keeps the float weights and the
  recipe (``config.json`` ``compress``); ``load_model`` re-derives the int8 weights, which depend
  on the float weights only (torch's packed int8 parameters cannot be read with
  ``torch.load(weights_only=True)``, and nothing here unpickles). Convolutions are not quantized:
  measured slower than float on this CPU in every path tried (BENCHMARKS.md, "Compression").
* ``prune``: structured pruning, for models that implement ``pruned(amount)`` (the TCN: the least
  important residual channels are removed from every block), giving a plain, narrower model,
  which is then fine-tuned.
* ``distill``: a smaller student of any zoo architecture trained on the labels plus the teacher's
  softened outputs (temperature T, weight alpha on the teacher's term).
"""
from __future__ import annotations

import dataclasses
import io
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import SeqbenchError
from seqbench.models.quantize import quantize_int8  # noqa: F401 (part of this module's API)

QUANTIZE = ("int8",)


def load_run(run_dir: str | Path):
    """(model, task, config dict) of a run directory; the task rebuilt from its config."""
    from seqbench.train.runs import RunDir
    run = RunDir.open(run_dir)
    return run.model().eval(), run.task(), run.config


# -- int8 -------------------------------------------------------------------------------------
def weights_bytes(model: nn.Module) -> int:
    """Size of the model's serialized weights (int8 modules as torch packs them)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


# -- structured pruning -----------------------------------------------------------------------
def prune_model(model: nn.Module, amount: float) -> nn.Module:
    """A narrower plain model without the ``amount`` fraction of channels that matter least, for
    models that can be pruned (``model.pruned``); fine-tune it afterwards."""
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not 0 < amount < 1:
        raise SeqbenchError(f"--prune takes the fraction of channels to remove, in (0, 1), got {amount!r}")
    if not hasattr(model, "pruned"):
        raise SeqbenchError(f"--prune removes channels of models that support it (seqbench models: see README); "
                            f"this run is a {model.config.get('name')}. Use --distill-into to shrink other models")
    return model.pruned(amount)


# -- distillation -------------------------------------------------------------------------------
class Soft(NamedTuple):
    """A training target with the teacher's output beside the label."""
    target: Any
    teacher: torch.Tensor


class DistillTask:
    """The task, with training batches that carry the teacher's outputs and a loss that mixes
    ``(1 - alpha) * task loss + alpha * T^2 * soft loss``. The soft loss follows the task's
    outputs (``soft_targets``): cross-entropy to the teacher's softened distribution (softmax),
    per-unit binary cross-entropy (sigmoid, multi-label music), or squared error (regression).
    Validation and test are the task's own."""

    def __init__(self, task, teacher: nn.Module, temperature: float = 2.0, alpha: float = 0.5):
        check_distill(temperature, alpha)
        self.task, self.teacher, self.T, self.alpha = task, teacher.eval(), float(temperature), float(alpha)

    def __getattr__(self, name):
        return getattr(self.task, name)

    def batches(self, split, batch_size, shuffle_seed=None, **kw):
        for x, y in self.task.batches(split, batch_size, shuffle_seed=shuffle_seed, **kw):
            if split != "train":
                yield x, y
                continue
            with torch.no_grad():
                soft = self.task.predict(self.teacher, x)
            yield x, Soft(y, soft)  # outside no_grad: the student's forward runs while the generator waits

    def loss(self, out, target):
        if not isinstance(target, Soft):
            return self.task.loss(out, target)
        hard = self.task.loss(out, target.target)
        t = target.teacher.to(out.device, out.dtype)
        kind, T = self.task.soft_targets, self.T
        if kind == "softmax":
            soft = F.cross_entropy((out / T).flatten(0, -2), F.softmax(t / T, dim=-1).flatten(0, -2)) * T * T
        elif kind == "sigmoid":
            soft = F.binary_cross_entropy_with_logits(out / T, torch.sigmoid(t / T)) * T * T
        else:
            soft = F.mse_loss(out, t)
        return (1 - self.alpha) * hard + self.alpha * soft


def check_distill(temperature: float, alpha: float) -> None:
    if not temperature > 0 or not 0 <= alpha <= 1:  # NaN fails both
        raise SeqbenchError(f"distillation needs --temperature > 0 and 0 <= --alpha <= 1, got {temperature}, {alpha}")


def parse_student(spec: str) -> tuple[str, int]:
    """'tcn:10k' -> ('tcn', 10000)."""
    import seqbench
    from seqbench.utils import parse_count
    name, _, size = str(spec).partition(":")
    if name not in seqbench.list_models() or not size:
        raise SeqbenchError(f"--distill-into takes MODEL:PARAMS, e.g. tcn:10k (models: {', '.join(seqbench.list_models())}), "
                            f"got {spec!r}")
    return name, parse_count(size)


# -- measuring ------------------------------------------------------------------------------------
def measure(variants: list[tuple[nn.Module, Any]], task, *, reps: int = 200, rounds: int = 5) -> list[dict[str, Any]]:
    """Serialized weights size, B=1 step and full-sequence latency (1 thread), and the test metrics
    of each ``(model, params)``. Timings are interleaved in rounds (round r times every variant
    once) and the median kept, so a slow moment of the machine hits every variant alike."""
    from seqbench.models.base import count_params
    x, _ = next(iter(task.batches("test", 1)))
    calls = []
    for model, _ in variants:
        model.eval()
        step = None
        if getattr(model, "causal", False) and getattr(model, "supports_step", False):
            state, x_t = model.init_state(1), x[:, 0]
            step = (lambda m, s, xt: lambda: m.step(xt, s))(model, state, x_t)
        calls.append(((lambda m: lambda: task.predict(m, x))(model), step))
    times = [([], []) for _ in variants]
    from threadpoolctl import threadpool_limits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), threadpool_limits(limits=1):  # BLAS on one thread too, as deployed
            for seq, step in calls:  # warm up
                seq()
                for _ in range(reps // 10 if step else 0):
                    step()
            for _ in range(rounds):
                for (seq, step), (seq_t, step_t) in zip(calls, times):
                    seq_t.append(_time(seq, max(3, reps // 20)))
                    if step is not None:
                        step_t.append(_time(step, reps))
    finally:
        torch.set_num_threads(threads)
    return [{"weights_bytes": weights_bytes(model), "params": params or count_params(model),
             "step_ms": statistics.median(step_t) if step_t else None, "seq_ms": statistics.median(seq_t),
             **_test(task, model)} for (model, params), (seq_t, step_t) in zip(variants, times)]


def _test(task, model) -> dict[str, Any]:
    metrics = task.evaluate(model, "test")
    return {"test": metrics, **metrics}


def _time(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


# -- the command --------------------------------------------------------------------------------
def compress_run(run_dir: str | Path, out: str | Path, *, quantize: str | None = None, prune: float | None = None,
                 distill_into: str | None = None, epochs: int | None = None, temperature: float = 2.0,
                 alpha: float = 0.5, progress: bool | None = None) -> list[dict]:
    """Write each requested variant as a run directory under ``out`` (``int8/``, ``pruned/``,
    ``distilled-<model>/``, ``scratch-<model>/``) and ``out/compression.md``; return the table's
    rows (the original first). Each variant is built beside its destination and swapped in whole,
    with ``result.json`` written last; an int8 variant is kept only where it measured faster here."""
    import math

    import seqbench
    from seqbench.outdir import OutDir
    from seqbench.train import TrainConfig
    from seqbench.utils import atomic_write_json
    if quantize is None and prune is None and distill_into is None:
        raise SeqbenchError("nothing to do: give --quantize int8, --prune FRACTION and/or --distill-into MODEL:PARAMS")
    if quantize is not None and quantize not in QUANTIZE:
        raise SeqbenchError(f"unknown --quantize {quantize!r}; use int8")
    student = parse_student(distill_into) if distill_into is not None else None
    if student is not None:
        check_distill(temperature, alpha)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)):
        raise SeqbenchError(f"--temperature must be a finite number > 0, got {temperature}")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise SeqbenchError(f"--epochs must be a positive integer, got {epochs!r}")
    run = Path(run_dir)
    if str(out).strip() and Path(out).resolve() == run.resolve():
        raise SeqbenchError(f"--out {out} is the run itself; give a new directory")
    teacher, task, cfg = load_run(run)
    if prune is not None:
        prune_model(teacher, prune)  # its errors before any work
    if quantize is not None:
        quantize_int8(teacher)
    dest = OutDir(out).check()
    train_cfg = TrainConfig(**{k: v for k, v in cfg["train"].items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    n_params = seqbench.count_params(teacher)
    variants = [("original", teacher.config["name"], teacher, None, None, {})]  # label, model, module, dir, params, extra
    if quantize is not None:
        work = dest.staging("int8")
        shutil.copy2(run / "best.pt", work / "best.pt")
        atomic_write_json(work / "config.json", {**cfg, "compress": {"quantize": "int8", "from": str(run)}})
        variants.append(("int8 (dynamic)", teacher.config["name"], seqbench.load_model(work), ("int8", work),
                         n_params, {}))
    if prune is not None:
        small = prune_model(teacher, prune)
        before = task.evaluate(small, "test")[task.metric.name]
        ft = dataclasses.replace(train_cfg, epochs=epochs or max(1, train_cfg.epochs // 4), lr=train_cfg.lr / 2)
        work = dest.staging("pruned")
        seqbench.train(small, task, ft, out_dir=work, progress=progress)
        variants.append((f"pruned {prune:.0%} + fine-tuned ({ft.epochs} epoch{'s' * (ft.epochs != 1)})",
                         f"{small.config['name']}, {small.describe()}", seqbench.load_model(work), ("pruned", work), None,
                         {"before_finetune": before, "finetune_epochs": ft.epochs}))
    if student is not None:
        name, params = student
        for tag, use_teacher in (("distilled", True), ("scratch", False)):
            torch.manual_seed(train_cfg.seed)
            m = seqbench.create_model(name, task.d_in, task.d_out, params=params, **task.model_kwargs())
            t = DistillTask(task, teacher, temperature, alpha) if use_teacher else task
            work = dest.staging(f"{tag}-{name}")
            seqbench.train(m, t, dataclasses.replace(train_cfg, epochs=epochs or train_cfg.epochs), out_dir=work,
                           progress=progress)
            label = f"distilled into {distill_into}" if use_teacher else f"{distill_into} from scratch (same budget)"
            variants.append((label, name, seqbench.load_model(work), (f"{tag}-{name}", work), None, {}))
    measured = measure([(v[2], v[4]) for v in variants], task)
    rows = []
    for (label, model, _, where, _, extra), row in zip(variants, measured):
        row = {"variant": label, "model": model, **extra, **row}
        if where is not None and where[0] == "int8" and not _faster(row, rows[0]):
            row["note"] = "not written: int8 measured slower than float here"
            shutil.rmtree(where[1], ignore_errors=True)
        elif where is not None:
            atomic_write_json(where[1] / "result.json", {"test": row["test"], "compress": where[0],
                                                         "measured": {k: row[k] for k in ("params", "step_ms", "seq_ms")}})
            dest.put_dir(where[1], where[0])
        rows.append(row)
    dest.write_text("compression.md", compression_table(rows, task) + "\n")
    return rows


def _faster(row: dict, original: dict) -> bool:
    """Whether a variant is faster than the original where it streams (else on the full sequence)."""
    if row["step_ms"] is not None and original["step_ms"] is not None:
        return row["step_ms"] < original["step_ms"]
    return row["seq_ms"] < original["seq_ms"]


def compression_table(rows: list[dict], task) -> str:
    from seqbench.tables import fmt, md_table
    metric = task.metric.name
    head = ["variant", "model", "weights (serialized)", "params", "step (B=1)", "full sequence (B=1)",
            f"test {metric}", "note"]
    body = []
    for r in rows:
        note = r.get("note", "")
        if "before_finetune" in r:
            note = f"test {metric} {fmt(r['before_finetune'])} before fine-tuning"
        body.append([r["variant"], r["model"], f"{r['weights_bytes'] / 1024:,.0f} KiB", f"{r['params']:,}",
                     "-" if r["step_ms"] is None else f"{r['step_ms']:.3f} ms", f"{r['seq_ms']:.2f} ms",
                     fmt(r[metric]), note])
    return md_table(head, body)
