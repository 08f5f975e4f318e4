"""Reading a user's data file: CSV or Parquet (long format, one row per step), NPZ arrays, or text,
validated with one-line errors that name the problem (the custom task and ``seqbench predict``
both read through here)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from seqbench.data.optional import require
from seqbench.errors import SeqbenchError


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


def _check_finite(path, name: str, a: np.ndarray, keep_float: bool = False) -> np.ndarray:
    """``a`` as float64 (``keep_float``: a floating array as it is, so new data to predict costs its
    own size in memory, not twice it), checked numeric and finite."""
    if a.dtype == object or not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise _fail(path, f"array {name!r} is not numeric (dtype {a.dtype}); store numbers")
    if np.iscomplexobj(a):
        raise _fail(path, f"array {name!r} is complex; store real numbers (e.g. real and imaginary parts as two "
                          "features)")
    if not (keep_float and np.issubdtype(a.dtype, np.floating)):
        a = a.astype(np.float64)
    if a.size == 0:
        raise _fail(path, f"array {name!r} is empty")
    if a.ndim == 0:
        finite = bool(np.isfinite(a))
    else:  # in blocks of rows: no mask as large as the array
        rows = max(1, 2**20 // max(1, a[0].size))
        finite = all(np.isfinite(a[i:i + rows]).all() for i in range(0, len(a), rows))
    if not finite:
        raise _fail(path, f"array {name!r} has NaN/inf values; drop or impute them first")
    return a


def load_file(path: Path, *, id_col: str, time_col: str, label_col: str, target_col: str,
              value_col: str | None, features: list[str] | None, split_col: str = "split",
              need_target: bool = True) -> dict:
    """{x: list of (L_i, d) arrays, y: per-sequence (N,) or per-step list, optional split per
    sequence}, or {series: (T,)}, or {text: str}, or {tokens: (T,) ids}."""
    if not path.exists():
        raise SeqbenchError(f"{path}: no such file; give the path of a .csv, .parquet, .npz or .txt file")
    if path.is_dir():
        raise SeqbenchError(f"{path} is a directory; give the path of a .csv, .parquet, .npz or .txt file")
    if path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, need_target)
    if suffix == ".txt":
        try:
            return {"text": path.read_text(encoding="utf-8")}
        except UnicodeDecodeError as e:
            raise _fail(path, f"is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    if suffix not in (".csv", ".parquet"):
        raise _fail(path, f"unsupported file type {suffix or '(none)'}; use .csv, .parquet, .npz or .txt")
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
    if not has_label and not has_target and need_target is False:  # new data to predict: inputs only
        has_label = None
    elif not has_label and not has_target:
        raise _fail(path, f"needs a {label_col!r} column (one per sequence) or a {target_col!r} column (one per "
                          f"step); columns: {', '.join(df.columns)}")
    reserved = {id_col, time_col, label_col, target_col, split_col}
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
    if has_label is not None and df[ycol].map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray))).any():
        raise _fail(path, f"column {ycol!r} holds lists or other non-scalar values; one label or target per row")
    pd = require("pandas")
    if has_label is None:
        yv = np.zeros(len(df))
    elif has_label and pd.to_numeric(df[ycol], errors="coerce").isna().any():  # class names: kept as text
        if df[ycol].isna().any():
            raise _fail(path, f"column {ycol!r} has missing labels (data row {int(np.flatnonzero(df[ycol].isna())[0]) + 1})")
        yv = df[ycol].astype(str).str.strip().to_numpy()
    else:
        yv = _numeric(df, [ycol], path)[:, 0]
    splits = None
    if split_col in df.columns:
        splits = df[split_col].astype(str).str.strip().str.lower().to_numpy()
        bad = sorted(set(splits) - {"train", "valid", "test"})
        if bad:
            raise _fail(path, f"column {split_col!r} has {bad[0]!r}; its values must be train, valid or test")
    ids = df[id_col].to_numpy()
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))  # sequences in order of first appearance
    key = rank[inverse.reshape(-1)]
    perm = np.argsort(key, kind="stable")  # rows grouped by sequence, in file order within each: O(rows log rows)
    starts = np.r_[0, np.flatnonzero(np.diff(key[perm])) + 1]
    head = np.repeat(starts, np.diff(np.r_[starts, len(perm)]))  # each row's sequence's first row
    seq_ids = [_plain(v) for v in ids[perm[starts]]]

    def mixed(col: np.ndarray) -> str | None:
        """The first sequence whose rows disagree on ``col``, if any."""
        c = col[perm]
        bad = np.flatnonzero(c != c[head])
        return None if not len(bad) else seq_ids[int(np.searchsorted(starts, bad[0], side="right")) - 1]
    seq_splits = []
    if splits is not None:
        if (s := mixed(splits)) is not None:
            raise _fail(path, f"sequence {s!r} has more than one {split_col!r} value; a sequence belongs to one split")
        seq_splits = list(splits[perm[starts]])
    xs = np.split(values[perm], starts[1:])
    if has_label:
        if (s := mixed(yv)) is not None:
            raise _fail(path, f"sequence {s!r} has more than one {label_col!r} value; a label is one per sequence "
                              f"(use a {target_col!r} column for per-step targets)")
        ys = list(yv[perm[starts]])
    else:
        ys = np.split(yv[perm], starts[1:])
    return {"x": xs, "y": np.array(ys) if has_label else ys, "per_step": not has_label,
            "split": np.array(seq_splits) if splits is not None else None,
            "ids": seq_ids, "features": list(feats), "columns": [c for c in df.columns if c not in reserved]}


def _load_npz(path: Path, need_target: bool = True) -> dict:
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
    if "tokens" in arrays:
        t = _check_finite(path, "tokens", arrays["tokens"])
        if t.ndim != 1 or not _integral(t) or (t < 0).any():
            raise _fail(path, f"'tokens' must be 1-D non-negative integer ids, got shape {t.shape}")
        return {"tokens": t.astype(np.int64)}
    if not need_target and "x" in arrays and "y" not in arrays:  # new data to predict: inputs only
        arrays["y"] = np.zeros(len(arrays["x"]) if arrays["x"].ndim else 0)
    for key in ("x", "y"):
        if key not in arrays:
            raise _fail(path, f"has no array {key!r} (arrays: {', '.join(arrays) or 'none'}); an NPZ needs x (N, L[, d]) "
                              "and y (N,) or (N, L), or a single 'series' to forecast")
    x = _check_finite(path, "x", arrays["x"], keep_float=not need_target)  # predict converts batch by batch
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
    return {"x": xs, "y": [y[i, :lengths[i]] for i in range(N)] if per_step else y, "per_step": per_step,
            "split": None}


def _plain(v):
    """A NumPy scalar as the Python value it holds (messages show 3, not np.int64(3))."""
    return v.item() if isinstance(v, np.generic) else v


def _integral(y: np.ndarray) -> bool:
    return bool(np.all(np.equal(np.mod(y, 1), 0)))
