"""The engines a stage runs on, and the one place where the configured one is chosen.

A stage's relational rules are written once, over narwhals frames (``nw.LazyFrame``: joins,
filters, window functions with ``over(order_by=…)``, group-bys), and run on the Polars lazy
engine or on Spark unchanged. What narwhals does not express portably is a method of
:class:`Engine`, written once per engine in ``engines/polars.py`` and ``engines/spark.py``:

* reading and writing a table (Parquet datasets under ``OUT/``; Spark writes range-sorted part
  files, Polars one sorted file), and holding a result while its counts are taken and it is
  written (Polars collects, Spark caches);
* ``pack``: a list column from several columns, nulls dropped, at most ``limit`` values
  (narwhals has list *read* functions, not list construction);
* ``first_by``: the first row per key under an ordering that mixes directions, nulls last
  (narwhals' ``over(order_by=…)`` orders ascending only);
* ``hex_digest``: SHA-256/SHA-1 hex digests (Polars has no stable cryptographic hash; Spark's
  ``sha2``/``sha1`` give the same digests as Python's hashlib).

Each is a generic primitive with no stage rule in it; tests/test_engines.py runs every one on
both engines and compares. :func:`for_run` is the dispatch point: nothing else looks at
``config.engine``.
"""

from __future__ import annotations

from typing import ContextManager, Protocol, Sequence

import narwhals as nw
import polars as pl

ENGINES = ("polars", "spark")


class Engine(Protocol):
    """What a stage needs from an engine beyond narwhals."""

    name: str

    def ingest(self, format: str, patterns: Sequence[str], messages_url: str, quarantine_url: str, log=None):
        """Run the ``format`` reader over the files ``patterns`` match into the two raw tables;
        return the ``IngestStats`` (Spark parses file groups in executors with the same readers)."""

    def scan(self, url: str, table=None) -> nw.LazyFrame:
        """The dataset at ``url``; with ``table`` (a ``schemas.Table``) conformed to it."""

    def write(self, frame: nw.LazyFrame, url: str, table, order_by: Sequence[str] = ()) -> None:
        """Write ``frame`` conformed to ``table`` as the dataset ``url``, rows sorted by ``order_by``."""

    def held(self, frame: nw.LazyFrame) -> ContextManager[nw.LazyFrame]:
        """``frame`` computed once for the block (counts, then a write), released after it."""

    def pack(self, frame: nw.LazyFrame, out: str, columns: Sequence[str], limit: int | None = None) -> nw.LazyFrame:
        """Add list column ``out``: the non-null values of ``columns`` in that order, the first ``limit``."""

    def first_by(self, frame: nw.LazyFrame, keys: Sequence[str],
                 order: Sequence[tuple[str, bool]]) -> nw.LazyFrame:
        """One row per ``keys``: the first under ``order`` ((column, descending) pairs, nulls last)."""

    def hex_digest(self, frame: nw.LazyFrame, out: str, column: str, algorithm: str = "sha256",
                   salt: str = "") -> nw.LazyFrame:
        """Add ``out``: the hex ``algorithm`` ("sha256" or "sha1") digest of ``salt`` + the UTF-8 string
        ``column`` (null stays null); the same digests on both engines."""


def to_polars(frame: nw.LazyFrame) -> pl.DataFrame:
    """A (small) result on either engine as a Polars DataFrame (counts, samples)."""
    return frame.collect(backend="polars").to_native()


def for_run(ctx) -> Engine:
    """The engine of ``ctx.config.engine``: the Spark session of the run's `[spark]` config, or Polars."""
    if ctx.config.engine == "spark":
        from pipelines.engines.spark import SparkEngine

        return SparkEngine(ctx.spark())
    from pipelines.engines.polars import PolarsEngine

    return PolarsEngine()


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
