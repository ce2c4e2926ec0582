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

Written once for both engines (narwhals over Polars or Spark, see pipelines/engines): the
copy count is a window over `message_id`, the survivor is ``engine.first_by`` under
:data:`SURVIVOR_ORDER`, the hash ``engine.hex_digest`` over one ``concat_str``.
"""

from __future__ import annotations

import narwhals as nw
import polars as pl

from pipelines.core.results import StageResult
from schemas import MESSAGES as M
from schemas import RECORDS

_HASH = "__content_hash"
_HASH_INPUT = "__content"
_SEP = "\x1f"
N_COPIES = "n_copies"

# The rule of the module docstring: (column, descending), nulls last; the first row per id is kept.
SURVIVOR_ORDER = ((M.revision, True), (M.edited_at, True), (M.retrieved_at, True), (_HASH, True),
                  (M.source_uri, False), (M.source_record, False))


def content_expr() -> nw.Expr:
    """What the content hash digests: text, title, extra, score joined by \\x1f (a null text
    as "", other nulls as \\x00, so a null never equals an empty value)."""
    return nw.concat_str([nw.col(M.text).fill_null(""), nw.col(M.title).fill_null("\x00"),
                          nw.col(M.extra).fill_null("\x00"), nw.col(M.score).cast(nw.String).fill_null("\x00")],
                         separator=_SEP)


def with_content_hash(frame: nw.LazyFrame, engine, where: nw.Expr | None = None) -> nw.LazyFrame:
    """``frame`` plus `__content_hash`, the sha256 hex of :func:`content_expr` (null where ``where`` is false)."""
    content = content_expr() if where is None else nw.when(where).then(content_expr())
    return engine.hex_digest(frame.with_columns(content.alias(_HASH_INPUT)), _HASH, _HASH_INPUT).drop(_HASH_INPUT)


def dedup(raw: nw.LazyFrame, engine) -> nw.LazyFrame:
    """`messages_raw` rows in (any order); one row per `message_id` with `n_copies` out, unordered.

    The hash is only computed where a message has copies (it only breaks ties between copies).
    """
    df = raw.with_columns(nw.len().over(M.message_id).cast(nw.Int32).alias(N_COPIES))
    df = with_content_hash(df, engine, where=nw.col(N_COPIES) > 1)
    return engine.first_by(df, [M.message_id], SURVIVOR_ORDER).drop(_HASH)


def dedup_stats(raw: nw.LazyFrame, out: nw.LazyFrame) -> dict:
    """The counts, computed by the engine (two aggregations; nothing collected but their rows)."""
    from pipelines.engines import to_polars

    by = to_polars(raw.group_by(M.platform).agg(nw.len().alias("n"), nw.col(M.message_id).n_unique().alias("u"))
                   ).with_columns((pl.col("n") - pl.col("u")).alias("collapsed")).sort(M.platform)
    kept = to_polars(out.select(nw.len().alias("rows"),
                                (nw.col(N_COPIES) > 1).cast(nw.Int64).sum().alias("with_copies")))
    rows_in, rows_out = int(by["n"].sum()), int(kept["rows"][0])
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "collapsed": rows_in - rows_out,
        "dropped": {"duplicate_copy": rows_in - rows_out},
        "messages_with_copies": int(kept["with_copies"][0] or 0),
        "collapsed_by_platform": {r[M.platform]: int(r["collapsed"]) for r in by.iter_rows(named=True)
                                  if r["collapsed"]},
    }


def dedup_records(raw, engine=None):
    """A native `messages_raw` frame (Polars or Spark) in; (`messages` rows with `n_copies`, stats) out.

    Polars gives a DataFrame sorted by `message_id`; Spark a cached, unordered DataFrame with
    the same rows. Stats: ``rows_in``, ``rows_out``, ``collapsed`` (= rows_in - rows_out, the
    ``dropped`` reason ``duplicate_copy``), ``collapsed_by_platform``, ``messages_with_copies``.
    The result does not depend on the input row order.
    """
    from pipelines import engines

    engine = engine or engines.of(raw)
    raw_nw = engines.frame(raw)
    out = dedup(raw_nw, engine)
    return engines.built(engine, out, lambda df: dedup_stats(raw_nw, df), out.columns, [M.message_id])


def result(stats: dict) -> StageResult:
    """The stage's result; ``dropped`` stays a figure (deprecated alias of ``dropped_by_reason``)."""
    return StageResult.from_summary("dedup", stats)


# Rows of `messages_raw` the Polars engine deduplicates at a time (a bucket of message ids).
BUCKET_ROWS = 250_000


def run(ctx, engine) -> StageResult:
    """Read every source under `messages_raw/`, write `messages` sorted by `message_id`; return the counts.

    Polars, past :data:`BUCKET_ROWS` rows: a bucket of message ids (a hash) at a time, each
    deduplicated and sorted on its own (every copy of a message is in its bucket), the buckets
    merged on `message_id` as they are written (the engine's ``write_runs``): the same table as
    one sort of every row, with one bucket's rows held."""
    from pipelines.engines import to_polars

    raw = engine.scan(ctx.config.table_url("messages_raw"), M)
    url = ctx.config.table_url(RECORDS.name)
    rows = 0 if engine.distributed else int(to_polars(raw.select(nw.len().alias("n")))["n"][0])
    buckets = max(1, -(-rows // BUCKET_ROWS))
    if buckets == 1:
        with engine.held(dedup(raw, engine)) as df:
            stats = dedup_stats(raw, df)
            engine.write(df, url, RECORDS, order_by=[M.message_id])
    else:
        runs = (engine.sorted_run(dedup(engine.in_bucket(raw, M.message_id, j, buckets), engine), [M.message_id])
                for j in range(buckets))
        engine.write_runs(url, RECORDS, runs, pl.col(M.message_id))
        stats = dedup_stats(raw, engine.scan(url, RECORDS))
    ctx.log.info("dedup: %d rows in, %d out, %d copies collapsed", stats["rows_in"], stats["rows_out"],
                 stats["collapsed"])
    return result(stats)
