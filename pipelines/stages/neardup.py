"""Near-dup: `messages_anon` -> `messages_dedup`. Near-duplicate messages are marked, never removed.

1. Candidates: messages with at least ``min_tokens`` words (title + text). Shorter messages
   ("lol", "thanks", "+1") are never candidates: repeated short replies are normal speech.
2. MinHash signatures over k-word shingles (pipelines/core/minhash.py, equal to datasketch's).
3. LSH banding as a group-by on (band, band key): every message in a bucket is linked to the
   bucket's smallest row (a star, so a bucket of n messages gives n-1 edges, not n^2).
4. Verification: an edge is kept when the signatures agree on at least ``threshold`` of
   their values (the Jaccard estimate).
5. Clusters: connected components by iterated min-label propagation over the edges (joins).
6. Within a cluster the canonical copy is the earliest by (created_at, time_ordinal,
   message_id); the others get ``is_target = False`` and ``dup_of`` = the canonical
   message id, and stay in their threads as context. A cluster written by at least
   ``mass_dup_authors`` distinct authors is ``mass_dup`` (spam, copypasta).

State is arrays (signatures n x num_perm uint32, band keys n x bands) and Polars frames; no
per-document Python objects and no in-memory LSH index.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.core import storage
from pipelines.core.minhash import band_keys, signatures
from pipelines.core.settings import NearDupConfig  # the [neardup] section, with every section in core/settings
from pipelines.core.results import StageResult
from schemas import ANON, DEDUP
from schemas import MESSAGES as M


def document_text(df: pl.DataFrame) -> pl.Series:
    """What near-dup compares: title and text joined by a newline (a title alone also counts)."""
    return df.select(pl.concat_str([pl.col(M.title).fill_null(""), pl.col(M.text).fill_null("")],
                                   separator="\n").alias("doc"))["doc"]


def signature_batch(batch: pa.RecordBatch | pa.Table, cfg: NearDupConfig) -> pa.RecordBatch:
    """Per-record step for the engines: message_id, word count, band keys (list<uint64>) of a batch."""
    df = pl.from_arrow(batch)
    sig, n_words = signatures(document_text(df), cfg.num_perm, cfg.seed, cfg.shingle_size)
    keys = band_keys(sig, cfg.bands, cfg.rows)
    return pa.RecordBatch.from_arrays(
        [pa.array(df[M.message_id].to_list(), pa.string()), pa.array(n_words, pa.int32()),
         pa.FixedSizeListArray.from_arrays(pa.array(keys.reshape(-1), pa.uint64()), cfg.bands).cast(
             pa.list_(pa.uint64()))],
        names=[M.message_id, "n_tokens", "band_keys"])


def candidate_edges(keys: np.ndarray, eligible: np.ndarray) -> pl.DataFrame:
    """LSH buckets as a group-by: (u, v) star edges, v = the smallest row of each shared bucket."""
    n, bands = keys.shape
    rows = np.flatnonzero(eligible)
    table = pl.DataFrame({"row": np.repeat(rows, bands).astype(np.int64),
                          "band": np.tile(np.arange(bands, dtype=np.int32), len(rows)),
                          "key": keys[rows].reshape(-1)})
    anchors = (table.group_by("band", "key").agg(pl.col("row").min().alias("anchor"), pl.len().alias("n"))
               .filter(pl.col("n") > 1).drop("n"))
    return (table.join(anchors, on=["band", "key"], how="inner").filter(pl.col("row") != pl.col("anchor"))
            .select(pl.col("row").alias("u"), pl.col("anchor").alias("v")).unique().sort("u", "v"))


def components(edges: pl.DataFrame) -> pl.DataFrame:
    """Connected components of an undirected edge list (u, v): node -> label (smallest node id).

    Iterated min-label propagation with joins; deterministic, converges in O(diameter) rounds.
    """
    both = pl.concat([edges.select("u", "v"), edges.select(pl.col("v").alias("u"), pl.col("u").alias("v"))])
    labels = both.select(pl.col("u").alias("node")).unique().with_columns(pl.col("node").alias("label"))
    while True:
        prop = (both.join(labels, left_on="v", right_on="node").group_by("u")
                .agg(pl.col("label").min().alias("nbr")))
        new = (labels.join(prop, left_on="node", right_on="u", how="left")
               .select("node", pl.min_horizontal("label", "nbr").alias("label")))
        # pointer jumping: adopt the label of your label, halving chain lengths each round
        new = (new.join(new.rename({"node": "l", "label": "ll"}), left_on="label", right_on="l", how="left")
               .select("node", pl.min_horizontal("label", "ll").alias("label")))
        if new.sort("node").equals(labels.sort("node")):
            return new.sort("node")
        labels = new


def near_dedup(df: pl.DataFrame, cfg: NearDupConfig | None = None) -> tuple[pl.DataFrame, dict]:
    """Mark near-duplicates in ``messages_anon`` rows (rule in the module docstring).

    Out: the same rows in the same order with ``is_target``, ``dup_of``, ``dup_cluster_size``,
    ``mass_dup``, and counts: rows_in, rows_out (equal), candidates, short (never candidates),
    candidate_edges, verified_edges, clusters, duplicates (rows with is_target false), by
    platform, mass_dup_clusters and mass_dup_rows. Deterministic for a given input and config.
    """
    cfg = cfg or NearDupConfig()
    sig, n_words = signatures(document_text(df), cfg.num_perm, cfg.seed, cfg.shingle_size)
    eligible = n_words >= cfg.min_tokens
    keys = band_keys(sig, cfg.bands, cfg.rows)
    edges = candidate_edges(keys, eligible)
    if edges.height:
        u, v = edges["u"].to_numpy(), edges["v"].to_numpy()
        sim = (sig[u] == sig[v]).mean(axis=1)
        verified = edges.filter(pl.Series(sim >= cfg.threshold))
    else:
        verified = edges
    labels = components(verified) if verified.height else pl.DataFrame(schema={"node": pl.Int64, "label": pl.Int64})
    base = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
    clustered = (base.select("_row", M.message_id, M.created_at, M.time_ordinal, M.author_id, M.platform)
                 .join(labels, left_on="_row", right_on="node", how="inner"))
    order = clustered.sort([M.created_at, M.time_ordinal, M.message_id], nulls_last=True)
    canon = order.group_by("label", maintain_order=True).agg(
        pl.col(M.message_id).first().alias("_canon"), pl.len().cast(pl.Int32).alias("_size"),
        pl.col(M.author_id).drop_nulls().n_unique().alias("_authors"))
    marks = clustered.join(canon, on="label").select(
        "_row", "_canon", "_size", (pl.col("_authors") >= cfg.mass_dup_authors).alias("_mass"))
    out = (base.join(marks, on="_row", how="left").sort("_row")
           .with_columns(
               (pl.col("_canon").is_null() | (pl.col("_canon") == pl.col(M.message_id))).alias(DEDUP.is_target),
               pl.when(pl.col("_canon") != pl.col(M.message_id)).then(pl.col("_canon")).otherwise(None)
               .alias(DEDUP.dup_of),
               pl.col("_size").fill_null(1).cast(pl.Int32).alias(DEDUP.dup_cluster_size),
               pl.col("_mass").fill_null(False).alias(DEDUP.mass_dup))
           .drop("_row", "_canon", "_size", "_mass"))
    dups = out.filter(~pl.col(DEDUP.is_target))
    stats = {
        "rows_in": df.height,
        "rows_out": out.height,
        "dropped": {},
        "candidates": int(eligible.sum()),
        "short": int((~eligible).sum()),
        "candidate_edges": edges.height,
        "verified_edges": verified.height,
        "clusters": canon.height,
        "duplicates": dups.height,
        "duplicates_by_platform": dict(sorted(dups.group_by(M.platform).len().iter_rows())),
        "mass_dup_clusters": int(canon.filter(pl.col("_authors") >= cfg.mass_dup_authors).height),
        "mass_dup_rows": int(out[DEDUP.mass_dup].sum()),
    }
    return out, stats


def run(ctx) -> StageResult:
    """Read `messages_anon`, write `messages_dedup`; return the counts (see :func:`near_dedup`;
    its ``dropped`` stays a figure, the JSON summary's older name for ``dropped_by_reason``)."""
    cfg = ctx.config.section(NearDupConfig)
    df = storage.read(ctx.config.table_url(ANON.name))
    out, stats = near_dedup(df, cfg)
    storage.write_table(ctx.config.table_url(DEDUP.name), out, schema=DEDUP)
    ctx.log.info("neardup: %d rows, %d candidates, %d clusters, %d duplicates", stats["rows_in"],
                 stats["candidates"], stats["clusters"], stats["duplicates"])
    return StageResult.from_summary("neardup", stats)
