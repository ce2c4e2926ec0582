"""The Polars engine's ``map_batches`` in worker processes (pipelines/engines/workers.py), with
real spawned processes: the rows come back in input order, computed outside this process; one
slice runs here; a worker's error reaches the caller with its message; the workers' peak memory
is counted in the stage's."""

import os

import narwhals as nw
import polars as pl
import pyarrow as pa
import pytest

from pipelines import engines
from pipelines.core import memory
from pipelines.core.results import StageResult
from pipelines.engines.polars import PolarsEngine

KEYS = [f"k{i}" for i in range(50)]
SCHEMA = pa.schema([("k", pa.string()), ("pid", pa.int64())])


def _tag(batches):  # module level: pickled to the workers
    for b in batches:
        yield pa.RecordBatch.from_arrays([b.column("k"), pa.array([os.getpid()] * b.num_rows, pa.int64())],
                                         names=["k", "pid"])


def _boom(batches):
    for b in batches:
        if "k37" in b.column("k").to_pylist():
            raise ValueError("record k37 is bad")
        yield from _tag([b])


def _frame(keys=KEYS):
    return nw.from_native(pl.DataFrame({"k": keys}).lazy())


def _map(fn, keys=KEYS, **kw) -> pl.DataFrame:
    engine = PolarsEngine(spill=True)  # its spill files live as long as it does
    return engines.to_polars(engine.map_batches(_frame(keys), fn, SCHEMA, batch_rows=4, **kw))


def test_slices_are_computed_in_worker_processes_and_come_back_in_input_order():
    out = _map(_tag, processes=2)
    assert out["k"].to_list() == KEYS
    pids = set(out["pid"].to_list())
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    # the same rows as in this process
    here = _map(_tag)
    assert here["k"].to_list() == KEYS and set(here["pid"].to_list()) == {os.getpid()}


def test_one_slice_runs_in_this_process():
    out = _map(_tag, KEYS[:3], processes=2)
    assert out["k"].to_list() == KEYS[:3] and set(out["pid"].to_list()) == {os.getpid()}


def test_an_error_in_a_worker_reaches_the_caller():
    with pytest.raises(ValueError, match="record k37 is bad"):
        _map(_boom, processes=2)


def test_the_workers_peak_memory_is_counted_in_the_stage_peak():
    def stage():
        _map(_tag, processes=2)
        own = memory.peak_rss_mb()
        return StageResult("x", 50, 50, {}, figures={"own": own})

    result = memory.with_peak(stage)
    summary = result.summary()
    # a spawned worker holding Polars and Arrow is tens of MB: the tree's figure is above this process's
    assert summary["peak_rss_mb"] > summary["own"] + 40
