"""The Polars engine in a stage's run (``PolarsEngine(spill=True)``, what ``engines.for_run`` gives):
``held`` and ``map_batches`` keep their results in IPC files instead of memory, with the same rows,
dtypes and order as the in-memory engine, and the files go away with the block and the engine."""

from __future__ import annotations

import gc
import os

import polars as pl
import pyarrow as pa
import pytest

from pipelines import engines
from pipelines.core import storage
from pipelines.engines.polars import PolarsEngine, _slices, merge_sorted_batches

FRAME = pl.DataFrame({
    "id": [f"m{i:04d}" for i in range(1000)],
    "n": list(range(1000)),
    "tags": [[f"t{i % 3}"] * (i % 4) for i in range(1000)],
    "cat": pl.Series([["a", "b", None][i % 3] for i in range(1000)], dtype=pl.Categorical),
    "ts": pl.datetime_range(pl.datetime(2020, 1, 1), pl.datetime(2020, 1, 1) + pl.duration(seconds=999),
                            "1s", eager=True, time_zone="UTC"),
})


def _doubled(seen):
    def fn(batches):
        for b in batches:
            seen.append(b.num_rows)
            ids = b.column("id").to_pylist()
            yield pa.RecordBatch.from_arrays([pa.array(ids + ids), pa.array([len(s) for s in ids] * 2, pa.int32())],
                                             names=["id", "len"])
    return fn


SCHEMA = pa.schema([("id", pa.string()), ("len", pa.int32())])


def test_map_batches_spilled_gives_the_in_memory_rows_in_exact_slices():
    seen_mem, seen_disk = [], []
    want = engines.to_polars(PolarsEngine().map_batches(engines.frame(FRAME), _doubled(seen_mem), SCHEMA,
                                                        batch_rows=128))
    pe = PolarsEngine(spill=True)
    lazy = pe.map_batches(engines.frame(FRAME), _doubled(seen_disk), SCHEMA, batch_rows=128)
    got = engines.to_polars(lazy)
    assert got.equals(want) and got.schema == want.schema
    # the slices fn saw are iter_slices' (128 rows, the last shorter), from a streamed input
    assert sum(seen_disk) == 1000 and seen_disk == seen_mem
    files = os.listdir(pe._spill_dir)
    assert len(files) == 1 and files[0].endswith(".arrow")
    # an empty input still gives a frame of the schema
    empty = engines.to_polars(pe.map_batches(engines.frame(FRAME.head(0)), _doubled([]), SCHEMA, batch_rows=8))
    assert empty.height == 0 and empty.columns == ["id", "len"]


def test_held_spills_to_a_file_removed_after_the_block(tmp_path):
    pe = PolarsEngine(spill=True)
    frame = engines.frame(FRAME.lazy().filter(pl.col("n") % 2 == 0).with_columns(pl.col("n") * 3))
    with pe.held(frame) as df:
        files = [os.path.join(pe._spill_dir, f) for f in os.listdir(pe._spill_dir)]
        got = engines.to_polars(df)
        again = engines.to_polars(df.select("id"))  # re-read, not recomputed: same rows
    want = FRAME.filter(pl.col("n") % 2 == 0).with_columns(pl.col("n") * 3)
    assert got.equals(want) and got.schema == want.schema  # categorical, tz-aware datetime, lists kept
    assert again["id"].to_list() == want["id"].to_list()
    assert len(files) == 1 and not os.path.exists(files[0])


def test_held_of_a_table_scan_or_a_spill_reads_it_in_place(tmp_path):
    url = str(tmp_path / "t")
    storage.write_table(url, FRAME)
    pe = PolarsEngine(spill=True)
    scan = pe.scan(url)
    with pe.held(scan) as df:
        assert df is scan and pe._spill_dir is None  # nothing copied
    out = pe.map_batches(scan, _doubled([]), SCHEMA, batch_rows=300)
    with pe.held(out) as df:
        assert df is out and len(os.listdir(pe._spill_dir)) == 1
    # the in-memory engine collects, as before
    with PolarsEngine().held(PolarsEngine().scan(url)) as df:
        assert isinstance(df.to_native(), pl.LazyFrame) and engines.to_polars(df).equals(FRAME)


def test_spill_folder_goes_with_the_engine():
    pe = PolarsEngine(spill=True)
    pe.map_batches(engines.frame(FRAME), _doubled([]), SCHEMA, batch_rows=500)
    folder = pe._spill_dir
    assert os.path.isdir(folder)
    del pe
    gc.collect()
    assert not os.path.exists(folder)


def test_for_run_spills_and_of_does_not():
    class Cfg:
        engine = "polars"

    class Ctx:
        config = Cfg()

    assert engines.for_run(Ctx()).spill is True
    assert engines.of(FRAME).spill is False


@pytest.mark.parametrize("sizes, rows", [([5, 5, 5], 4), ([1] * 9, 4), ([10], 3), ([3, 0, 4], 7), ([], 5)])
def test_slices_recut_any_batches_into_exact_slices(sizes, rows):
    parts, start = [], 0
    for s in sizes:
        parts.append(FRAME.slice(start, s))
        start += s
    got = list(_slices(iter(parts), rows))
    assert [g.height for g in got] == [d.height for d in FRAME.head(start).iter_slices(rows)] if start else got == []
    if start:
        assert pl.concat(got).equals(FRAME.head(start))


def test_in_order_reads_the_column():
    pe = PolarsEngine(spill=True)
    assert pe.in_order(engines.frame(FRAME), "id")
    assert not pe.in_order(engines.frame(FRAME.reverse()), "id")
    with_null = FRAME.with_columns(pl.when(pl.col("n") == 0).then(None).otherwise(pl.col("id")).alias("id"))
    assert not pe.in_order(engines.frame(with_null), "id")  # a sort would move the null: not "in order"


@pytest.mark.spark
def test_spark_frames_are_never_in_order(spark):
    sf = engines.frame(spark.createDataFrame([("a",), ("b",)], "id string"))
    assert engines.of(sf.to_native()).in_order(sf, "id") is False


def test_held_removes_its_file_when_the_block_fails():
    pe = PolarsEngine(spill=True)
    with pytest.raises(RuntimeError, match="boom"):
        with pe.held(engines.frame(FRAME.lazy().head(10))):
            assert len(os.listdir(pe._spill_dir)) == 1
            raise RuntimeError("boom")
    assert os.listdir(pe._spill_dir) == [] and pe._on_disk == {}


def test_materialize_to_disk_is_a_file_read_in_place():
    pe = PolarsEngine(spill=True)
    frame = engines.frame(FRAME.lazy().filter(pl.col("n") % 3 == 0))
    kept = pe.materialize(frame)                      # by default in memory: one copy every use shares
    assert pe._spill_dir is None and engines.to_polars(kept).equals(FRAME.filter(pl.col("n") % 3 == 0))
    m = pe.materialize(frame, to_disk=True)
    got = engines.to_polars(m)
    assert got.equals(FRAME.filter(pl.col("n") % 3 == 0)) and got.schema == FRAME.schema
    assert len(os.listdir(pe._spill_dir)) == 1
    assert pe.materialize(m, to_disk=True) is m and len(os.listdir(pe._spill_dir)) == 1  # on disk: not copied
    assert engines.to_polars(m.select("id")).height == got.height         # read again, as often as joined


@pytest.mark.parametrize("spill", [False, True])
def test_stash_and_frames_give_the_batches_back_in_bounded_pieces(spill):
    pe = PolarsEngine(spill=spill)
    table = FRAME.to_arrow()
    parts = [table.slice(0, 300), table.slice(300, 0), table.slice(300, 700).to_batches()[0]]
    lazy = pe.stash(iter(parts), table.schema)
    assert engines.to_polars(lazy).equals(FRAME)
    pieces = list(pe.frames(lazy, 128))
    assert pl.concat(pieces).equals(FRAME) and max(p.height for p in pieces) <= 128
    if spill:  # read back a record batch at a time: the tables' batches were cut at write time
        assert len(os.listdir(pe._spill_dir)) == 1


def test_a_columnar_spill_is_parquet_with_the_same_rows_and_is_read_in_place():
    """``columnar``: the spill is a Parquet file (read by row groups and projected columns: near-dup's
    signature table), with the same rows and dtypes as IPC; materialising it again copies nothing."""
    ipc = PolarsEngine(spill=True)  # kept: a spilling engine's frames must not outlive it
    want = engines.to_polars(ipc.map_batches(engines.frame(FRAME), _doubled([]), SCHEMA, batch_rows=128))
    pe = PolarsEngine(spill=True)
    lazy = pe.map_batches(engines.frame(FRAME), _doubled([]), SCHEMA, batch_rows=128, columnar=True)
    got = engines.to_polars(lazy)
    assert got.equals(want) and got.schema == want.schema
    files = os.listdir(pe._spill_dir)
    assert len(files) == 1 and files[0].endswith(".parquet")
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(os.path.join(pe._spill_dir, files[0])).metadata
    assert meta.num_row_groups == -(-1000 // 128) and meta.num_rows == 2000  # a row group per batch fn yields
    assert pe.materialize(lazy, to_disk=True) is lazy and len(os.listdir(pe._spill_dir)) == 1
    # the in-memory engine keeps it in memory, the same rows
    mem = PolarsEngine().map_batches(engines.frame(FRAME), _doubled([]), SCHEMA, batch_rows=128, columnar=True)
    assert engines.to_polars(mem).equals(want)


@pytest.mark.parametrize("cuts", [[[1000]], [[7, 300, 693], [1000]], [[0, 1000], [500, 500], [1, 1, 998]]])
def test_merge_sorted_batches_sorts_the_streams_keeping_each_ones_order(cuts):
    rng = __import__("numpy").random.default_rng(len(cuts))
    streams, frames = [], []
    for i, sizes in enumerate(cuts):
        keys = sorted(rng.integers(0, 300, size=sum(sizes)).tolist())  # ties within and across streams
        df = pl.DataFrame({"k": keys, "src": [i] * len(keys), "pos": list(range(len(keys)))})
        frames.append(df)
        parts, start = [], 0
        for s in sizes:
            parts.append(df.slice(start, s))
            start += s
        streams.append(iter(parts))
    got = pl.concat(list(merge_sorted_batches(streams, "k")))
    assert got["k"].is_sorted() and got.height == sum(f.height for f in frames)
    for i, df in enumerate(frames):  # each stream's rows, ties included, in its own order
        assert got.filter(pl.col("src") == i).equals(df)
    # keys in one stream only (as the examples' buckets have): the order of a stable sort
    only = [df.with_columns(pl.col("k") * len(frames) + i) for i, df in enumerate(frames)]
    got = pl.concat(list(merge_sorted_batches([df.iter_slices(97) for df in only], "k")))
    assert got.equals(pl.concat(only).sort("k", maintain_order=True))
    assert list(merge_sorted_batches([iter([]), iter([FRAME.head(0)])], "n")) == []
