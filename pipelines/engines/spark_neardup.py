"""Near-dup on Spark: the side-by-side twin of pipelines/stages/neardup.py, step for step
(:func:`signature_frame`, :func:`candidate_edges`, :func:`verify`, :func:`components`,
:func:`near_dedup`).

* Signatures: :func:`pipelines.core.minhash.signatures` and :func:`pipelines.core.minhash.band_keys`
  (the Polars stage's own code) per Arrow batch through ``mapInArrow``; a document's
  signature does not depend on its batch. Spark has no unsigned types, so the uint32
  signature values and uint64 band keys travel as the same bits in int32 / int64
  (equality, the only thing used, is unchanged).
* LSH buckets: a group-by on (band, key); every message of a bucket is linked to the
  bucket's smallest `message_id`. The Polars stage links to the smallest row *position*;
  its input (`messages_anon`) is written sorted by `message_id`, so the two anchors are
  the same message (the parity test proves the edges equal on the real samples).
* Verification: the share of equal signature values, ``count / num_perm`` as a double,
  compared with the threshold exactly as numpy's ``mean`` does.
* Components: iterated min-label propagation with joins plus pointer jumping, each round
  materialised (cached) and compared with the previous one; deterministic (labels are the
  smallest `message_id` of the component).
* Canonical copy per cluster by a window ordered by (created_at, time_ordinal,
  message_id), nulls last.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.stages.neardup import NearDupConfig, document_text
from pipelines.core.results import StageResult
from schemas import ANON, DEDUP
from schemas import MESSAGES as M

_SIG, _KEYS, _NTOK = "_sig", "_band_keys", "_n_tokens"
_SIGS = pa.schema([pa.field(M.message_id, pa.string()), pa.field(_NTOK, pa.int32()),
                   pa.field(_SIG, pa.list_(pa.int32())), pa.field(_KEYS, pa.list_(pa.int64()))])
_MAX_ROUNDS = 100  # label propagation with pointer jumping needs O(log diameter) rounds


def _signature_batches(cfg: NearDupConfig):
    """mapInArrow: `messages_anon` rows -> (message_id, word count, signature, band keys)."""

    def run(batches):
        import polars as pl

        from pipelines.core.minhash import band_keys, signatures

        for b in batches:
            if b.num_rows == 0:
                continue
            df = pl.from_arrow(pa.Table.from_batches([b]))
            sig, n_words = signatures(document_text(df), cfg.num_perm, cfg.seed, cfg.shingle_size)
            keys = band_keys(sig, cfg.bands, cfg.rows)
            n = b.num_rows
            off = lambda w: pa.array(np.arange(0, (n + 1) * w, w, dtype=np.int32))  # noqa: E731
            yield pa.RecordBatch.from_arrays(
                [b.column(b.schema.get_field_index(M.message_id)).cast(pa.string()),
                 pa.array(n_words.astype(np.int32)),
                 pa.ListArray.from_arrays(off(cfg.num_perm), pa.array(sig.reshape(-1).view(np.int32))),
                 pa.ListArray.from_arrays(off(cfg.bands), pa.array(keys.reshape(-1).view(np.int64)))],
                schema=_SIGS)

    return run


def signature_frame(df, cfg: NearDupConfig):
    """Spark `messages_anon` rows -> (message_id, `_n_tokens`, `_sig`, `_band_keys`), one row each."""
    from pipelines.engines.spark import spark_schema

    return df.select(M.message_id, M.title, M.text).mapInArrow(_signature_batches(cfg),
                                                              spark_schema(_SIGS, nullable=True))


def candidate_edges(sigs, cfg: NearDupConfig):
    """LSH buckets as a group-by: distinct (u, v) star edges, v = the smallest message_id of each
    shared bucket, over eligible messages (at least ``min_tokens`` words)."""
    from pyspark.sql import functions as F

    table = (sigs.filter(F.col(_NTOK) >= cfg.min_tokens)
             .select(F.col(M.message_id).alias("u"), F.posexplode(_KEYS).alias("band", "key")))
    anchors = (table.groupBy("band", "key").agg(F.min("u").alias("v"), F.count(F.lit(1)).alias("n"))
               .filter(F.col("n") > 1).drop("n"))
    return table.join(anchors, ["band", "key"]).filter(F.col("u") != F.col("v")).select("u", "v").distinct()


def verify(edges, sigs, cfg: NearDupConfig):
    """The edges whose signatures agree on at least ``threshold`` of their values."""
    from pyspark.sql import functions as F

    su = sigs.select(F.col(M.message_id).alias("u"), F.col(_SIG).alias("_su"))
    sv = sigs.select(F.col(M.message_id).alias("v"), F.col(_SIG).alias("_sv"))
    same = F.aggregate(F.zip_with("_su", "_sv", lambda x, y: (x == y).cast("int")), F.lit(0), lambda a, x: a + x)
    return (edges.join(su, "u").join(sv, "v")
            .filter((same.cast("double") / F.lit(float(cfg.num_perm))) >= F.lit(float(cfg.threshold)))
            .select("u", "v"))


def components(edges):
    """Connected components of an undirected edge list (u, v): (node, label = smallest node).

    Iterated min-label propagation with joins, then pointer jumping (adopt your label's
    label), as :func:`pipelines.stages.neardup.components`; every round is materialised (a local
    checkpoint) and compared with the previous one. Returns the labels (unpersist when done).
    """
    from pyspark.sql import functions as F

    # Each round is checkpointed: the plan of round r refers to round r-1 several times, so
    # without cutting the lineage the plan (and its analysis) grows exponentially.
    both = (edges.select("u", "v").unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))
            .localCheckpoint())
    labels = both.select(F.col("u").alias("node")).distinct().withColumn("label", F.col("node")).localCheckpoint()
    for _ in range(_MAX_ROUNDS):
        prop = (both.join(labels.withColumnRenamed("node", "v"), "v").groupBy("u")
                .agg(F.min("label").alias("nbr")))
        new = (labels.join(prop.withColumnRenamed("u", "node"), "node", "left")
               .select("node", F.least("label", F.coalesce("nbr", "label")).alias("label")))
        jump = new.select(F.col("node").alias("_l"), F.col("label").alias("_ll"))
        new = (new.join(jump, F.col("label") == F.col("_l"), "left")
               .select("node", F.least("label", F.coalesce("_ll", "label")).alias("label")).localCheckpoint())
        changed = (new.join(labels.withColumnRenamed("label", "_old"), "node")
                   .filter(F.col("label") != F.col("_old")).count())
        labels.unpersist()
        labels = new
        if not changed:
            both.unpersist()
            return labels
    raise RuntimeError(f"near-dup components did not converge in {_MAX_ROUNDS} rounds")


def near_dedup(df, cfg: NearDupConfig | None = None):
    """Spark `messages_anon` rows in; (`messages_dedup` rows, cached; stats; cached frames to
    unpersist) out. Same rows and counts as :func:`pipelines.stages.neardup.near_dedup`; unordered
    (the writer sorts by message_id)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cfg = cfg or NearDupConfig()
    sigs = signature_frame(df, cfg).cache()
    counts = sigs.agg(F.count(F.lit(1)).alias("n"),
                      F.sum((F.col(_NTOK) >= cfg.min_tokens).cast("long")).alias("c")).collect()[0]
    edges = candidate_edges(sigs, cfg).cache()
    verified = verify(edges, sigs, cfg).cache()
    n_edges, n_verified = edges.count(), verified.count()
    cached = [sigs, edges, verified]
    spark = df.sparkSession
    if n_verified:
        labels = components(verified)
        cached.append(labels)
    else:
        labels = spark.createDataFrame([], "node string, label string")
    clustered = (df.select(M.message_id, M.created_at, M.time_ordinal, M.author_id)
                 .join(labels.withColumnRenamed("node", M.message_id), M.message_id))
    order = Window.partitionBy("label").orderBy(F.col(M.created_at).asc_nulls_last(),
                                                F.col(M.time_ordinal).asc_nulls_last(),
                                                F.col(M.message_id).asc_nulls_last())
    canon = (clustered.withColumn("_r", F.row_number().over(order)).filter(F.col("_r") == 1)
             .select("label", F.col(M.message_id).alias("_canon"))
             .join(clustered.groupBy("label").agg(F.count(F.lit(1)).cast("int").alias("_size"),
                                                  F.countDistinct(M.author_id).alias("_authors")), "label")
             .cache())
    cached.append(canon)
    marks = clustered.select(M.message_id, "label").join(canon, "label").select(
        M.message_id, "_canon", "_size", (F.col("_authors") >= cfg.mass_dup_authors).alias("_mass"))
    out = (df.join(marks, M.message_id, "left")
           .withColumn(DEDUP.is_target, F.col("_canon").isNull() | (F.col("_canon") == F.col(M.message_id)))
           .withColumn(DEDUP.dup_of, F.when(F.col("_canon") != F.col(M.message_id), F.col("_canon")))
           .withColumn(DEDUP.dup_cluster_size, F.coalesce(F.col("_size"), F.lit(1)).cast("int"))
           .withColumn(DEDUP.mass_dup, F.coalesce(F.col("_mass"), F.lit(False)))
           .drop("_canon", "_size", "_mass").cache())
    cached.append(out)
    dup_rows = (out.filter(~F.col(DEDUP.is_target)).groupBy(M.platform).count().orderBy(M.platform).collect())
    cl = canon.agg(F.count(F.lit(1)), F.sum((F.col("_authors") >= cfg.mass_dup_authors).cast("long"))).collect()[0]
    mass_rows = out.agg(F.sum(F.col(DEDUP.mass_dup).cast("long"))).collect()[0][0]
    n = int(counts["n"])
    stats = {
        "rows_in": n,
        "rows_out": n,
        "dropped": {},
        "candidates": int(counts["c"] or 0),
        "short": n - int(counts["c"] or 0),
        "candidate_edges": n_edges,
        "verified_edges": n_verified,
        "clusters": int(cl[0]),
        "duplicates": sum(int(r["count"]) for r in dup_rows),
        "duplicates_by_platform": {r[M.platform]: int(r["count"]) for r in dup_rows},
        "mass_dup_clusters": int(cl[1] or 0),
        "mass_dup_rows": int(mass_rows or 0),
    }
    return out, stats, cached


def run(ctx, spark) -> StageResult:
    """Read `messages_anon`, write `messages_dedup` sorted by `message_id`; return the counts."""
    from pyspark.sql import functions as F

    from pipelines.engines.spark import read_table, write_table

    cfg = ctx.config.section(NearDupConfig)
    df = read_table(spark, ctx.config.table_url(ANON.name), ANON)
    out, stats, cached = near_dedup(df, cfg)
    try:
        write_table(out, ctx.config.table_url(DEDUP.name), DEDUP, order_by=[F.col(M.message_id)])
    finally:
        for c in cached:
            c.unpersist()
    ctx.log.info("neardup (spark): %d rows, %d candidates, %d clusters, %d duplicates", stats["rows_in"],
                 stats["candidates"], stats["clusters"], stats["duplicates"])
    return StageResult.from_summary("neardup", stats)
