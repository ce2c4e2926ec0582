"""The engines a stage runs on, and the one place where the configured one is chosen.

A stage's relational rules are written once, over narwhals frames (``nw.LazyFrame``: joins,
filters, window functions with ``over(order_by=…)``, group-bys), and run on the Polars lazy
engine or on Spark unchanged. What narwhals does not express portably is a method of
:class:`Engine`, written once per engine in ``engines/polars.py`` and ``engines/spark.py``:

* reading and writing a table (Parquet datasets under ``OUT/``; Spark writes range-sorted part
  files, Polars one sorted file), and holding a result while its counts are taken and it is
  written (Polars collects, or in a stage's run spills to an IPC file; Spark caches), and
  ``in_order``: whether a frame is already in a column's order (so a write need not sort it);
* ``pack``: a list column from several columns, nulls dropped, at most ``limit`` values
  (narwhals has list *read* functions, not list construction);
* ``first_by``: the first row per key under an ordering that mixes directions, nulls last
  (narwhals' ``over(order_by=…)`` orders ascending only);
* ``hex_digest``: SHA-256/SHA-1 hex digests (Polars has no stable cryptographic hash; Spark's
  ``sha2``/``sha1`` give the same digests as Python's hashlib);
* ``number_rows``: a dense 0..n-1 number per group in key order (Polars: sort and ``int_range``;
  Spark: a range-partitioned sort numbered per task plus per-partition offsets, so one big
  group, the `wall` timeline, never funnels through one task);
* ``materialize``: a result computed now, with its plan cut behind it (Polars collects; Spark
  checkpoints locally: a cached frame keeps its whole plan, so a plan that joins the result
  many times would grow with every use);
* ``epoch_us``: a datetime as microseconds since the epoch (narwhals' ``dt.timestamp`` has no
  Spark side);
* ``int_ranges``: a list of the integers ``start..end-1`` per row (no list construction in
  narwhals), to be exploded into rows;
* ``attach_lists``: per key, the values of some rows as ordered lists, attached to another frame
  (empty lists where a key has none): narwhals has no ordered list aggregation, and Spark's
  ``collect_list`` would drop nulls;
* ``map_batches``: a Python function over Arrow record batches (Polars in-process, Spark
  ``mapInArrow``), for per-record work that is Python, not expressions (HMAC, Presidio);
* ``every_nth``: an evenly spaced sample of rows in a sort order (Polars ``gather_every``, Spark
  a global sort and ``zipWithIndex``: row positions need the whole order).

Each is a generic primitive with no stage rule in it; tests/test_engines.py runs every one on
both engines and compares. :func:`for_run` is the dispatch point: nothing else looks at
``config.engine``.
"""

from __future__ import annotations

from typing import ContextManager, Protocol, Sequence

import narwhals as nw
import polars as pl

class Engine(Protocol):
    """What a stage needs from an engine beyond narwhals."""

    name: str
    # True where frames live in executors and each materialisation is a job with a fixed latency
    # (Spark): a stage then does in one job what it would otherwise do in many small ones. False
    # where frames live in this process and cost no latency (Polars): a stage then works in small
    # pieces (a near-dup band, a slice of examples) so that only one piece is in memory at a time.
    distributed: bool

    def ingest(self, format: str, patterns: Sequence[str], messages_url: str, quarantine_url: str, log=None):
        """Run the ``format`` reader over the files ``patterns`` match into the two raw tables;
        return the ``IngestStats`` (Spark parses file groups in executors with the same readers)."""

    def scan(self, url: str, table=None) -> nw.LazyFrame:
        """The dataset at ``url``; with ``table`` (a ``schemas.Table``) conformed to it."""

    def write(self, frame: nw.LazyFrame, url: str, table, order_by: Sequence[str] = ()) -> None:
        """Write ``frame`` conformed to ``table`` as the dataset ``url``, rows sorted by ``order_by``."""

    def held(self, frame: nw.LazyFrame) -> ContextManager[nw.LazyFrame]:
        """``frame`` computed once for the block (counts, then a write), released after it."""

    def in_order(self, frame: nw.LazyFrame, column: str) -> bool:
        """Whether ``frame``'s rows are already sorted by ``column`` (no nulls): then a stage
        can write it as it is, where a sort would hold the whole table. Polars reads the one
        column to tell; Spark says False (its frames have no order)."""

    def pack(self, frame: nw.LazyFrame, out: str, columns: Sequence[str], limit: int | None = None) -> nw.LazyFrame:
        """Add list column ``out``: the non-null values of ``columns`` in that order, the first ``limit``."""

    def first_by(self, frame: nw.LazyFrame, keys: Sequence[str],
                 order: Sequence[tuple[str, bool]]) -> nw.LazyFrame:
        """One row per ``keys``: the first under ``order`` ((column, descending) pairs, nulls last)."""

    def hex_digest(self, frame: nw.LazyFrame, out: str, column: str, algorithm: str = "sha256",
                   salt: str = "") -> nw.LazyFrame:
        """Add ``out``: the hex ``algorithm`` ("sha256" or "sha1") digest of ``salt`` + the UTF-8 string
        ``column`` (null stays null); the same digests on both engines."""

    def number_rows(self, frame: nw.LazyFrame, out: str, partition_by: Sequence[str],
                    order_by: Sequence[str]) -> nw.LazyFrame:
        """Add Int64 ``out``: each row's position 0..n-1 within its ``partition_by`` group under
        ``order_by`` ascending, nulls last (deterministic when ``order_by`` is total in a group).
        Row order of the result unspecified. Spark numbers a group across many tasks (partition
        offsets) where a window ``row_number`` would send a whole group to one."""

    def materialize(self, frame: nw.LazyFrame, to_disk: bool = False) -> nw.LazyFrame:
        """``frame`` computed now, as a frame over its rows with none of its plan behind it
        (Polars: collected; Spark: an eager local checkpoint, freed once no longer referenced).
        ``to_disk``: a result too large to keep that is read a few times (Polars in a stage's run:
        an IPC spill file, read at each use, so a plan that reads it twice holds two copies while it
        runs: not for a table joined twice in one plan; a frame already on disk, e.g. the output of
        ``map_batches``, is returned as it is)."""

    def epoch_us(self, frame: nw.LazyFrame, out: str, column: str) -> nw.LazyFrame:
        """Add Int64 ``out``: the datetime ``column`` as microseconds since 1970-01-01 UTC (null stays null)."""

    def int_ranges(self, frame: nw.LazyFrame, out: str, start: str, end: str) -> nw.LazyFrame:
        """Add list column ``out``: the Int64s ``start``, ``start`` + 1, …, ``end`` - 1 of the two integer
        columns (an empty list where ``end`` <= ``start``)."""

    def attach_lists(self, frame: nw.LazyFrame, key: Sequence[str], items: nw.LazyFrame,
                     values: dict[str, str], order_by: str) -> nw.LazyFrame:
        """``frame`` (unordered) with one list column per ``values`` entry (output name: column of
        ``items``): for each row, the values of the ``items`` rows with the same ``key`` columns,
        ascending by ``order_by`` (a column of ``items``, unique within a key), nulls kept; an empty
        list where no item has the row's key."""

    def map_batches(self, frame: nw.LazyFrame, fn, schema, batch_rows: int | None = None,
                    columnar: bool = False, processes: int = 1) -> nw.LazyFrame:
        """``fn`` (an iterator of Arrow record batches of ``frame`` -> an iterator of record
        batches, each cast to the Arrow ``schema``) over ``frame``: per-record Python (Presidio,
        HMAC, readers) written once. Polars: in this process, one call over slices of
        ``batch_rows`` rows, output in input order; Spark: ``mapInArrow``, one call per
        partition in the Python workers, ``fn`` shipped with its arguments (so module-level
        state it reaches, e.g. a cache of heavy objects, is per worker), order unspecified.
        ``columnar``: a wide result later read a few columns or a few rows at a time (Polars in a
        stage's run spills it to Parquet instead of IPC; see ``PolarsEngine.stash``).
        ``processes`` > 1: Polars runs ``fn`` once per slice in that many worker processes
        (``fn`` picklable; state kept across its calls through ``workers.worker_state``), output
        still in input order; Spark ignores it (its Python workers are the executors' cores)."""

    def every_nth(self, frame: nw.LazyFrame, order_by: Sequence[str], step: int) -> nw.LazyFrame:
        """Rows 0, ``step``, 2·``step``, … of ``frame`` sorted ascending by ``order_by`` (a total
        order): a deterministic, evenly spaced sample; every row where ``step`` <= 1. Row order
        of the result unspecified."""


def to_polars(frame: nw.LazyFrame) -> pl.DataFrame:
    """A (small) result on either engine as a Polars DataFrame (counts, samples)."""
    return frame.collect(backend="polars").to_native()


def for_run(ctx) -> Engine:
    """The engine of ``ctx.config.engine``: the Spark session of the run's `[spark]` config, or Polars."""
    if ctx.config.engine == "spark":
        from pipelines.engines.spark import SparkEngine

        return SparkEngine(ctx.spark())
    from pipelines.engines.polars import PolarsEngine

    return PolarsEngine(spill=True)  # a stage's run: its held results and batch outputs on disk


def of(native) -> Engine:
    """The engine a native frame belongs to (a Polars frame, or a Spark DataFrame and its session)."""
    if isinstance(native, (pl.DataFrame, pl.LazyFrame)):
        from pipelines.engines.polars import PolarsEngine

        return PolarsEngine()
    from pipelines.engines.spark import SparkEngine

    return SparkEngine(native.sparkSession)


def frame(native) -> nw.LazyFrame:
    """A native frame as the narwhals LazyFrame the stages work on (a Polars DataFrame made lazy)."""
    if isinstance(native, pl.DataFrame):
        native = native.lazy()
    return nw.from_native(native)


def built(engine: Engine, result: nw.LazyFrame, stats, columns: Sequence[str], order_by: Sequence[str]):
    """A stage's ``result`` held once for ``stats(frame) -> dict`` and handed back as a native
    frame of ``columns``: (a Polars DataFrame sorted by ``order_by``, or a cached Spark
    DataFrame in no order; stats). The stages' ``build_*`` conveniences for tests and benchmarks."""
    with engine.held(result) as df:
        counts = stats(df)
        out = df.select(*columns).to_native()
        out = out.sort(*order_by).collect() if isinstance(out, pl.LazyFrame) else out.cache()
    return out, counts
