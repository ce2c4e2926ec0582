"""Pair examples on Spark: the side-by-side twin of pipelines/stages/examples.py, step for step
(:func:`message_table`, :func:`classify_messages`, :func:`candidate_pairs`, :func:`add_ids`,
:func:`assign_splits`, :func:`user_disjoint_mask`, :func:`apply_caps`, :func:`window_column`,
:func:`latest_before`, :func:`read_events`, :func:`other_stream`, :func:`gaps`,
:func:`build_examples`).

Every step is joins, windows and group-bys; no per-row Python. Hashes are Spark's
``sha1`` over the same UTF-8 strings as :func:`pipelines.stages.examples.sha1_hex`, and the
[0, 1) draw takes the same 13 hex digits, so ids, splits and caps are the Polars ones.
Inside the build an example is keyed by its `example_id` (unique), where Polars uses a row
index. :func:`latest_before` is an as-of join written as a window: example rows and stream
rows are merged per (timeline, user), ordered by seq, and each example row takes the rank
of the last stream row strictly before it; the k ranks below it are then joined back.
"""

from __future__ import annotations

from pipelines.stages.examples import PRIVATE_PLATFORMS, SPLITS, ExamplesConfig
from pipelines.stages.histories import HistoryConfig
from schemas import EXAMPLES as E
from schemas import HISTORIES as H
from schemas import TIMELINE as T

TRAIN, VALIDATION, TEST = SPLITS
_X = E.example_id  # the key of an example inside the build (Polars: a row index `_ex`)


def _F():
    from pyspark.sql import functions as F

    return F


def _empty_seqs():
    return _F().array().cast("array<bigint>")


def sha1_hex(col, salt: str = ""):
    """Hex SHA-1 of ``salt + value`` (UTF-8), as :func:`pipelines.stages.examples.sha1_hex`; null stays null."""
    F = _F()
    return F.sha1(F.concat(F.lit(salt), col)) if salt else F.sha1(col)


def unit_interval(hex_col):
    """The first 13 hex digits as a number in [0, 1) (52 bits, exact in a double)."""
    F = _F()
    return F.conv(F.substring(hex_col, 1, 13), 16, 10).cast("long").cast("double") / F.lit(float(16 ** 13))


def message_table(timeline):
    """The columns examples need, with `_t` (epoch seconds on wall timelines) and `_thread_gap`."""
    from pyspark.sql import Window

    F = _F()
    # Times 1e-6, not / 1e6: Polars turns a division by a literal into a multiplication by its
    # reciprocal, which rounds differently in the last bit; the gaps must be the same doubles.
    t = F.when(F.col(T.time_kind) == "wall", F.unix_micros(F.col(T.created_at)).cast("double") * F.lit(1.0 / 1e6))
    w = Window.partitionBy(T.timeline_id, T.thread_id).orderBy(T.seq)
    return (timeline.select(T.timeline_id, T.seq, T.message_id, T.platform, T.community, T.thread_id,
                            T.author_id, T.author_kind, T.is_target, T.created_at, T.time_kind, T.labels,
                            T.recipient_ids)
            .withColumn("_t", t)
            .withColumn("_thread_gap", F.col("_t") - F.lag("_t").over(w)))


def classify_messages(msgs):
    """Add `_reason` (null = the message can be a target), as the Polars rule."""
    F = _F()
    return msgs.withColumn(
        "_reason",
        F.when(F.col(T.author_id).isNull() | (F.col(T.author_kind) == "deleted"), F.lit("deleted_author"))
        .when(F.col(T.author_kind) == "bot", F.lit("bot_author"))
        .when(F.col(T.author_kind) == "system", F.lit("system_author"))
        .when(~F.col(T.is_target), F.lit("not_target")))


def candidate_pairs(msgs, hist):
    """(timeline_id, target_seq, other_id): distinct users b != a among the history's authors."""
    F = _F()
    targets = (msgs.filter(F.col("_reason").isNull())
               .join(hist.select(H.timeline_id, H.seq, H.read_seqs), [T.timeline_id, T.seq])
               .select(T.timeline_id, F.col(T.seq).alias(E.target_seq), F.col(T.author_id).alias("_self"),
                       F.explode(H.read_seqs).alias("_r")))
    authors = msgs.filter(F.col(T.author_id).isNotNull() & (F.col(T.author_kind) == "user")).select(
        T.timeline_id, F.col(T.seq).alias("_r"), F.col(T.author_id).alias(E.other_id))
    return (targets.join(authors, [T.timeline_id, "_r"]).filter(F.col(E.other_id) != F.col("_self"))
            .select(T.timeline_id, E.target_seq, E.other_id).distinct())


def add_ids(cands, msgs):
    """The target's columns and `example_id` = sha1(message_id \\x1f other_id)."""
    F = _F()
    tgt = msgs.select(T.timeline_id, F.col(T.seq).alias(E.target_seq), T.platform, T.community, T.thread_id,
                      F.col(T.message_id).alias(E.target_message_id), F.col(T.author_id).alias(E.self_id), T.labels)
    return (cands.join(tgt, [T.timeline_id, E.target_seq])
            .withColumn(E.example_id, sha1_hex(F.concat(F.col(E.target_message_id), F.lit("\x1f"),
                                                        F.col(E.other_id)))))


def assign_splits(df, msgs, cfg: ExamplesConfig):
    """`split` by a salted hash of the thread (and the temporal cut-off when set)."""
    F = _F()
    threads = df.select(T.thread_id).distinct().withColumn("_h", sha1_hex(F.col(T.thread_id), cfg.split_salt + "\x1f"))
    u = unit_interval(F.col("_h"))
    by_hash = (F.when(u < cfg.test_fraction, F.lit(TEST))
               .when(u < cfg.test_fraction + cfg.validation_fraction, F.lit(VALIDATION))
               .otherwise(F.lit(TRAIN)))
    cutoff = cfg.cutoff()
    if cutoff is not None:
        last = msgs.groupBy(T.thread_id).agg(F.max(T.created_at).alias("_last"))
        threads = threads.join(last, T.thread_id, "left")
        by_hash = (F.when(F.col("_last").isNull(), by_hash)
                   .when(F.col("_last") > F.lit(cutoff), F.lit(TEST))
                   .when(u < cfg.validation_fraction, F.lit(VALIDATION))
                   .otherwise(F.lit(TRAIN)))
    return df.join(threads.select(T.thread_id, by_hash.alias(E.split)), T.thread_id)


def user_disjoint_mask(df, cfg: ExamplesConfig):
    """`df` with `_keep`: the user-disjoint option's rule (see ExamplesConfig)."""
    F = _F()
    users = (df.select(F.col(E.self_id).alias("_u")).unionByName(df.select(F.col(E.other_id).alias("_u")))
             .distinct())
    held = users.select("_u", (unit_interval(sha1_hex(F.col("_u"), cfg.split_salt + "\x1fuser\x1f"))
                               < cfg.validation_fraction + cfg.test_fraction).alias("_held"))
    out = (df.join(held.select(F.col("_u").alias(E.self_id), F.col("_held").alias("_s")), E.self_id, "left")
           .join(held.select(F.col("_u").alias(E.other_id), F.col("_held").alias("_o")), E.other_id, "left"))
    keep = F.when(F.col(E.split) == TRAIN, ~F.col("_s") & ~F.col("_o")).otherwise(F.col("_s") & F.col("_o"))
    return out.withColumn("_keep", keep).drop("_s", "_o")


def apply_caps(df, cfg: ExamplesConfig):
    """At most `max_per_target` per target, then `max_per_pair` per ordered pair, then
    `max_per_author` per author, each time the lowest example_ids. Returns (kept rows, cached;
    drop counts; cached frames)."""
    from pyspark.sql import Window

    F = _F()
    dropped, cached = {}, []
    n = df.count()
    for reason, keys, cap in (("cap_target", [E.timeline_id, E.target_seq], cfg.max_per_target),
                              ("cap_pair", [E.self_id, E.other_id], cfg.max_per_pair),
                              ("cap_author", [E.self_id], cfg.max_per_author)):
        w = Window.partitionBy(*keys).orderBy(E.example_id)
        df = df.withColumn("_r", F.row_number().over(w)).filter(F.col("_r") <= cap).drop("_r").cache()
        cached.append(df)
        kept = df.count()
        dropped[reason] = n - kept
        n = kept
    return df, dropped, cached


def window_column(df, hist):
    """`window_seqs` = the reading history in time order, then the target; `_w0` its first seq."""
    F = _F()
    h = hist.select(F.col(H.timeline_id).alias(E.timeline_id), F.col(H.seq).alias(E.target_seq), H.read_seqs)
    return (df.join(h, [E.timeline_id, E.target_seq], "left")
            .withColumn(E.window_seqs, F.concat(F.sort_array(H.read_seqs), F.array(F.col(E.target_seq))))
            .withColumn("_w0", F.element_at(E.window_seqs, 1))
            .drop(H.read_seqs))


def latest_before(ex, stream, who: str, k: int):
    """(example_id, `_out`): the last k seqs of ``stream`` (timeline_id, `_who`, seq) by the user in
    column ``who`` of ``ex`` with seq < `_w0`, in time order; examples without any are absent.

    An as-of join as one window: example rows sort before stream rows of the same seq (strictly
    earlier), and take the rank of the last stream row before them.
    """
    from pyspark.sql import Window

    F = _F()
    rank_w = Window.partitionBy(T.timeline_id, "_who").orderBy(T.seq)
    ranked = stream.withColumn("_rank", F.row_number().over(rank_w) - 1)
    probes = ex.select(F.col(E.timeline_id).alias(T.timeline_id), F.col(who).alias("_who"),
                       F.col("_w0").alias(T.seq), F.lit(None).cast("long").alias("_rank"), F.col(_X), F.lit(0).alias("_o"))
    events = ranked.select(T.timeline_id, "_who", T.seq, "_rank", F.lit(None).cast("string").alias(_X),
                           F.lit(1).alias("_o")).unionByName(probes)
    before = (Window.partitionBy(T.timeline_id, "_who").orderBy(T.seq, "_o")
              .rowsBetween(Window.unboundedPreceding, -1))
    hit = (events.withColumn("_last", F.last("_rank", ignorenulls=True).over(before))
           .filter(F.col("_o") == 0).filter(F.col("_last").isNotNull())
           .select(_X, T.timeline_id, "_who",
                   F.explode(F.sequence(F.greatest(F.col("_last") - (k - 1), F.lit(0)), F.col("_last"))).alias("_rank")))
    return (hit.join(ranked.select(T.timeline_id, "_who", "_rank", T.seq), [T.timeline_id, "_who", "_rank"])
            .groupBy(_X).agg(F.sort_array(F.collect_list(T.seq)).alias("_out")))


def read_events(msgs, hist):
    """(timeline_id, `_reader`, `_writer`, `_read`, `_since`): what each author had read, since when."""
    F = _F()
    writers = msgs.filter(F.col(T.author_id).isNotNull()).select(
        T.timeline_id, F.col(T.seq).alias("_read"), F.col(T.author_id).alias("_writer"))
    return (hist.filter(F.col(H.author_id).isNotNull())
            .select(H.timeline_id, F.col(H.author_id).alias("_reader"), F.col(H.seq).alias("_at"),
                    F.explode(H.read_seqs).alias("_read"))
            .filter(F.col("_read").isNotNull())
            .join(writers, [T.timeline_id, "_read"])
            .filter(F.col("_writer") != F.col("_reader"))
            .groupBy(T.timeline_id, "_reader", "_writer", "_read").agg(F.min("_at").alias("_since")))


def other_stream(df, events, msgs, k: int, other_public: bool):
    """`other_seqs`: b's messages a had read before the target and before the window, latest k,
    time order; with `other_public`, b's public messages before the window join them."""
    from pyspark.sql import Window

    F = _F()
    if k == 0:
        return df.withColumn(E.other_seqs, _empty_seqs())
    ex = df.select(_X, E.timeline_id, E.self_id, E.other_id, E.target_seq, "_w0")
    ev = events.select(F.col(T.timeline_id).alias(E.timeline_id), F.col("_reader").alias(E.self_id),
                       F.col("_writer").alias(E.other_id), "_read", "_since")
    read = (ex.join(ev, [E.timeline_id, E.self_id, E.other_id])
            .filter((F.col("_since") < F.col(E.target_seq)) & (F.col("_read") < F.col("_w0")))
            .select(_X, F.col("_read").alias(T.seq)))
    if other_public:
        public = (msgs.filter(F.col(T.author_id).isNotNull() & ~F.col(T.platform).isin(*PRIVATE_PLATFORMS)
                              & (F.col(T.recipient_ids).isNull() | (F.size(T.recipient_ids) == 0)))
                  .select(T.timeline_id, F.col(T.author_id).alias("_who"), T.seq))
        pub = latest_before(ex, public, E.other_id, k)
        read = read.unionByName(pub.select(_X, F.explode("_out").alias(T.seq)))
    w = Window.partitionBy(_X).orderBy(F.col(T.seq).desc())
    got = (read.distinct().withColumn("_r", F.row_number().over(w)).filter(F.col("_r") <= k)
           .groupBy(_X).agg(F.sort_array(F.collect_list(T.seq)).alias(E.other_seqs)))
    return (df.join(got, _X, "left")
            .withColumn(E.other_seqs, F.coalesce(F.col(E.other_seqs), _empty_seqs())))


def gaps(df, msgs, seqs_col: str, out_col: str):
    """`out_col`: seconds before each message of `seqs_col` (see :func:`pipelines.stages.examples.gaps`);
    an empty list on the wall timeline when `seqs_col` is empty, null on ordinal timelines."""
    from pyspark.sql import Window

    F = _F()
    times = msgs.select(F.col(T.timeline_id).alias(E.timeline_id), F.col(T.seq).alias("_s"), "_t", "_thread_gap")
    w = Window.partitionBy(_X).orderBy("_pos")
    long = (df.select(_X, E.timeline_id, F.posexplode(seqs_col).alias("_pos", "_s"))
            .join(times, [E.timeline_id, "_s"], "left")
            .withColumn("_g", F.when(F.col("_pos") == 0, F.col("_thread_gap"))
                        .otherwise(F.col("_t") - F.lag("_t").over(w)))
            .groupBy(_X).agg(F.sort_array(F.collect_list(F.struct("_pos", "_g"))).alias("_l"))
            .select(_X, F.transform("_l", lambda x: x["_g"]).alias(out_col)))
    wall = F.col(E.timeline_id) == "wall"
    return (df.join(long, _X, "left")
            .withColumn(out_col, F.when(wall, F.coalesce(F.col(out_col), F.array().cast("array<double>")))))


def build_examples(timeline, histories, cfg: ExamplesConfig = ExamplesConfig(), hcfg: HistoryConfig = HistoryConfig()):
    """Spark `timeline` + `reading_histories` in; (`pair_examples` rows, cached; stats; cached frames
    to unpersist) out. Same rows and counts as :func:`pipelines.stages.examples.build_examples`;
    unordered (the writer sorts by timeline_id, target_seq, other_id)."""
    F = _F()
    msgs = classify_messages(message_table(timeline)).cache()
    hist = histories.select(H.timeline_id, H.seq, H.author_id, H.read_seqs)
    cands = candidate_pairs(msgs, hist).cache()
    cached = [msgs, cands]
    reasons = msgs.groupBy("_reason").count().collect()
    dropped = {r[0]: int(r[1]) for r in reasons if r[0] is not None}
    n_msgs = sum(int(r[1]) for r in reasons)
    eligible = sum(int(r[1]) for r in reasons if r[0] is None)
    n_cands = cands.count()
    targets_with_pairs = cands.select(T.timeline_id, E.target_seq).distinct().count()
    dropped["no_interlocutor"] = eligible - targets_with_pairs

    df = assign_splits(add_ids(cands, msgs), msgs, cfg)
    if cfg.user_disjoint:
        df = user_disjoint_mask(df, cfg).cache()
        cached.append(df)
        dropped["user_disjoint"] = df.filter(~F.col("_keep")).count()
        df = df.filter(F.col("_keep")).drop("_keep")
    df, cap_drops, cap_cached = apply_caps(df, cfg)
    cached += cap_cached
    dropped.update(cap_drops)

    df = window_column(df, hist)
    own = msgs.filter(F.col(T.author_id).isNotNull()).select(T.timeline_id, F.col(T.author_id).alias("_who"), T.seq)
    mine = latest_before(df, own, E.self_id, hcfg.k) if hcfg.k else None
    df = (df.join(mine.withColumnRenamed("_out", E.own_seqs), _X, "left") if mine is not None
          else df.withColumn(E.own_seqs, F.lit(None).cast("array<bigint>")))
    df = df.withColumn(E.own_seqs, F.coalesce(F.col(E.own_seqs), _empty_seqs()))
    df = other_stream(df, read_events(msgs, hist), msgs, hcfg.k, cfg.other_public)
    for seqs_col, gap_col in ((E.window_seqs, E.window_gaps), (E.own_seqs, E.own_gaps),
                              (E.other_seqs, E.other_gaps)):
        df = gaps(df, msgs, seqs_col, gap_col)
    out = df.select(*E.names).cache()
    cached.append(out)
    stats = examples_stats(msgs, out, n_msgs, n_cands, targets_with_pairs, dropped)
    return out, stats, cached


def examples_stats(msgs, df, n_msgs: int, candidates: int, targets: int, dropped: dict) -> dict:
    """The counts of :func:`pipelines.stages.examples.examples_stats`, computed in Spark."""
    F = _F()
    m = {r[0]: int(r[1]) for r in msgs.filter(F.col("_reason").isNull()).groupBy(T.platform).count().collect()}
    xt = {r[0]: (int(r[1]), int(r[2])) for r in df.groupBy(E.platform).agg(
        F.count(F.lit(1)), F.countDistinct(E.target_message_id)).collect()}
    by_platform = {}
    for p in sorted(set(m) | set(xt)):
        x, t = xt.get(p, (0, 0))
        by_platform[p] = {"eligible_messages": m.get(p, 0), "examples": x, "blowup": round(x / t, 3) if t else 0.0}
    splits = sorted((r[0], int(r[1])) for r in df.groupBy(E.split).count().collect())
    rows = sum(c for _, c in splits)
    return {
        "rows_in": n_msgs,
        "rows_out": rows,
        "messages_in": n_msgs,
        "target_messages": targets,
        "candidates": candidates,
        "blowup": round(rows / targets, 3) if targets else 0.0,
        "examples_per_message_in": round(rows / n_msgs, 3) if n_msgs else 0.0,
        "dropped_by_reason": dict(sorted(dropped.items())),
        "by_platform": by_platform,
        "by_split": dict(splits),
    }


def run(ctx, spark) -> dict:
    """Read `timeline` and `reading_histories`, write `pair_examples` sorted by (timeline_id,
    target_seq, other_id); return the counts."""
    from pipelines.engines.spark import read_table, write_table

    F = _F()
    cfg, hcfg = ctx.config.section("examples"), ctx.config.section("history")
    out, stats, cached = build_examples(read_table(spark, ctx.config.table_url(T.name), T),
                                        read_table(spark, ctx.config.table_url(H.name), H), cfg, hcfg)
    try:
        write_table(out, ctx.config.table_url(E.name), E,
                    order_by=[F.col(E.timeline_id), F.col(E.target_seq), F.col(E.other_id)])
    finally:
        for c in cached:
            c.unpersist()
    ctx.log.info("examples (spark): %d from %d target messages (blow-up %.2f)", stats["rows_out"],
                 stats["target_messages"], stats["blowup"])
    return stats
