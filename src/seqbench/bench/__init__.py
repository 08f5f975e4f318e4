"""Systematic evaluation: sweeps, the SQLite results store, local/Ray execution, the report."""
from seqbench.bench.report import write_report
from seqbench.bench.executors import Executor, list_executors, register_executor
from seqbench.bench.runner import SweepSummary, run_sweep
from seqbench.bench.store import Store
from seqbench.bench.sweep import file_trials, grid_trials, make_trial, suite_trials, validate_trials

__all__ = ["Executor", "Store", "SweepSummary", "file_trials", "grid_trials", "list_executors", "make_trial",
           "register_executor", "run_sweep", "suite_trials", "validate_trials", "write_report"]
