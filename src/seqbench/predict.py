"""Predictions from a trained run on new data: ``seqbench predict RUN --input new.csv --out preds.csv``.

The run directory carries what the task fitted on its training data (``config.json``, ``fitted``:
class names, the feature columns, the normalization, a forecast's scale and transform), so new data
goes through exactly the preprocessing of training. New files use the layouts of the custom task
(labels and targets may be absent: they are what is predicted).

* classification: one row per sequence: ``id``, ``prediction`` (the class name), ``p_<class>``.
* regression: ``id``, ``prediction``; per-step targets: ``id``, ``step``, ``prediction``.
* forecasting: the next ``horizon`` values after the end of the given series: ``h``, ``prediction``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from seqbench.errors import SeqbenchError


BATCH_STEPS = 2**20  # at most this many time steps (sequences x length) in one batch


@torch.inference_mode()
def predict(run_dir: str | os.PathLike, input: str | os.PathLike, batch_size: int = 256,
            progress: bool | None = None):
    """A pandas DataFrame of predictions for the sequences (or series) in ``input``; a progress
    bar over the batches on a terminal (``progress=None``)."""
    from seqbench.data import require
    from seqbench.data.files import load_file
    pd = require("pandas", why="predictions")
    from seqbench.train.runs import RunDir
    rundir = RunDir.open(run_dir)
    run, task_cfg, fitted = rundir.path, dict(rundir.config.get("task") or {}), rundir.fitted
    kind = task_cfg.get("kind")
    if task_cfg.get("name") != "custom" or kind not in ("classification", "regression", "per_step", "forecast"):
        raise SeqbenchError(f"predictions on new files need a run trained on your own sequences or series "
                            f"(custom classification, regression, per_step or forecast); {run} is "
                            f"{task_cfg.get('name')}{' (' + kind + ')' if kind else ''}")
    model = rundir.model().eval()
    _check_fitted(fitted, kind, model, run)
    path = Path(os.path.expanduser(str(input)))
    opt = lambda k, d: task_cfg.get(k) or d  # noqa: E731
    data = load_file(path, id_col=opt("id", "series"), time_col=opt("step", "step"), label_col=opt("label", "label"),
                     target_col=opt("target", "target"), value_col=task_cfg.get("value"),
                     features=fitted.get("features"), need_target=False)
    if kind == "forecast":
        return _forecast(model, data, fitted, path, pd)
    if "x" not in data:
        raise SeqbenchError(f"{path} holds one series; {run} was trained on sequences ({kind})")
    xs = data["x"]
    if xs and np.shape(xs[0])[1] != model.d_in:
        raise SeqbenchError(f"{path} has {np.shape(xs[0])[1]} feature columns, the model takes {model.d_in}")
    ids = data.get("ids") or list(range(len(xs)))  # an NPZ has no ids: its rows, 0..N-1
    return _predict_sequences(model, xs, ids, kind, fitted, batch_size, progress, pd)


def _predict_sequences(model, xs: list[np.ndarray], ids: list, kind: str, fitted: dict, batch_size: int,
                       progress: bool | None, pd):
    """Outputs written into preallocated columns batch by batch (memory: the inputs as loaded, one
    batch normalized, and one row of numbers per prediction); batches of equal length, so no padding
    reaches a non-causal model's outputs and none is computed."""
    from tqdm.auto import tqdm

    from seqbench.tasks.custom import normalize
    how = fitted.get("normalize") or {}
    n = len(xs)
    lengths = np.array([len(x) for x in xs])
    order = np.argsort(lengths, kind="stable")
    if kind == "per_step":
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.empty(int(offsets[-1]), dtype=np.float64)
    elif kind == "regression":
        values = np.empty(n, dtype=np.float64)
    else:
        classes = fitted.get("classes") or [str(c) for c in range(model.d_out)]
        values = np.empty((n, len(classes)), dtype=np.float64)
    bounds = np.flatnonzero(np.diff(lengths[order])) + 1
    chunks = []
    for same in np.split(order, bounds):  # long sequences in smaller batches: a batch's activations stay bounded
        b = max(1, min(batch_size, BATCH_STEPS // max(1, int(lengths[same[0]])))) if len(same) else 1
        chunks += [same[i:i + b] for i in range(0, len(same), b)]
    for chunk in tqdm(chunks, desc="predicting", unit="batch", disable=None if progress is None else not progress,
                      leave=False):
        batch = normalize([np.asarray(xs[i], dtype=np.float64) for i in chunk], how)  # as training did, in float64
        out = model(torch.from_numpy(np.stack(batch).astype(np.float32)))
        if kind == "per_step":
            for j, i in enumerate(chunk):
                values[offsets[i]:offsets[i + 1]] = out[j, :, 0].double().numpy()
        elif kind == "regression":
            values[chunk] = out[:, -1, 0].double().numpy()
        else:
            values[chunk] = torch.softmax(out[:, -1].double(), dim=-1).numpy()
    if kind == "per_step":
        return pd.DataFrame({"id": np.repeat(np.asarray(ids, dtype=object), lengths),
                             "step": np.concatenate([np.arange(m) for m in lengths]) if n else [],
                             "prediction": values})
    if kind == "regression":
        return pd.DataFrame({"id": ids, "prediction": values})
    return pd.DataFrame({"id": ids, "prediction": np.asarray(classes, dtype=object)[values.argmax(1)],
                         **{f"p_{c}": values[:, k] for k, c in enumerate(classes)}})


def _forecast(model, data: dict, fitted: dict, path: Path, pd):
    from seqbench.tasks.forecast import inverse_transform, transformed
    if "series" not in data:
        raise SeqbenchError(f"{path} holds sequences; the run forecasts one series (a file with one value column)")
    series, lookback = np.asarray(data["series"], dtype=np.float64), int(fitted["lookback"])
    transform, scale = fitted.get("transform", "none"), fitted["scale"]
    need = lookback + (transform in ("diff", "returns"))
    if len(series) < need:
        raise SeqbenchError(f"{path} has {len(series)} values; the model needs the last {need} to forecast")
    u = transformed(series, transform)
    x = (u[-lookback:] - scale["mean"]) / scale["std"]
    out = model(torch.from_numpy(x.astype(np.float32))[None, :, None])
    pred = out[:, -1].double() * scale["std"] + scale["mean"]
    values = inverse_transform(pred, torch.tensor([series[-1]], dtype=torch.float64), transform)[0]
    return pd.DataFrame({"h": np.arange(1, len(values) + 1), "prediction": values.numpy()})


def write_predictions(df, out: str | os.PathLike) -> Path:
    """To .csv, .parquet or .npz (by extension), atomically."""
    from seqbench.utils import atomic_write
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        atomic_write(out, lambda tmp: df.to_csv(tmp, index=False))
    elif suffix == ".parquet":
        atomic_write(out, lambda tmp: df.to_parquet(tmp, index=False))
    elif suffix == ".npz":
        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **{c: _plain_array(df[c]) for c in df.columns})
        atomic_write(out, write)
    else:
        raise SeqbenchError(f"--out {out}: write predictions to a .csv, .parquet or .npz file")
    return out


def _plain_array(col) -> np.ndarray:
    """A column as numbers, or as fixed-width strings: never an object array (np.load would need
    allow_pickle to read it)."""
    a = col.to_numpy()
    if a.dtype != object:
        return a
    try:
        return a.astype(np.float64) if all(isinstance(v, (int, float)) for v in a) else a.astype(str)
    except (TypeError, ValueError):
        return a.astype(str)


def _check_fitted(fitted, kind: str, model, run: Path) -> None:
    """The run's fitted preprocessing is what new data goes through: a damaged one is an error, not
    silently wrong predictions."""
    from seqbench.tasks.custom import NORMALIZE, TRANSFORMS

    def bad(what: str) -> SeqbenchError:
        return SeqbenchError(f"{run / 'config.json'}: 'fitted' {what}; the run directory is damaged, train it again")

    def numbers(v, n=None) -> bool:
        ok = isinstance(v, list) and all(isinstance(a, (int, float)) and not isinstance(a, bool) and np.isfinite(a)
                                         for a in v)
        return ok and (n is None or len(v) == n)
    if not isinstance(fitted, dict):
        raise bad("is not a mapping")
    if kind == "forecast":
        scale = fitted.get("scale")
        if not (isinstance(fitted.get("lookback"), int) and fitted["lookback"] >= 1):
            raise bad(f"has lookback={fitted.get('lookback')!r}; it must be a positive integer")
        if fitted.get("transform", "none") not in TRANSFORMS:
            raise bad(f"has an unknown transform {fitted.get('transform')!r} (one of {', '.join(TRANSFORMS)})")
        if not (isinstance(scale, dict) and numbers([scale.get("mean"), scale.get("std")]) and scale["std"] > 0):
            raise bad("has no usable scale (mean and a positive std)")
        return
    norm = fitted.get("normalize") or {}
    if not isinstance(norm, dict) or norm.get("how", "none") not in NORMALIZE:
        raise bad(f"has an unknown normalization {norm!r}")
    if norm.get("how") == "feature" and not (numbers(norm.get("mean"), model.d_in) and
                                              numbers(norm.get("std"), model.d_in) and min(norm["std"]) > 0):
        raise bad(f"normalization needs {model.d_in} means and positive stds, one per feature")
    if kind == "classification" and fitted.get("classes") is not None:
        classes = fitted["classes"]
        if not (isinstance(classes, list) and len(classes) == model.d_out and all(isinstance(c, str) for c in classes)):
            raise bad(f"classes must be {model.d_out} names, one per model output")
