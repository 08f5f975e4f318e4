"""The results store: one SQLite database (WAL), one row per trial, keyed by a stable trial key.

The store is the only thing that coordinates a sweep. A trial is ``pending`` -> ``running`` ->
``done`` or ``failed``; every transition is one transaction, so a ``kill -9`` at any moment leaves
each trial either finished (kept, exactly once: the key is the primary key) or not (rerun next
time; ``running`` rows left by a dead sweep count as interrupted).
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from seqbench.errors import SeqbenchError

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget INTEGER,
    config TEXT NOT NULL,           -- the full resolved trial config (JSON)
    status TEXT NOT NULL,           -- pending | running | done | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    metric TEXT,                    -- the task's headline metric name
    higher_is_better INTEGER,
    test_metric REAL,               -- final: test split, best-on-valid weights
    best_valid REAL,
    test TEXT,                      -- all test metrics (JSON)
    history TEXT,                   -- per-epoch rows (JSON)
    params INTEGER,
    receptive_field INTEGER,
    train_time REAL,
    samples_per_sec REAL,
    infer_ms REAL,                  -- inference latency of one test sample, batch 1 (ms)
    peak_mem_mb REAL,
    paper REAL,                     -- the paper's number for this model and task, if any
    trivial REAL,                   -- the task's trivial baseline
    env TEXT,                       -- seqbench version and git revision, torch, CPU, threads (JSON)
    error TEXT,
    pid INTEGER,                    -- the process running (or that last ran) the trial
    started REAL,
    finished REAL
);
"""
COLUMNS = ("key", "task", "model", "seed", "budget", "config", "status", "attempts", "metric", "higher_is_better",
           "test_metric", "best_valid", "test", "history", "params", "receptive_field", "train_time",
           "samples_per_sec", "infer_ms", "peak_mem_mb", "paper", "trivial", "env", "error", "pid", "started",
           "finished")


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise SeqbenchError(f"--db {self.path} is a directory; give a file path like results.db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a finished trial survives power loss, not just kill -9
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise SeqbenchError(f"{self.path} is not a seqbench results database ({e}); give one written by `seqbench bench --db`") from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction (taken at once: BEGIN IMMEDIATE), committed or rolled back whole."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _tx(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self._transaction() as db:
            db.execute(sql, tuple(args))

    def add(self, trials: list[dict]) -> None:
        """Register trials as pending; existing rows (any status) are left alone."""
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO trials (key, task, model, seed, budget, config, status) "
                           "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                           [(t["key"], t["task"], t["model"], t["seed"], t.get("params"), json.dumps(t)) for t in trials])

    def status(self, key: str) -> str | None:
        row = self.db.execute("SELECT status FROM trials WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["status"]

    def start(self, key: str, pid: int | None = None) -> None:
        self._tx("UPDATE trials SET status = 'running', attempts = attempts + 1, started = ?, error = NULL, pid = ? "
                 "WHERE key = ?", (time.time(), pid, key))

    def finish(self, key: str, result: dict) -> None:
        cols = [c for c in result if c in COLUMNS and c not in ("key", "status")]
        values = [json.dumps(result[c]) if isinstance(result[c], (dict, list)) else result[c] for c in cols]
        sets = ", ".join(f"{c} = ?" for c in cols)
        self._tx(f"UPDATE trials SET status = 'done', finished = ?, error = NULL{', ' if cols else ''}{sets} "
                 "WHERE key = ?", [time.time(), *values, key])

    def fail(self, key: str, error: str) -> None:
        self._tx("UPDATE trials SET status = 'failed', finished = ?, error = ? WHERE key = ?",
                 (time.time(), error[-4000:], key))

    def rows(self, status: str | None = None) -> list[dict]:
        sql = "SELECT * FROM trials" + (" WHERE status = ?" if status else "") + " ORDER BY task, model, seed, key"
        return [dict(r) for r in self.db.execute(sql, (status,) if status else ())]

    def counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self.db.execute("SELECT status, COUNT(*) AS n FROM trials GROUP BY status")}

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def dataframe(self):
        from seqbench.data import require
        pd = require("pandas", why="exporting results")
        return pd.DataFrame(self.rows(), columns=list(COLUMNS))

    def export(self, out: str | Path) -> Path:
        """Write all rows to .csv or .parquet (by extension), atomically."""
        from seqbench.utils import atomic_write
        out = Path(out)
        df = self.dataframe()
        if out.suffix.lower() == ".csv":
            atomic_write(out, lambda tmp: df.to_csv(tmp, index=False))
        elif out.suffix.lower() == ".parquet":
            from seqbench.data import require
            require("pyarrow", why="Parquet export")
            atomic_write(out, lambda tmp: df.to_parquet(tmp, index=False))
        else:
            raise SeqbenchError(f"unknown export format {out.suffix or '(none)'}; use .csv or .parquet")
        return out
