"""Record dedup: `messages_raw` (every copy of every message) -> `messages` (one row per `message_id`).

Re-crawled pages, re-exported channels and overlapping dump files hold several copies of
one message. The kept copy is chosen by a fixed rule, never by input order:

1. highest ``revision`` (source revision counter; null lowest),
2. then latest ``edited_at`` (null lowest),
3. then latest ``retrieved_at`` (null lowest),
4. then the largest content hash: sha256 over (text, title, extra, score),
5. then (``source_uri``, ``source_record``) ascending, so even byte-identical copies from
   different files resolve the same way whatever order the files were read in.

``n_copies`` says how many copies collapsed into the kept row. Output rows are sorted by
``message_id``.
"""

from __future__ import annotations

import hashlib

import polars as pl

from pipelines.core import storage
from schemas import MESSAGES as M
from schemas import RECORDS

_HASH = "__content_hash"
_SEP = "\x1f"


def _content_hash(df: pl.DataFrame) -> pl.Series:
    # hashlib needs Python; it runs only on rows whose message_id occurs more than once.
    parts = df.select(
        pl.concat_str([pl.col(M.text).fill_null(""), pl.col(M.title).fill_null("\x00"),
                       pl.col(M.extra).fill_null("\x00"), pl.col(M.score).cast(pl.String).fill_null("\x00")],
                      separator=_SEP)
    ).to_series()
    return pl.Series(_HASH, [hashlib.sha256(s.encode("utf-8")).hexdigest() for s in parts], dtype=pl.String)


def dedup_records(raw: pl.DataFrame | pl.LazyFrame) -> tuple[pl.DataFrame, dict]:
    """Collapse copies of each ``message_id`` to one row (rule in the module docstring).

    In: rows in the ``messages_raw`` schema (any order). Out: the ``messages`` rows sorted by
    ``message_id`` with ``n_copies``, and counts: ``rows_in``, ``rows_out``, ``collapsed``
    (= rows_in - rows_out, the ``dropped`` reason ``duplicate_copy``), ``collapsed_by_platform``,
    ``messages_with_copies``. The result does not depend on the input row order.
    """
    df = raw.collect() if isinstance(raw, pl.LazyFrame) else raw
    counts = pl.col(M.message_id).count().over(M.message_id).cast(pl.Int32).alias("n_copies")
    df = df.with_columns(counts)
    single = df.filter(pl.col("n_copies") == 1)
    multi = df.filter(pl.col("n_copies") > 1)
    if multi.height:
        multi = multi.with_columns(_content_hash(multi))
        keys = [M.revision, M.edited_at, M.retrieved_at, _HASH, M.source_uri, M.source_record]
        desc = [True, True, True, True, False, False]
        multi = (multi.sort([M.message_id, *keys], descending=[False, *desc], nulls_last=True)
                 .unique(subset=[M.message_id], keep="first", maintain_order=True)
                 .drop(_HASH))
    out = pl.concat([single, multi], how="vertical").sort(M.message_id)
    by_platform = (df.group_by(M.platform).agg(pl.len().alias("n"), pl.col(M.message_id).n_unique().alias("u"))
                   .with_columns((pl.col("n") - pl.col("u")).alias("collapsed")).sort(M.platform))
    stats = {
        "rows_in": df.height,
        "rows_out": out.height,
        "collapsed": df.height - out.height,
        "dropped": {"duplicate_copy": df.height - out.height},
        "messages_with_copies": int(out.filter(pl.col("n_copies") > 1).height),
        "collapsed_by_platform": {r[M.platform]: r["collapsed"] for r in by_platform.iter_rows(named=True)
                                  if r["collapsed"]},
    }
    return out, stats


def run(ctx) -> dict:
    """Read every source under `messages_raw/`, write `messages`; return the counts."""
    raw = storage.read(ctx.config.table_url("messages_raw"))
    out, stats = dedup_records(raw)
    storage.write_table(ctx.config.table_url(RECORDS.name), out, schema=RECORDS)
    ctx.log.info("dedup: %d rows in, %d out, %d copies collapsed", stats["rows_in"], stats["rows_out"],
                 stats["collapsed"])
    return stats
