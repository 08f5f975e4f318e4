"""The user's own data (``custom``): a CSV, Parquet or NPZ file, validated with errors that name the
problem. File layouts (README, "Your own data"):

* **NPZ** -- ``x``: (N, L) or (N, L, d) numbers; ``y``: (N,) one label or value per sequence, or
  (N, L) a target per step; optional ``lengths`` (N,) when sequences are right-padded. Or a single
  ``series`` (T,) to forecast.
* **CSV / Parquet** -- long format, one row per step: a sequence id column (``series``), an
  optional order column (``step``), numeric feature columns, and either ``label`` (one per
  sequence, constant within it) or ``target`` (one per step). To forecast: one numeric column
  (or the column named by ``value``), one row per time step.

``kind`` is inferred (integer labels: classification; float labels: regression; per-step target:
per_step; a lone series: forecast) or given. Sequences are split 70/15/15 at random (``seed``);
forecast series chronologically.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from seqbench.data import require
from seqbench.errors import SeqbenchError
from seqbench.tasks.arrays import ArrayTask, ClassificationTask, last_step, split_target, step_mask
from seqbench.tasks.base import Metric, Task
from seqbench.tasks.forecast import WindowForecast
from seqbench.tasks.registry import register_task

KINDS = ("auto", "classification", "regression", "per_step", "forecast")


def _fail(path, msg: str) -> SeqbenchError:
    return SeqbenchError(f"{path}: {msg}")


def read_table(path: Path):
    """A pandas DataFrame from CSV or Parquet; parser failures become one-line errors."""
    pd = require("pandas", why="reading CSV/Parquet files")
    try:
        if path.suffix.lower() == ".parquet":
            require("pyarrow", why="reading Parquet files")
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path)
    except SeqbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - any parser error is a malformed file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise _fail(path, f"cannot be read as {path.suffix.lstrip('.').upper() or 'CSV'} ({first}); "
                          "check that it is a well-formed table with a header row") from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise _fail(path, "is empty (no data rows); it needs a header row and at least one data row")
    return df


def _numeric(df, cols, path) -> np.ndarray:
    pd = require("pandas")
    out = []
    for c in cols:
        try:
            v = pd.to_numeric(df[c], errors="coerce")
        except (TypeError, ValueError):  # list- or dict-valued cells (Parquet)
            raise _fail(path, f"column {c!r} holds lists or other non-scalar values; one number per cell") from None
        bad = v.isna() & df[c].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise _fail(path, f"column {c!r} has a non-numeric value {_plain(df[c].iloc[row])!r} (data row {row + 1}); "
                              "features and targets must be numbers")
        out.append(v.to_numpy(dtype=np.float64))
    a = np.stack(out, axis=-1)
    if not np.isfinite(a).all():
        r, c = map(int, np.argwhere(~np.isfinite(a))[0])
        raise _fail(path, f"column {cols[c]!r} has a missing/NaN/inf value (data row {r + 1}); "
                          "drop or impute it first")
    return a


def _check_finite(path, name: str, a: np.ndarray) -> np.ndarray:
    if a.dtype == object or not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise _fail(path, f"array {name!r} is not numeric (dtype {a.dtype}); store numbers")
    if np.iscomplexobj(a):
        raise _fail(path, f"array {name!r} is complex; store real numbers (e.g. real and imaginary parts as two "
                          "features)")
    a = a.astype(np.float64)
    if a.size == 0:
        raise _fail(path, f"array {name!r} is empty")
    if not np.isfinite(a).all():
        raise _fail(path, f"array {name!r} has NaN/inf values; drop or impute them first")
    return a


def load_file(path: Path, *, id_col: str, time_col: str, label_col: str, target_col: str,
              value_col: str | None, features: list[str] | None) -> dict:
    """{x: list of (L_i, d) arrays, y: per-sequence (N,) or per-step list, or series (T,)}."""
    if not path.exists():
        raise SeqbenchError(f"{path}: no such file; give the path of a .csv, .parquet or .npz file")
    if path.is_dir():
        raise SeqbenchError(f"{path} is a directory; give the path of a .csv, .parquet or .npz file")
    if path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix not in (".csv", ".parquet"):
        raise _fail(path, f"unsupported file type {suffix or '(none)'}; use .csv, .parquet or .npz")
    df = read_table(path)
    df.columns = [str(c).strip() for c in df.columns]
    if id_col not in df.columns:  # a lone series to forecast
        cols = [value_col] if value_col else [c for c in df.columns if c != time_col]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise _fail(path, f"has no column {missing[0]!r} (columns: {', '.join(df.columns)})")
        if len(cols) != 1:
            raise _fail(path, f"has no {id_col!r} column, so it is read as one series to forecast, but it has "
                              f"{len(cols)} columns ({', '.join(cols)}); add a {id_col!r} column for sequences or "
                              "pass value=<column> to pick the series")
        if time_col in df.columns:
            df = df.sort_values(time_col, kind="stable")
        return {"series": _numeric(df, cols, path)[:, 0]}
    has_label, has_target = label_col in df.columns, target_col in df.columns
    if not has_label and not has_target:
        raise _fail(path, f"needs a {label_col!r} column (one per sequence) or a {target_col!r} column (one per "
                          f"step); columns: {', '.join(df.columns)}")
    reserved = {id_col, time_col, label_col, target_col}
    feats = features or [c for c in df.columns if c not in reserved]
    missing = [c for c in feats if c not in df.columns]
    if missing:
        raise _fail(path, f"has no feature column {missing[0]!r} (columns: {', '.join(df.columns)})")
    if not feats:
        raise _fail(path, "has no feature columns besides the id/step/label/target columns")
    if df[id_col].isna().any():
        raise _fail(path, f"column {id_col!r} has missing ids")
    if df[id_col].map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray))).any():
        raise _fail(path, f"column {id_col!r} holds lists or other non-scalar values; one id per row")
    if time_col in df.columns:
        df = df.sort_values([id_col, time_col], kind="stable")
    values = _numeric(df, feats, path)
    ycol = label_col if has_label else target_col
    yv = _numeric(df, [ycol], path)[:, 0]
    ids = df[id_col].to_numpy()
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # sequences in order of first appearance
    xs, ys = [], []
    for g in order:
        rows = np.flatnonzero(inverse == g)
        xs.append(values[rows])
        if has_label:
            if np.unique(yv[rows]).size > 1:
                raise _fail(path, f"sequence {_plain(ids[rows[0]])!r} has more than one {label_col!r} value; a label "
                                  f"is one per sequence (use a {target_col!r} column for per-step targets)")
            ys.append(yv[rows[0]])
        else:
            ys.append(yv[rows])
    return {"x": xs, "y": np.array(ys) if has_label else ys, "per_step": not has_label}


def _load_npz(path: Path) -> dict:
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise _fail(path, "is not an NPZ archive (numpy.savez writes a zip file); save it with numpy.savez")
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise _fail(path, f"cannot be read as NPZ ({msg}); save it with numpy.savez and numeric arrays") from None
    if "series" in arrays:
        s = _check_finite(path, "series", arrays["series"])
        if s.ndim != 1:
            raise _fail(path, f"'series' must be 1-D (T,), got shape {s.shape}")
        return {"series": s}
    for key in ("x", "y"):
        if key not in arrays:
            raise _fail(path, f"has no array {key!r} (arrays: {', '.join(arrays) or 'none'}); an NPZ needs x (N, L[, d]) "
                              "and y (N,) or (N, L), or a single 'series' to forecast")
    x = _check_finite(path, "x", arrays["x"])
    y = _check_finite(path, "y", arrays["y"])
    if y.ndim == 0:
        raise _fail(path, "'y' is a single number; it must be (N,) one value per sequence or (N, L) one per step")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise _fail(path, f"'x' must be (N, L) or (N, L, d), got shape {x.shape}")
    if len(y) != len(x):
        raise _fail(path, f"'x' has {len(x)} sequences but 'y' has {len(y)}")
    N, L = x.shape[:2]
    lengths = np.full(N, L)
    if "lengths" in arrays:
        lengths = _check_finite(path, "lengths", arrays["lengths"])
        if lengths.shape != (N,) or (lengths != np.round(lengths)).any() or (lengths < 1).any() or (lengths > L).any():
            raise _fail(path, f"'lengths' must be N={N} integers in 1..{L} (the padded length)")
        lengths = lengths.astype(np.int64)
    per_step = y.ndim >= 2
    if per_step and y.shape[1] != L:
        raise _fail(path, f"a per-step 'y' must be (N, L) with L={L} like x, got shape {y.shape}")
    if y.ndim > 2:
        raise _fail(path, f"'y' must be (N,) or (N, L), got shape {y.shape}")
    xs = [x[i, :lengths[i]] for i in range(N)]
    return {"x": xs, "y": [y[i, :lengths[i]] for i in range(N)] if per_step else y, "per_step": per_step}


def _plain(v):
    """A NumPy scalar as the Python value it holds (messages show 3, not np.int64(3))."""
    return v.item() if isinstance(v, np.generic) else v


def _integral(y: np.ndarray) -> bool:
    return bool(np.all(np.equal(np.mod(y, 1), 0)))


@register_task("custom", listed_variants=())  # needs a file: described in `seqbench tasks`' footer
def custom_task(path: str = "", kind: str = "auto", id: str = "series", step: str = "step", label: str = "label",
                target: str = "target", value: str | None = None, features: str | None = None,
                lookback: int | None = None, horizon: int = 1, season: int = 1, seed: int = 0) -> Task:
    """Your own CSV/Parquet/NPZ file (classification, regression, per-step targets or forecasting)."""
    if not path:
        raise SeqbenchError("the custom task needs a file: create_task('custom', path='data.csv') "
                            "or --task-opt path=data.csv")
    if kind not in KINDS:
        raise SeqbenchError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    p = Path(os.path.expanduser(str(path)))
    feature_list = [f.strip() for f in features.split(",") if f.strip()] if features else None
    if feature_list:
        taken = sorted({id, step, label, target} & set(feature_list))
        if taken:
            raise SeqbenchError(f"features={features!r} names the {', '.join(map(repr, taken))} column: the id, step, "
                                "label and target columns cannot be inputs (the label would leak into them)")
    data = load_file(p, id_col=id, time_col=step, label_col=label, target_col=target, value_col=value,
                     features=feature_list)
    opts = {k: v for k, v in dict(path=str(path), id=id, step=step, label=label, target=target, value=value,
                                   features=features, seed=seed).items() if v is not None}
    if "series" in data:
        if kind not in ("auto", "forecast"):
            raise _fail(p, f"holds one series (to forecast), not sequences for kind={kind!r}")
        return CustomForecast(data["series"], p, lookback, horizon, season, opts)
    if kind == "forecast":
        raise _fail(p, "kind=forecast needs one series: a file without an id column (CSV) or a 'series' array (NPZ)")
    per_step, y = data["per_step"], data["y"]
    if kind == "auto":
        kind = "per_step" if per_step else ("classification" if _integral(y) else "regression")
    if (kind == "per_step") != per_step:
        raise _fail(p, f"kind={kind} needs {'a per-step target' if kind == 'per_step' else 'one label per sequence'}")
    cls = CustomClassification if kind == "classification" else CustomRegression
    return cls(data, p, kind, seed, opts)


class CustomForecast(WindowForecast):
    name = "custom"
    kind = "forecast"
    source = "user file"

    def __init__(self, series: np.ndarray, path: Path, lookback: int | None, horizon: int, season: int, opts: dict):
        super().__init__()
        if len(series) < 10:
            raise _fail(path, f"the series has {len(series)} values; forecasting needs at least 10")
        self.opts = opts
        self._setup(series, lookback or max(2 * season, min(24, len(series) // 5)), horizon, season)

    def config(self) -> dict:
        return {"name": "custom", "kind": "forecast", **self.opts, "lookback": self.lookback,
                "horizon": self.horizon, "season": self.season}


def _padded_splits(task: ArrayTask, data: dict, path: Path, seed: int, y_dtype) -> None:
    """Pad the sequences to one length and split them 70/15/15 at random (``seed``) into ``task``."""
    xs, y = data["x"], data["y"]
    dims = {s.shape[1] for s in xs}
    if len(dims) != 1:
        raise _fail(path, f"sequences have different feature counts {sorted(dims)}")
    if len(xs) < 3:
        raise _fail(path, f"has {len(xs)} sequence(s); at least 3 are needed for train/valid/test splits")
    lengths = np.array([len(s) for s in xs])
    L = int(lengths.max())
    x = np.zeros((len(xs), L, dims.pop()), dtype=np.float32)
    for i, s in enumerate(xs):
        x[i, :len(s)] = s
    if data["per_step"]:
        yy = np.zeros((len(xs), L), dtype=np.float32)
        for i, s in enumerate(y):
            yy[i, :len(s)] = s
        y = yy
    y = y.astype(y_dtype)
    order = np.random.default_rng(seed).permutation(len(xs))
    n_hold = max(1, int(round(0.15 * len(xs))))
    parts = {"train": order[2 * n_hold:], "valid": order[n_hold:2 * n_hold], "test": order[:n_hold]}
    for split, idx in parts.items():
        task._set_split(split, x[idx], y[idx], lengths[idx])
    task.d_in, task.seq_len = x.shape[2], L


class CustomClassification(ClassificationTask):
    """Sequences with one integer class label each, read at the last real step."""

    name = "custom"
    kind = "classification"
    source = "user file"
    recommended = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 20}

    def __init__(self, data: dict, path: Path, kind: str, seed: int, opts: dict):
        super().__init__()
        self.opts, y = opts, data["y"]
        if not _integral(y) or (y < 0).any():
            raise _fail(path, "classification labels must be integers >= 0 (class ids)")
        classes = np.unique(y)
        if classes.size < 2:
            raise _fail(path, f"the label column has only one class ({_plain(y[0].astype(np.int64))}); "
                              "classification needs >= 2 (or pass kind=regression)")
        if y.max() >= max(10 * classes.size, 1000):
            raise _fail(path, f"labels run up to {int(y.max()):,} for {classes.size} distinct classes; class ids are "
                              f"0..K-1: renumber them (or pass kind=regression for numeric targets)")
        _padded_splits(self, data, path, seed, np.int64)
        self._finish_classes()

    def config(self) -> dict:
        return {"name": "custom", "kind": self.kind, **self.opts}


class CustomRegression(ArrayTask):
    """Sequences with one value each (read at the last real step) or a target per step; MSE."""

    name = "custom"
    source = "user file"
    metric = Metric("mse", higher_is_better=False)
    recommended = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 20}

    def __init__(self, data: dict, path: Path, kind: str, seed: int, opts: dict):
        super().__init__()
        self.kind, self.opts, per_step = kind, opts, data["per_step"]
        _padded_splits(self, data, path, seed, np.float32)
        self.d_out = 1
        self.output_steps = "all" if per_step else "last"
        mean = self.real_targets("train").mean()
        self.trivial_by_split = {s: float(((self.real_targets(s) - mean) ** 2).mean()) for s in self.data}
        self.trivial_baseline = self.trivial_by_split["test"]
        self.trivial_note = "predict the training mean" + (" at every step" if per_step else "")

    def config(self) -> dict:
        return {"name": "custom", "kind": self.kind, **self.opts}

    def loss(self, out: torch.Tensor, target) -> torch.Tensor:
        return self._sq_err(out, target).mean()

    def score(self, out: torch.Tensor, target) -> dict[str, tuple[float, int]]:
        e = self._sq_err(out, target)
        return {"mse": (float(e.sum()), e.numel())}

    def _sq_err(self, out: torch.Tensor, target) -> torch.Tensor:
        y, lengths = split_target(target)
        if self.kind == "regression":
            return (last_step(out, lengths)[:, 0] - y).square()
        err = (out[..., 0] - y).square()
        mask = step_mask(lengths, y.shape[1])
        return err.flatten() if mask is None else err[mask]
