"""Reading histories on generated threads with known answers (tree, linear, ordinal)."""

import polars as pl
import pytest

from pipelines.stages.histories import HistoryConfig, build_histories, check_causal
from pipelines.stages.timeline import build_timeline
from schemas import HISTORIES as H
from test_timeline import dedup_frame, at, diplomacy_games, irc_channel, mixed_corpus, reddit_tree
from schemas import DEDUP as D


def histories_of(dedup: pl.DataFrame, **cfg):
    tl, _ = build_timeline(dedup.lazy())
    hist, stats = build_histories(tl.lazy(), HistoryConfig(**cfg))
    ids = dict(zip(tl[H.seq].to_list(), tl[H.message_id].to_list()))  # one timeline per fixture used here
    named = {r[H.message_id]: r for r in hist.iter_rows(named=True)}
    return hist, stats, named, ids


def names(row, col, ids):
    return [ids[s] for s in row[col]]


@pytest.fixture(scope="module")
def reddit():
    return histories_of(reddit_tree())


def test_tree_history_is_ancestors_nearest_first(reddit):
    _, _, h, ids = reddit
    assert h["reddit:t1_c4"][H.structure] == "tree"
    assert names(h["reddit:t1_c4"], H.read_seqs, ids) == ["reddit:t1_c2", "reddit:t1_c1", "reddit:t3_s"]


def test_tree_history_adds_latest_earlier_siblings_after_ancestors(reddit):
    _, _, h, ids = reddit
    assert names(h["reddit:t1_c6"], H.read_seqs, ids) == ["reddit:t1_c1", "reddit:t3_s", "reddit:t1_c2"]
    assert names(h["reddit:t1_c3"], H.read_seqs, ids) == ["reddit:t3_s", "reddit:t1_c1"]


def test_tree_history_is_cut_at_n():
    _, _, h, ids = histories_of(reddit_tree(), n=2)
    assert names(h["reddit:t1_c4"], H.read_seqs, ids) == ["reddit:t1_c2", "reddit:t1_c1"]
    assert names(h["reddit:t1_c6"], H.read_seqs, ids) == ["reddit:t1_c1", "reddit:t3_s"]


def test_reply_to_a_missing_parent_reads_nothing_before_it(reddit):
    _, _, h, _ = reddit
    assert h["reddit:t1_c5"][H.structure] == "tree" and h["reddit:t1_c5"][H.read_seqs] == []


def test_root_post_is_linear_with_nothing_before(reddit):
    _, _, h, _ = reddit
    assert h["reddit:t3_s"][H.structure] == "linear" and h["reddit:t3_s"][H.read_seqs] == []


def test_own_history_is_the_authors_previous_messages_most_recent_first(reddit):
    _, _, h, ids = reddit
    assert names(h["reddit:t1_c4"], H.own_seqs, ids) == ["reddit:t1_c1"]
    assert names(h["reddit:t1_c2"], H.own_seqs, ids) == ["reddit:t3_s"]


def test_own_history_is_cut_at_k():
    _, _, h, ids = histories_of(irc_channel(), k=1)
    assert names(h["irc:l6"], H.own_seqs, ids) == ["irc:l4"]
    _, _, h, _ = histories_of(irc_channel(), k=0)
    assert h["irc:l6"][H.own_seqs] == []


def test_linear_history_is_previous_n_in_thread_and_ignores_inferred_links():
    _, _, h, ids = histories_of(irc_channel(), n=3)
    assert h["irc:l4"][H.structure] == "linear"
    assert names(h["irc:l4"], H.read_seqs, ids) == ["irc:l3", "irc:l2", "irc:l1"]


def test_irc_rename_keeps_one_author_in_own_history():
    _, _, h, ids = histories_of(irc_channel())
    # l4 and l6 are written as alice_away, l0 and l2 as alice: one author_id.
    assert names(h["irc:l6"], H.own_seqs, ids) == ["irc:l4", "irc:l2", "irc:l0"]


def test_diplomacy_dialog_history_stays_in_its_dialog():
    tl, _ = build_timeline(diplomacy_games().lazy())
    hist, _ = build_histories(tl.lazy(), HistoryConfig())
    key = {(r[H.timeline_id], r[H.seq]): r[H.message_id] for r in tl.iter_rows(named=True)}
    h = {r[H.message_id]: r for r in hist.iter_rows(named=True)}
    row = h["diplomacy:g1:7"]  # england -> france, after interleaved england-germany messages
    assert [key[(row[H.timeline_id], s)] for s in row[H.read_seqs]] == [
        "diplomacy:g1:5", "diplomacy:g1:4", "diplomacy:g1:1", "diplomacy:g1:0"]
    # Own history spans both of england's dialogs, but only within game g1.
    assert [key[(row[H.timeline_id], s)] for s in row[H.own_seqs]] == [
        "diplomacy:g1:6", "diplomacy:g1:4", "diplomacy:g1:2", "diplomacy:g1:0"]
    assert h["diplomacy:g2:2"][H.timeline_id] == "ordinal:g2"
    assert len(h["diplomacy:g2:2"][H.own_seqs]) == 1


def test_discord_reply_is_tree_and_plain_message_is_linear():
    th = "discord:chan"
    rows = [{D.message_id: f"discord:{i}", D.platform: "discord", D.thread_id: th, D.author_id: a,
             D.created_at: at(i), D.parent_id: p} for i, (a, p) in
            enumerate([("a", None), ("b", None), ("c", None), ("a", "discord:0")])]
    _, _, h, ids = histories_of(dedup_frame(rows))
    assert h["discord:2"][H.structure] == "linear"
    assert names(h["discord:2"], H.read_seqs, ids) == ["discord:1", "discord:0"]
    assert h["discord:3"][H.structure] == "tree"
    assert names(h["discord:3"], H.read_seqs, ids) == ["discord:0"]


def test_parent_later_than_child_is_not_read():
    # Clock skew: the reply is stamped before its parent. The parent is later on the
    # timeline, so it cannot be in the reply's history.
    rows = [{D.message_id: "reddit:t1_p", D.thread_id: "t", D.author_id: "a", D.created_at: at(5)},
            {D.message_id: "reddit:t1_r", D.thread_id: "t", D.author_id: "b", D.created_at: at(1),
             D.parent_id: "reddit:t1_p"}]
    hist, _, h, _ = histories_of(dedup_frame(rows))
    assert h["reddit:t1_r"][H.read_seqs] == []
    assert check_causal(hist).passed


def test_cyclic_parent_links_never_repeat_or_look_ahead():
    rows = [{D.message_id: "x:a", D.thread_id: "t", D.author_id: "a", D.created_at: at(0), D.parent_id: "x:b"},
            {D.message_id: "x:b", D.thread_id: "t", D.author_id: "b", D.created_at: at(1), D.parent_id: "x:a"}]
    hist, _, h, ids = histories_of(dedup_frame(rows))
    assert names(h["x:b"], H.read_seqs, ids) == ["x:a"]
    assert check_causal(hist).passed


def test_every_history_is_causal_on_the_mixed_corpus():
    tl, _ = build_timeline(mixed_corpus().lazy())
    hist, stats = build_histories(tl.lazy(), HistoryConfig(n=10, k=20))
    assert hist.height == tl.height == stats["rows_out"]
    assert check_causal(hist).passed


def test_check_causal_catches_a_future_reference(reddit):
    hist = reddit[0]
    broken = hist.with_columns(pl.when(pl.col(H.seq) == 1).then(pl.lit([5], dtype=pl.List(pl.Int64)))
                               .otherwise(pl.col(H.read_seqs)).alias(H.read_seqs))
    res = check_causal(broken)
    assert not res.passed and res.failed_rows == 1


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": 11}, {"k": -1}, {"n": "5"}])
def test_history_config_rejects_out_of_range_values(bad):
    with pytest.raises(ValueError, match="history"):
        HistoryConfig(**bad)


# ---------------------------------------------------------------------------- real samples

from test_timeline import real_run  # noqa: E402,F401  (module fixture: the real samples, built once)


@pytest.fixture(scope="module")
def real_named(real_run):
    tl, hist = real_run["tables"]["timeline"], real_run["tables"]["reading_histories"]
    ids = {(t, s): m for t, s, m in tl.select(H.timeline_id, H.seq, H.message_id).iter_rows()}
    rows = {r[H.message_id]: r for r in hist.iter_rows(named=True)}

    def read(message_id, col=H.read_seqs):
        r = rows[message_id]
        return [ids[(r[H.timeline_id], s)] for s in r[col]]
    return read, rows, tl


def test_real_histories_are_causal_over_the_whole_corpus(real_run):
    hist, tl = real_run["tables"]["reading_histories"], real_run["tables"]["timeline"]
    assert hist.height == tl.height
    res = check_causal(hist)
    assert res.passed, res.description
    s = real_run["summary"]["histories"]
    assert s["by_structure"]["tree"] > 0 and s["by_structure"]["linear"] > 0


def test_real_reddit_thread_ancestors_match_the_dump(real_named):
    read, _, _ = real_named
    # RC_2005-12.zst, thread t3_21259 (checked by hand in the decompressed dump):
    # c1946 -> t3_21259 (not archived); c1947 -> c1946; c1974 -> c1947; c1976 -> c1974;
    # c1949 -> t3_21259; c1957 -> c1949; c1960 -> c1957; c1991 -> c1949 (after c1957).
    assert read("reddit:t1_c1976") == ["reddit:t1_c1974", "reddit:t1_c1947", "reddit:t1_c1946"]
    assert read("reddit:t1_c1960") == ["reddit:t1_c1957", "reddit:t1_c1949"]
    assert read("reddit:t1_c1991") == ["reddit:t1_c1949", "reddit:t1_c1957"]


def test_real_stackexchange_question_ancestors_match_the_dump(real_named):
    read, _, _ = real_named
    q = "stackexchange:stackexchange:"
    # Posts.xml: question 108, answers 136 and 137 (ParentId 108). Comments.xml: 165, 166,
    # 179 on post 108; 180 and 181 on answer 137, in that time order.
    assert read(q + "c181") == [q + "p137", q + "p108", q + "c180"]
    assert read(q + "p136") == [q + "p108", q + "c166", q + "c165"]
    assert read(q + "p108") == []


def test_real_irc_rename_is_one_author_in_own_history(real_named):
    read, rows, _ = real_named
    chan = "irc:ubuntu/#kubuntu:2013-01-"
    # 2013-01-03 line 163: "=== yofel_ is now known as yofel"; line 425 is "<yofel> …".
    # 2013-01-06 line 178 is "<yofel_> …": the same person under the older nick.
    assert rows[chan + "03:424"][H.author_id] == rows[chan + "06:177"][H.author_id]
    assert chan + "03:424" in read(chan + "06:177", H.own_seqs)
