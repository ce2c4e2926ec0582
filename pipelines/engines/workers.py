"""Per-batch Python work in worker processes: the Polars engine's ``map_batches(..., processes=N)``.

Presidio and the mention substitution are Python, one core at a time, so on the Polars engine
the anonymise stage used one core of the machine while the other idled. Here the slices of a
``map_batches`` go to ``N`` worker processes and come back in input order, each the output of
``fn`` over that one slice. The workers are started with ``spawn`` (not ``fork``: the parent
runs Polars' and Arrow's thread pools, which a forked child would inherit locked) and get
``fn`` pickled once, at start. Slices travel as Arrow IPC. At most ``2 N`` slices are in flight,
so memory holds that many, not the input.

Anything ``fn`` keeps from one call to the next in a worker goes through :func:`worker_state`;
in the parent every call starts afresh as before. The workers' peak resident memory is added to
the stage's own (``pipelines.core.memory.add_worker_peak``), so a stage's ``peak_rss_mb`` counts
its whole process tree (an upper bound: the peaks need not coincide).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from itertools import chain
from typing import Callable, Iterator

import polars as pl
import pyarrow as pa

from pipelines.core import memory

_FN: Callable | None = None
_STATE: dict = {}


def _init(payload: bytes) -> None:
    global _FN
    _FN = pickle.loads(payload)


def in_worker() -> bool:
    """Whether this process is a :func:`map_ordered` worker."""
    return _FN is not None


def worker_state(owner: object, make: Callable[[], object]) -> object:
    """``make()``, kept for the life of this worker process while ``owner`` (an argument ``fn``
    was pickled with, so the same object in every call) is the same; a fresh ``make()`` on every
    call in the parent process, which does not keep work state after a stage."""
    if not in_worker():
        return make()
    key = id(owner)
    if key not in _STATE:
        _STATE.clear()
        _STATE[key] = (owner, make())
    return _STATE[key][1]


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _run(data: bytes) -> tuple[bytes | None, int, float]:
    """One slice in a worker: (``fn``'s batches as IPC, or None when it yields none; pid; peak MB)."""
    batches = list(_FN(iter(pa.ipc.open_stream(data).read_all().to_batches())))
    out = _ipc(pa.Table.from_batches(batches)) if batches else None
    return out, os.getpid(), memory.peak_rss_mb()


def map_ordered(fn: Callable, parts: Iterator[pl.DataFrame], processes: int) -> Iterator[pa.RecordBatch]:
    """``fn``'s record batches over each frame of ``parts`` in turn, in input order, computed in
    ``processes`` worker processes (one call of ``fn`` per part). A single part runs here, in
    this process: starting workers would cost more than it."""
    parts = iter(parts)
    head = [p for p in (next(parts, None), next(parts, None)) if p is not None]
    if len(head) < 2:
        yield from fn(b for p in head for b in p.to_arrow().to_batches())
        return
    peaks: dict[int, float] = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init, initargs=(pickle.dumps(fn),)) as pool:
        pending: deque = deque()

        def done():
            out, pid, peak = pending.popleft().result()
            peaks[pid] = max(peaks.get(pid, 0.0), peak)
            if out is not None:
                yield from pa.ipc.open_stream(out).read_all().to_batches()

        for part in chain(head, parts):
            pending.append(pool.submit(_run, _ipc(part.to_arrow())))
            while len(pending) > 2 * processes:
                yield from done()
        while pending:
            yield from done()
    memory.add_worker_peak(sum(peaks.values()))
