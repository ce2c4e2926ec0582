"""Pair examples on generated threads with known answers: who pairs with whom, the three
streams, gaps, caps, splits and the counts."""

import hashlib
import json

import narwhals as nw
import polars as pl
import pytest

from pipelines.stages.examples import ExamplesConfig, build_examples, check_split_leakage
from pipelines.stages.histories import HistoryConfig, build_histories
from pipelines.stages.timeline import build_timeline
from schemas import DEDUP as D
from schemas import EXAMPLES as E
from test_timeline import at, dedup_frame, diplomacy_games, irc_channel, mixed_corpus, reddit_tree


def examples_of(dedup: pl.DataFrame, cfg: ExamplesConfig = ExamplesConfig(), **hist):
    hcfg = HistoryConfig(**hist)
    tl, _ = build_timeline(dedup.lazy())
    h, _ = build_histories(tl.lazy(), hcfg)
    ex, stats = build_examples(tl.lazy(), h.lazy(), cfg, hcfg)
    mid = {(r[0], r[1]): r[2] for r in tl.select(E.timeline_id, "seq", "message_id").iter_rows()}
    return ex, stats, mid


def by_target(ex, mid):
    """{(target message_id, other_id): row with seq lists turned into message ids}."""
    out = {}
    for r in ex.iter_rows(named=True):
        tl = r[E.timeline_id]
        for c in (E.window_seqs, E.own_seqs, E.other_seqs):
            r[c] = [mid[(tl, s)] for s in r[c]]
        out[(r[E.target_message_id], r[E.other_id])] = r
    return out


@pytest.fixture(scope="module")
def reddit():
    ex, stats, mid = examples_of(reddit_tree())
    return ex, stats, by_target(ex, mid)


def test_one_example_per_interlocutor_in_the_reading_history(reddit):
    _, _, x = reddit
    # c6 (u3) read c1 (u2), S (u1) and c2 (u1): two interlocutors.
    assert {o for (t, o) in x if t == "reddit:t1_c6"} == {"u1", "u2"}
    # c4 (u2) read c2 (u1), c1 (u2, itself) and S (u1): only u1.
    assert {o for (t, o) in x if t == "reddit:t1_c4"} == {"u1"}


def test_window_is_the_history_in_time_order_then_the_target(reddit):
    _, _, x = reddit
    assert x[("reddit:t1_c6", "u1")][E.window_seqs] == ["reddit:t3_s", "reddit:t1_c1", "reddit:t1_c2", "reddit:t1_c6"]


def test_gaps_are_seconds_since_the_previous_stream_message(reddit):
    _, _, x = reddit
    # S opens the thread (no gap), c1 one minute later, c2 one more, c6 four more.
    assert x[("reddit:t1_c6", "u1")][E.window_gaps] == [None, 60.0, 60.0, 240.0]


def test_example_id_is_sha1_of_target_and_interlocutor(reddit):
    _, _, x = reddit
    row = x[("reddit:t1_c6", "u1")]
    assert row[E.example_id] == hashlib.sha1("reddit:t1_c6\x1fu1".encode()).hexdigest()


def test_reply_to_a_missing_parent_has_no_interlocutor(reddit):
    _, stats, x = reddit
    assert not any(t == "reddit:t1_c5" for t, _ in x)
    # S opens the thread and c5 answers a missing parent: nothing read.
    assert stats["dropped_by_reason"]["no_interlocutor"] == 2


def test_counts_add_up(reddit):
    ex, stats, _ = reddit
    d = stats["dropped_by_reason"]
    message_drops = sum(d.get(r, 0) for r in ("deleted_author", "bot_author", "system_author",
                                              "not_target", "no_interlocutor"))
    cand_drops = sum(d.get(r, 0) for r in ("user_disjoint", "cap_target", "cap_pair", "cap_author"))
    assert stats["messages_in"] == stats["target_messages"] + message_drops
    assert stats["candidates"] == stats["rows_out"] + cand_drops == ex.height + cand_drops
    assert stats["blowup"] == round(ex.height / stats["target_messages"], 3)


def test_deleted_bot_and_near_dup_messages_are_context_but_never_targets():
    th = "slack:c"
    rows = [{D.message_id: f"slack:{i}", D.platform: "slack", D.thread_id: th, D.author_id: a,
             D.author_kind: kind, D.created_at: at(i), D.is_target: target}
            for i, (a, kind, target) in enumerate([
                ("a", "user", True), (None, "deleted", True), ("bot", "bot", True),
                ("b", "user", False), ("a", "user", True)])]
    ex, stats, mid = examples_of(dedup_frame(rows))
    x = by_target(ex, mid)
    assert set(x) == {("slack:4", "b")}  # the bot is context, not an interlocutor
    assert x[("slack:4", "b")][E.window_seqs] == [f"slack:{i}" for i in range(5)]
    d = stats["dropped_by_reason"]
    assert (d["deleted_author"], d["bot_author"], d["not_target"]) == (1, 1, 1)


def test_own_stream_stops_before_the_window_and_is_in_time_order():
    ex, _, mid = examples_of(irc_channel(), n=2, k=2)
    x = by_target(ex, mid)
    # l6 (alice, renamed) reads l5, l4 (its own): window starts at l4.
    row = x[("irc:l6", "irc:bob")]
    assert row[E.window_seqs] == ["irc:l4", "irc:l5", "irc:l6"]
    assert row[E.own_seqs] == ["irc:l0", "irc:l2"]  # across the rename, before the window
    assert row[E.own_gaps] == [None, 0.0]


def test_other_stream_is_what_the_author_had_read_before_the_window():
    ex, _, mid = examples_of(diplomacy_games(), n=1)
    x = by_target(ex, mid)
    row = x[("diplomacy:g1:7", "g1:france")]
    assert row[E.window_seqs] == ["diplomacy:g1:5", "diplomacy:g1:7"]
    # England read france's message 1 when writing 4 (history n=1); 5 is in the window.
    assert row[E.other_seqs] == ["diplomacy:g1:1"]
    assert row[E.own_seqs] == ["diplomacy:g1:0", "diplomacy:g1:2", "diplomacy:g1:4"]
    assert row[E.window_gaps] is None and row[E.other_gaps] is None  # ordinal: no clock


def test_other_public_adds_the_interlocutors_public_messages():
    # u2 also posted in another thread that u1 never read.
    extra = dedup_frame([{D.message_id: "reddit:t1_elsewhere", D.thread_id: "reddit:t3_other",
                          D.author_id: "u2", D.created_at: at(-30), D.parent_id: "reddit:t3_other"}])
    corpus = pl.concat([reddit_tree(), extra])
    ex, _, mid = examples_of(corpus, n=1)
    assert by_target(ex, mid)[("reddit:t1_c2", "u2")][E.other_seqs] == []
    ex, _, mid = examples_of(corpus, ExamplesConfig(other_public=True), n=1)
    assert by_target(ex, mid)[("reddit:t1_c2", "u2")][E.other_seqs] == ["reddit:t1_elsewhere"]


def test_other_public_never_adds_private_dialog_messages():
    ex, _, mid = examples_of(diplomacy_games(), ExamplesConfig(other_public=True), n=1)
    row = by_target(ex, mid)[("diplomacy:g1:7", "g1:france")]
    assert row[E.other_seqs] == ["diplomacy:g1:1"]


def test_diplomacy_pairs_only_the_two_powers_of_a_dialog_and_labels_travel():
    ex, _, _ = examples_of(diplomacy_games())
    for r in ex.iter_rows(named=True):
        powers = {f"{r[E.community]}:{p}" for p in r[E.thread_id].rsplit(":", 1)[1].split("-")}
        assert {r[E.self_id], r[E.other_id]} == powers
    lab = ex.filter(pl.col(E.target_message_id) == "diplomacy:g1:3")[E.labels].to_list()
    assert [json.loads(v) for v in lab] == [{"sender_truthful": False}]


def test_caps_keep_the_lowest_example_ids_whatever_the_input_order():
    cfg = ExamplesConfig(max_per_target=1, max_per_pair=2, max_per_author=3)
    ex, stats, _ = examples_of(mixed_corpus(), cfg)
    assert ex.group_by(E.timeline_id, E.target_seq).len()["len"].max() == 1
    assert ex.group_by(E.self_id, E.other_id).len()["len"].max() <= 2
    assert ex.group_by(E.self_id).len()["len"].max() <= 3
    full, _, _ = examples_of(mixed_corpus())
    kept_per_target = full.sort(E.example_id).group_by(E.timeline_id, E.target_seq, maintain_order=True).first()
    assert set(ex[E.example_id]) <= set(kept_per_target[E.example_id])
    d = stats["dropped_by_reason"]
    assert d["cap_target"] + d["cap_pair"] + d["cap_author"] == stats["candidates"] - ex.height > 0
    again, _, _ = examples_of(mixed_corpus().sample(fraction=1.0, shuffle=True, seed=7), cfg)
    assert again.equals(ex)


def test_threads_never_cross_splits():
    cfg = ExamplesConfig(validation_fraction=0.3, test_fraction=0.3)
    ex, stats, _ = examples_of(mixed_corpus(), cfg)
    assert check_split_leakage(ex).passed
    assert set(ex[E.split]) <= {"train", "validation", "test"}
    broken = ex.with_columns(pl.when(pl.col(E.target_seq) == ex[E.target_seq][0]).then(pl.lit("test"))
                             .otherwise(pl.lit("train")).alias(E.split))
    assert not check_split_leakage(broken).passed


def test_split_follows_the_salted_thread_hash():
    salts = {ExamplesConfig(split_salt=s, validation_fraction=0.3, test_fraction=0.3) for s in ("a", "b", "c", "d")}
    outcomes = set()
    for cfg in salts:
        ex, _, _ = examples_of(mixed_corpus(), cfg)
        outcomes.add(tuple(ex.group_by(E.thread_id).agg(pl.col(E.split).first()).sort(E.thread_id)[E.split]))
    assert len(outcomes) > 1  # the salt changes the draw


def test_temporal_cutoff_puts_threads_with_later_messages_in_test():
    day2 = dedup_frame([{D.message_id: f"reddit:t1_d{i}", D.thread_id: "reddit:t3_day2", D.author_id: a,
                         D.created_at: at(24 * 60 + i), D.parent_id: p}
                        for i, (a, p) in enumerate([("x", None), ("y", "reddit:t1_d0"), ("x", "reddit:t1_d1")])])
    corpus = pl.concat([reddit_tree(), day2, diplomacy_games()])
    cfg = ExamplesConfig(temporal_cutoff="2013-01-02", validation_fraction=0.0, test_fraction=0.0)
    ex, _, _ = examples_of(corpus, cfg)
    split = dict(ex.group_by(E.thread_id).agg(pl.col(E.split).first()).iter_rows())
    assert split["reddit:t3_day2"] == "test"
    assert split["reddit:t3_s"] == "train"
    assert {v for k, v in split.items() if k.startswith("diplomacy")} == {"train"}  # no dates: hash split


def test_user_disjoint_keeps_train_and_evaluation_users_apart():
    cfg = ExamplesConfig(user_disjoint=True, validation_fraction=0.25, test_fraction=0.25, split_salt="ud")
    ex, stats, _ = examples_of(mixed_corpus(), cfg)
    train = ex.filter(pl.col(E.split) == "train")
    held = ex.filter(pl.col(E.split) != "train")
    users = lambda df: set(df[E.self_id]) | set(df[E.other_id])
    assert not users(train) & users(held)
    assert stats["dropped_by_reason"]["user_disjoint"] > 0
    assert check_split_leakage(ex).passed


def test_examples_conform_to_schema_and_sit_on_one_timeline():
    ex, _, _ = examples_of(mixed_corpus())
    assert E.conform(ex.to_arrow()).schema == E.arrow
    for r in ex.iter_rows(named=True):
        assert r[E.window_seqs][-1] == r[E.target_seq]
        first = r[E.window_seqs][0]
        assert all(s < first for s in r[E.own_seqs] + r[E.other_seqs])
        assert r[E.window_seqs] == sorted(r[E.window_seqs])


@pytest.mark.parametrize("bad, match", [
    ({"max_per_target": 0}, "max_per_target"), ({"test_fraction": 1.5}, "test_fraction"),
    ({"validation_fraction": 0.6, "test_fraction": 0.5}, "below 1"), ({"temporal_cutoff": "yesterday"}, "ISO"),
    ({"user_disjoint": "yes"}, "user_disjoint"), ({"split_salt": ""}, "split_salt")])
def test_examples_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        ExamplesConfig(**bad)


# ---------------------------------------------------------------------------- real samples

from test_timeline import real_run  # noqa: E402,F401  (module fixture: the real samples, built once)


def test_real_examples_never_leak_a_thread_across_splits(real_run):
    ex = real_run["tables"]["pair_examples"]
    assert ex.height > 1000
    assert check_split_leakage(ex).passed
    assert set(ex[E.split]) == {"train", "validation", "test"}


def test_real_diplomacy_examples_pair_only_the_two_powers_of_their_dialog(real_run):
    tl, ex = real_run["tables"]["timeline"], real_run["tables"]["pair_examples"]
    powers = (tl.filter(pl.col(D.platform) == "diplomacy").group_by(D.thread_id)
              .agg(pl.col(D.author_id).unique().sort().alias("powers")))
    assert powers["powers"].list.len().max() == 2
    dip = ex.filter(pl.col(E.platform) == "diplomacy").join(powers, on=E.thread_id)
    assert dip.height > 10_000
    pair = pl.concat_list(E.self_id, E.other_id).list.sort()
    assert dip.filter(pair != pl.col("powers")).height == 0
    assert dip[E.labels].is_not_null().sum() > 0  # deception labels travel with the target
    assert dip[E.window_gaps].is_null().all()


def test_real_perspective_is_always_a_user_target(real_run):
    tl, ex = real_run["tables"]["timeline"], real_run["tables"]["pair_examples"]
    tgt = ex.join(tl.select(pl.col(D.message_id).alias(E.target_message_id), D.author_kind, D.is_target,
                            D.author_id), on=E.target_message_id)
    assert (tgt[D.author_kind] == "user").all() and tgt[D.is_target].all()
    assert (tgt[D.author_id] == tgt[E.self_id]).all()
    # c1976's history holds only [deleted] authors and its own author: no example.
    assert ex.filter(pl.col(E.target_message_id) == "reddit:t1_c1976").height == 0


def test_real_streams_stop_before_the_window_and_counts_add_up(real_run):
    ex, s = real_run["tables"]["pair_examples"], real_run["summary"]["examples"]
    first = pl.col(E.window_seqs).list.first()
    assert ex.filter((pl.col(E.own_seqs).list.max() >= first) | (pl.col(E.other_seqs).list.max() >= first)).height == 0
    assert (ex[E.window_seqs].list.last() == ex[E.target_seq]).all()
    d = s["dropped_by_reason"]
    assert s["candidates"] == s["rows_out"] + sum(d.get(r, 0) for r in ("user_disjoint", "cap_target", "cap_pair",
                                                                         "cap_author"))
    assert s["messages_in"] == s["target_messages"] + sum(
        d.get(r, 0) for r in ("deleted_author", "bot_author", "system_author", "not_target", "no_interlocutor"))
    # Blow-up is bounded by the per-target cap on every platform.
    assert all(p["blowup"] <= ExamplesConfig().max_per_target for p in s["by_platform"].values())
    assert s["by_platform"]["diplomacy"]["blowup"] == 1.0  # one interlocutor per dialog message


def test_empty_corpus_gives_empty_tables_with_every_option():
    cfg = ExamplesConfig(other_public=True, user_disjoint=True, temporal_cutoff="2013-01-01")
    ex, stats, _ = examples_of(dedup_frame([]), cfg)
    assert ex.height == 0 and stats["blowup"] == 0.0
    assert E.conform(ex.to_arrow()).schema == E.arrow


# ---------------------------------------------------------------------------- the rules as written once

def test_below_is_the_unit_interval_draw_below_a_fraction():
    """`below` compares hex strings; it must decide exactly u < f for u = int(first 13 hex digits) / 16**13."""
    import random

    from pipelines.stages.examples import below

    rnd = random.Random(3)
    digests = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(2000)]
    digests += ["0" * 40, "f" * 40, "19999999999998" + "0" * 26, "1999999999999a" + "0" * 26]
    fractions = [0.0, 0.05, 0.1, 0.3, 0.5, 0.95, 1 - 2 ** -53, *(rnd.random() for _ in range(20))]
    fractions += [int(d[:13], 16) / 16 ** 13 for d in digests[:20]]  # draws exactly on the bound
    df = nw.from_native(pl.DataFrame({"h": digests}))
    for f in fractions:  # 1 - 2**-53: the bound rounds up to 16**13, every draw is below
        got = df.with_columns(below("h", f).alias("b")).get_column("b").to_list()
        assert got == [int(d[:13], 16) / 16 ** 13 < f for d in digests], f


def test_stage_result_conserves_both_flows_with_every_drop():
    from pipelines import engines
    from pipelines.stages.examples import pair_examples

    cfg = ExamplesConfig(user_disjoint=True, validation_fraction=0.25, test_fraction=0.25, split_salt="ud",
                         max_per_target=1, max_per_pair=2, max_per_author=3)
    hcfg = HistoryConfig()
    tl, _ = build_timeline(mixed_corpus().lazy())
    h, _ = build_histories(tl.lazy(), hcfg)
    df, result = pair_examples(engines.frame(tl), engines.frame(h), cfg, hcfg, engines.of(tl))
    assert result.conservation().passed, result.conservation().description
    assert [f.name for f in result.laws()] == ["messages", "candidates"]
    assert result.rows_out == engines.to_polars(df).height > 0
    assert set(result.laws()[1].dropped_by_reason) == {"user_disjoint", "cap_target", "cap_pair", "cap_author"}
    assert result.summary() == examples_of(mixed_corpus(), cfg)[1]
