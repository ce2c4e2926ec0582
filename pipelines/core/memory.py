"""Peak resident memory of this process, per stage.

On Linux the kernel keeps the process's high-water mark (``VmHWM`` in ``/proc/self/status``)
and lets a process reset it (writing ``5`` to ``/proc/self/clear_refs``), so each stage's own
peak can be read after it ran. Elsewhere the peak is ``resource.getrusage``'s ``ru_maxrss``,
the peak since the process started (then a stage's figure is an upper bound of its own).
With the Spark engine this is the driver's memory only; executors report theirs to Spark.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
import time
from typing import Callable, TypeVar

R = TypeVar("R")

_STATUS, _CLEAR = "/proc/self/status", "/proc/self/clear_refs"


def reset_peak() -> bool:
    """Start a new high-water mark at the current RSS; False where the OS cannot."""
    try:
        with open(_CLEAR, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The process's peak resident memory in MB (since the last :func:`reset_peak` on Linux)."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, kB on Linux


def _libc():
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


_LIBC = _libc()
# Twice jemalloc's dirty-page decay (pipelines.JEMALLOC_CONF): its background thread has purged
# what the last stage freed by then.
RELEASE_WAIT_S = 0.2


def release() -> None:
    """Hand memory that is free but still mapped back to the OS, between stages.

    Three allocators keep what a stage freed: Python's (``gc.collect`` frees unreachable cycles),
    Arrow's memory pool (mimalloc in the pyarrow wheels: ``release_unused``) and glibc's heap,
    which the tokenizers and Presidio's native code use (``malloc_trim``). Polars' jemalloc
    returns its pages itself, from a background thread, within the decay time that
    ``pipelines/__init__.py`` configures: :data:`RELEASE_WAIT_S` waits that out. Without
    this a stage inside a build starts with several hundred MB of the previous stage's freed
    pages resident (docs/scale.md, "Retained memory between stages")."""
    gc.collect()
    if "polars" in sys.modules:
        time.sleep(RELEASE_WAIT_S)
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


# Peak MB of the worker processes a stage ran (pipelines.engines.workers), since the last reset.
_WORKER_PEAKS: list[float] = []


def add_worker_peak(mb: float) -> None:
    """Count ``mb`` (the summed peaks of a stage's worker processes) in the running stage's peak."""
    _WORKER_PEAKS.append(mb)


def worker_peak_mb(reset: bool = False) -> float:
    """The summed peaks of the worker processes started since the last reset (0 if none)."""
    total = round(sum(_WORKER_PEAKS), 1)
    if reset:
        _WORKER_PEAKS.clear()
    return total


def with_peak(run: Callable[[], R]) -> R:
    """``run()``, a :class:`pipelines.core.results.StageResult`, with the peak resident memory
    while it ran attached (``peak_rss_mb``): how the build loop and every Dagster step measure.
    What earlier work freed is given back first (:func:`release`), so the peak is the stage's own
    working set on top of what stays allocated. Worker processes the stage started
    (:func:`add_worker_peak`) are added: the figure is the process tree's, an upper bound."""
    release()
    reset_peak()
    worker_peak_mb(reset=True)
    result = run()
    return result.with_run(peak_rss_mb=round(peak_rss_mb() + worker_peak_mb(reset=True), 1))
