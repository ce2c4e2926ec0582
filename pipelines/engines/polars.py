"""The Polars engine: narwhals frames backed by Polars LazyFrames; tables through pipelines.core.storage."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref
from contextlib import contextmanager
from typing import Iterator, Sequence

import narwhals as nw
import polars as pl

from pipelines.core import digest, storage

# Rows of each run's record batches in a merge (:meth:`PolarsEngine.write_runs`): one batch per
# run is held while merging, so this bounds the merge as the number of runs grows.
MERGE_ROWS = 8_192


class PolarsEngine:
    """``spill``: hold results on disk instead of in memory (what a stage run gets from
    :func:`pipelines.engines.for_run`): ``held`` writes its frame to an Arrow IPC file and reads
    it back lazily, ``materialize(to_disk=True)`` writes one and keeps it, ``map_batches`` streams its input and
    writes its output to one (as ``stash`` writes batches). The files live in a folder of their own
    under ``TMPDIR``, ``held``'s removed when its block ends, the others with the folder when the
    engine goes; so a spilling engine's frames must not outlive it (a stage's run). Without it
    (the default: frames in tests and notebooks that outlive a temporary engine) all of them keep
    results in memory. The rows are the same either way."""

    name = "polars"
    distributed = False  # see pipelines.engines.Engine

    def __init__(self, spill: bool = False):
        self.spill = spill
        self._spill_dir: str | None = None
        self._names = itertools.count()
        # Frames that only read files (a table scan, a spill): holding one is holding it already.
        # Keyed by id() with the frame kept, so an id is never reused while it is here.
        self._on_disk: dict[int, pl.LazyFrame] = {}
        self._ipc_paths: dict[int, str] = {}  # the spill files a frame of _on_disk is a plain scan of

    def _spill_path(self, what: str, ext: str = "arrow") -> str:
        if self._spill_dir is None:
            self._spill_dir = tempfile.mkdtemp(prefix="socialcorpus-spill-")
            weakref.finalize(self, shutil.rmtree, self._spill_dir, ignore_errors=True)
        return os.path.join(self._spill_dir, f"{what}-{next(self._names):05d}.{ext}")

    def _disk_frame(self, lf: pl.LazyFrame, ipc_path: str | None = None) -> nw.LazyFrame:
        self._on_disk[id(lf)] = lf
        if ipc_path is not None:
            self._ipc_paths[id(lf)] = ipc_path
        return nw.from_native(lf)

    def frames(self, frame: nw.LazyFrame, rows: int) -> Iterator[pl.DataFrame]:
        """``frame``'s rows in order, as DataFrames of at most ``rows`` rows. A spill file is read a
        record batch at a time (Polars' ``collect_batches`` reads ahead, a few hundred MB per
        stream); any other frame streams through ``collect_batches``."""
        lf = frame.to_native()
        path = self._ipc_paths.get(id(lf)) if self._on_disk.get(id(lf)) is lf else None
        if path is None:
            yield from lf.collect_batches(chunk_size=rows)
            return
        import pyarrow as pa

        with pa.OSFile(path, "rb") as src:
            reader = pa.ipc.open_file(src)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                for a in range(0, batch.num_rows, rows):
                    yield pl.from_arrow(batch.slice(a, rows))

    def scan(self, url: str, table=None) -> nw.LazyFrame:
        lf = storage.scan(url)
        if table is not None:
            lf = lf.select(table.names)
        return self._disk_frame(lf) if self.spill else nw.from_native(lf)

    def write(self, frame: nw.LazyFrame, url: str, table, order_by: Sequence[str] = ()) -> None:
        lf = frame.to_native()
        if order_by:
            lf = lf.sort(list(order_by))
        # Streamed: Polars hands over batches as its streaming engine makes them and storage
        # writes a row group at a time (each one chunk, so the file's bytes do not depend on how
        # Polars split the work); the whole table is never held, in Polars or in Arrow.
        batches = (df.to_arrow() for df in lf.collect_batches(chunk_size=storage.ROW_GROUP_ROWS))
        storage.write_table(url, batches, schema=table)

    @contextmanager
    def held(self, frame: nw.LazyFrame) -> Iterator[nw.LazyFrame]:
        if not self.spill:
            yield self.materialize(frame)  # collected once; Polars frees it with the last reference
            return
        lf = frame.to_native()
        if self._on_disk.get(id(lf)) is lf:  # a table scan or a spill: already computed, on disk
            yield frame
            return
        path, back = self._spill_path("held"), None
        try:  # the streaming engine, as collect() runs it; LZ4: read back in batches, not a mapping of the file
            lf.sink_ipc(path, compression="lz4")
            back = pl.scan_ipc(path)
            yield self._disk_frame(back)
        finally:
            if back is not None:
                self._on_disk.pop(id(back), None)
            if os.path.exists(path):
                os.remove(path)

    def in_order(self, frame: nw.LazyFrame, column: str) -> bool:
        keys = frame.to_native().select(column).collect().to_series()
        return keys.null_count() == 0 and keys.is_sorted()

    def pack(self, frame: nw.LazyFrame, out: str, columns: Sequence[str], limit: int | None = None) -> nw.LazyFrame:
        if not columns:
            expr = pl.lit([], dtype=pl.List(pl.Int64))
        else:
            expr = pl.concat_list([pl.col(c) for c in columns]).list.drop_nulls()
            if limit is not None:
                expr = expr.list.head(limit)
        return nw.from_native(frame.to_native().with_columns(expr.alias(out)))

    def first_by(self, frame: nw.LazyFrame, keys: Sequence[str],
                 order: Sequence[tuple[str, bool]]) -> nw.LazyFrame:
        cols = [c for c, _ in order]
        lf = (frame.to_native().sort([*keys, *cols], descending=[False] * len(keys) + [d for _, d in order],
                                     nulls_last=True)
              .unique(subset=list(keys), keep="first", maintain_order=True))
        return nw.from_native(lf)

    def hex_digest(self, frame: nw.LazyFrame, out: str, column: str, algorithm: str = "sha256",
                   salt: str = "") -> nw.LazyFrame:
        # polars-hash (pipelines/core/digest.py): Polars has no stable cryptographic hash (its
        # `hash()` may change between versions). Null stays null (concat_str of a null is null).
        value = pl.concat_str([pl.lit(salt), pl.col(column)]) if salt else pl.col(column)
        return nw.from_native(frame.to_native().with_columns(digest.hex_digest(value, algorithm).alias(out)))

    def ingest(self, format: str, patterns, messages_url: str, quarantine_url: str, log=None):
        from pipelines.stages.ingest import ingest

        return ingest(format, patterns, messages_url, quarantine_url, log)

    def number_rows(self, frame: nw.LazyFrame, out: str, partition_by: Sequence[str],
                    order_by: Sequence[str]) -> nw.LazyFrame:
        keys = [*partition_by, *order_by]
        number = pl.int_range(pl.len(), dtype=pl.Int64)
        if partition_by:
            number = number.over(list(partition_by))
        lf = frame.to_native().sort(keys, nulls_last=True).with_columns(number.alias(out))
        return nw.from_native(lf)

    def materialize(self, frame: nw.LazyFrame, to_disk: bool = False) -> nw.LazyFrame:
        if not (self.spill and to_disk):  # in memory, one copy that every later use shares
            return nw.from_native(frame.to_native().collect().lazy())
        lf = frame.to_native()
        if self._on_disk.get(id(lf)) is lf:
            return frame
        path = self._spill_path("materialized")  # kept until the engine goes (its folder with it)
        lf.sink_ipc(path, compression="lz4")
        return self._disk_frame(pl.scan_ipc(path))

    def epoch_us(self, frame: nw.LazyFrame, out: str, column: str) -> nw.LazyFrame:
        return nw.from_native(frame.to_native().with_columns(pl.col(column).dt.epoch("us").alias(out)))

    def int_ranges(self, frame: nw.LazyFrame, out: str, start: str, end: str) -> nw.LazyFrame:
        expr = pl.int_ranges(pl.col(start), pl.col(end), dtype=pl.Int64)  # empty where end <= start
        return nw.from_native(frame.to_native().with_columns(expr.alias(out)))

    def attach_lists(self, frame: nw.LazyFrame, key: Sequence[str], items: nw.LazyFrame,
                     values: dict[str, str], order_by: str) -> nw.LazyFrame:
        it = items.to_native()
        schema = it.collect_schema()
        lists = it.group_by(list(key)).agg(pl.col(v).sort_by(order_by).alias(o) for o, v in values.items())
        lf = frame.to_native().join(lists, on=list(key), how="left")
        return nw.from_native(lf.with_columns(pl.col(o).fill_null(pl.lit([], dtype=pl.List(schema[v])))
                                              for o, v in values.items()))

    def map_batches(self, frame: nw.LazyFrame, fn, schema, batch_rows: int | None = None,
                    columnar: bool = False, processes: int = 1) -> nw.LazyFrame:
        # In-process and eager: the whole frame is one "partition", handed to ``fn`` in slices
        # of ``batch_rows`` rows (the Arrow chunks of a slice as they come). Spilling, the input
        # streams in (one slice in memory) and the output goes to an IPC file as ``fn`` yields it.
        # ``processes`` > 1 (spilling): one call of ``fn`` per slice, in that many worker
        # processes, the output still in input order (pipelines/engines/workers.py).
        import pyarrow as pa

        out_schema = pa.schema([f.with_nullable(True) for f in schema])
        if not (self.spill and batch_rows):
            df = frame.to_native().collect()

            def batches():
                for part in df.iter_slices(batch_rows or max(df.height, 1)):
                    yield from part.to_arrow().to_batches()

            out = pa.Table.from_batches([b.cast(out_schema) for b in fn(batches())], schema=out_schema)
            return nw.from_native(pl.from_arrow(out).lazy())

        slices = _slices(frame.to_native().collect_batches(chunk_size=batch_rows), batch_rows)
        if processes > 1:
            from pipelines.engines.workers import map_ordered

            out = map_ordered(fn, slices, processes)
        else:
            out = fn(b for part in slices for b in part.to_arrow().to_batches())
        return self.stash((b.cast(out_schema) for b in out), out_schema, columnar)

    def stash(self, batches, schema, columnar: bool = False, chunk_rows: int = storage.ROW_GROUP_ROWS) -> nw.LazyFrame:
        """A frame over the Arrow record batches or tables ``batches`` (each of ``schema``), taken as
        they come: spilling, written to an LZ4 IPC file (kept until the engine goes; a table in
        record batches of at most ``chunk_rows`` rows, what :meth:`frames` reads at a time), else in memory.
        ``columnar``: a Parquet file instead, a row group per batch, no dictionaries or statistics.
        Polars reads an IPC file whole to join it, even to keep a few of its rows (the pages of every
        column it selects: near-dup's 128 signature columns at 2M messages, 1.4 GB for 30,000 rows);
        Parquet it reads a row group and the selected columns at a time."""
        import pyarrow as pa

        if not self.spill:
            return nw.from_native(pl.from_arrow(pa.Table.from_batches(
                [b for part in batches for b in (part.to_batches() if isinstance(part, pa.Table) else [part])],
                schema=schema)).lazy())
        if columnar:
            import pyarrow.parquet as pq

            path = self._spill_path("batches", "parquet")
            with pq.ParquetWriter(path, schema, compression="lz4", use_dictionary=False,
                                  write_statistics=False) as writer:
                for part in batches:
                    if isinstance(part, pa.Table):
                        writer.write_table(part, row_group_size=storage.ROW_GROUP_ROWS)
                    else:
                        writer.write_batch(part)
            return self._disk_frame(pl.scan_parquet(path))
        path = self._spill_path("batches")
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema, options=options) as writer:
            for part in batches:  # record batches of at most chunk_rows, so reading one back is small
                if isinstance(part, pa.Table):
                    writer.write_table(part, max_chunksize=chunk_rows)
                else:
                    writer.write_batch(part)
        return self._disk_frame(pl.scan_ipc(path), path)

    def in_bucket(self, frame: nw.LazyFrame, column: str, j: int, n: int) -> nw.LazyFrame:
        """The rows of ``frame`` whose non-null ``column`` falls in bucket ``j`` of ``n`` (by Polars'
        hash: stable within a process, which is all a stage's buckets need; no output depends on it)."""
        c = pl.col(column)
        return nw.from_native(frame.to_native().filter(c.is_not_null() & (c.hash() % n == j)))

    def sorted_run(self, frame: nw.LazyFrame, order_by: Sequence[str]) -> Iterator:
        """``frame`` sorted by ``order_by`` (by the streaming engine, when the first table is asked
        for), as Arrow tables of a row group: a run for :meth:`write_runs`."""
        rows = frame.to_native().sort(list(order_by)).collect(engine="streaming").to_arrow()
        for a in range(0, rows.num_rows, storage.ROW_GROUP_ROWS):
            yield rows.slice(a, storage.ROW_GROUP_ROWS)

    def write_runs(self, url: str, table, runs, key: pl.Expr) -> None:
        """Write ``table`` (a ``schemas.Table``) from ``runs``: iterables of Arrow tables, each run's rows
        sorted by the expression ``key`` (over the table's columns: an integer, or a string, which
        Polars and Python both order by code point). Each run goes to a spill
        file as it comes (with its key), then the files are merged on the key
        (:func:`merge_sorted_batches`) and written a row group at a time; so what is held is one run
        as it is made, and one record batch (:data:`MERGE_ROWS` rows) per file while merging, never
        the table. The runs grow in number with the table (a bucket of rows each): at 4M messages,
        16 files' batches of a row group (65,536 rows) were near-dup's write's 2 GB. Rows with one key
        must come from one run: the table is then the one a single sorted write of all rows gives."""
        import pyarrow as pa

        cols = key.meta.root_names()
        dtype = pl.from_arrow(table.arrow.empty_table().select(cols)).select(key).to_series().dtype
        schema = table.arrow.append(pa.field("_key", pl.Series([], dtype=dtype).to_arrow().type, nullable=False))

        def keyed(tables):
            for t in tables:
                k = pl.from_arrow(t.select(cols)).select(key).to_series().to_arrow().cast(schema.field("_key").type)
                yield pa.Table.from_arrays([*table.conform(t).columns, k], schema=schema)

        files = [self.stash(keyed(run), schema, chunk_rows=MERGE_ROWS) for run in runs]
        streams = [self.frames(f, storage.ROW_GROUP_ROWS) for f in files]
        merged = (df.drop("_key").to_arrow() for df in merge_sorted_batches(streams, "_key"))
        storage.write_table(url, merged, schema=table)

    def every_nth(self, frame: nw.LazyFrame, order_by: Sequence[str], step: int) -> nw.LazyFrame:
        if step <= 1:
            return frame
        return nw.from_native(frame.to_native().sort(list(order_by)).gather_every(step))


def _slices(frames: Iterator[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """``frames`` re-cut into slices of exactly ``rows`` rows (the last one shorter), as
    ``DataFrame.iter_slices`` cuts a whole frame."""
    pending: list[pl.DataFrame] = []
    n = 0
    for df in frames:
        pending.append(df)
        n += df.height
        while n >= rows:
            whole = pl.concat(pending, rechunk=False) if len(pending) > 1 else pending[0]
            yield whole.slice(0, rows)
            rest = whole.slice(rows)
            pending, n = ([rest] if rest.height else []), rest.height
    if n:
        yield pl.concat(pending, rechunk=False) if len(pending) > 1 else pending[0]


def merge_sorted_batches(streams: Sequence[Iterator[pl.DataFrame]], key: str) -> Iterator[pl.DataFrame]:
    """The rows of ``streams`` (each an iterator of frames sorted by the column ``key``, in
    order), as one run sorted by it, in batches; each stream's rows keep their order, ties included
    (rows of one key from several streams may interleave by stream in any order: the examples' keys
    are in one stream each). One frame per stream is held: merging the 2.3M examples of the 1M-message
    input from 2-4 files peaked at 1.8 GB with Polars' ``merge_sorted`` and with this function over
    each file's ``collect_batches`` (which reads ahead), 0.9 GB over :meth:`PolarsEngine.frames`.

    Each round takes, from every stream's current frame, the rows up to the smallest last key
    among those frames (no stream's later rows can come before them), and sorts them stably."""
    streams = [iter(s) for s in streams]

    def refill(i: int) -> pl.DataFrame | None:
        return next((b for b in streams[i] if b.height), None)

    bufs = [refill(i) for i in range(len(streams))]
    while any(b is not None for b in bufs):
        bound = min(b[key][-1] for b in bufs if b is not None)
        pieces = []
        for i, b in enumerate(bufs):
            if b is None:
                continue
            n = int(b[key].search_sorted(bound, side="right"))
            if n:
                pieces.append(b.slice(0, n))
            bufs[i] = b.slice(n) if n < b.height else refill(i)
        yield pl.concat(pieces).sort(key, maintain_order=True) if len(pieces) > 1 else pieces[0]
