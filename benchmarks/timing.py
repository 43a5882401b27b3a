"""Wall-clock timing shared by the benchmark scripts (medians, with device syncs)."""
from __future__ import annotations

import ctypes
import statistics
import sys
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


def alternating_runs(sides: dict[str, Callable[[], object]], runs: int,
                     before: Callable[[str], None] | None = None, after: Callable[[str], None] | None = None):
    """Yield ``(run index, {side: wall seconds})`` for ``runs`` runs; each run times every side once,
    in the given order on even runs and reversed on odd ones, so that the sides share the machine's
    noise. ``before(side)`` / ``after(side)`` run untimed around each side (e.g. a scratch folder)."""
    names = list(sides)
    for r in range(runs):
        times = {}
        for name in (names if r % 2 == 0 else names[::-1]):
            if before is not None:
                before(name)
            t = time.perf_counter()
            sides[name]()
            times[name] = time.perf_counter() - t
            if after is not None:
                after(name)
        yield r, times


def median_range(values: list[float], unit: str = "x") -> str:
    """``"median 1.53x (range 1.05-2.53)"``."""
    return f"median {statistics.median(values):.2f}{unit} (range {min(values):.2f}-{max(values):.2f})"


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (no trimming, no per-block mmap).

    By default glibc returns large freed blocks to the OS, depending on the order of
    earlier allocations, so a later allocation of the same size may take a fresh page
    fault (and the kernel zeroing the page) for each 4 KiB page. On a benchmark of
    tens-of-MB tensors that cost comes and goes between runs and can be larger than the
    kernels being compared; it lands on both sides, so it squeezes their ratio towards
    1 at random. Production CPU setups avoid it with jemalloc or tcmalloc. Applies to the
    whole process, so to both sides of every comparison. Returns False where it does not
    apply (not Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False
