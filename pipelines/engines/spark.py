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
from dataclasses import dataclass, field

import pyarrow as pa


# Defaults every session gets; `[spark] conf` entries override them.
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}


@dataclass(frozen=True)
class SparkConfig:
    """Section `[spark]`.

    master: Spark master URL (`local[*]`, `local[2]`, `spark://host:7077`, `yarn`, `k8s://…`).
    app_name: the application name shown by the cluster manager.
    conf: any `spark.*` settings, e.g. `{ "spark.executor.memory" = "8g" }`.
    shuffle_partitions: `spark.sql.shuffle.partitions` unless `conf` sets it (small for local runs).
    """

    master: str = "local[*]"
    app_name: str = "socialcorpus"
    conf: dict = field(default_factory=dict)
    shuffle_partitions: int = 8

    def __post_init__(self):
        bad = [k for k in self.conf if not str(k).startswith("spark.")]
        if bad:
            raise ValueError(f"[spark] conf keys must start with 'spark.', got {bad}")


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


# --- the engine ------------------------------------------------------------------------------

class SparkEngine:
    """The Spark side of :class:`pipelines.engines.Engine` (narwhals frames backed by Spark DataFrames)."""

    name = "spark"

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

    # -- timeline primitives (add above this line)

    # -- examples primitives (add above this line)


# --- stage dispatch -------------------------------------------------------------------------

# stage name -> "module:function(ctx, spark) -> summary". Stages missing here run on Polars.
SPARK_STAGES = {
    "dedup": "pipelines.engines.spark_dedup:run",
    "anonymize": "pipelines.engines.spark_anonymize:run",
    "neardup": "pipelines.engines.spark_neardup:run",
    "timeline": "pipelines.engines.spark_timeline:run",
    "examples": "pipelines.engines.spark_examples:run",
    "tokenizer": "pipelines.engines.spark_shards:tokenizer_run",
    "shards": "pipelines.engines.spark_shards:run",
}


def has_stage(name: str) -> bool:
    return name in SPARK_STAGES


def run_stage(name: str, ctx) -> dict:
    """Run stage ``name``'s Spark side on the session for the config's `[spark]` section."""
    import importlib

    mod, fn = SPARK_STAGES[name].split(":")
    return getattr(importlib.import_module(mod), fn)(ctx, ctx.spark())
