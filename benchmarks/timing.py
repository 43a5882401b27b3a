"""Wall-clock timing shared by the benchmark scripts (medians, with device syncs)."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds, after 3 warm-up calls."""
    return timed_pair(fn, lambda: None, device, repeats)[0]


def timed_pair(fn_a, fn_b, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median wall times (seconds) of ``fn_a()`` and ``fn_b()``, run alternately so that
    both see the same machine noise."""
    sync = _sync(device)
    for _ in range(3):
        fn_a(), fn_b()
    sync()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)
