"""The Spark engine: a SparkSession from the `[spark]` config, and the stages' Spark sides.

Per-record work is the very same Python as on the Polars engine, shipped to executors
through ``mapInArrow``; only the relational steps are written for Spark.

    engine = "spark"
    [spark]
    master = "local[*]"              # or spark://host:7077, yarn, k8s://…
    conf = { "spark.executor.memory" = "8g" }
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from schemas import MESSAGES, QUARANTINE

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


# --- ingest ---------------------------------------------------------------------------------

_KIND, _Q, _SKIP, _RECORDS = "_outcome", "_quarantine", "_skip_reason", "_records"
# Every outcome is one row: message columns, or a quarantine row (JSON) or a skip count; one more
# row per unit batch carries how many records the reader read (kind "r"), so the summary's
# `records` is counted by the reader, not derived from the other three.
_OUTCOMES = pa.schema([*(pa.field(f.name, f.type, nullable=True) for f in MESSAGES.arrow),
                       pa.field(_KIND, pa.string()), pa.field(_Q, pa.string()),
                       pa.field(_SKIP, pa.string()), pa.field(_RECORDS, pa.int64())])


def _unit_outcomes(format: str):
    """mapInArrow function: rows of (unit json) -> every outcome of reading those units."""

    def run(batches):
        from pipelines.ingest import iter_unit_batches

        for batch in batches:
            for unit_json in batch.column("unit").to_pylist():
                for ub in iter_unit_batches(format, json.loads(unit_json)):
                    m = ub.messages
                    n = m.num_rows
                    parts = [m.append_column(_KIND, pa.array(["m"] * n, pa.string()))
                              .append_column(_Q, pa.nulls(n, pa.string()))
                              .append_column(_SKIP, pa.nulls(n, pa.string()))
                              .append_column(_RECORDS, pa.nulls(n, pa.int64()))]
                    extra = [{_KIND: "q", _Q: json.dumps(q, sort_keys=True)} for q in ub.quarantine]
                    extra += [{_KIND: "s", _SKIP: reason, _RECORDS: c} for reason, c in sorted(ub.skipped.items())]
                    extra.append({_KIND: "r", _RECORDS: ub.records})
                    if extra:
                        parts.append(pa.Table.from_pylist(extra, schema=_OUTCOMES))
                    t = pa.concat_tables([p.cast(_OUTCOMES) for p in parts])
                    yield from t.to_batches()

    return run


def ingest(spark, format: str, patterns, messages_url: str, quarantine_url: str):
    """Spark ingestion: units (file groups) are distributed across tasks and parsed by the
    same reader code as the Polars engine; returns the same IngestStats.

    Each output is written under a temporary name and swapped in whole (see storage).
    """
    from pipelines import storage
    from pipelines.ingest import IngestStats, expand_paths
    from pipelines.sources import get_reader

    paths = expand_paths(patterns)
    units = get_reader(format).units(paths)
    stats = IngestStats(format=format, files=sum(len(u) for u in units))
    units_df = spark.createDataFrame([(i, json.dumps(u)) for i, u in enumerate(units)],
                                     "unit_index long, unit string")
    units_df = units_df.repartition(max(1, min(len(units), spark.sparkContext.defaultParallelism * 4)))
    outcomes = units_df.mapInArrow(_unit_outcomes(format), spark_schema(_OUTCOMES, nullable=True)).cache()
    try:
        from pyspark.sql import functions as F

        msgs = outcomes.filter(F.col(_KIND) == "m").select(*MESSAGES.names)
        storage.write_spark(msgs, messages_url)
        qrows = [json.loads(r[0]) for r in outcomes.filter(F.col(_KIND) == "q").select(_Q).collect()]
        skips = outcomes.filter(F.col(_KIND) == "s").groupBy(_SKIP).agg(F.sum(_RECORDS)).collect()
        n_msgs = outcomes.filter(F.col(_KIND) == "m").count()
        n_records = outcomes.filter(F.col(_KIND) == "r").agg(F.sum(_RECORDS)).collect()[0][0] or 0
    finally:
        outcomes.unpersist()
    qrows.sort(key=lambda q: (q["source_uri"], q["source_record"] or -1, q["byte_offset"] or -1, q["reason"]))
    storage.write_dataset(quarantine_url, QUARANTINE.conform(pa.Table.from_pylist(qrows, schema=QUARANTINE.arrow)))
    q_reasons = Counter(q["reason"] for q in qrows)
    stats.skipped_by_reason = dict(sorted((r[0], int(r[1])) for r in skips))
    stats.quarantined_by_reason = dict(sorted(q_reasons.items()))
    stats.messages = n_msgs
    stats.quarantined = len(qrows)
    stats.skipped = sum(stats.skipped_by_reason.values())
    stats.records = int(n_records)
    return stats


# --- tables ---------------------------------------------------------------------------------

def read_table(spark, url: str, table=None):
    """The dataset directory ``url`` (every Parquet file under it, as storage.read sees them) as a
    Spark DataFrame; with ``table`` (a ``schemas.Table``) its columns in that order and types."""
    from pipelines import storage

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
    from pipelines import storage

    out = conform(df, table)
    if order_by:
        out = out.orderBy(*order_by)
    storage.write_spark(out, url)


def to_polars(df):
    """Collect a (small) Spark DataFrame to Polars through Arrow (tests, stats, small tables)."""
    import polars as pl

    return pl.from_arrow(df.toArrow())


# --- stage dispatch -------------------------------------------------------------------------

def _ingest_stage(ctx, spark) -> dict:
    # pipelines.ingest lays out the tables; each file group goes through `ingest` above.
    from pipelines import ingest as ingest_mod

    return ingest_mod.run(ctx)


# stage name -> "module:function(ctx, spark) -> summary". Stages missing here run on Polars.
SPARK_STAGES = {
    "ingest": "pipelines.engines.spark:_ingest_stage",
    "dedup": "pipelines.engines.spark_dedup:run",
    "anonymize": "pipelines.engines.spark_anonymize:run",
    "neardup": "pipelines.engines.spark_neardup:run",
    "timeline": "pipelines.engines.spark_timeline:run",
    "histories": "pipelines.engines.spark_histories:run",
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
