"""The Spark engine: a SparkSession from the `[spark]` config, and the stages' Spark sides.

Per-record work is the very same Python as on the Polars engine, shipped to executors
through ``mapInArrow`` (ingest: engines/spark_ingest.py); the relational steps of the stages
written once (pipelines/engines/__init__.py) run here through :class:`SparkEngine`.

    engine = "spark"
    [spark]
    master = "local[*]"              # or spark://host:7077, yarn, k8s://…
    conf = { "spark.executor.memory" = "8g" }
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
import pyarrow as pa

from pipelines.core.settings import SparkConfig  # the [spark] section, with every section in core/settings


# Defaults every session gets; `[spark] conf` entries override them.
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}


def session(cfg: SparkConfig | None = None):
    """Get or create the SparkSession for ``cfg``.

    Workers must run this interpreter (the project's venv), not whatever `python3` is on
    PATH, or our modules fail to import in Python UDFs: PYSPARK_PYTHON is set from
    ``sys.executable`` unless the environment already sets it.
    """
    from pyspark.sql import SparkSession

    cfg = cfg or SparkConfig()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    b = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    conf = {**DEFAULT_CONF, "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions), **cfg.conf}
    for k, v in conf.items():
        b = b.config(k, str(v))
    return b.getOrCreate()


def spark_schema(schema: pa.Schema, nullable: bool = False):
    """The Spark StructType of an Arrow schema (all fields nullable if ``nullable``)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    if nullable:
        schema = pa.schema([f.with_nullable(True) for f in schema])
    return from_arrow_schema(schema)


# --- tables ---------------------------------------------------------------------------------

def read_table(spark, url: str, table=None):
    """The dataset directory ``url`` (every Parquet file under it, as storage.read sees them) as a
    Spark DataFrame; with ``table`` (a ``schemas.Table``) its columns in that order and types."""
    from pipelines.core import storage

    files = storage.dataset_files(url)
    if not files:
        raise FileNotFoundError(f"{url}: no table here. Run the stage that writes it first.")
    proto = url.split("://", 1)[0] + "://" if "://" in url else ""
    # fsspec lists paths without the protocol; Spark needs it back (s3:// needs
    # spark.hadoop.fs.s3.impl set to S3A, see docs/scale.md).
    files = [f if not proto or f.startswith(proto) else proto + f for f in files]
    df = spark.read.parquet(*files)
    return conform(df, table) if table is not None else df


def conform(df, table):
    """``df`` with exactly ``table``'s columns, in order, cast to its Spark types (Table.conform's
    Spark side: a missing nullable column becomes null, a missing required one is an error)."""
    from pyspark.sql import functions as F

    st = spark_schema(table.arrow, nullable=True)
    cols = []
    for f in st.fields:
        if f.name in df.columns:
            cols.append(F.col(f.name).cast(f.dataType).alias(f.name))
        elif table.column(f.name).nullable:
            cols.append(F.lit(None).cast(f.dataType).alias(f.name))
        else:
            raise ValueError(f"table {table.name}: required column {f.name!r} is missing")
    return df.select(*cols)


def write_table(df, url: str, table, order_by=()) -> None:
    """Write ``df`` conformed to ``table`` as the dataset ``url`` (atomic, see storage.write_spark).

    ``order_by``: a global sort (range-partitioned, not one partition) so the part files hold the
    rows in the same order as the Polars engine's output, for readers that keep file order.
    """
    from pipelines.core import storage

    out = conform(df, table)
    if order_by:
        out = out.orderBy(*order_by)
    storage.write_spark(out, url)


def to_polars(df):
    """Collect a (small) Spark DataFrame to Polars through Arrow (tests, stats, small tables)."""
    import polars as pl

    return pl.from_arrow(df.toArrow())


def _field(name: str):
    """``lambda x: x[name]`` for ``F.transform`` (which reads its function's arity: no default args)."""
    return lambda x: x[name]


# --- the engine ------------------------------------------------------------------------------

class SparkEngine:
    """The Spark side of :class:`pipelines.engines.Engine` (narwhals frames backed by Spark DataFrames)."""

    name = "spark"
    distributed = True  # see pipelines.engines.Engine

    def __init__(self, spark):
        self.spark = spark

    def scan(self, url: str, table=None):
        import narwhals as nw

        return nw.from_native(read_table(self.spark, url, table))

    def write(self, frame, url: str, table, order_by=()) -> None:
        from pyspark.sql import functions as F

        write_table(frame.to_native(), url, table, order_by=[F.col(c) for c in order_by])

    @contextmanager
    def held(self, frame):
        import narwhals as nw

        df = frame.to_native().cache()
        try:
            yield nw.from_native(df)
        finally:
            df.unpersist()

    def in_order(self, frame, column: str) -> bool:
        return False  # a distributed frame has no order of its own

    def pack(self, frame, out: str, columns, limit: int | None = None):
        import narwhals as nw
        from pyspark.sql import functions as F

        if not columns:
            expr = F.array().cast("array<bigint>")
        else:
            expr = F.filter(F.array(*[F.col(c) for c in columns]), lambda x: x.isNotNull())
            if limit is not None:
                expr = F.slice(expr, 1, limit)
        return nw.from_native(frame.to_native().withColumn(out, expr))

    def first_by(self, frame, keys, order):
        import narwhals as nw
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        w = Window.partitionBy(*keys).orderBy(*[F.col(c).desc_nulls_last() if d else F.col(c).asc_nulls_last()
                                                for c, d in order])
        df = frame.to_native().withColumn("_first_by", F.row_number().over(w))
        return nw.from_native(df.filter(F.col("_first_by") == 1).drop("_first_by"))

    def hex_digest(self, frame, out: str, column: str, algorithm: str = "sha256", salt: str = ""):
        import narwhals as nw
        from pyspark.sql import functions as F

        value = F.concat(F.lit(salt), F.col(column)) if salt else F.col(column)
        expr = {"sha256": lambda v: F.sha2(v, 256), "sha1": F.sha1}[algorithm](value)
        return nw.from_native(frame.to_native().withColumn(out, expr))

    def ingest(self, format: str, patterns, messages_url: str, quarantine_url: str, log=None):
        from pipelines.engines.spark_ingest import ingest

        return ingest(self.spark, format, patterns, messages_url, quarantine_url)

    def number_rows(self, frame, out: str, partition_by, order_by):
        """Dense numbering that never funnels a group through one task: a global sort
        (range-partitioned by the whole key, so one big group spreads over many partitions),
        each task numbers its own rows per group (:meth:`_index_partition`, in partition order),
        the driver turns the per-(partition, group) row counts (partitions x groups numbers)
        into offsets, and a broadcast join adds them. The numbered partitions are checkpointed
        locally (not merely cached: a recomputed sort could cut the partitions elsewhere and
        no longer match the offsets); Spark frees them when the frame is no longer referenced.
        """
        import functools

        import narwhals as nw
        from pyspark.sql import functions as F
        from pyspark.sql.types import IntegerType, LongType, StructField, StructType

        df, keys = frame.to_native(), list(partition_by)
        part, local, offset = "_nr_part", "_nr_local", "_nr_offset"
        schema = StructType([*df.schema.fields, StructField(part, IntegerType()), StructField(local, LongType())])
        indexed = (df.orderBy(*[F.col(c).asc_nulls_last() for c in (*keys, *order_by)])
                   .mapInArrow(functools.partial(SparkEngine._index_partition, keys, part, local), schema)
                   .localCheckpoint(eager=False))
        counts = sorted(indexed.groupBy(part, *keys).count().collect(), key=lambda r: r[part])
        offsets, running = [], {}
        for r in counts:
            k = tuple(r[c] for c in keys)
            offsets.append((r[part], *k, running.get(k, 0)))
            running[k] = running.get(k, 0) + r["count"]
        off = self.spark.createDataFrame(offsets, StructType(
            [StructField(part, IntegerType()), *[df.schema[c] for c in keys], StructField(offset, LongType())]))
        on = [indexed[part] == off[part], *[indexed[c].eqNullSafe(off[c]) for c in keys]]
        numbered = indexed.join(F.broadcast(off), on).select(*[indexed[c] for c in df.columns],
                                                             (indexed[local] + off[offset]).alias(out))
        return nw.from_native(numbered)

    @staticmethod
    def _index_partition(keys, part, local, batches):
        """mapInArrow over one sorted partition: its id, and each row's running number in its group."""
        import numpy as np
        import polars as pl
        from pyspark import TaskContext

        pid = TaskContext.get().partitionId()
        seen = None  # rows of each group in the earlier batches of this partition
        done = 0     # rows of the earlier batches (no groups: one running number)
        for b in batches:
            if b.num_rows == 0:
                continue
            if not keys:
                yield pa.RecordBatch.from_arrays(
                    [*b.columns, pa.array(np.full(b.num_rows, pid, dtype=np.int32)),
                     pa.array(np.arange(done, done + b.num_rows, dtype=np.int64))], names=[*b.schema.names, part, local])
                done += b.num_rows
                continue
            k = pl.from_arrow(pa.Table.from_batches([b]).select(keys))
            idx = k.select(pl.int_range(pl.len(), dtype=pl.Int64).over(keys)).to_series()
            if seen is not None:
                idx = idx + k.join(seen, on=keys, how="left", nulls_equal=True,
                                   maintain_order="left").get_column("_n").fill_null(0)
            n = k.group_by(keys).agg(pl.len().cast(pl.Int64).alias("_n"))
            seen = n if seen is None else pl.concat([seen, n]).group_by(keys).agg(pl.col("_n").sum())
            yield pa.RecordBatch.from_arrays(
                [*b.columns, pa.array(np.full(b.num_rows, pid, dtype=np.int32)), idx.to_arrow()],
                names=[*b.schema.names, part, local])

    def materialize(self, frame, to_disk: bool = False):
        """A local checkpoint (eager): the rows are computed now and kept by the executors; the
        frame's plan is cut there, where a cached frame would carry its whole plan into every
        later one (a plan that joins a result many times grows with each use). ``to_disk`` changes
        nothing: the executors already keep it, spilling to their disks as they need."""
        import narwhals as nw

        return nw.from_native(frame.to_native().localCheckpoint(eager=True))

    def epoch_us(self, frame, out: str, column: str):
        import narwhals as nw
        from pyspark.sql import functions as F

        return nw.from_native(frame.to_native().withColumn(out, F.unix_micros(F.col(column))))

    def int_ranges(self, frame, out: str, start: str, end: str):
        import narwhals as nw
        from pyspark.sql import functions as F

        lo, hi = F.col(start).cast("long"), F.col(end).cast("long")
        # `sequence` is inclusive and counts down when its end is below its start: empty instead.
        expr = F.when(hi > lo, F.sequence(lo, hi - 1)).otherwise(F.array().cast("array<bigint>"))
        return nw.from_native(frame.to_native().withColumn(out, expr))

    def attach_lists(self, frame, key, items, values: dict, order_by: str):
        """One ``collect_list`` of (order, values…) structs per key, sorted, then one list per value:
        Spark's ``collect_list`` of a bare column would drop its nulls."""
        import narwhals as nw
        from pyspark.sql import functions as F
        from pyspark.sql.types import ArrayType

        it, key = items.to_native(), list(key)
        fields = [F.col(order_by).alias("_o"), *[F.col(v).alias(f"_v{i}") for i, v in enumerate(values.values())]]
        lists = (it.groupBy(*key).agg(F.array_sort(F.collect_list(F.struct(*fields))).alias("_l"))
                 .select(*key, *[F.transform("_l", _field(f"_v{i}")).alias(o) for i, o in enumerate(values)]))
        df = frame.to_native().join(lists, on=key, how="left")
        for o, v in values.items():
            df = df.withColumn(o, F.coalesce(F.col(o), F.array().cast(ArrayType(it.schema[v].dataType))))
        return nw.from_native(df)

    def map_batches(self, frame, fn, schema: pa.Schema, batch_rows: int | None = None, columnar: bool = False,
                    processes: int = 1):
        """``mapInArrow`` with ``fn`` shipped to the executors (cloudpickle; PySpark broadcasts a
        large pickled function, e.g. one holding a lookup table); each batch ``fn`` yields is cast
        to ``schema``. Batches are Spark's Arrow batches (spark.sql.execution.arrow.maxRecordsPerBatch):
        ``batch_rows``, ``columnar`` and ``processes`` are the Polars engine's."""
        import functools

        import narwhals as nw

        out_schema = pa.schema([f.with_nullable(True) for f in schema])
        return nw.from_native(frame.to_native().mapInArrow(
            functools.partial(SparkEngine._cast_batches, fn, out_schema), spark_schema(out_schema)))

    @staticmethod
    def _cast_batches(fn, schema: pa.Schema, batches):
        """mapInArrow body of :meth:`map_batches`: ``fn``'s batches cast to ``schema``."""
        for b in fn(batches):
            yield b.cast(schema)

    def every_nth(self, frame, order_by, step: int):
        """A global sort and ``zipWithIndex`` (row numbers across partitions, no single task)."""
        import narwhals as nw

        if step <= 1:
            return frame
        df = frame.to_native()
        rdd = df.orderBy(*order_by).rdd.zipWithIndex().filter(lambda r: r[1] % step == 0).map(lambda r: r[0])
        return nw.from_native(self.spark.createDataFrame(rdd, df.schema))
