"""Reading histories: for each message, what its author had read just before writing it.

Two structures, chosen per message:

* ``tree``: the message has an explicit reply link (`parent_id`) on a platform with reply
  trees (Reddit, Stack Exchange, Discourse replies, Discord/Slack/Telegram replies). It
  was read in the context of its ancestors: the parent, grandparent, … (nearest first),
  then the latest earlier siblings (other replies to the same parent), up to N in all.
* ``linear``: everything else (chat channels, IRC, Diplomacy dialogs, forum posts with no
  explicit reply): the previous N messages of the same thread, nearest first.

`own_seqs` are the author's previous K messages on the timeline, most recent first.
Everything is a reference (`seq`) and strictly earlier than the message itself.

Built relationally, once for both engines (narwhals over Polars or Spark, see
pipelines/engines): ancestors by an iterative self-join (at most N levels), siblings, thread
predecessors and own messages by shifted windows (``shift(i).over(…, order_by=seq)``), one
column per position; the engine packs each row's columns into its lists.
"""

from __future__ import annotations

import narwhals as nw
import polars as pl

from pipelines.core.checks import CheckResult
from pipelines.core.results import StageResult
from pipelines.core.settings import MAX_K, MAX_N, HistoryConfig  # noqa: F401 (the [histories] section; re-exported)
from schemas import HISTORIES as H
from schemas import TIMELINE as T

# Platforms whose explicit `parent_id` links form reply trees. IRC and Diplomacy have no
# explicit links (IRC's "nick:" addressing only gives `parent_inferred`), so they stay linear.
TREE_PLATFORMS = ("reddit", "stackexchange", "discourse", "discord", "slack", "telegram")


def _previous(col: str, partition: list[str], n: int, prefix: str) -> list[nw.Expr]:
    """Columns ``prefix1..prefixn``: the 1st..nth previous `col` within ``partition`` (ordered by it)."""
    return [nw.col(col).shift(i).over(*partition, order_by=col).alias(f"{prefix}{i}") for i in range(1, n + 1)]


def _cols(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, n + 1)]


def structure_expr() -> nw.Expr:
    return (nw.when(~nw.col(T.parent_id).is_null() & nw.col(T.platform).is_in(TREE_PLATFORMS))
            .then(nw.lit("tree")).otherwise(nw.lit("linear")))


def select_keys(timeline: nw.LazyFrame) -> nw.LazyFrame:
    """The columns histories need from `timeline`, plus `structure`."""
    return timeline.select(T.timeline_id, T.seq, T.message_id, T.thread_id, T.author_id, T.platform,
                           T.parent_id, T.parent_seq).with_columns(structure_expr().alias(H.structure))


def ancestors(keys: nw.LazyFrame, n: int) -> nw.LazyFrame:
    """(timeline_id, seq, `_a1`..`_an`: the parent, grandparent, … seqs, null past the chain's end)
    for tree messages with a parent on the timeline.

    One self-join on `parent_seq` per level, at most n levels. A link is followed only to a
    strictly earlier message, so the chain is strictly decreasing in `seq`: causal by
    construction, and a cycle in bad data cannot repeat a message. A parent at or after its
    child (clock skew) ends the chain there.
    """
    earlier = ~nw.col(T.parent_seq).is_null() & (nw.col(T.parent_seq) < nw.col(T.seq))
    links = keys.filter(earlier).select(T.timeline_id, nw.col(T.seq).alias("_node"), nw.col(T.parent_seq).alias("_up"))
    chain = keys.filter(earlier & (nw.col(H.structure) == "tree")).select(
        T.timeline_id, T.seq, nw.col(T.parent_seq).alias("_a1"))
    for depth in range(2, n + 1):
        chain = chain.join(links.rename({"_up": f"_a{depth}"}), left_on=[T.timeline_id, f"_a{depth - 1}"],
                           right_on=[T.timeline_id, "_node"], how="left")
        if "_node" in chain.columns:  # Spark keeps both key columns of a join
            chain = chain.drop("_node")
    return chain


def histories(timeline: nw.LazyFrame, cfg: HistoryConfig, engine) -> nw.LazyFrame:
    """`timeline` in; `reading_histories` rows (with the internal `_a*` ancestor columns) out, unordered.

    Every `read_seqs` and `own_seqs` entry is a `seq` on the same timeline strictly smaller
    than the row's `seq`. Tree rows read their ancestors then their earlier siblings
    (other replies to the same parent id: a string, so replies to a never-archived parent
    are still siblings of each other); linear rows the previous messages of the thread.
    """
    keys = select_keys(timeline)
    n, k = cfg.n, cfg.k
    tree = nw.col(H.structure) == "tree"
    df = (keys.join(ancestors(keys, n), on=[T.timeline_id, T.seq], how="left")
          .with_columns(*_previous(T.seq, [T.timeline_id, T.parent_id], n, "_s"),
                        *_previous(T.seq, [T.timeline_id, T.thread_id], n, "_t"),
                        *_previous(T.seq, [T.timeline_id, T.author_id], k, "_o")))
    # Each row keeps only the columns of its structure (and of its author), so one packed list serves.
    df = df.with_columns(*[nw.when(tree).then(nw.col(c)).alias(c) for c in _cols("_s", n)],
                         *[nw.when(~tree).then(nw.col(c)).alias(c) for c in _cols("_t", n)],
                         *[nw.when(~nw.col(T.author_id).is_null()).then(nw.col(c)).alias(c) for c in _cols("_o", k)])
    df = engine.pack(df, H.read_seqs, [*_cols("_a", n), *_cols("_s", n), *_cols("_t", n)], limit=n)
    df = engine.pack(df, H.own_seqs, _cols("_o", k))
    anc = [c for c in _cols("_a", n)]
    return df.with_columns(nw.sum_horizontal(*[(~nw.col(c).is_null()).cast(nw.Int64) for c in anc])
                           .alias("_n_anc")).select(*H.names, "_n_anc")


def histories_stats(df: nw.LazyFrame) -> dict:
    """Counts by structure, computed by the engine (one aggregation; nothing collected but its rows)."""
    from pipelines.engines import to_polars

    r, o = nw.col(H.read_seqs).list.len(), nw.col(H.own_seqs).list.len()
    by = to_polars(df.group_by(H.structure).agg(
        nw.len().alias("rows"), (r == 0).cast(nw.Int64).sum().alias("empty"), r.sum().alias("read"),
        o.sum().alias("own"), nw.col("_n_anc").sum().alias("anc"))).sort(H.structure)
    rows = int(by["rows"].sum())
    tree = by.filter(by[H.structure] == "tree")
    tree_rows = int(tree["rows"].sum())

    def mean(total, count) -> float:
        return round(float(total) / count, 3) if count else 0.0

    return {
        "rows_in": rows,
        "rows_out": rows,
        "dropped_by_reason": {},
        "by_structure": dict(zip(by[H.structure].to_list(), (int(v) for v in by["rows"].to_list()))),
        "empty_read": int(by["empty"].sum()),
        "mean_read": mean(by["read"].sum(), rows),
        "mean_own": mean(by["own"].sum(), rows),
        "mean_ancestors_tree": mean(tree["anc"].sum(), tree_rows),
    }


def build_histories(timeline, cfg: HistoryConfig = HistoryConfig(), engine=None):
    """A native `timeline` frame (Polars or Spark) in; (`reading_histories`, stats) out, on its engine.

    Polars gives a DataFrame sorted by (timeline_id, seq) in `schemas.HISTORIES` order; Spark
    an unordered DataFrame with the same rows.
    """
    from pipelines import engines

    engine = engine or engines.of(timeline)
    return engines.built(engine, histories(engines.frame(timeline), cfg, engine), histories_stats, H.names,
                         [H.timeline_id, H.seq])


def check_causal(histories_df: pl.DataFrame) -> CheckResult:
    """Every `read_seqs`/`own_seqs` entry is strictly smaller than the row's `seq`, with no repeats."""
    bad = histories_df.filter(
        (pl.col(H.read_seqs).list.max() >= pl.col(H.seq)).fill_null(False)
        | (pl.col(H.own_seqs).list.max() >= pl.col(H.seq)).fill_null(False)
        | (pl.col(H.read_seqs).list.n_unique() != pl.col(H.read_seqs).list.len())
        | (pl.col(H.own_seqs).list.n_unique() != pl.col(H.own_seqs).list.len()))
    return CheckResult(
        name="histories_causal",
        passed=bad.height == 0,
        failed_rows=bad.height,
        description="every read_seqs and own_seqs entry is an earlier seq on the same timeline, no repeats"
                    + (f"; {bad.height} rows violate it" if bad.height else ""),
        samples=bad.select(H.timeline_id, H.seq, H.message_id).head(10).rows(),
    )


def run(ctx, engine) -> StageResult:
    """Read `timeline`, write `reading_histories` sorted by (timeline_id, seq); return counts."""
    cfg = ctx.config.section(HistoryConfig)
    frame = histories(engine.scan(ctx.config.table_url(T.name), T), cfg, engine)
    with engine.held(frame) as df:
        stats = histories_stats(df)
        engine.write(df, ctx.config.table_url(H.name), H, order_by=[H.timeline_id, H.seq])
    ctx.log.info("histories: %d rows (N=%d, K=%d)", stats["rows_out"], cfg.n, cfg.k)
    return StageResult.from_summary("histories", {**stats, "n": cfg.n, "k": cfg.k})
