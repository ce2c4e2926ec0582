"""Progress of long work: a tqdm line on a terminal, the same counts as INFO log lines.

Stages call :func:`progress` around their long loops (ingest records, messages tokenised,
shard files written). On a terminal (stderr is a TTY) a ``tqdm`` bar shows counts and
rate; anywhere else (a scheduled job, a test, Dagster's run worker) the bar is silent.
Either way the counts go to the stage's logger at INFO every ``every_s`` seconds and once
at the end, so ``socialcorpus -v`` and the Dagster run logs show them.

``tqdm`` (pinned in pyproject) was chosen over ``rich``: Dagster and spaCy already depend
on it, it redraws one line in place, and it needs no console object.

Also the logging set-up of our commands (:func:`configure_logging`): our own loggers
(``socialcorpus.*``) log progress; library loggers (Presidio logs one INFO line per
message, alembic, matplotlib) stay at WARNING unless asked for with ``-vv``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
EVERY_S = 10.0
OWN_LOGGERS = ("socialcorpus", "trainer")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Counts of one piece of work; ``update(n)`` as it goes, ``close()`` at the end (or ``with``)."""

    def __init__(self, desc: str, log: logging.Logger | None = None, total: int | None = None,
                 unit: str = "rows", every_s: float = EVERY_S, bar: bool | None = None, show_rate: bool = True):
        self.desc, self.unit, self.every_s, self.show_rate = desc, unit, every_s, show_rate
        self.log = log or logging.getLogger("socialcorpus")
        self.n = 0
        self.total = total
        self.t0 = self._last = time.monotonic()
        show = stderr_is_terminal() if bar is None else bar
        fmt = None if show_rate else "{l_bar}{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}{postfix}]"
        self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", leave=False, dynamic_ncols=True,
                         file=sys.stderr, mininterval=0.5, bar_format=fmt) if show else None

    def rate(self) -> float:
        return self.n / max(time.monotonic() - self.t0, 1e-9)

    def line(self) -> str:
        of = f"/{self.total:,}" if self.total is not None else ""
        rate = f" ({self.rate():,.0f} {self.unit}/s)" if self.show_rate else ""
        return f"{self.desc}: {self.n:,}{of} {self.unit}{rate}"

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=True)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            extra = "".join(f", {k} {v:,}" if isinstance(v, int) else f", {k} {v}" for k, v in postfix.items())
            self.log.info("%s%s", self.line(), extra)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.log.info("%s in %.1fs", self.line(), time.monotonic() - self.t0)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(desc: str, log: logging.Logger | None = None, total: int | None = None, unit: str = "rows",
             **kw) -> Progress:
    """A :class:`Progress`; use it as ``with progress("ingest reddit", log) as p: ... p.update(n)``."""
    return Progress(desc, log, total, unit, **kw)


def iterate(items: Iterable[T], desc: str, log: logging.Logger | None = None, total: int | None = None,
            unit: str = "items") -> Iterator[T]:
    """``items`` with progress counted one per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(desc, log, total, unit) as p:
        for x in items:
            yield x
            p.update(1)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is logged (tests and tools swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(verbosity: int = 0, default_level: int = logging.WARNING) -> None:
    """Logging on stderr for our commands.

    verbosity 0: our loggers at ``default_level``, libraries at WARNING; 1 (``-v``): ours at
    INFO (the progress lines); 2 (``-vv``): ours at DEBUG and libraries at INFO.
    """
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(h)
    root.setLevel(logging.INFO if verbosity >= 2 else logging.WARNING)
    ours = logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else default_level
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(ours)
