"""Shared helpers for the benchmarks: timing and a machine description."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def machine() -> str:
    from seqbench.bench.worker import environment
    env = environment(torch.get_num_threads())
    return (f"{env['cpu']}, {env['cores']} cores, torch {env['torch']}, {env['threads']} thread(s), "
            f"Python {env['python']}")


def time_interleaved(fns: dict[str, Callable[[], object]], *, rounds: int = 7, min_time: float = 0.1
                     ) -> dict[str, float]:
    """Median seconds per call of each fn, measured in alternating rounds so that load changes on a
    shared machine hit every candidate alike (use for ratios)."""
    calls = {}
    for name, fn in fns.items():  # warm up and calibrate each block to ~min_time
        fn()
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            if time.perf_counter() - t0 >= min_time:
                break
            n *= 2
        calls[name] = n
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = calls[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(v) for name, v in samples.items()}


def matmul_peak(n: int = 2048) -> float:
    """Measured float32 GFLOP/s of an n x n x n matmul at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_interleaved({"mm": lambda: torch.mm(a, b)}, rounds=5, min_time=0.3)["mm"]
    return 2 * n ** 3 / t / 1e9
