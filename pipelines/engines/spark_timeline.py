"""Timeline on Spark: the side-by-side twin of pipelines/stages/timeline.py, step for step
(:func:`assign_timeline`, :func:`number_seq`, :func:`link_parents`, :func:`build_timeline`).

The dense `seq` never funnels through one partition: a global sort (range-partitioned by
the whole key, so the big `wall` timeline is spread over many partitions), then each task
numbers its own rows per timeline (:func:`_local_index`, in partition order), the driver
collects the per-(partition, timeline) row counts (partitions x timelines numbers) and
turns them into offsets, and a broadcast join adds the offset. One shuffle for the sort,
one for the parent join.
"""

from __future__ import annotations

from datetime import timezone

import pyarrow as pa

from pipelines.stages.timeline import _TKEY, ORDINAL_PREFIX, SORT_KEY, WALL, TimelineError
from schemas import DEDUP as D
from schemas import TIMELINE as T

_PID, _LOCAL = "_pid", "_local"


def timeline_id_expr():
    from pyspark.sql import functions as F

    return (F.when(F.col(D.time_kind) == "ordinal", F.concat(F.lit(ORDINAL_PREFIX), F.col(D.community)))
            .otherwise(F.lit(WALL)))


def time_key_expr():
    """Epoch microseconds (wall) or `time_ordinal` (ordinal), as timeline.time_key_expr."""
    from pyspark.sql import functions as F

    return (F.when(F.col(D.time_kind) == "ordinal", F.col(D.time_ordinal))
            .otherwise(F.unix_micros(F.col(D.created_at))).cast("long"))


def assign_timeline(df):
    return df.withColumn(T.timeline_id, timeline_id_expr()).withColumn(_TKEY, time_key_expr())


def _sort_cols():
    from pyspark.sql import functions as F

    return [F.col(c).asc_nulls_last() for c in (T.timeline_id, *SORT_KEY)]


def _local_index(batches):
    """mapInArrow over one sorted partition: (partition id, running row number per timeline)."""
    import numpy as np
    import polars as pl
    from pyspark import TaskContext

    pid = TaskContext.get().partitionId()
    seen: dict[str, int] = {}
    for b in batches:
        if b.num_rows == 0:
            continue
        tl = pl.from_arrow(b.column(b.schema.get_field_index(T.timeline_id))).alias(T.timeline_id).to_frame()
        start = tl.get_column(T.timeline_id).replace_strict(seen, default=0, return_dtype=pl.Int64)
        local = tl.select(pl.int_range(pl.len(), dtype=pl.Int64).over(T.timeline_id)).to_series() + start
        for name, n in tl.group_by(T.timeline_id).len().iter_rows():
            seen[name] = seen.get(name, 0) + n
        yield pa.RecordBatch.from_arrays(
            [*b.columns, pa.array(np.full(b.num_rows, pid, dtype=np.int32)), pa.array(local.to_numpy())],
            names=[*b.schema.names, _PID, _LOCAL])


def number_seq(df):
    """Globally sorted by (timeline_id, time, platform, thread, order_in_source, message_id),
    nulls last; dense `seq` 0..n-1 per timeline. Returns the cached numbered frame."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, LongType, StructField, StructType

    schema = StructType([*df.schema.fields, StructField(_PID, IntegerType()), StructField(_LOCAL, LongType())])
    indexed = df.orderBy(*_sort_cols()).mapInArrow(_local_index, schema).cache()
    counts = sorted(indexed.groupBy(_PID, T.timeline_id).count().collect(), key=lambda r: (r[0], r[1]))
    offsets, running = [], {}
    for pid, tl, n in counts:
        offsets.append((pid, tl, running.get(tl, 0)))
        running[tl] = running.get(tl, 0) + n
    spark = df.sparkSession
    off = spark.createDataFrame(offsets, f"{_PID} int, {T.timeline_id} string, _offset long")
    out = (indexed.join(F.broadcast(off), [_PID, T.timeline_id])
           .withColumn(T.seq, F.col(_LOCAL) + F.col("_offset")).drop(_PID, _LOCAL, "_offset"))
    return out, indexed


def link_parents(df):
    """`parent_seq` from `parent_id` (else `parent_inferred`) on the same timeline; flags as on Polars."""
    from pyspark.sql import functions as F

    ids = df.select(F.col(D.message_id).alias("_pid"), F.col(T.timeline_id).alias("_ptl"),
                    F.col(T.seq).alias("_pseq"))
    inferred = ids.select(F.col("_pid").alias("_iid"), F.col("_ptl").alias("_itl"), F.col("_pseq").alias("_iseq"))
    out = (df.join(ids, df[D.parent_id] == ids["_pid"], "left")
           .join(inferred, F.col(D.parent_inferred) == F.col("_iid"), "left"))
    explicit = F.when(F.col("_ptl") == F.col(T.timeline_id), F.col("_pseq"))
    implied = F.when(F.col("_itl") == F.col(T.timeline_id), F.col("_iseq"))
    return (out.withColumn(T.parent_seq, F.coalesce(explicit, implied))
            .withColumn(T.parent_dangling, F.col(D.parent_id).isNotNull() & F.col("_ptl").isNull())
            .withColumn("_cross", F.col("_ptl").isNotNull() & (F.col("_ptl") != F.col(T.timeline_id)))
            .withColumn("_inferred_dangling", F.col(D.parent_inferred).isNotNull() & F.col("_itl").isNull())
            .drop("_pid", "_ptl", "_pseq", "_iid", "_itl", "_iseq"))


def build_timeline(df):
    """`messages_dedup` rows in; (timeline DataFrame with internal columns, cached; stats; cached
    intermediates to unpersist) out. Raises TimelineError if a `message_id` repeats."""
    from pyspark.sql import functions as F

    dups = df.groupBy(D.message_id).count().filter(F.col("count") > 1)
    bad = dups.orderBy(D.message_id).limit(5).collect()
    if bad:
        n = dups.agg(F.sum("count")).collect()[0][0]
        raise TimelineError(f"messages_dedup: {n} rows share a message_id (e.g. {[r[0] for r in bad]}); "
                            "record dedup must leave one row per message_id. Re-run the dedup stage.")
    numbered, indexed = number_seq(assign_timeline(df))
    out = link_parents(numbered).cache()
    stats = timeline_stats(out)
    return out, stats, [indexed, out]


def timeline_stats(df) -> dict:
    """The counts of :func:`pipelines.stages.timeline.timeline_stats`, computed in Spark."""
    from pyspark.sql import functions as F

    per_tl = (df.groupBy(T.timeline_id).agg(F.count(F.lit(1)).alias("rows"), F.min(D.created_at).alias("min"),
                                            F.max(D.created_at).alias("max")).orderBy(T.timeline_id).collect())
    wall = [r for r in per_tl if r[T.timeline_id] == WALL]
    span = None
    if wall and wall[0]["min"] is not None:
        # Spark hands back naive datetimes in the session time zone (UTC); Polars' are aware.
        utc = lambda d: d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d  # noqa: E731
        span = {"min_created_at": utc(wall[0]["min"]).isoformat(), "max_created_at": utc(wall[0]["max"]).isoformat()}
    linked = F.col(T.parent_seq).isNotNull()
    c = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col(D.parent_id).isNotNull().cast("long")).alias("with_parent_id"),
        F.sum(linked.cast("long")).alias("parent_linked"),
        F.sum((linked & (F.col(D.parent_id).isNull() | F.col(T.parent_dangling))).cast("long")).alias("inferred"),
        F.sum(F.col(T.parent_dangling).cast("long")).alias("dangling"),
        F.sum(F.col("_cross").cast("long")).alias("cross"),
        F.sum(F.col("_inferred_dangling").cast("long")).alias("inferred_dangling"),
        F.sum((linked & (F.col(T.parent_seq) >= F.col(T.seq))).cast("long")).alias("not_earlier"),
        F.sum(F.col(_TKEY).isNull().cast("long")).alias("without_time"),
    ).collect()[0]
    n = lambda k: int(c[k] or 0)  # noqa: E731  (sum over no rows is null)
    return {
        "rows_in": n("rows"),
        "rows_out": n("rows"),
        "timelines": len(per_tl),
        "ordinal_timelines": sum(1 for r in per_tl if r[T.timeline_id] != WALL),
        "rows_by_timeline": {r[T.timeline_id]: int(r["rows"]) for r in per_tl},
        "wall_span": span,
        "with_parent_id": n("with_parent_id"),
        "parent_linked": n("parent_linked"),
        "parent_linked_inferred": n("inferred"),
        "parent_dangling": n("dangling"),
        "parent_cross_timeline": n("cross"),
        "parent_inferred_dangling": n("inferred_dangling"),
        "parent_not_earlier": n("not_earlier"),
        "without_time": n("without_time"),
        "dropped_by_reason": {},
    }


def run(ctx, spark) -> dict:
    """Read `messages_dedup`, write `timeline` sorted by (timeline_id, seq); return the counts."""
    from pyspark.sql import functions as F

    from pipelines.engines.spark import read_table, write_table

    df = read_table(spark, ctx.config.table_url(D.name), D)
    out, stats, cached = build_timeline(df)
    try:
        write_table(out, ctx.config.table_url(T.name), T, order_by=[F.col(T.timeline_id), F.col(T.seq)])
    finally:
        for c in cached:
            c.unpersist()
    ctx.log.info("timeline (spark): %d rows on %d timelines, %d dangling parents", stats["rows_out"],
                 stats["timelines"], stats["parent_dangling"])
    return stats
