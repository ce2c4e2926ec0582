"""Pair examples: one training example per (author a, interlocutor b, target message m).

For each target m written by a user a (never a deleted/unknown author, a bot or a system
account; m must be a near-dup target), and for each other user b who wrote something in
a's reading history of m:

* `window_seqs`: the reading history of m in time order, then m;
* `own_seqs`: a's previous messages strictly before the window's first message (up to K);
* `other_seqs`: the messages by b that a had read before m (gathered across the reading
  histories of a's earlier messages), strictly before the window's first message, the
  most recent K, stored in time order; optionally (`other_public`) merged with b's
  public messages before the window;
* the gap in seconds before each referenced message (null lists on ordinal timelines);
* the target's labels (Diplomacy deception labels), for probing later.

The streams stop where the window starts (TRAINER.md: "strictly before the window
starts, same cut-off"), so no message is seen twice by the model.

Caps per target, per ordered pair and per author bound the blow-up; they keep examples
in hash order (by `example_id`), never input order. Splits are by a salted hash of the
thread, so no thread is in two splits; a temporal cut-off and a user-disjoint option
refine that. Every step is a small relational function so the Spark engine can mirror it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from pipelines.core import storage
from pipelines.core.checks import CheckResult
from pipelines.stages.histories import HistoryConfig
from schemas import EXAMPLES as E
from schemas import HISTORIES as H
from schemas import TIMELINE as T

SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = SPLITS
# Platforms whose threads are private conversations: another message by b there is not
# "public", so the `other_public` option never pulls it in (a Diplomacy power's messages
# to a third power were never visible to a).
PRIVATE_PLATFORMS = ("diplomacy",)
_LIST = pl.List(pl.Int64)


@dataclass(frozen=True)
class ExamplesConfig:
    """Pair examples: caps that bound the blow-up, the interlocutor stream option, the splits.

    max_per_target: examples kept per target message, one per interlocutor (the blow-up bound).
    max_per_pair: examples kept per ordered (author, interlocutor) pair, so chatty pairs cannot dominate.
    max_per_author: examples kept per author as the perspective.
    other_public: also put the interlocutor's public messages before the window in their stream, not only what the author had read (private platforms such as Diplomacy never add).
    split_salt: salt of the thread hash that assigns splits; change it to draw another split.
    validation_fraction: share of threads in validation.
    test_fraction: share of threads in test (unused for dated threads when temporal_cutoff is set).
    temporal_cutoff: ISO date or datetime (UTC if no zone); threads with any message after it go to test, earlier ones split train/validation by hash; ordinal timelines keep the hash split.
    user_disjoint: hold out a hashed share (validation + test fraction) of users; train keeps examples whose two users are both kept, validation/test those whose two users are both held out.
    """

    max_per_target: int = 5
    max_per_pair: int = 1000
    max_per_author: int = 5000
    other_public: bool = False
    split_salt: str = "socialcorpus-v1"
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    temporal_cutoff: str | None = None
    user_disjoint: bool = False

    def __post_init__(self):
        for name in ("max_per_target", "max_per_pair", "max_per_author"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"examples {name} = {v!r}: must be an integer >= 1")
        for name in ("validation_fraction", "test_fraction"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
                raise ValueError(f"examples {name} = {v!r}: must be a number in [0, 1)")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(f"examples validation_fraction + test_fraction = "
                             f"{self.validation_fraction + self.test_fraction}: must be below 1 "
                             "(something must be left for train)")
        if not isinstance(self.split_salt, str) or not self.split_salt:
            raise ValueError(f"examples split_salt = {self.split_salt!r}: must be a non-empty string")
        if self.temporal_cutoff is not None:
            self.cutoff()  # validates
        for name in ("other_public", "user_disjoint"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"examples {name} = {getattr(self, name)!r}: must be true or false")

    def cutoff(self) -> datetime | None:
        """`temporal_cutoff` as an aware UTC datetime (None when unset)."""
        if self.temporal_cutoff is None:
            return None
        try:
            dt = datetime.fromisoformat(str(self.temporal_cutoff))
        except ValueError as e:
            raise ValueError(f"examples temporal_cutoff = {self.temporal_cutoff!r}: not an ISO date "
                             "(use e.g. \"2013-01-05\" or \"2013-01-05T12:00:00Z\")") from e
        return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


# ---------------------------------------------------------------------------- hashing

def sha1_hex(values: pl.Series, salt: str = "") -> pl.Series:
    """Hex SHA-1 of `salt + value` for each string (null stays null).

    Plain Python over the column because Polars has no stable cryptographic hash (its
    `hash()` may change between versions); Spark's `sha1(concat(...))` gives the same
    digests, so both engines agree.
    """
    enc = salt.encode("utf-8")
    return pl.Series(values.name, [None if v is None else hashlib.sha1(enc + v.encode("utf-8")).hexdigest()
                                   for v in values.to_list()], dtype=pl.String)


def unit_interval(hex_col: str) -> pl.Expr:
    """Map a hex digest to [0, 1) using its first 13 hex digits (52 bits, exact in float64)."""
    return (pl.col(hex_col).str.slice(0, 13).str.to_integer(base=16).cast(pl.Float64) / float(16 ** 13))


# ---------------------------------------------------------------------------- steps

def message_table(timeline: pl.LazyFrame) -> pl.LazyFrame:
    """The columns examples need from `timeline`, with `_t` (epoch seconds, null on ordinal
    timelines) and `_thread_gap` (seconds since the previous message of the same thread)."""
    t = (pl.when(pl.col(T.time_kind) == "wall").then(pl.col(T.created_at).dt.epoch("us").cast(pl.Float64) / 1e6))
    return (timeline.select(T.timeline_id, T.seq, T.message_id, T.platform, T.community, T.thread_id,
                            T.author_id, T.author_kind, T.is_target, T.created_at, T.time_kind, T.labels,
                            T.recipient_ids)
            .with_columns(t.alias("_t"))
            .with_columns((pl.col("_t") - pl.col("_t").shift(1).over([T.timeline_id, T.thread_id], order_by=T.seq))
                          .alias("_thread_gap")))


def classify_messages(msgs: pl.LazyFrame) -> pl.LazyFrame:
    """Add `_reason`: why a message cannot be a target from its author's perspective (null = it can)."""
    return msgs.with_columns(
        pl.when(pl.col(T.author_id).is_null() | (pl.col(T.author_kind) == "deleted")).then(pl.lit("deleted_author"))
        .when(pl.col(T.author_kind) == "bot").then(pl.lit("bot_author"))
        .when(pl.col(T.author_kind) == "system").then(pl.lit("system_author"))
        .when(~pl.col(T.is_target)).then(pl.lit("not_target"))
        .otherwise(None).alias("_reason"))


def candidate_pairs(msgs: pl.LazyFrame, hist: pl.LazyFrame) -> pl.LazyFrame:
    """(target, interlocutor) candidates: one row per distinct user b != a among the authors
    of the target's reading history. Columns: timeline_id, target_seq, other_id."""
    targets = (msgs.filter(pl.col("_reason").is_null())
               .join(hist.select(H.timeline_id, H.seq, H.read_seqs), on=[T.timeline_id, T.seq])
               .select(T.timeline_id, pl.col(T.seq).alias(E.target_seq), pl.col(T.author_id).alias("_self"),
                       pl.col(H.read_seqs).alias("_r")))
    authors = msgs.filter(pl.col(T.author_id).is_not_null() & (pl.col(T.author_kind) == "user")).select(
        T.timeline_id, pl.col(T.seq).alias("_r"), pl.col(T.author_id).alias(E.other_id))
    return (targets.explode("_r").join(authors, on=[T.timeline_id, "_r"])
            .filter(pl.col(E.other_id) != pl.col("_self"))
            .select(T.timeline_id, E.target_seq, E.other_id).unique())


def add_ids(cands: pl.DataFrame, msgs: pl.LazyFrame) -> pl.DataFrame:
    """Attach the target's columns and the deterministic `example_id` = sha1(message_id \\x1f other_id)."""
    tgt = msgs.select(T.timeline_id, pl.col(T.seq).alias(E.target_seq), T.platform, T.community, T.thread_id,
                      pl.col(T.message_id).alias(E.target_message_id), pl.col(T.author_id).alias(E.self_id),
                      T.labels).collect()
    df = cands.join(tgt, on=[T.timeline_id, E.target_seq])
    key = df.select((pl.col(E.target_message_id) + "\x1f" + pl.col(E.other_id)).alias(E.example_id))
    return df.with_columns(sha1_hex(key.get_column(E.example_id)))


def assign_splits(df: pl.DataFrame, msgs: pl.LazyFrame, cfg: ExamplesConfig) -> pl.DataFrame:
    """Add `split` by a salted hash of `thread_id` (and the temporal cut-off when set).

    A whole thread always lands in one split: the temporal rule looks at the thread's
    latest message in the corpus, not at the target.
    """
    threads = df.select(T.thread_id).unique()
    threads = threads.with_columns(sha1_hex(threads.get_column(T.thread_id), cfg.split_salt + "\x1f").alias("_h"))
    u = unit_interval("_h")
    by_hash = (pl.when(u < cfg.test_fraction).then(pl.lit(TEST))
               .when(u < cfg.test_fraction + cfg.validation_fraction).then(pl.lit(VALIDATION))
               .otherwise(pl.lit(TRAIN)))
    cutoff = cfg.cutoff()
    if cutoff is not None:
        last = (msgs.group_by(T.thread_id).agg(pl.col(T.created_at).max().alias("_last"))
                .collect())
        threads = threads.join(last, on=T.thread_id, how="left")
        by_hash = (pl.when(pl.col("_last").is_null()).then(by_hash)  # ordinal timelines: no dates
                   .when(pl.col("_last") > cutoff).then(pl.lit(TEST))
                   .when(u < cfg.validation_fraction).then(pl.lit(VALIDATION))
                   .otherwise(pl.lit(TRAIN)))
    threads = threads.with_columns(by_hash.alias(E.split)).select(T.thread_id, E.split)
    return df.join(threads, on=T.thread_id)


def user_disjoint_mask(df: pl.DataFrame, cfg: ExamplesConfig) -> pl.Series:
    """True for examples the user-disjoint option keeps (see :class:`ExamplesConfig`)."""
    users = pl.concat([df.get_column(E.self_id), df.get_column(E.other_id)]).unique().rename("_u").to_frame()
    users = users.with_columns(sha1_hex(users.get_column("_u"), cfg.split_salt + "\x1fuser\x1f").alias("_h"))
    users = users.with_columns((unit_interval("_h") < cfg.validation_fraction + cfg.test_fraction).alias("_held"))
    held = users.select("_u", "_held")
    out = (df.select(E.self_id, E.other_id, (pl.col(E.split) == TRAIN).alias("_train"))
           .join(held.rename({"_u": E.self_id, "_held": "_s"}), on=E.self_id, how="left", maintain_order="left")
           .join(held.rename({"_u": E.other_id, "_held": "_o"}), on=E.other_id, how="left", maintain_order="left"))
    return out.select(pl.when(pl.col("_train")).then(~pl.col("_s") & ~pl.col("_o"))
                      .otherwise(pl.col("_s") & pl.col("_o"))).to_series()


def apply_caps(df: pl.DataFrame, cfg: ExamplesConfig) -> tuple[pl.DataFrame, dict]:
    """Keep at most `max_per_target` per target, then `max_per_pair` per ordered pair, then
    `max_per_author` per author, each time the lowest `example_id`s (a hash: an unbiased,
    input-order-free sample). Returns the kept rows and the drop counts."""
    dropped = {}
    df = df.sort(E.example_id)
    for reason, keys, cap in (("cap_target", [E.timeline_id, E.target_seq], cfg.max_per_target),
                              ("cap_pair", [E.self_id, E.other_id], cfg.max_per_pair),
                              ("cap_author", [E.self_id], cfg.max_per_author)):
        keep = df.select(pl.int_range(pl.len()).over(keys) < cap).to_series()
        dropped[reason] = int((~keep).sum())
        df = df.filter(keep)
    return df, dropped


def window_column(df: pl.DataFrame, hist: pl.LazyFrame) -> pl.DataFrame:
    """`window_seqs` = the target's reading history in time order, then the target; `_w0` its first seq."""
    h = hist.select(pl.col(H.timeline_id), pl.col(H.seq).alias(E.target_seq), H.read_seqs).collect()
    return (df.join(h, on=[E.timeline_id, E.target_seq], how="left")
            .with_columns(pl.concat_list(pl.col(H.read_seqs).list.sort(), pl.col(E.target_seq)).alias(E.window_seqs))
            .with_columns(pl.col(E.window_seqs).list.first().alias("_w0"))
            .drop(H.read_seqs))


def latest_before(df: pl.DataFrame, stream: pl.DataFrame, who: str, k: int) -> pl.DataFrame:
    """For each example, the last k seqs of `stream` (columns timeline_id, `_who`, seq) by
    user `who` (a column of df) with seq < `_w0`, as `_out` in time order.

    Relational: an as-of join finds how many of the user's messages precede the window,
    then a rank range is looked up; no per-row Python.
    """
    ex = df.select("_ex", E.timeline_id, pl.col(who).alias("_who"), "_w0").sort("_w0")
    ranked = (stream.sort(T.seq).with_columns(pl.int_range(pl.len(), dtype=pl.Int64)
                                              .over([T.timeline_id, "_who"]).alias("_rank")))
    if k == 0 or ranked.height == 0:
        return df.with_columns(pl.lit([], dtype=_LIST).alias("_out"))
    hit = ex.join_asof(ranked.select(T.timeline_id, "_who", T.seq, "_rank"), left_on="_w0", right_on=T.seq,
                       by=[T.timeline_id, "_who"], strategy="backward", allow_exact_matches=False,
                       check_sortedness=False)  # both sides sorted on the key just above
    hit = (hit.filter(pl.col("_rank").is_not_null()).drop(T.seq)
           .with_columns(pl.int_ranges(pl.max_horizontal(pl.col("_rank") - (k - 1), 0), pl.col("_rank") + 1)
                         .alias("_rank"))
           .explode("_rank")
           .join(ranked.select(T.timeline_id, "_who", "_rank", T.seq), on=[T.timeline_id, "_who", "_rank"])
           .sort("_ex", T.seq)
           .group_by("_ex", maintain_order=True).agg(pl.col(T.seq).alias("_out")))
    return (df.join(hit, on="_ex", how="left")
            .with_columns(pl.col("_out").fill_null(pl.lit([], dtype=_LIST))))


def read_events(msgs: pl.LazyFrame, hist: pl.LazyFrame) -> pl.LazyFrame:
    """What each author had read, and since when: (timeline_id, `_reader`, `_writer`, `_read`,
    `_since` = seq of the reader's first message whose history held it)."""
    writers = msgs.filter(pl.col(T.author_id).is_not_null()).select(
        T.timeline_id, pl.col(T.seq).alias("_read"), pl.col(T.author_id).alias("_writer"))
    return (hist.filter(pl.col(H.author_id).is_not_null())
            .select(H.timeline_id, pl.col(H.author_id).alias("_reader"), pl.col(H.seq).alias("_at"),
                    pl.col(H.read_seqs).alias("_read"))
            .explode("_read").drop_nulls("_read")
            .join(writers, on=[T.timeline_id, "_read"])
            .filter(pl.col("_writer") != pl.col("_reader"))
            .group_by(T.timeline_id, "_reader", "_writer", "_read").agg(pl.col("_at").min().alias("_since")))


def other_stream(df: pl.DataFrame, events: pl.LazyFrame, msgs: pl.LazyFrame, k: int,
                 other_public: bool) -> pl.DataFrame:
    """`other_seqs`: b's messages a had read before the target (since an earlier message of a)
    and before the window, the latest k, time order; with `other_public`, b's public
    messages before the window join them."""
    if k == 0:
        return df.with_columns(pl.lit([], dtype=_LIST).alias(E.other_seqs))
    ex = df.select("_ex", E.timeline_id, E.self_id, E.other_id, E.target_seq, "_w0")
    ev = events.collect()
    read = (ex.join(ev, left_on=[E.timeline_id, E.self_id, E.other_id], right_on=[T.timeline_id, "_reader", "_writer"])
            .filter((pl.col("_since") < pl.col(E.target_seq)) & (pl.col("_read") < pl.col("_w0")))
            .select("_ex", pl.col("_read").alias(T.seq)))
    if other_public:
        public = (msgs.filter(pl.col(T.author_id).is_not_null() & ~pl.col(T.platform).is_in(PRIVATE_PLATFORMS)
                              & (pl.col(T.recipient_ids).is_null() | (pl.col(T.recipient_ids).list.len() == 0)))
                  .select(T.timeline_id, pl.col(T.author_id).alias("_who"), T.seq).collect())
        pub = latest_before(df.select("_ex", E.timeline_id, E.other_id, "_w0"), public, E.other_id, k)
        read = pl.concat([read, pub.select("_ex", pl.col("_out").alias(T.seq)).explode(T.seq).drop_nulls()])
    got = (read.unique().sort("_ex", T.seq, descending=[False, True])
           .group_by("_ex", maintain_order=True).agg(pl.col(T.seq).head(k).reverse().alias(E.other_seqs)))
    return (df.join(got, on="_ex", how="left")
            .with_columns(pl.col(E.other_seqs).fill_null(pl.lit([], dtype=_LIST))))


def gaps(df: pl.DataFrame, msgs: pl.DataFrame, seqs_col: str, out_col: str) -> pl.DataFrame:
    """`out_col`: seconds before each message of `seqs_col`: since the previous message of the
    list, and for the first since the previous message of its thread (null if it opens the
    thread). The whole list is null on ordinal timelines."""
    times = msgs.select(T.timeline_id, T.seq, "_t", "_thread_gap")
    long = (df.select("_ex", E.timeline_id, seqs_col).explode(seqs_col).drop_nulls(seqs_col)
            .with_columns(pl.int_range(pl.len()).over("_ex").alias("_pos"))
            .join(times, left_on=[E.timeline_id, seqs_col], right_on=[T.timeline_id, T.seq], how="left")
            .sort("_ex", "_pos")
            .with_columns(pl.when(pl.col("_pos") == 0).then(pl.col("_thread_gap"))
                          .otherwise(pl.col("_t") - pl.col("_t").shift(1).over("_ex")).alias("_g"))
            .group_by("_ex", maintain_order=True).agg(pl.col("_g").alias(out_col)))
    out = df.join(long, on="_ex", how="left")
    wall = pl.col(E.timeline_id) == "wall"
    return out.with_columns(pl.when(wall).then(pl.col(out_col).fill_null(pl.lit([], dtype=pl.List(pl.Float64))))
                            .alias(out_col))


def build_examples(timeline: pl.LazyFrame, histories: pl.LazyFrame, cfg: ExamplesConfig = ExamplesConfig(),
                   hcfg: HistoryConfig = HistoryConfig()) -> tuple[pl.DataFrame, dict]:
    """`timeline` + `reading_histories` in; (`pair_examples` DataFrame in `schemas.EXAMPLES`
    order, stats) out. Sorted by (timeline_id, target_seq, other_id); deterministic for
    given inputs and config, whatever the input row order."""
    msgs_lf = classify_messages(message_table(timeline))
    msgs = msgs_lf.collect()
    msgs_lf = msgs.lazy()
    hist = histories.select(H.timeline_id, H.seq, H.author_id, H.read_seqs)
    cands = candidate_pairs(msgs_lf, hist).collect()
    reasons = msgs.group_by("_reason").agg(pl.len())
    dropped = {r: int(c) for r, c in reasons.filter(pl.col("_reason").is_not_null()).iter_rows()}
    eligible = int(msgs["_reason"].is_null().sum())
    targets_with_pairs = cands.select(T.timeline_id, E.target_seq).unique().height
    dropped["no_interlocutor"] = eligible - targets_with_pairs

    df = add_ids(cands, msgs_lf)
    df = assign_splits(df, msgs_lf, cfg)
    if cfg.user_disjoint:
        keep = user_disjoint_mask(df, cfg)
        dropped["user_disjoint"] = int((~keep).sum())
        df = df.filter(keep)
    df, cap_drops = apply_caps(df, cfg)
    dropped.update(cap_drops)

    df = df.sort(E.timeline_id, E.target_seq, E.other_id).with_row_index("_ex")
    df = window_column(df, hist)
    own = msgs.filter(pl.col(T.author_id).is_not_null()).select(T.timeline_id, pl.col(T.author_id).alias("_who"), T.seq)
    df = latest_before(df, own, E.self_id, hcfg.k).rename({"_out": E.own_seqs})
    df = other_stream(df, read_events(msgs_lf, hist), msgs_lf, hcfg.k, cfg.other_public)
    for seqs_col, gap_col in ((E.window_seqs, E.window_gaps), (E.own_seqs, E.own_gaps),
                              (E.other_seqs, E.other_gaps)):
        df = gaps(df, msgs, seqs_col, gap_col)
    df = df.sort("_ex").select(E.names)
    stats = examples_stats(msgs, df, cands.height, targets_with_pairs, dropped)
    return df, stats


def examples_stats(msgs: pl.DataFrame, df: pl.DataFrame, candidates: int, targets: int, dropped: dict) -> dict:
    """Counts. Two conservation laws hold: messages_in = target_messages + message drops
    (deleted/bot/system author, not_target, no_interlocutor) and candidates = rows_out +
    candidate drops (user_disjoint, cap_target, cap_pair, cap_author)."""
    tgt_by_platform = (msgs.filter(pl.col("_reason").is_null()).group_by(T.platform).agg(pl.len().alias("m")))
    ex_by_platform = df.group_by(E.platform).agg(pl.len().alias("x"), pl.col(E.target_message_id).n_unique().alias("t"))
    per = (tgt_by_platform.join(ex_by_platform, on=T.platform, how="full", coalesce=True)
           .fill_null(0).sort(T.platform))
    by_platform = {p: {"eligible_messages": m, "examples": x,
                       "blowup": round(x / t, 3) if t else 0.0}
                   for p, m, x, t in per.select(T.platform, "m", "x", "t").iter_rows()}
    splits = df.group_by(E.split).agg(pl.len()).sort(E.split)
    return {
        "rows_in": msgs.height,
        "rows_out": df.height,
        "messages_in": msgs.height,
        "target_messages": targets,
        "candidates": candidates,
        "blowup": round(df.height / targets, 3) if targets else 0.0,
        "examples_per_message_in": round(df.height / msgs.height, 3) if msgs.height else 0.0,
        "dropped_by_reason": dict(sorted(dropped.items())),
        "by_platform": by_platform,
        "by_split": dict(zip(splits[E.split].to_list(), splits["len"].to_list())),
    }


def check_split_leakage(examples_df: pl.DataFrame) -> CheckResult:
    """No thread has examples in two splits."""
    bad = (examples_df.group_by(E.thread_id).agg(pl.col(E.split).n_unique().alias("n"))
           .filter(pl.col("n") > 1).sort(E.thread_id))
    return CheckResult(
        name="examples_split_leakage",
        passed=bad.height == 0,
        failed_rows=bad.height,
        description="every thread's examples are in one split"
                    + (f"; {bad.height} threads span several splits" if bad.height else ""),
        samples=bad.get_column(E.thread_id).head(10).to_list(),
    )


def run(ctx) -> dict:
    """Read `timeline` and `reading_histories`, write `pair_examples`; return counts."""
    cfg = ctx.config.section("examples")
    hcfg = ctx.config.section("history")
    df, stats = build_examples(storage.scan(ctx.config.table_url("timeline")),
                               storage.scan(ctx.config.table_url("reading_histories")), cfg, hcfg)
    storage.write_table(ctx.config.table_url("pair_examples"), df, schema=E)
    ctx.log.info("examples: %d from %d target messages (blow-up %.2f)", stats["rows_out"],
                 stats["target_messages"], stats["blowup"])
    return stats
