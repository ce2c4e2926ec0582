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
refine that.

Written once for both engines (narwhals over Polars or Spark, see pipelines/engines): every
step is joins, windows and group-bys over narwhals frames; the engine adds what narwhals
lacks (SHA-1 digests, epoch microseconds, integer ranges, ordered list aggregation). The
window and own streams are built per target, the interlocutor stream per example, each as
rows (key, seq) whose gaps are windows over the same rows, then packed into lists.
"""

from __future__ import annotations

import math

import narwhals as nw
import polars as pl

from pipelines.core.checks import CheckResult
from pipelines.core.results import Flow, StageResult
from pipelines.core.settings import ExamplesConfig, HistoryConfig  # the [examples] section, with every section in core/settings
from schemas import EXAMPLES as E
from schemas import HISTORIES as H
from schemas import TIMELINE as T

SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = SPLITS
# Platforms whose threads are private conversations: another message by b there is not
# "public", so the `other_public` option never pulls it in (a Diplomacy power's messages
# to a third power were never visible to a).
PRIVATE_PLATFORMS = ("diplomacy",)


# ---------------------------------------------------------------------------- hashing

def below(hex_col: str, fraction: float) -> nw.Expr:
    """Whether the hex digest ``hex_col``, read as a number u in [0, 1) from its first 13 hex
    digits (52 bits: n / 16**13, exact in float64), is below ``fraction``.

    Compared as strings: u < f exactly when n < ceil(f * 16**13) (f * 2**52 is exact), and
    13-digit lowercase hex strings sort as their numbers, so no engine needs a base-16 parser.
    """
    bound = math.ceil(fraction * 16 ** 13)
    if bound >= 16 ** 13:
        return nw.lit(True)
    return nw.col(hex_col).str.slice(0, 13) < f"{bound:013x}"


# ---------------------------------------------------------------------------- steps

def message_table(timeline: nw.LazyFrame, engine) -> nw.LazyFrame:
    """The columns examples need from `timeline`, with `_t` (epoch seconds, null on ordinal
    timelines) and `_thread_gap` (seconds since the previous message of the same thread)."""
    msgs = engine.epoch_us(timeline.select(T.timeline_id, T.seq, T.message_id, T.platform, T.community, T.thread_id,
                                           T.author_id, T.author_kind, T.is_target, T.created_at, T.time_kind,
                                           T.labels, T.recipient_ids), "_t", T.created_at)
    # Times 1e-6, not / 1e6: Polars turns a division by a literal into this multiplication, which
    # rounds differently from a true division in the last bit; both engines get the same doubles.
    t = nw.when(nw.col(T.time_kind) == "wall").then(nw.col("_t").cast(nw.Float64) * (1.0 / 1e6))
    return (msgs.with_columns(t.alias("_t"))
            .with_columns((nw.col("_t") - nw.col("_t").shift(1).over(T.timeline_id, T.thread_id, order_by=T.seq))
                          .alias("_thread_gap")))


def classify_messages(msgs: nw.LazyFrame) -> nw.LazyFrame:
    """Add `_reason`: why a message cannot be a target from its author's perspective (null = it can)."""
    return msgs.with_columns(
        nw.when(nw.col(T.author_id).is_null() | (nw.col(T.author_kind) == "deleted")).then(nw.lit("deleted_author"))
        .when(nw.col(T.author_kind) == "bot").then(nw.lit("bot_author"))
        .when(nw.col(T.author_kind) == "system").then(nw.lit("system_author"))
        .when(~nw.col(T.is_target)).then(nw.lit("not_target"))
        .alias("_reason"))


def candidate_pairs(msgs: nw.LazyFrame, hist: nw.LazyFrame) -> nw.LazyFrame:
    """(target, interlocutor) candidates: one row per distinct user b != a among the authors
    of the target's reading history. Columns: timeline_id, target_seq, other_id."""
    targets = (msgs.filter(nw.col("_reason").is_null())
               .join(hist.select(H.timeline_id, H.seq, H.read_seqs), on=[T.timeline_id, T.seq])
               .select(T.timeline_id, nw.col(T.seq).alias(E.target_seq), nw.col(T.author_id).alias("_self"),
                       nw.col(H.read_seqs).alias("_r")))
    authors = msgs.filter(~nw.col(T.author_id).is_null() & (nw.col(T.author_kind) == "user")).select(
        T.timeline_id, nw.col(T.seq).alias("_r"), nw.col(T.author_id).alias(E.other_id))
    return (targets.explode("_r").join(authors, on=[T.timeline_id, "_r"])
            .filter(nw.col(E.other_id) != nw.col("_self"))
            .select(T.timeline_id, E.target_seq, E.other_id).unique())


def add_ids(cands: nw.LazyFrame, msgs: nw.LazyFrame, engine) -> nw.LazyFrame:
    """Attach the target's columns and the deterministic `example_id` = sha1(message_id \\x1f other_id)."""
    tgt = msgs.select(T.timeline_id, nw.col(T.seq).alias(E.target_seq), T.platform, T.community, T.thread_id,
                      nw.col(T.message_id).alias(E.target_message_id), nw.col(T.author_id).alias(E.self_id),
                      T.labels)
    df = cands.join(tgt, on=[T.timeline_id, E.target_seq]).with_columns(
        nw.concat_str([nw.col(E.target_message_id), nw.col(E.other_id)], separator="\x1f").alias("_key"))
    return engine.hex_digest(df, E.example_id, "_key", "sha1").drop("_key")


def assign_splits(df: nw.LazyFrame, msgs: nw.LazyFrame, cfg: ExamplesConfig, engine) -> nw.LazyFrame:
    """Add `split` by a salted hash of `thread_id` (and the temporal cut-off when set).

    A whole thread always lands in one split: the temporal rule looks at the thread's
    latest message in the corpus, not at the target.
    """
    threads = engine.hex_digest(df.select(T.thread_id).unique(), "_h", T.thread_id, "sha1",
                                salt=cfg.split_salt + "\x1f")
    by_hash = (nw.when(below("_h", cfg.test_fraction)).then(nw.lit(TEST))
               .when(below("_h", cfg.test_fraction + cfg.validation_fraction)).then(nw.lit(VALIDATION))
               .otherwise(nw.lit(TRAIN)))
    cutoff = cfg.cutoff()
    if cutoff is not None:
        last = msgs.group_by(T.thread_id).agg(nw.col(T.created_at).max().alias("_last"))
        threads = threads.join(last, on=T.thread_id, how="left")
        by_hash = (nw.when(nw.col("_last").is_null()).then(by_hash)  # ordinal timelines: no dates
                   .when(nw.col("_last") > nw.lit(cutoff)).then(nw.lit(TEST))
                   .when(below("_h", cfg.validation_fraction)).then(nw.lit(VALIDATION))
                   .otherwise(nw.lit(TRAIN)))
    return df.join(threads.select(T.thread_id, by_hash.alias(E.split)), on=T.thread_id)


def user_disjoint_keep(df: nw.LazyFrame, cfg: ExamplesConfig, engine) -> nw.LazyFrame:
    """Add `_k0`: whether the user-disjoint option keeps the example (see :class:`ExamplesConfig`)."""
    users = nw.concat([df.select(nw.col(E.self_id).alias("_u")), df.select(nw.col(E.other_id).alias("_u"))]).unique()
    held = engine.hex_digest(users, "_h", "_u", "sha1", salt=cfg.split_salt + "\x1fuser\x1f").select(
        "_u", below("_h", cfg.validation_fraction + cfg.test_fraction).alias("_held"))
    out = (df.join(held.rename({"_u": E.self_id, "_held": "_s"}), on=E.self_id, how="left")
           .join(held.rename({"_u": E.other_id, "_held": "_o"}), on=E.other_id, how="left"))
    keep = nw.when(nw.col(E.split) == TRAIN).then(~nw.col("_s") & ~nw.col("_o")).otherwise(nw.col("_s") & nw.col("_o"))
    return out.with_columns(keep.alias("_k0")).drop("_s", "_o")


# The caps, in the order they apply: (drop reason, the group a cap counts in, its config field).
CAPS = (("cap_target", (E.timeline_id, E.target_seq), "max_per_target"),
        ("cap_pair", (E.self_id, E.other_id), "max_per_pair"),
        ("cap_author", (E.self_id,), "max_per_author"))


def cap_flags(df: nw.LazyFrame, cfg: ExamplesConfig) -> nw.LazyFrame:
    """Add `_k1`, `_k2`, `_k3`: still kept after the target, pair and author caps (`_k0`: before them).

    Each cap keeps at most its number per group of the examples still kept, the lowest
    `example_id`s (a hash: an unbiased, input-order-free sample): an example's place among the
    kept ones of its group is the running count of kept examples in `example_id` order. Flags
    instead of filters, so one aggregation counts every drop.
    """
    for i, (_, keys, field) in enumerate(CAPS, start=1):
        kept = nw.col(f"_k{i - 1}")
        place = kept.cast(nw.Int64).cum_sum().over(*keys, order_by=E.example_id)
        df = df.with_columns((kept & (place <= getattr(cfg, field))).alias(f"_k{i}"))
    return df


def latest_before(probes: nw.LazyFrame, stream: nw.LazyFrame, key: list[str], k: int, engine) -> nw.LazyFrame:
    """Rows (``key``…, seq): for each probe (``key``…, timeline_id, `_who`, `_w0`), the last ``k``
    seqs of ``stream`` (timeline_id, `_who`, seq) strictly before `_w0`.

    An as-of join as one window: the probes' distinct positions and the stream rows, merged
    per (timeline, user) in seq order (a probe before a stream row of the same seq), each
    counting the stream rows up to it; a probe that counts n takes the stream ranks
    n-k … n-1, looked up by an equi-join.
    """
    at = [T.timeline_id, "_who"]
    marks = nw.concat([stream.select(*at, T.seq, nw.lit(1).alias("_in")),
                       probes.select(*at, nw.col("_w0").alias(T.seq), nw.lit(0).alias("_in")).unique()])
    marks = marks.with_columns(nw.col("_in").cum_sum().over(*at, order_by=[T.seq, "_in"]).cast(nw.Int64)
                               .alias("_n"))
    ranked = marks.filter(nw.col("_in") == 1).select(*at, T.seq, (nw.col("_n") - 1).alias("_rank"))
    before = marks.filter((nw.col("_in") == 0) & (nw.col("_n") > 0)).select(*at, nw.col(T.seq).alias("_w0"), "_n")
    hits = probes.join(before, on=[*at, "_w0"]).with_columns(
        nw.max_horizontal(nw.col("_n") - k, nw.lit(0, nw.Int64)).alias("_lo"))
    hits = engine.int_ranges(hits, "_rank", "_lo", "_n").explode("_rank")
    return hits.join(ranked, on=[*at, "_rank"]).select(*key, T.seq)


def read_events(msgs: nw.LazyFrame, hist: nw.LazyFrame) -> nw.LazyFrame:
    """What each author had read, and since when: (timeline_id, `_reader`, `_writer`, `_read`,
    `_since` = seq of the reader's first message whose history held it)."""
    writers = msgs.filter(~nw.col(T.author_id).is_null()).select(
        T.timeline_id, nw.col(T.seq).alias("_read"), nw.col(T.author_id).alias("_writer"))
    return (hist.filter(~nw.col(H.author_id).is_null())
            .select(H.timeline_id, nw.col(H.author_id).alias("_reader"), nw.col(H.seq).alias("_at"),
                    nw.col(H.read_seqs).alias("_read"))
            .explode("_read").drop_nulls("_read")
            .join(writers, on=[T.timeline_id, "_read"])
            .filter(nw.col("_writer") != nw.col("_reader"))
            .group_by(T.timeline_id, "_reader", "_writer", "_read").agg(nw.col("_at").min().alias("_since")))


def window_items(targets: nw.LazyFrame, hist: nw.LazyFrame) -> nw.LazyFrame:
    """(timeline_id, target_seq, seq): each target's window, its reading history and itself."""
    read = (hist.select(H.timeline_id, nw.col(H.seq).alias(E.target_seq), nw.col(H.read_seqs).alias(T.seq))
            .join(targets, on=[E.timeline_id, E.target_seq], how="semi").explode(T.seq).drop_nulls(T.seq))
    return nw.concat([read, targets.select(E.timeline_id, E.target_seq, nw.col(E.target_seq).alias(T.seq))])


def own_items(probes: nw.LazyFrame, msgs: nw.LazyFrame, k: int, engine) -> nw.LazyFrame:
    """(timeline_id, target_seq, seq): the author's latest k messages before each target's window."""
    own = msgs.filter(~nw.col(T.author_id).is_null()).select(T.timeline_id, nw.col(T.author_id).alias("_who"), T.seq)
    return latest_before(probes.select(E.timeline_id, E.target_seq, nw.col(E.self_id).alias("_who"), "_w0"),
                         own, [E.timeline_id, E.target_seq], k, engine)


def other_items(ex: nw.LazyFrame, msgs: nw.LazyFrame, hist: nw.LazyFrame, k: int, other_public: bool,
                engine) -> nw.LazyFrame:
    """(example_id, timeline_id, target_seq, seq): b's messages a had read before the target (since an
    earlier message of a) and before the window, the latest k; with `other_public`, b's
    public messages before the window join them."""
    events = read_events(msgs, hist).rename({"_reader": E.self_id, "_writer": E.other_id})
    read = (ex.join(events, on=[E.timeline_id, E.self_id, E.other_id])
            .filter((nw.col("_since") < nw.col(E.target_seq)) & (nw.col("_read") < nw.col("_w0")))
            .select(E.example_id, E.timeline_id, E.target_seq, nw.col("_read").alias(T.seq)))
    if other_public:
        public = (msgs.filter(~nw.col(T.author_id).is_null() & ~nw.col(T.platform).is_in(PRIVATE_PLATFORMS)
                              & (nw.col(T.recipient_ids).is_null() | (nw.col(T.recipient_ids).list.len() == 0)))
                  .select(T.timeline_id, nw.col(T.author_id).alias("_who"), T.seq))
        probes = ex.select(E.example_id, E.timeline_id, E.target_seq, nw.col(E.other_id).alias("_who"), "_w0")
        read = nw.concat([read, latest_before(probes, public, [E.example_id, E.timeline_id, E.target_seq], k,
                                              engine)])
    latest = nw.col(T.seq).rank("ordinal", descending=True).over(E.example_id)
    return read.unique().with_columns(latest.alias("_r")).filter(nw.col("_r") <= k).drop("_r")


def stream_gaps(key: list[str], items: nw.LazyFrame, msgs: nw.LazyFrame) -> nw.LazyFrame:
    """``items`` (``key``…, timeline_id, seq) with `_g`, the seconds before each: since the previous
    item of its key, and for the first since the previous message of its thread (null if it
    opens the thread)."""
    prev = lambda c: nw.col(c).shift(1).over(*key, order_by=T.seq)  # noqa: E731
    return (items.join(msgs.select(T.timeline_id, T.seq, "_t", "_thread_gap"), on=[T.timeline_id, T.seq], how="left")
            .with_columns(nw.when(prev(T.seq).is_null()).then(nw.col("_thread_gap"))
                          .otherwise(nw.col("_t") - prev("_t")).alias("_g")))


def attach_stream(df: nw.LazyFrame, key: list[str], gaps: nw.LazyFrame, seqs_col: str, gaps_col: str,
                  engine) -> nw.LazyFrame:
    """Add `seqs_col`, the seqs of ``gaps`` (:func:`stream_gaps`) per ``key`` in time order, and
    `gaps_col`, their gaps (the list is null on ordinal timelines); empty lists where none."""
    df = engine.attach_lists(df, key, gaps, {seqs_col: T.seq, gaps_col: "_g"}, order_by=T.seq)
    return df.with_columns(nw.when(nw.col(E.timeline_id) == "wall").then(nw.col(gaps_col)).alias(gaps_col))


def with_stream(df: nw.LazyFrame, key: list[str], items: nw.LazyFrame, msgs: nw.LazyFrame, seqs_col: str,
                gaps_col: str, engine) -> nw.LazyFrame:
    """Add `seqs_col`, the ``items`` seqs (timeline_id, seq, per ``key``) in time order, and
    `gaps_col`, seconds before each (:func:`stream_gaps`, :func:`attach_stream`)."""
    return attach_stream(df, key, stream_gaps(key, items, msgs), seqs_col, gaps_col, engine)


PER_TARGET = [E.timeline_id, E.target_seq]
# The output's order, a unique key: a candidate is one (target, interlocutor).
ORDER = [E.timeline_id, E.target_seq, E.other_id]


def stream_parts(kept: nw.LazyFrame, msgs: nw.LazyFrame, hist: nw.LazyFrame, cfg: ExamplesConfig, k: int,
                 engine) -> tuple[nw.LazyFrame, nw.LazyFrame]:
    """What the kept examples' streams are made of, without the examples: (per target: timeline_id,
    target_seq and the window and own streams with their gaps, built once per target as they
    depend on the target only; per example: the interlocutor stream's items with their gaps,
    (example_id, timeline_id, target_seq, seq, `_g`)). :func:`assemble` puts them together."""
    targets = kept.select(E.timeline_id, E.target_seq, E.self_id).unique()
    window = window_items(targets.select(*PER_TARGET), hist)
    starts = targets.join(window.group_by(*PER_TARGET).agg(nw.col(T.seq).min().alias("_w0")), on=PER_TARGET)
    ex = kept.select(E.example_id, E.timeline_id, E.self_id, E.other_id, E.target_seq).join(
        starts.drop(E.self_id), on=PER_TARGET)
    per_target = with_stream(targets.select(*PER_TARGET), PER_TARGET, window, msgs, E.window_seqs, E.window_gaps,
                             engine)
    per_target = with_stream(per_target, PER_TARGET, own_items(starts, msgs, k, engine), msgs, E.own_seqs,
                             E.own_gaps, engine)
    return per_target, stream_gaps([E.example_id], other_items(ex, msgs, hist, k, cfg.other_public, engine), msgs)


def assemble(kept: nw.LazyFrame, per_target: nw.LazyFrame, other: nw.LazyFrame, engine) -> nw.LazyFrame:
    """The examples ``kept`` with their three streams and gaps (in `schemas.EXAMPLES` columns), from
    :func:`stream_parts`' two tables (or the rows of them ``kept`` needs)."""
    df = kept.join(per_target, on=PER_TARGET)
    return attach_stream(df, [E.example_id], other, E.other_seqs, E.other_gaps, engine).select(*E.names)


def pair_examples(timeline: nw.LazyFrame, histories: nw.LazyFrame, cfg: ExamplesConfig, hcfg: HistoryConfig,
                  engine) -> tuple[nw.LazyFrame, StageResult]:
    """`timeline` + `reading_histories` in; (`pair_examples` rows in `schemas.EXAMPLES` columns,
    unordered; their counts) out. Deterministic for given inputs and config, whatever the input
    row order."""
    (kept, per_target, other), result = example_parts(timeline, histories, cfg, hcfg, engine)
    return assemble(kept, per_target, other, engine), result


def example_parts(timeline: nw.LazyFrame, histories: nw.LazyFrame, cfg: ExamplesConfig, hcfg: HistoryConfig,
                  engine) -> tuple[tuple[nw.LazyFrame, nw.LazyFrame, nw.LazyFrame], StageResult]:
    """What :func:`pair_examples` makes, before :func:`assemble`: ((the kept candidates, their
    per-target streams, their interlocutor items; see :func:`stream_parts`), the counts). The
    messages, the flagged candidates and both stream tables are materialized (each is joined
    many times); the examples themselves (a target's streams once per interlocutor) are not."""
    msgs, hist, by_msg = prepared(timeline, histories, engine)
    parts, counts = author_parts(msgs, hist, cfg, hcfg, engine)
    return parts, examples_result(by_msg, *counts, cfg)


def prepared(timeline: nw.LazyFrame, histories: nw.LazyFrame, engine) -> tuple[nw.LazyFrame, nw.LazyFrame, pl.DataFrame]:
    """(the messages with their `_reason`, materialized; the histories' columns examples read; the
    message counts by reason and platform)."""
    from pipelines.engines import to_polars

    msgs = engine.materialize(classify_messages(message_table(timeline, engine)), to_disk=True)
    hist = histories.select(H.timeline_id, H.seq, H.author_id, H.read_seqs)
    return msgs, hist, to_polars(msgs.group_by("_reason", T.platform).agg(nw.len().alias("n")))


def author_parts(msgs: nw.LazyFrame, hist: nw.LazyFrame, cfg: ExamplesConfig, hcfg: HistoryConfig, engine):
    """The parts (see :func:`example_parts`) of the examples whose perspective author wrote a row of
    ``hist``, and their counts (by timeline, by platform, by split; see :func:`examples_result`).

    Everything an example is, and every cap that decides whether it is kept, depends on its
    author's messages and reading histories alone (the caps count per target, per (author,
    interlocutor) and per author); ``msgs`` is only looked up. So ``hist`` cut by author gives
    exactly the examples of those authors (:func:`write_by_authors`)."""
    from pipelines.engines import to_polars

    df = assign_splits(add_ids(candidate_pairs(msgs, hist), msgs, engine), msgs, cfg, engine)
    df = user_disjoint_keep(df, cfg, engine) if cfg.user_disjoint else df.with_columns(nw.lit(True).alias("_k0"))
    flagged = engine.materialize(cap_flags(df, cfg), to_disk=True)
    flags = [f"_k{i}" for i in range(len(CAPS) + 1)]
    dropped_at = {"user_disjoint": ~nw.col("_k0"),  # each reason: kept before its step, not after
                  **{reason: nw.col(f"_k{i - 1}") & ~nw.col(f"_k{i}") for i, (reason, _, _) in enumerate(CAPS, 1)}}
    by_cand = to_polars(flagged.group_by(E.timeline_id).agg(
        nw.len().alias("candidates"), nw.col(E.target_seq).n_unique().alias("targets"),
        *[e.cast(nw.Int64).sum().alias(r) for r, e in dropped_at.items()]))
    kept = flagged.filter(nw.col(flags[-1])).drop(*flags)
    if not engine.distributed:  # its write takes the kept candidates a slice at a time, in ORDER (write_sorted)
        kept = engine.materialize(kept.sort(ORDER), to_disk=True)
    del flagged
    # Every kept candidate is one example (the streams are attached to it), so these count the examples.
    by_platform = to_polars(kept.group_by(E.platform).agg(
        nw.len().alias("x"), nw.col(E.target_message_id).n_unique().alias("t")))
    by_split = to_polars(kept.group_by(E.split).agg(nw.len().alias("n")))
    per_target, other = (engine.materialize(f, to_disk=True) for f in stream_parts(kept, msgs, hist, cfg, hcfg.k, engine))
    return (kept, per_target, other), (by_cand, by_platform, by_split)


def examples_result(by_msg: pl.DataFrame, by_cand: pl.DataFrame, by_platform: pl.DataFrame,
                    by_split: pl.DataFrame, cfg: ExamplesConfig) -> StageResult:
    """The counts, from the engine's aggregates (small Polars frames). Two conservation laws
    hold: messages_in = target_messages + message drops (deleted/bot/system author,
    not_target, no_interlocutor) and candidates = rows_out + candidate drops (user_disjoint,
    cap_target, cap_pair, cap_author)."""
    n_msgs = int(by_msg["n"].sum())
    eligible = by_msg.filter(pl.col("_reason").is_null())
    targets = int(by_cand["targets"].sum())
    message_drops = {r: int(n) for r, n in by_msg.filter(pl.col("_reason").is_not_null())
                     .group_by("_reason").agg(pl.col("n").sum()).iter_rows()}
    message_drops["no_interlocutor"] = int(eligible["n"].sum()) - targets
    candidate_drops = {r: int(by_cand[r].sum()) for r in ("user_disjoint", *(c[0] for c in CAPS))
                       if r != "user_disjoint" or cfg.user_disjoint}
    candidates, rows = int(by_cand["candidates"].sum()), int(by_split["n"].sum())
    m = {p: int(n) for p, n in eligible.group_by(T.platform).agg(pl.col("n").sum()).iter_rows()}
    xt = {p: (int(x), int(t)) for p, x, t in by_platform.select(E.platform, "x", "t").iter_rows()}
    by_plat = {}
    for p in sorted(set(m) | set(xt)):
        x, t = xt.get(p, (0, 0))
        by_plat[p] = {"eligible_messages": m.get(p, 0), "examples": x, "blowup": round(x / t, 3) if t else 0.0}
    figures = {
        "messages_in": n_msgs,
        "target_messages": targets,
        "candidates": candidates,
        "blowup": round(rows / targets, 3) if targets else 0.0,
        "examples_per_message_in": round(rows / n_msgs, 3) if n_msgs else 0.0,
        "by_platform": by_plat,
        "by_split": dict(sorted((s, int(n)) for s, n in by_split.select(E.split, "n").iter_rows())),
    }
    return StageResult("examples", n_msgs, rows, {**message_drops, **candidate_drops}, figures=figures,
                       flows=(Flow("messages", n_msgs, targets, message_drops),
                              Flow("candidates", candidates, rows, candidate_drops)))


def build_examples(timeline, histories, cfg: ExamplesConfig = ExamplesConfig(),
                   hcfg: HistoryConfig = HistoryConfig(), engine=None):
    """Native `timeline` + `reading_histories` frames (Polars or Spark) in; (`pair_examples`,
    stats: the summary dict) out, on their engine. Polars gives a DataFrame sorted by
    (timeline_id, target_seq, other_id); Spark an unordered DataFrame with the same rows (checkpointed)."""
    from pipelines import engines

    engine = engine or engines.of(timeline)
    df, result = pair_examples(engines.frame(timeline), engines.frame(histories), cfg, hcfg, engine)
    out = df.to_native()
    if isinstance(out, pl.LazyFrame):
        out = out.sort(ORDER).collect()
    return out, result.summary()


# Examples assembled at a time by the Polars engine's write (bounds its memory: about 0.4 KB each).
WRITE_SLICE_ROWS = 262_144
# Messages per bucket of authors whose examples the Polars engine builds at a time (write_by_authors):
# what a bucket holds grows with its authors' messages, so the number of buckets grows with the input.
BUCKET_MESSAGES = 500_000


def write_sorted(kept: nw.LazyFrame, per_target: nw.LazyFrame, other: nw.LazyFrame, url: str, engine,
                 slice_rows: int = WRITE_SLICE_ROWS) -> None:
    """Polars: write the examples :func:`assemble` makes, in ``ORDER``, one slice at a time
    (:func:`sorted_slices`), never the whole table and a sorted copy of it."""
    from pipelines.core import storage

    storage.write_table(url, sorted_slices(kept, per_target, other, engine, slice_rows), schema=E)


def sorted_slices(kept: nw.LazyFrame, per_target: nw.LazyFrame, other: nw.LazyFrame, engine,
                  slice_rows: int = WRITE_SLICE_ROWS):
    """Polars: the examples :func:`assemble` makes, in ``ORDER``, as Arrow tables of ``slice_rows``.

    The kept candidates come in ``ORDER`` (a unique key; :func:`author_parts` sorts them on
    Polars) and are cut into slices of ``slice_rows``; each slice takes the per-target streams
    and interlocutor items of its targets (a range of (timeline_id, target_seq)), is assembled and
    sorted. The slices follow one another in ``ORDER``, so writing them gives the files of sorting the
    whole table, while only one slice's examples are held.
    """
    rows = kept.to_native().collect()
    pt, items = per_target.to_native(), other.to_native()

    def within(lo: tuple, hi: tuple) -> pl.Expr:  # (timeline_id, target_seq) in [lo, hi]
        tl, ts = pl.col(E.timeline_id), pl.col(E.target_seq)
        return (((tl > lo[0]) | ((tl == lo[0]) & (ts >= lo[1])))
                & ((tl < hi[0]) | ((tl == hi[0]) & (ts <= hi[1]))))

    for a in range(0, rows.height, slice_rows):
        part = rows.slice(a, slice_rows)
        keys = part.select(*PER_TARGET)
        lo, hi = keys.row(0), keys.row(part.height - 1)
        df = assemble(nw.from_native(part.lazy()), nw.from_native(pt.filter(within(lo, hi))),
                      nw.from_native(items.filter(within(lo, hi))), engine)
        yield df.to_native().sort(ORDER).collect().to_arrow()


def write_by_authors(msgs: nw.LazyFrame, hist: nw.LazyFrame, by_msg: pl.DataFrame, cfg: ExamplesConfig,
                     hcfg: HistoryConfig, url: str, engine, buckets: int) -> StageResult:
    """Polars: build and write the examples ``buckets`` groups of authors at a time; return the counts.

    Authors are cut by a hash of `author_id` (the histories of bucket j's authors, see
    :func:`author_parts`: each bucket's examples are exactly those of its authors). Each bucket's
    examples, in ``ORDER`` (:func:`sorted_slices`), are one run of the engine's ``write_runs``, merged
    on a number that sorts as (timeline_id, target_seq) do. A target's examples all come from its
    author's bucket, so rows with one key come from one run, already in ``ORDER``: the table is the
    one a single bucket writes, byte for byte. What is held is one bucket's parts, not the corpus's."""
    from pipelines.engines import to_polars
    from pipelines.stages.timeline import seq_key

    timelines = to_polars(msgs.select(T.timeline_id).unique())[T.timeline_id].to_list()
    counts = []

    def runs():
        for j in range(buckets):
            parts, c = author_parts(msgs, engine.in_bucket(hist, H.author_id, j, buckets), cfg, hcfg, engine)
            counts.append(c)
            yield sorted_slices(*parts, engine)

    engine.write_runs(url, E, runs(), seq_key(timelines, E.target_seq))
    by_cand = pl.concat([c[0] for c in counts])
    by_platform = pl.concat([c[1] for c in counts]).group_by(E.platform).agg(pl.col("x").sum(), pl.col("t").sum())
    by_split = pl.concat([c[2] for c in counts]).group_by(E.split).agg(pl.col("n").sum())
    return examples_result(by_msg, by_cand, by_platform, by_split, cfg)


def author_buckets(by_msg: pl.DataFrame, bucket_messages: int | None = None) -> int:
    """How many buckets of authors the Polars engine builds examples in: one per ``bucket_messages``
    messages (default :data:`BUCKET_MESSAGES`)."""
    return max(1, -(-int(by_msg["n"].sum()) // (bucket_messages or BUCKET_MESSAGES)))


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


def run(ctx, engine) -> StageResult:
    """Read `timeline` and `reading_histories`, write `pair_examples` sorted by (timeline_id,
    target_seq, other_id); return the counts."""
    cfg, hcfg = ctx.config.section(ExamplesConfig), ctx.config.section(HistoryConfig)
    timeline = engine.scan(ctx.config.table_url(T.name), T)
    histories = engine.scan(ctx.config.table_url(H.name), H)
    url = ctx.config.table_url(E.name)
    if engine.distributed:
        parts, result = example_parts(timeline, histories, cfg, hcfg, engine)
        engine.write(assemble(*parts, engine), url, E, order_by=ORDER)
        del parts
    else:  # a bucket of authors at a time, each a slice at a time (the kept candidates are in ORDER)
        msgs, hist, by_msg = prepared(timeline, histories, engine)
        buckets = author_buckets(by_msg)
        if buckets == 1:
            parts, counts = author_parts(msgs, hist, cfg, hcfg, engine)
            write_sorted(*parts, url, engine)
            result = examples_result(by_msg, *counts, cfg)
            del parts
        else:
            result = write_by_authors(msgs, hist, by_msg, cfg, hcfg, url, engine, buckets)
    ctx.log.info("examples: %d from %d target messages (blow-up %.2f)", result.rows_out,
                 result.figures["target_messages"], result.figures["blowup"])
    return result
