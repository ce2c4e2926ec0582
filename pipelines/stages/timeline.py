"""Timeline: place every message of `messages_dedup` on its timeline with a dense `seq`.

Wall-clock sources share one timeline (`wall`); a source with only ordinal time (a
Diplomacy game) gets one timeline per community (`ordinal:<community>`), because games
cannot be ordered against each other and nothing should pretend they have dates.

Within a timeline the order is the total key (time, platform, thread_id,
order_in_source, message_id): `message_id` is unique, so the order does not depend on
the order in which rows (or input files) arrive. Minute-precision sources (IRC) keep
their file order inside a minute through `order_in_source`.

The relational steps are small functions over Polars frames so the Spark engine can
implement the same steps side by side: :func:`assign_timeline`, :func:`number_seq`,
:func:`link_parents`, then :func:`build_timeline` composes them.
"""

from __future__ import annotations

import polars as pl

from pipelines.core import storage
from pipelines.core.checks import CheckResult
from schemas import DEDUP as D
from schemas import TIMELINE as T

WALL = "wall"
ORDINAL_PREFIX = "ordinal:"
# Internal column: the time component of the sort key (epoch microseconds or the ordinal).
_TKEY = "_time_key"

SORT_KEY = (_TKEY, D.platform, D.thread_id, D.order_in_source, D.message_id)


class TimelineError(ValueError):
    """The input violates a guarantee of `messages_dedup` (e.g. a repeated `message_id`)."""


def timeline_id_expr() -> pl.Expr:
    """`wall` for wall-clock rows, `ordinal:<community>` for ordinal-only rows."""
    return (pl.when(pl.col(D.time_kind) == "ordinal")
            .then(pl.lit(ORDINAL_PREFIX) + pl.col(D.community))
            .otherwise(pl.lit(WALL)))


def time_key_expr() -> pl.Expr:
    """The time part of the sort key: epoch microseconds (wall) or `time_ordinal` (ordinal)."""
    return (pl.when(pl.col(D.time_kind) == "ordinal")
            .then(pl.col(D.time_ordinal))
            .otherwise(pl.col(D.created_at).dt.epoch("us"))
            .cast(pl.Int64))


def assign_timeline(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add `timeline_id` and the internal time key column."""
    return lf.with_columns(timeline_id_expr().alias(T.timeline_id), time_key_expr().alias(_TKEY))


def number_seq(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Sort by (timeline_id, time, platform, thread, order_in_source, message_id); dense `seq` per timeline.

    Rows with no time at all (a wall row with null `created_at`, which readers should have
    quarantined) sort last on their timeline rather than being dropped.
    """
    return (lf.sort([T.timeline_id, *SORT_KEY], nulls_last=True)
            .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over(T.timeline_id).alias(T.seq)))


def link_parents(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Resolve `parent_id` (else `parent_inferred`) to `parent_seq` on the same timeline.

    `parent_dangling` is true when `parent_id` names a message that is not in the corpus
    (a never-archived parent); such links are kept, not dropped. A parent found on another
    timeline (which no reader should produce) is not linked and not dangling.
    """
    ids = lf.select(pl.col(D.message_id).alias("_pid"), pl.col(T.timeline_id).alias("_ptl"),
                    pl.col(T.seq).alias("_pseq"))
    inferred = ids.rename({"_pid": "_iid", "_ptl": "_itl", "_pseq": "_iseq"})
    out = (lf.join(ids, left_on=D.parent_id, right_on="_pid", how="left", maintain_order="left")
           .join(inferred, left_on=D.parent_inferred, right_on="_iid", how="left", maintain_order="left"))
    explicit = pl.when(pl.col("_ptl") == pl.col(T.timeline_id)).then(pl.col("_pseq"))
    implied = pl.when(pl.col("_itl") == pl.col(T.timeline_id)).then(pl.col("_iseq"))
    return (out.with_columns(
        pl.coalesce(explicit, implied).alias(T.parent_seq),
        (pl.col(D.parent_id).is_not_null() & pl.col("_ptl").is_null()).alias(T.parent_dangling),
        (pl.col("_ptl").is_not_null() & (pl.col("_ptl") != pl.col(T.timeline_id))).alias("_cross"),
        (pl.col(D.parent_inferred).is_not_null() & pl.col("_itl").is_null()).alias("_inferred_dangling"),
    ))


def build_timeline(lf: pl.LazyFrame) -> tuple[pl.DataFrame, dict]:
    """`messages_dedup` rows in, (`timeline` DataFrame in `schemas.TIMELINE` column order, stats) out.

    Guarantees: one row per input row; `seq` dense 0..n-1 per timeline in key order;
    output sorted by (timeline_id, seq). Raises :class:`TimelineError` if a `message_id`
    repeats (the key would not be total).
    """
    df = link_parents(number_seq(assign_timeline(lf))).collect()
    dups = df.filter(pl.col(D.message_id).is_duplicated())
    if dups.height:
        sample = dups.get_column(D.message_id).unique().sort().head(5).to_list()
        raise TimelineError(f"messages_dedup: {dups.height} rows share a message_id (e.g. {sample}); "
                            "record dedup must leave one row per message_id. Re-run the dedup stage.")
    stats = timeline_stats(df)
    return df.select(T.names), stats


def timeline_stats(df: pl.DataFrame) -> dict:
    """Counts over a built timeline (with its internal columns): links, dangling parents, spans."""
    linked = df.filter(pl.col(T.parent_seq).is_not_null())
    per_tl = (df.group_by(T.timeline_id).agg(pl.len().alias("rows"),
                                             pl.col(D.created_at).min().alias("min"),
                                             pl.col(D.created_at).max().alias("max"))
              .sort(T.timeline_id))
    wall = per_tl.filter(pl.col(T.timeline_id) == WALL)
    span = None
    if wall.height and wall["min"][0] is not None:
        span = {"min_created_at": wall["min"][0].isoformat(), "max_created_at": wall["max"][0].isoformat()}
    return {
        "rows_in": df.height,
        "rows_out": df.height,
        "timelines": per_tl.height,
        "ordinal_timelines": int(per_tl.filter(pl.col(T.timeline_id) != WALL).height),
        "rows_by_timeline": dict(zip(per_tl[T.timeline_id].to_list(), per_tl["rows"].to_list())),
        "wall_span": span,
        "with_parent_id": int(df[D.parent_id].is_not_null().sum()),
        "parent_linked": linked.height,
        "parent_linked_inferred": int(linked.filter(pl.col(D.parent_id).is_null()
                                                    | pl.col(T.parent_dangling)).height),
        "parent_dangling": int(df[T.parent_dangling].sum()),
        "parent_cross_timeline": int(df["_cross"].sum()),
        "parent_inferred_dangling": int(df["_inferred_dangling"].sum()),
        # A parent at or after its child (clock skew, bad links): histories cut the chain there.
        "parent_not_earlier": int(linked.filter(pl.col(T.parent_seq) >= pl.col(T.seq)).height),
        "without_time": int(df[_TKEY].is_null().sum()),
        "dropped_by_reason": {},
    }


def check_order(timeline_df: pl.DataFrame) -> CheckResult:
    """Check that `seq` is dense 0..n-1 per timeline and that seq order equals the sort key order.

    Takes a `timeline` table (at least the key columns, `timeline_id`, `seq`, `time_kind`).
    """
    df = assign_timeline(timeline_df.lazy()).collect()
    ranked = number_seq(df.lazy().rename({T.seq: "_stored_seq"})).collect()
    bad = ranked.filter(pl.col(T.seq) != pl.col("_stored_seq"))
    samples = bad.select(T.timeline_id, D.message_id, "_stored_seq", T.seq).head(10).rows()
    return CheckResult(
        name="timeline_order",
        passed=bad.height == 0,
        failed_rows=bad.height,
        description=("seq is dense 0..n-1 per timeline and follows the key (time, platform, thread_id, "
                     "order_in_source, message_id)" + (f"; {bad.height} rows out of place "
                                                       "(message_id, stored seq, expected seq)" if bad.height else "")),
        samples=[list(r) for r in samples],
    )


def run(ctx) -> dict:
    """Read `messages_dedup`, write `timeline`; return the counts (see :func:`timeline_stats`)."""
    lf = storage.scan(ctx.config.table_url("messages_dedup"))
    df, stats = build_timeline(lf)
    storage.write_table(ctx.config.table_url("timeline"), df, schema=T)
    ctx.log.info("timeline: %d rows on %d timelines, %d dangling parents", stats["rows_out"],
                 stats["timelines"], stats["parent_dangling"])
    return stats
