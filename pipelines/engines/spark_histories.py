"""Reading histories on Spark: the side-by-side twin of pipelines/histories.py, step for step
(:func:`select_keys`, :func:`ancestors`, :func:`build_histories`).

Windows ordered by `seq` per (timeline, thread), (timeline, parent) and (timeline, author)
give the thread predecessors, the earlier siblings and the own stream (one shuffle each);
ancestors are an iterative self-join on `parent_seq`, at most N levels.
"""

from __future__ import annotations

from pipelines.histories import TREE_PLATFORMS, HistoryConfig
from schemas import HISTORIES as H
from schemas import TIMELINE as T


def _previous(partition: list[str], n: int):
    """Up to n previous `seq` within ``partition`` (ordered by seq), nearest first."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if n == 0:
        return F.array().cast("array<bigint>")
    w = Window.partitionBy(*partition).orderBy(T.seq).rowsBetween(-n, -1)
    return F.reverse(F.collect_list(T.seq).over(w))


def structure_expr():
    from pyspark.sql import functions as F

    return (F.when(F.col(T.parent_id).isNotNull() & F.col(T.platform).isin(*TREE_PLATFORMS), F.lit("tree"))
            .otherwise(F.lit("linear")))


def select_keys(timeline):
    return (timeline.select(T.timeline_id, T.seq, T.message_id, T.thread_id, T.author_id, T.platform,
                            T.parent_id, T.parent_seq).withColumn(H.structure, structure_expr()))


def ancestors(keys, n: int):
    """(timeline_id, seq, `_anc`: ancestor seqs nearest first, at most n) for tree messages; only
    strictly earlier parents are followed (as in histories.ancestors)."""
    from pyspark.sql import functions as F

    # Renamed columns on the link side: a self-join on `keys` would be ambiguous to Spark.
    links = (keys.filter(F.col(T.parent_seq).isNotNull() & (F.col(T.parent_seq) < F.col(T.seq)))
             .select(F.col(T.timeline_id).alias("_ltl"), F.col(T.seq).alias("_node"), F.col(T.parent_seq).alias("_up")))
    level = (keys.filter(F.col(H.structure) == "tree").select(T.timeline_id, T.seq)
             .join(links, (F.col(T.timeline_id) == F.col("_ltl")) & (F.col(T.seq) == F.col("_node")))
             .select(T.timeline_id, T.seq, F.col("_up").alias("_a"), F.lit(1).alias("_depth")))
    levels = [level]
    for depth in range(2, n + 1):
        level = (level.join(links, (F.col(T.timeline_id) == F.col("_ltl")) & (F.col("_a") == F.col("_node")))
                 .select(T.timeline_id, T.seq, F.col("_up").alias("_a"), F.lit(depth).alias("_depth")))
        levels.append(level)
    union = levels[0]
    for lv in levels[1:]:
        union = union.unionByName(lv)
    return (union.groupBy(T.timeline_id, T.seq)
            .agg(F.sort_array(F.collect_list(F.struct("_depth", "_a"))).alias("_chain"))
            .select(T.timeline_id, T.seq, F.transform("_chain", lambda x: x["_a"]).alias("_anc")))


def build_histories(timeline, cfg: HistoryConfig = HistoryConfig()):
    """`timeline` (Spark) in; (`reading_histories` rows with `_anc`, cached; stats) out. Same rows
    as :func:`pipelines.histories.build_histories`."""
    from pyspark.sql import functions as F

    keys = select_keys(timeline)
    n = cfg.n
    empty = F.array().cast("array<bigint>")
    tree = F.col(H.structure) == "tree"
    df = (keys.join(ancestors(keys, n), [T.timeline_id, T.seq], "left")
          .withColumn("_sib", F.when(tree, _previous([T.timeline_id, T.parent_id], n)))
          .withColumn("_thread", _previous([T.timeline_id, T.thread_id], n))
          .withColumn(H.own_seqs, F.when(F.col(T.author_id).isNotNull(), _previous([T.timeline_id, T.author_id],
                                                                                   cfg.k)).otherwise(empty))
          .withColumn(H.read_seqs, F.when(tree, F.slice(F.concat(F.coalesce(F.col("_anc"), empty), F.col("_sib")),
                                                        1, n)).otherwise(F.col("_thread")))
          .cache())
    return df, histories_stats(df)


def histories_stats(df) -> dict:
    """The counts of :func:`pipelines.histories.histories_stats`, computed in Spark."""
    from pyspark.sql import functions as F

    r, o = F.size(H.read_seqs), F.size(H.own_seqs)
    a = F.coalesce(F.size("_anc"), F.lit(0))
    by = {row[0]: int(row[1]) for row in df.groupBy(H.structure).count().orderBy(H.structure).collect()}
    c = df.agg(F.count(F.lit(1)).alias("n"), F.sum((r == 0).cast("long")).alias("empty"),
               F.avg(r).alias("r"), F.avg(o).alias("o"),
               F.avg(F.when(F.col(H.structure) == "tree", a)).alias("a")).collect()[0]
    return {
        "rows_in": int(c["n"]),
        "rows_out": int(c["n"]),
        "dropped_by_reason": {},
        "by_structure": by,
        "empty_read": int(c["empty"] or 0),
        "mean_read": round(float(c["r"] or 0.0), 3),
        "mean_own": round(float(c["o"] or 0.0), 3),
        "mean_ancestors_tree": round(float(c["a"] or 0.0), 3),
    }


def run(ctx, spark) -> dict:
    """Read `timeline`, write `reading_histories` sorted by (timeline_id, seq); return counts."""
    from pyspark.sql import functions as F

    from pipelines.engines.spark import read_table, write_table

    cfg = ctx.config.section("history")
    df, stats = build_histories(read_table(spark, ctx.config.table_url(T.name), T), cfg)
    try:
        write_table(df, ctx.config.table_url(H.name), H, order_by=[F.col(H.timeline_id), F.col(H.seq)])
    finally:
        df.unpersist()
    ctx.log.info("histories (spark): %d rows (N=%d, K=%d)", stats["rows_out"], cfg.n, cfg.k)
    return {**stats, "n": cfg.n, "k": cfg.k}
