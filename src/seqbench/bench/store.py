"""The results store: one SQLite database (WAL), one row per trial, keyed by a stable trial key.

The store is the only thing that coordinates sweeps, also several at once on one database. A
trial is ``pending`` -> ``running`` -> ``done`` or ``failed``. A sweep *claims* a trial in one
transaction (``claim``): only a pending or failed trial, or a running one whose owner is gone, can
be claimed, so no trial is ever trained by two sweeps at once. The owner renews its lease
(``renew``) while it runs; a trial whose owner died (same host: its process is gone; elsewhere:
no renewal for ``LEASE_S``) can be claimed again. ``finish`` / ``fail`` only touch a trial the
caller still owns, so a late or dead sweep can never overwrite another's result. Every transition
is one transaction: a ``kill -9`` at any moment leaves each trial finished (kept, exactly once:
the key is the primary key) or not (rerun next time).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from seqbench.errors import SeqbenchError
from seqbench.utils import pid_alive as _pid_alive

LEASE_S = 120.0  # a running trial whose owner has not renewed its lease for this long is up for grabs

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
    infer_ms REAL,                  -- inference latency of one sample, batch 1 (ms)
    peak_mem_mb REAL,
    paper REAL,                     -- the paper's number for this model and task, if any
    trivial REAL,                   -- the task's trivial baseline
    chance REAL,                    -- classification: chance level (1 / classes)
    optimum REAL,                   -- the best possible score, where the task knows it (the probes)
    env TEXT,                       -- seqbench version and git revision, torch, CPU, threads (JSON)
    error TEXT,
    pid INTEGER,                    -- the process running (or that last ran) the trial
    started REAL,
    finished REAL,
    owner TEXT,                     -- the sweep that claimed it: host:pid:token
    heartbeat REAL                  -- the owner's last lease renewal
);
"""
# columns added after the first release: added to older databases when they are opened
ADDED = {"chance": "REAL", "owner": "TEXT", "heartbeat": "REAL", "optimum": "REAL"}
COLUMNS = ("key", "task", "model", "seed", "budget", "config", "status", "attempts", "metric", "higher_is_better",
           "test_metric", "best_valid", "test", "history", "params", "receptive_field", "train_time",
           "samples_per_sec", "infer_ms", "peak_mem_mb", "paper", "trivial", "chance", "optimum", "env", "error", "pid", "started",
           "finished", "owner", "heartbeat")


def new_owner() -> str:
    """An identity for one sweep: host, pid and a random token (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None, heartbeat: float | None, now: float | None = None) -> bool:
    """Whether the sweep that holds a trial still does: its lease is fresh and, on this host, its
    process exists."""
    if not owner or heartbeat is None or (now or time.time()) - heartbeat > LEASE_S:
        return False
    host, pid, _token = (owner.rsplit(":", 2) + ["", ""])[:3]
    if host != socket.gethostname():
        return True  # another machine's sweep: trust its lease
    return pid.isdigit() and _pid_alive(int(pid))


class Store:
    """The results database. ``readonly=True`` (reports, exports) never writes, so a database in a
    read-only place can still be read."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if self.path.is_dir():
            raise SeqbenchError(f"{self.path} is a directory; give the results database file, like results.db")
        self.readonly = readonly
        try:
            if readonly:
                self.db = self._open_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")  # a finished trial survives power loss, not just kill -9
                self.db.executescript(SCHEMA)
                have = {r[1] for r in self.db.execute("PRAGMA table_info(trials)")}
                for col, kind in ADDED.items():
                    if col not in have:
                        self.db.execute(f"ALTER TABLE trials ADD COLUMN {col} {kind}")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(trials)")}
        except sqlite3.DatabaseError as e:
            msg = str(e)
            if "readonly" in msg or "unable to open" in msg or "read-only" in msg:
                raise SeqbenchError(f"cannot write the results database {self.path} ({msg}): the file or its "
                                    "directory is read-only; use a --db in a writable directory") from None
            raise SeqbenchError(f"{self.path} is not a seqbench results database ({msg}); give one written by "
                                "`seqbench bench --db`") from None
        if not {"key", "status", "config"} <= have:
            raise SeqbenchError(f"{self.path} is not a seqbench results database (no trials table); give one "
                                "written by `seqbench bench --db`")
        self.db.row_factory = sqlite3.Row

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise SeqbenchError(f"results database {self.path} does not exist")
        uri = self.path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:  # a WAL database in a read-only directory: read it as immutable
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=30, isolation_level=None)

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

    def _tx(self, sql: str, args: Iterable[Any] = ()) -> int:
        with self._transaction() as db:
            return db.execute(sql, tuple(args)).rowcount

    def add(self, trials: list[dict]) -> None:
        """Register trials as pending; existing rows (any status) are left alone."""
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO trials (key, task, model, seed, budget, config, status) "
                           "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                           [(t["key"], t["task"], t["model"], t["seed"], t.get("params"), json.dumps(t)) for t in trials])

    def status(self, key: str) -> str | None:
        row = self.db.execute("SELECT status FROM trials WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["status"]

    def claim(self, key: str, owner: str) -> bool:
        """Take a trial for ``owner`` (one transaction): True if it was pending, failed, or running
        under an owner that is gone; False if it is done or another live sweep holds it."""
        with self._transaction() as db:
            row = db.execute("SELECT status, owner, heartbeat FROM trials WHERE key = ?", (key,)).fetchone()
            if row is None or row["status"] == "done":
                return False
            if row["status"] == "running" and owner_alive(row["owner"], row["heartbeat"]):
                return False
            now = time.time()
            db.execute("UPDATE trials SET status = 'running', attempts = attempts + 1, started = ?, error = NULL, "
                       "pid = NULL, owner = ?, heartbeat = ? WHERE key = ?", (now, owner, now, key))
            return True

    def held_elsewhere(self, key: str, owner: str) -> bool:
        """True while another live sweep runs this trial."""
        row = self.db.execute("SELECT status, owner, heartbeat FROM trials WHERE key = ?", (key,)).fetchone()
        return (row is not None and row["status"] == "running" and row["owner"] != owner
                and owner_alive(row["owner"], row["heartbeat"]))

    def set_pid(self, key: str, owner: str, pid: int | None) -> None:
        self._tx("UPDATE trials SET pid = ? WHERE key = ? AND owner = ?", (pid, key, owner))

    def renew(self, owner: str) -> None:
        """Renew the lease on every trial ``owner`` is running."""
        self._tx("UPDATE trials SET heartbeat = ? WHERE owner = ? AND status = 'running'", (time.time(), owner))

    def release(self, owner: str) -> None:
        """Give back ``owner``'s running trials (an interrupted sweep): pending again."""
        self._tx("UPDATE trials SET status = 'pending', owner = NULL, pid = NULL WHERE owner = ? AND status = 'running'",
                 (owner,))

    def finish(self, key: str, result: dict, owner: str | None = None) -> bool:
        """Record a finished trial; with ``owner``, only while that owner still holds it."""
        cols = [c for c in result if c in COLUMNS and c not in ("key", "status", "owner")]
        values = [json.dumps(result[c]) if isinstance(result[c], (dict, list)) else result[c] for c in cols]
        sets = "".join(f", {c} = ?" for c in cols)
        guard, extra = (" AND owner = ? AND status = 'running'", [owner]) if owner else ("", [])
        return self._tx(f"UPDATE trials SET status = 'done', finished = ?, error = NULL{sets} WHERE key = ?{guard}",
                        [time.time(), *values, key, *extra]) > 0

    def fail(self, key: str, error: str, owner: str | None = None) -> bool:
        guard, extra = (" AND owner = ? AND status = 'running'", [owner]) if owner else ("", [])
        return self._tx(f"UPDATE trials SET status = 'failed', finished = ?, error = ? WHERE key = ?{guard}",
                        [time.time(), error[-4000:], key, *extra]) > 0

    def row(self, key: str) -> dict | None:
        r = self.db.execute("SELECT * FROM trials WHERE key = ?", (key,)).fetchone()
        return None if r is None else dict(r)

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
