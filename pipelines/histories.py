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

Built relationally: ancestors by an iterative self-join (at most N levels), siblings,
thread predecessors and own messages by shifted windows over sorted partitions. The
steps are separate functions so the Spark engine can mirror them one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipelines import storage
from pipelines.checks import CheckResult
from schemas import HISTORIES as H
from schemas import TIMELINE as T

# Platforms whose explicit `parent_id` links form reply trees. IRC and Diplomacy have no
# explicit links (IRC's "nick:" addressing only gives `parent_inferred`), so they stay linear.
TREE_PLATFORMS = ("reddit", "stackexchange", "discourse", "discord", "slack", "telegram")
MAX_N = 10
MAX_K = 128


@dataclass(frozen=True)
class HistoryConfig:
    """Reading histories: how much an author had read (N) and how much of their own past is kept (K).

    n: messages in a reading history, 1 to 10 (ancestors then siblings in reply trees, previous messages in linear threads).
    k: the author's own previous messages kept, 0 to 128; the examples stage uses the same K for the own and interlocutor streams.
    """

    n: int = 5
    k: int = 10

    def __post_init__(self):
        if not isinstance(self.n, int) or isinstance(self.n, bool) or not 1 <= self.n <= MAX_N:
            raise ValueError(f"history n = {self.n!r}: must be an integer from 1 to {MAX_N} "
                             "(messages in a reading history)")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or not 0 <= self.k <= MAX_K:
            raise ValueError(f"history k = {self.k!r}: must be an integer from 0 to {MAX_K} "
                             "(own previous messages kept)")


def _previous(col: str, partition: list[str], n: int) -> pl.Expr:
    """The up-to-n previous values of `seq` within `partition` (ordered by seq), nearest first."""
    if n == 0:
        return pl.lit([], dtype=pl.List(pl.Int64))
    return pl.concat_list([pl.col(col).shift(i).over(partition, order_by=col) for i in range(1, n + 1)]
                          ).list.drop_nulls()


def structure_expr() -> pl.Expr:
    return (pl.when(pl.col(T.parent_id).is_not_null() & pl.col(T.platform).is_in(TREE_PLATFORMS))
            .then(pl.lit("tree")).otherwise(pl.lit("linear")))


def select_keys(timeline: pl.LazyFrame) -> pl.LazyFrame:
    """The columns histories need from `timeline`, plus `structure`."""
    return timeline.select(T.timeline_id, T.seq, T.message_id, T.thread_id, T.author_id, T.platform,
                           T.parent_id, T.parent_seq).with_columns(structure_expr().alias(H.structure))


def ancestors(keys: pl.LazyFrame, n: int) -> pl.LazyFrame:
    """(timeline_id, seq, `_anc`: list of ancestor seqs nearest first, at most n) for tree messages.

    Iterative self-join on `parent_seq`, one level per join, at most n levels. A link is
    followed only to a strictly earlier message, so the chain is strictly decreasing in
    `seq`: causal by construction, and a cycle in bad data cannot repeat a message. A
    parent at or after its child (clock skew) ends the chain there.
    """
    links = (keys.filter(pl.col(T.parent_seq).is_not_null() & (pl.col(T.parent_seq) < pl.col(T.seq)))
             .select(T.timeline_id, pl.col(T.seq).alias("_node"), pl.col(T.parent_seq).alias("_up")))
    level = (keys.filter(pl.col(H.structure) == "tree")
             .join(links, left_on=[T.timeline_id, T.seq], right_on=[T.timeline_id, "_node"], how="inner")
             .select(T.timeline_id, T.seq, pl.col("_up").alias("_a"), pl.lit(1, dtype=pl.Int32).alias("_depth")))
    levels = [level]
    for depth in range(2, n + 1):
        level = (level.join(links, left_on=[T.timeline_id, "_a"], right_on=[T.timeline_id, "_node"], how="inner")
                 .select(T.timeline_id, T.seq, pl.col("_up").alias("_a"),
                         pl.lit(depth, dtype=pl.Int32).alias("_depth")))
        levels.append(level)
    return (pl.concat(levels).sort(T.timeline_id, T.seq, "_depth")
            .group_by(T.timeline_id, T.seq, maintain_order=True).agg(pl.col("_a").alias("_anc")))


def build_histories(timeline: pl.LazyFrame, cfg: HistoryConfig = HistoryConfig()) -> tuple[pl.DataFrame, dict]:
    """`timeline` rows in; (`reading_histories` DataFrame in `schemas.HISTORIES` order, stats) out.

    One row per timeline row, sorted by (timeline_id, seq). Every `read_seqs` and
    `own_seqs` entry is a `seq` on the same timeline strictly smaller than the row's `seq`.
    """
    keys = select_keys(timeline)
    n = cfg.n
    anc = ancestors(keys, n)
    df = (keys.join(anc, on=[T.timeline_id, T.seq], how="left")
          .with_columns(
              # Siblings: earlier replies to the same parent id (a string, so replies to a
              # never-archived parent are still siblings of each other).
              pl.when(pl.col(H.structure) == "tree")
              .then(_previous(T.seq, [T.timeline_id, T.parent_id], n)).alias("_sib"),
              _previous(T.seq, [T.timeline_id, T.thread_id], n).alias("_thread"),
              pl.when(pl.col(T.author_id).is_not_null())
              .then(_previous(T.seq, [T.timeline_id, T.author_id], cfg.k))
              .otherwise(pl.lit([], dtype=pl.List(pl.Int64))).alias(H.own_seqs),
          )
          .with_columns(
              pl.when(pl.col(H.structure) == "tree")
              .then(pl.concat_list(pl.col("_anc").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
                                   pl.col("_sib")).list.head(n))
              .otherwise(pl.col("_thread")).alias(H.read_seqs))
          .sort(T.timeline_id, T.seq)
          .collect())
    stats = histories_stats(df)
    return df.select(H.names), stats


def histories_stats(df: pl.DataFrame) -> dict:
    lens = df.select(pl.col(H.read_seqs).list.len().alias("r"), pl.col(H.own_seqs).list.len().alias("o"),
                     pl.col("_anc").list.len().fill_null(0).alias("a"), pl.col(H.structure))
    by_structure = lens.group_by(H.structure).agg(pl.len()).sort(H.structure)
    return {
        "rows_in": df.height,
        "rows_out": df.height,
        "dropped_by_reason": {},
        "by_structure": dict(zip(by_structure[H.structure].to_list(), by_structure["len"].to_list())),
        "empty_read": int((lens["r"] == 0).sum()),
        "mean_read": round(float(lens["r"].mean() or 0.0), 3),
        "mean_own": round(float(lens["o"].mean() or 0.0), 3),
        "mean_ancestors_tree": round(float(lens.filter(pl.col(H.structure) == "tree")["a"].mean() or 0.0), 3),
    }


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


def run(ctx) -> dict:
    """Read `timeline`, write `reading_histories`; return counts."""
    cfg = ctx.config.section("history")
    df, stats = build_histories(storage.scan(ctx.config.table_url("timeline")), cfg)
    storage.write_table(ctx.config.table_url("reading_histories"), df, schema=H)
    ctx.log.info("histories: %d rows (N=%d, K=%d)", stats["rows_out"], cfg.n, cfg.k)
    return {**stats, "n": cfg.n, "k": cfg.k}
