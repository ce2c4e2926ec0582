"""Record dedup on Spark: the side-by-side twin of pipelines/stages/dedup.py (same rule, same counts).

One shuffle: a window partitioned by `message_id` ranks the copies with the exact ordering
of :func:`pipelines.stages.dedup.dedup_records`; `row_number() == 1` is kept. The content hash is
Spark's ``sha2(concat_ws(...), 256)`` over the same fields, null fills and separator as
``dedup._content_hash`` (tests/test_spark_stages.py proves the two equal on real input).
"""

from __future__ import annotations

from pipelines.stages.dedup import _HASH, _SEP
from schemas import MESSAGES as M
from schemas import RECORDS

_N = "n_copies"


def content_hash_expr():
    """sha256 hex of text, title, extra, score joined by \\x1f (nulls as in dedup._content_hash)."""
    from pyspark.sql import functions as F

    return F.sha2(F.concat_ws(_SEP, F.coalesce(F.col(M.text), F.lit("")),
                              F.coalesce(F.col(M.title), F.lit("\x00")),
                              F.coalesce(F.col(M.extra), F.lit("\x00")),
                              F.coalesce(F.col(M.score).cast("string"), F.lit("\x00"))), 256)


def dedup_records(raw):
    """Spark DataFrame of ``messages_raw`` rows -> (``messages`` rows with ``n_copies``, stats).

    Same rule and counts as :func:`pipelines.stages.dedup.dedup_records`; the result is unordered
    (the writer sorts by ``message_id``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_id = Window.partitionBy(M.message_id)
    df = raw.withColumn(_N, F.count(F.lit(1)).over(by_id).cast("int"))
    # The hash is only evaluated where a message has copies (as on Polars).
    df = df.withColumn(_HASH, F.when(F.col(_N) > 1, content_hash_expr()))
    order = [F.col(M.revision).desc_nulls_last(), F.col(M.edited_at).desc_nulls_last(),
             F.col(M.retrieved_at).desc_nulls_last(), F.col(_HASH).desc_nulls_last(),
             F.col(M.source_uri).asc_nulls_last(), F.col(M.source_record).asc_nulls_last()]
    out = (df.withColumn("_rank", F.row_number().over(by_id.orderBy(*order)))
           .filter(F.col("_rank") == 1).drop("_rank", _HASH))
    out = out.cache()
    by_platform = (raw.groupBy(M.platform).agg(F.count(F.lit(1)).alias("n"),
                                               F.countDistinct(M.message_id).alias("u"))
                   .withColumn("collapsed", F.col("n") - F.col("u")).orderBy(M.platform).collect())
    rows_in = sum(int(r["n"]) for r in by_platform)
    kept = out.agg(F.count(F.lit(1)), F.sum((F.col(_N) > 1).cast("long"))).collect()[0]
    rows_out, with_copies = int(kept[0]), int(kept[1] or 0)
    stats = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "collapsed": rows_in - rows_out,
        "dropped": {"duplicate_copy": rows_in - rows_out},
        "messages_with_copies": with_copies,
        "collapsed_by_platform": {r[M.platform]: int(r["collapsed"]) for r in by_platform if r["collapsed"]},
    }
    return out, stats


def run(ctx, spark) -> dict:
    """Read every source under `messages_raw/`, write `messages` sorted by `message_id`."""
    from pyspark.sql import functions as F

    from pipelines.engines.spark import read_table, write_table

    raw = read_table(spark, ctx.config.table_url("messages_raw"), M)
    out, stats = dedup_records(raw)
    try:
        write_table(out, ctx.config.table_url(RECORDS.name), RECORDS, order_by=[F.col(M.message_id)])
    finally:
        out.unpersist()
    ctx.log.info("dedup (spark): %d rows in, %d out, %d copies collapsed", stats["rows_in"], stats["rows_out"],
                 stats["collapsed"])
    return stats
