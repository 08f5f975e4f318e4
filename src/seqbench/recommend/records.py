"""The recommender's own tables in the results database: costs measured per machine, and each
search's log (what it proposed, the epochs each reached, the time spent), so that a rerun reuses
measurements and a killed search resumes. They live in the trials' SQLite file (one file to keep),
created on first use."""
from __future__ import annotations

import json
import time

from seqbench.bench.store import Store

SCHEMA = """
-- measured costs of model configurations (seqbench recommend / profile), per machine
CREATE TABLE IF NOT EXISTS costs (
    machine TEXT NOT NULL,
    key TEXT NOT NULL,              -- the candidate, the task's shape and the batch size (hashed)
    costs TEXT NOT NULL,            -- JSON: params, shape, step_ms, seq_ms, mem_mb, train_step_ms
    measured REAL,
    PRIMARY KEY (machine, key)
);
-- a recommend search's own record: each proposed configuration, its reported epochs and state
CREATE TABLE IF NOT EXISTS searches (
    search TEXT NOT NULL,
    tid TEXT NOT NULL,
    record TEXT NOT NULL,           -- JSON: params, values per epoch, state, value
    spent REAL,                     -- the search's time spent so far (seconds)
    updated REAL,
    PRIMARY KEY (search, tid)
);
"""


def _ready(store: Store) -> Store:
    if not getattr(store, "_recommend_tables", False):
        store.db.executescript(SCHEMA)
        store._recommend_tables = True
    return store


def cost(store: Store, machine: str, key: str) -> dict | None:
    r = _ready(store).db.execute("SELECT costs FROM costs WHERE machine = ? AND key = ?", (machine, key)).fetchone()
    return None if r is None else json.loads(r["costs"])


def put_costs(store: Store, machine: str, items: list[tuple[str, dict]]) -> None:
    with _ready(store)._transaction() as db:
        db.executemany("INSERT OR REPLACE INTO costs (machine, key, costs, measured) VALUES (?, ?, ?, ?)",
                       [(machine, k, json.dumps(v), time.time()) for k, v in items])


def log_search(store: Store, search: str, tid: str, record: dict, spent: float) -> None:
    keep = {k: record[k] for k in ("params", "values", "state", "value", "error") if k in record}
    _ready(store)._tx("INSERT OR REPLACE INTO searches (search, tid, record, spent, updated) VALUES (?, ?, ?, ?, ?)",
                      (search, tid, json.dumps(keep), spent, time.time()))


def set_search_spent(store: Store, search: str, spent: float) -> None:
    _ready(store)._tx("UPDATE searches SET spent = ? WHERE search = ?", (spent, search))


def search_log(store: Store, search: str) -> tuple[dict[str, dict], float]:
    """A search's records by tid, and the time it has spent."""
    rows = _ready(store).db.execute("SELECT tid, record, spent FROM searches WHERE search = ?", (search,)).fetchall()
    return {r["tid"]: json.loads(r["record"]) for r in rows}, max((r["spent"] or 0.0 for r in rows), default=0.0)
