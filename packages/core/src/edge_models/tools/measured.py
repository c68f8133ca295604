"""Run one job in a fresh process and measure it: the peak memory of that job alone, not of everything the
calling process did before (benchmarks and the demo's stages)."""

from __future__ import annotations

import time

from edge_models.runtime.memory import peak_rss_bytes


def run_measured(fn, *args):
    """Run `fn(*args)` in a fresh process: returns (result, its peak RSS in bytes, seconds).

    A process of its own makes the peak memory that of this one job, not of everything before it.
    `fn` must be importable (a module-level function).
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from edge_models.io import console

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(_measured, fn, *args)
        console.relay_stages(future)
        return future.result()


def _measured(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, peak_rss_bytes(), time.perf_counter() - started
