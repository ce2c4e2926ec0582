"""Peak resident memory of this process, per stage.

On Linux the kernel keeps the process's high-water mark (``VmHWM`` in ``/proc/self/status``)
and lets a process reset it (writing ``5`` to ``/proc/self/clear_refs``), so each stage's own
peak can be read after it ran. Elsewhere the peak is ``resource.getrusage``'s ``ru_maxrss``,
the peak since the process started (then a stage's figure is an upper bound of its own).
With the Spark engine this is the driver's memory only; executors report theirs to Spark.
"""

from __future__ import annotations

import resource
import sys
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


def with_peak(run: Callable[[], R]) -> R:
    """``run()``, a :class:`pipelines.core.results.StageResult`, with the peak resident memory
    while it ran attached (``peak_rss_mb``): how the build loop and every Dagster step measure."""
    reset_peak()
    return run().with_run(peak_rss_mb=peak_rss_mb())
