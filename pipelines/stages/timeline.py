"""Timeline: place every message of `messages_dedup` on its timeline with a dense `seq`.

Wall-clock sources share one timeline (`wall`); a source with only ordinal time (a
Diplomacy game) gets one timeline per community (`ordinal:<community>`), because games
cannot be ordered against each other and nothing should pretend they have dates.

Within a timeline the order is the total key (time, platform, thread_id,
order_in_source, message_id): `message_id` is unique, so the order does not depend on
the order in which rows (or input files) arrive. Minute-precision sources (IRC) keep
their file order inside a minute through `order_in_source`.

Written once for both engines (narwhals over Polars or Spark, see pipelines/engines):
:func:`assign_timeline`, :func:`number_seq` (the engine's ``number_rows``: Spark numbers the
big `wall` timeline across many tasks), :func:`link_parents`, composed by :func:`timeline`;
:func:`timeline_stats` is one aggregation by the engine.
"""

from __future__ import annotations

from datetime import timezone

import narwhals as nw
import polars as pl

from pipelines.core.checks import CheckResult
from pipelines.core.results import StageResult
from schemas import DEDUP as D
from schemas import TIMELINE as T

WALL = "wall"
ORDINAL_PREFIX = "ordinal:"
# Internal columns: the time component of the sort key. A timeline is all wall-clock rows or
# all ordinal rows, so one of the two is null on every row of a timeline and the other orders it.
_TWALL, _TORD = "_time_wall", "_time_ordinal"

SORT_KEY = (_TWALL, _TORD, D.platform, D.thread_id, D.order_in_source, D.message_id)
_INTERNAL = ("_cross", "_inferred_dangling", _TWALL, _TORD)


class TimelineError(ValueError):
    """The input violates a guarantee of `messages_dedup` (e.g. a repeated `message_id`)."""


def _ordinal() -> nw.Expr:
    return nw.col(D.time_kind) == "ordinal"


def timeline_id_expr() -> nw.Expr:
    """`wall` for wall-clock rows, `ordinal:<community>` for ordinal-only rows."""
    return (nw.when(_ordinal()).then(nw.concat_str([nw.lit(ORDINAL_PREFIX), nw.col(D.community)]))
            .otherwise(nw.lit(WALL)))


def time_key_exprs() -> list[nw.Expr]:
    """The time part of the sort key: `created_at` (wall rows) and `time_ordinal` (ordinal rows)."""
    return [nw.when(~_ordinal()).then(nw.col(D.created_at)).alias(_TWALL),
            nw.when(_ordinal()).then(nw.col(D.time_ordinal).cast(nw.Int64)).alias(_TORD)]


def assign_timeline(frame: nw.LazyFrame) -> nw.LazyFrame:
    """Add `timeline_id` and the internal time key columns."""
    return frame.with_columns(timeline_id_expr().alias(T.timeline_id), *time_key_exprs())


def number_seq(frame: nw.LazyFrame, engine) -> nw.LazyFrame:
    """Dense `seq` 0..n-1 per timeline in the order (time, platform, thread, order_in_source, message_id).

    Rows with no time at all (a wall row with null `created_at`, which readers should have
    quarantined) sort last on their timeline rather than being dropped.
    """
    return engine.number_rows(frame, T.seq, [T.timeline_id], SORT_KEY)


def link_parents(frame: nw.LazyFrame) -> nw.LazyFrame:
    """Resolve `parent_id` (else `parent_inferred`) to `parent_seq` on the same timeline.

    `parent_dangling` is true when `parent_id` names a message that is not in the corpus
    (a never-archived parent); such links are kept, not dropped. A parent found on another
    timeline (which no reader should produce) is not linked and not dangling.
    """
    ids = frame.select(nw.col(D.message_id).alias("_pid"), nw.col(T.timeline_id).alias("_ptl"),
                       nw.col(T.seq).alias("_pseq"))
    inferred = ids.rename({"_pid": "_iid", "_ptl": "_itl", "_pseq": "_iseq"})
    out = (frame.join(ids, left_on=D.parent_id, right_on="_pid", how="left")
           .join(inferred, left_on=D.parent_inferred, right_on="_iid", how="left"))
    explicit = nw.when(nw.col("_ptl") == nw.col(T.timeline_id)).then(nw.col("_pseq"))
    implied = nw.when(nw.col("_itl") == nw.col(T.timeline_id)).then(nw.col("_iseq"))
    return out.with_columns(
        nw.coalesce(explicit, implied).alias(T.parent_seq),
        (~nw.col(D.parent_id).is_null() & nw.col("_ptl").is_null()).alias(T.parent_dangling),
        (~nw.col("_ptl").is_null() & (nw.col("_ptl") != nw.col(T.timeline_id))).alias("_cross"),
        (~nw.col(D.parent_inferred).is_null() & nw.col("_itl").is_null()).alias("_inferred_dangling"),
    ).drop("_pid", "_ptl", "_pseq", "_iid", "_itl", "_iseq", strict=False)


def check_unique(frame: nw.LazyFrame) -> None:
    """Raise :class:`TimelineError` if a `message_id` repeats (the key would not be total)."""
    from pipelines.engines import to_polars

    dups = frame.group_by(D.message_id).agg(nw.len().alias("n")).filter(nw.col("n") > 1)
    sample = to_polars(dups.sort(D.message_id).head(5))
    if sample.height:
        n = int(to_polars(dups.select(nw.col("n").sum()))["n"][0])
        raise TimelineError(f"messages_dedup: {n} rows share a message_id (e.g. {sample[D.message_id].to_list()}); "
                            "record dedup must leave one row per message_id. Re-run the dedup stage.")


def timeline(dedup: nw.LazyFrame, engine) -> nw.LazyFrame:
    """`messages_dedup` rows in; `timeline` rows (with the internal columns of :func:`timeline_stats`)
    out, unordered. One row per input row; `seq` dense 0..n-1 per timeline in key order.
    Raises :class:`TimelineError` if a `message_id` repeats."""
    check_unique(dedup)
    return link_parents(number_seq(assign_timeline(dedup), engine))


def timeline_stats(df: nw.LazyFrame) -> dict:
    """Counts over a built timeline (with its internal columns): links, dangling parents, spans.
    Computed by the engine: one aggregation per timeline, nothing collected but its rows."""
    from pipelines.engines import to_polars

    linked = ~nw.col(T.parent_seq).is_null()
    counts = {
        "with_parent_id": ~nw.col(D.parent_id).is_null(),
        "parent_linked": linked,
        "parent_linked_inferred": linked & (nw.col(D.parent_id).is_null() | nw.col(T.parent_dangling)),
        "parent_dangling": nw.col(T.parent_dangling),
        "parent_cross_timeline": nw.col("_cross"),
        "parent_inferred_dangling": nw.col("_inferred_dangling"),
        # A parent at or after its child (clock skew, bad links): histories cut the chain there.
        "parent_not_earlier": linked & (nw.col(T.parent_seq) >= nw.col(T.seq)),
        "without_time": nw.col(_TWALL).is_null() & nw.col(_TORD).is_null(),
    }
    per_tl = to_polars(df.group_by(T.timeline_id).agg(
        nw.len().alias("rows"), nw.col(D.created_at).min().alias("min"), nw.col(D.created_at).max().alias("max"),
        *[e.cast(nw.Int64).sum().alias(k) for k, e in counts.items()])).sort(T.timeline_id)
    wall = per_tl.filter(pl.col(T.timeline_id) == WALL)
    span = None
    if wall.height and wall["min"][0] is not None:
        iso = lambda d: (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()  # noqa: E731
        span = {"min_created_at": iso(wall["min"][0]), "max_created_at": iso(wall["max"][0])}
    rows = int(per_tl["rows"].sum())
    return {
        "rows_in": rows,
        "rows_out": rows,
        "timelines": per_tl.height,
        "ordinal_timelines": int(per_tl.filter(pl.col(T.timeline_id) != WALL).height),
        "rows_by_timeline": dict(zip(per_tl[T.timeline_id].to_list(), (int(v) for v in per_tl["rows"].to_list()))),
        "wall_span": span,
        **{k: int(per_tl[k].sum()) for k in counts},
        "dropped_by_reason": {},
    }


def seq_key(timelines, seq_col: str = "seq") -> pl.Expr:
    """An Int64 that sorts as (timeline_id, ``seq_col``) do, given every `timeline_id` there is
    (Polars: the key the engine's ``write_runs`` merges on)."""
    rank = {t: i for i, t in enumerate(sorted(timelines))}
    return (pl.col(T.timeline_id).replace_strict(rank, return_dtype=pl.Int64) * (1 << 40)
            + pl.col(seq_col).cast(pl.Int64))


def build_timeline(dedup, engine=None):
    """A native `messages_dedup` frame (Polars or Spark) in; (`timeline` rows in `schemas.TIMELINE`
    column order, stats) out, on its engine.

    Polars gives a DataFrame sorted by (timeline_id, seq); Spark a cached, unordered DataFrame
    with the same rows. Raises :class:`TimelineError` if a `message_id` repeats.
    """
    from pipelines import engines

    engine = engine or engines.of(dedup)
    return engines.built(engine, timeline(engines.frame(dedup), engine), timeline_stats, T.names,
                         [T.timeline_id, T.seq])


def check_order(timeline_df: pl.DataFrame) -> CheckResult:
    """Check that `seq` is dense 0..n-1 per timeline and that seq order equals the sort key order.

    Takes a `timeline` table (at least the key columns, `timeline_id`, `seq`, `time_kind`).
    """
    from pipelines import engines

    stored = assign_timeline(engines.frame(timeline_df).rename({T.seq: "_stored_seq"}))
    ranked = engines.to_polars(number_seq(stored, engines.of(timeline_df)))
    bad = ranked.filter(pl.col(T.seq) != pl.col("_stored_seq")).sort(T.timeline_id, T.seq)
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


# What placing a message reads (numbering, parents, the counts), and what placing adds to it.
KEY_COLUMNS = (D.message_id, D.platform, D.community, D.thread_id, D.parent_id, D.parent_inferred, D.created_at,
               D.time_ordinal, D.time_kind, D.order_in_source)
PLACE_COLUMNS = (T.timeline_id, T.seq, T.parent_seq, T.parent_dangling)
# Messages the Polars engine sorts at a time when it writes the timeline (a bucket of message ids).
BUCKET_ROWS = 250_000


def run(ctx, engine) -> StageResult:
    """Read `messages_dedup`, write `timeline` sorted by (timeline_id, seq); return the counts
    (see :func:`timeline_stats`).

    Polars: the messages are placed from their key columns alone (:data:`KEY_COLUMNS`), then each
    whole row takes its place by `message_id` and the rows are sorted and written a bucket of
    :data:`BUCKET_ROWS` message ids at a time (the engine's ``write_runs`` merges the buckets on
    (timeline_id, seq), a unique key): the same table as one sort of every row, with one bucket's
    rows held instead of the corpus's."""
    url = ctx.config.table_url(T.name)
    dedup = engine.scan(ctx.config.table_url(D.name), D)
    if engine.distributed:
        with engine.held(timeline(dedup, engine)) as df:
            stats = timeline_stats(df)
            engine.write(df, url, T, order_by=[T.timeline_id, T.seq])
    else:
        with engine.held(timeline(dedup.select(*KEY_COLUMNS), engine)) as placed:
            stats = timeline_stats(placed)
            places = placed.select(D.message_id, *PLACE_COLUMNS)
            buckets = max(1, -(-stats["rows_out"] // BUCKET_ROWS))
            whole = lambda rows: rows.join(places, on=D.message_id).select(*T.names)  # noqa: E731
            if buckets == 1:
                engine.write(whole(dedup), url, T, order_by=[T.timeline_id, T.seq])
            else:
                runs = (engine.sorted_run(whole(engine.in_bucket(dedup, D.message_id, j, buckets)),
                                          [T.timeline_id, T.seq]) for j in range(buckets))
                engine.write_runs(url, T, runs, seq_key(stats["rows_by_timeline"]))
    ctx.log.info("timeline: %d rows on %d timelines, %d dangling parents", stats["rows_out"],
                 stats["timelines"], stats["parent_dangling"])
    return StageResult.from_summary("timeline", stats)
