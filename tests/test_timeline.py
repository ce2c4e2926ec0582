"""Timeline: dense, total, input-order-free `seq`; parent links; dangling parents counted.

Also hosts the small generated corpora (`dedup_frame`, `reddit_tree`, `irc_channel`,
`diplomacy_games`) that test_histories.py and test_examples.py reuse.
"""

from datetime import datetime, timedelta, timezone

import polars as pl
import pyarrow as pa
import pytest

from pipelines.stages.timeline import TimelineError, build_timeline, check_order
from schemas import DEDUP as D
from schemas import TIMELINE as T

T0 = datetime(2013, 1, 1, 12, 0, tzinfo=timezone.utc)


def dedup_frame(rows: list[dict]) -> pl.DataFrame:
    """A `messages_dedup` frame from short dicts; unspecified columns get neutral defaults."""
    full = []
    for i, r in enumerate(rows):
        ordinal = r.get(D.time_kind) == "ordinal"
        full.append({
            D.platform: "reddit", D.community: "c", D.author_kind: "user",
            D.time_kind: "wall", D.time_precision: "ordinal" if ordinal else "second",
            D.order_in_source: i, D.kind: "comment", D.text: f"text {i}", D.source_uri: "generated",
            D.source_record: i, D.n_copies: 1, D.pii_types: [], D.is_target: True,
            D.dup_cluster_size: 1, D.mass_dup: False, **r})
    return pl.from_arrow(D.conform(pa.Table.from_pylist(full, schema=D.arrow)))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def reddit_tree() -> pl.DataFrame:
    """A submission S with a reply tree; c5 answers a parent that was never archived.

    S(u1) ├ c1(u2) ├ c2(u1) ─ c4(u2)
          │        └ c6(u3)
          └ c3(u3)
    c5(u4) -> t1_gone (not in the corpus)
    """
    th = "reddit:t3_s"
    mk = lambda mid, parent, author, m: {D.message_id: mid, D.thread_id: th, D.parent_id: parent,
                                         D.author_id: author, D.created_at: at(m)}
    return dedup_frame([
        mk("reddit:t3_s", None, "u1", 0) | {D.kind: "post", D.title: "S"},
        mk("reddit:t1_c1", "reddit:t3_s", "u2", 1),
        mk("reddit:t1_c2", "reddit:t1_c1", "u1", 2),
        mk("reddit:t1_c3", "reddit:t3_s", "u3", 3),
        mk("reddit:t1_c4", "reddit:t1_c2", "u2", 4),
        mk("reddit:t1_c5", "reddit:t1_gone", "u4", 5),
        mk("reddit:t1_c6", "reddit:t1_c1", "u3", 6),
    ])


def irc_channel() -> pl.DataFrame:
    """A minute-precision channel: several lines share a minute (file order decides);
    `alice` renames to `alice_away` (same author_id); `bob: …` addresses bob."""
    th = "irc:net/#chan:2013-01-01"
    rows = [
        ("alice", "alice", 0, None), ("bob", "bob", 0, None), ("alice", "alice", 0, None),
        ("carol", "carol", 1, None), ("alice", "alice_away", 1, "irc:l1"), ("bob", "bob", 2, None),
        ("alice", "alice_away", 2, None),
    ]
    return dedup_frame([
        {D.message_id: f"irc:l{i}", D.platform: "irc", D.community: "net/#chan", D.thread_id: th,
         D.author_id: f"irc:{a}", D.author_name: name, D.created_at: at(m), D.time_precision: "minute",
         D.parent_inferred: inferred, D.order_in_source: i, D.kind: "message"}
        for i, (a, name, m, inferred) in enumerate(rows)
    ])


def diplomacy_games() -> pl.DataFrame:
    """Two games; game g1 has dialogs england-france and england-germany interleaved by
    `time_ordinal`; game g2 has one dialog. No wall-clock time anywhere."""
    def msg(game, a, b, idx, truthful=True):
        pair = "-".join(sorted((a, b)))
        return {D.message_id: f"diplomacy:{game}:{idx}", D.platform: "diplomacy", D.community: game,
                D.thread_id: f"diplomacy:{game}:{pair}", D.author_id: f"{game}:{a}", D.recipient_ids: [f"{game}:{b}"],
                D.time_kind: "ordinal", D.time_ordinal: idx, D.kind: "message",
                D.labels: f'{{"sender_truthful": {str(truthful).lower()}}}'}
    return dedup_frame([
        msg("g1", "england", "france", 0), msg("g1", "france", "england", 1),
        msg("g1", "england", "germany", 2), msg("g1", "germany", "england", 3, False),
        msg("g1", "england", "france", 4), msg("g1", "france", "england", 5),
        msg("g1", "england", "germany", 6), msg("g1", "england", "france", 7),
        msg("g2", "italy", "austria", 0), msg("g2", "austria", "italy", 1), msg("g2", "italy", "austria", 2),
    ])


def mixed_corpus() -> pl.DataFrame:
    return pl.concat([reddit_tree(), irc_channel(), diplomacy_games()])


def seq_of(tl: pl.DataFrame) -> dict[str, int]:
    return dict(zip(tl[T.message_id].to_list(), tl[T.seq].to_list()))


@pytest.fixture(scope="module")
def mixed():
    df, stats = build_timeline(mixed_corpus().lazy())
    return df, stats


def test_wall_sources_share_one_timeline_and_each_game_has_its_own(mixed):
    df, stats = mixed
    counts = dict(df.group_by(T.timeline_id).len().iter_rows())
    assert counts == {"wall": 14, "ordinal:g1": 8, "ordinal:g2": 3}
    assert stats["timelines"] == 3 and stats["ordinal_timelines"] == 2


def test_seq_is_dense_and_follows_the_key(mixed):
    df, _ = mixed
    for tl, part in df.group_by(T.timeline_id):
        assert sorted(part[T.seq].to_list()) == list(range(part.height))
    assert check_order(df).passed
    g1 = df.filter(pl.col(T.timeline_id) == "ordinal:g1").sort(T.seq)
    assert g1[D.time_ordinal].to_list() == list(range(8))


def test_minute_ties_keep_file_order(mixed):
    df, _ = mixed
    irc = df.filter(pl.col(D.platform) == "irc").sort(T.seq)
    assert irc[D.message_id].to_list() == [f"irc:l{i}" for i in range(7)]


def test_same_timestamp_in_two_threads_orders_by_platform_then_thread():
    a = dedup_frame([{D.message_id: "slack:b", D.platform: "slack", D.thread_id: "slack:t2", D.created_at: at(0)},
                     {D.message_id: "slack:a", D.platform: "slack", D.thread_id: "slack:t1", D.created_at: at(0),
                      D.order_in_source: 99},
                     {D.message_id: "irc:z", D.platform: "irc", D.thread_id: "irc:t9", D.created_at: at(0)}])
    df, _ = build_timeline(a.lazy())
    assert df.sort(T.seq)[T.message_id].to_list() == ["irc:z", "slack:a", "slack:b"]


def test_output_is_identical_whatever_the_input_order(mixed):
    df, _ = mixed
    for seed in (1, 2, 3):
        shuffled = mixed_corpus().sample(fraction=1.0, shuffle=True, seed=seed)
        again, _ = build_timeline(shuffled.lazy())
        assert again.equals(df)


def test_parent_links_and_dangling_parents(mixed):
    df, stats = mixed
    s = seq_of(df)
    row = {r[T.message_id]: r for r in df.iter_rows(named=True)}
    assert row["reddit:t1_c4"][T.parent_seq] == s["reddit:t1_c2"]
    assert row["reddit:t3_s"][T.parent_seq] is None and not row["reddit:t3_s"][T.parent_dangling]
    assert row["reddit:t1_c5"][T.parent_dangling] and row["reddit:t1_c5"][T.parent_seq] is None
    # An inferred link ("bob: …") is used when there is no explicit parent.
    assert row["irc:l4"][T.parent_seq] == s["irc:l1"] and not row["irc:l4"][T.parent_dangling]
    assert stats["parent_dangling"] == 1
    assert stats["parent_linked"] == 6  # 5 reddit replies + 1 inferred IRC link
    assert stats["wall_span"] == {"min_created_at": T0.isoformat(), "max_created_at": at(6).isoformat()}


def test_a_wall_row_without_time_sorts_last_and_is_counted():
    df, stats = build_timeline(dedup_frame([
        {D.message_id: "slack:late", D.platform: "slack", D.thread_id: "t", D.created_at: at(9)},
        {D.message_id: "slack:none", D.platform: "slack", D.thread_id: "t", D.created_at: None},
        {D.message_id: "slack:early", D.platform: "slack", D.thread_id: "t", D.created_at: at(1)},
    ]).lazy())
    assert df.sort(T.seq)[T.message_id].to_list() == ["slack:early", "slack:late", "slack:none"]
    assert stats["without_time"] == 1 and check_order(df).passed


def test_repeated_message_id_is_an_error():
    df = dedup_frame([{D.message_id: "x", D.thread_id: "t", D.created_at: at(0)},
                      {D.message_id: "x", D.thread_id: "t", D.created_at: at(1)}])
    with pytest.raises(TimelineError, match="share a message_id"):
        build_timeline(df.lazy())


def test_check_order_catches_a_swapped_seq(mixed):
    df, _ = mixed
    wall = df.filter(pl.col(T.timeline_id) == "wall")
    broken = wall.with_columns(pl.when(pl.col(T.seq) == 0).then(1).when(pl.col(T.seq) == 1).then(0)
                               .otherwise(pl.col(T.seq)).alias(T.seq))
    res = check_order(broken)
    assert not res.passed and res.failed_rows == 2


def test_timeline_conforms_to_schema(mixed):
    df, _ = mixed
    assert T.conform(df.to_arrow()).schema == T.arrow


# ---------------------------------------------------------------------------- real samples

MY_STAGES = ("timeline", "histories", "examples")
MY_TABLES = ("timeline", "reading_histories", "pair_examples")


def rerun_my_stages(run: dict, out, shuffle_seed: int | None) -> dict[str, list[bytes]]:
    """Copy `messages_dedup` of a real run to `out` (rows shuffled and split over 3 files when
    `shuffle_seed` is given, as if the dumps had arrived in another order), run the three
    stages there and return each output table's file bytes."""
    from pipelines.core import storage
    from pipelines.core.context import RunContext
    from pipelines.stages import run_stage

    config = run["config"].with_overrides(out=str(out))
    dedup = storage.read_arrow(run["config"].table_url("messages_dedup"))
    if shuffle_seed is not None:
        dedup = pl.from_arrow(dedup).sample(fraction=1.0, shuffle=True, seed=shuffle_seed).to_arrow()
        third = dedup.num_rows // 3 + 1
        storage.write_dataset(config.table_url("messages_dedup"),
                              [dedup.slice(i, third) for i in range(0, dedup.num_rows, third)], rows_per_file=third)
    else:
        storage.write_dataset(config.table_url("messages_dedup"), dedup)
    ctx = RunContext(config)
    for s in MY_STAGES:
        run_stage(s, ctx)
    return {t: [open(f, "rb").read() for f in storage.dataset_files(config.table_url(t))] for t in MY_TABLES}


@pytest.fixture(scope="module")
def real_run(real_built):
    """The session's full real build (tests/conftest.py), read as this module's tables."""
    from pipelines.core import storage

    config, summary = real_built
    return {"config": config, "summary": summary, "upstream": True,
            "tables": {t: storage.read(config.table_url(t)) for t in MY_TABLES}}


def test_real_timeline_is_ordered_and_counts_dangling_parents(real_run):
    tl = real_run["tables"]["timeline"]
    s = real_run["summary"]["timeline"]
    assert check_order(tl).passed
    assert s["rows_in"] == s["rows_out"] == tl.height
    # 9 Diplomacy games each on their own ordinal timeline; everything else on `wall`.
    assert s["timelines"] == 10 and s["ordinal_timelines"] == 9
    # RC_2005-12 holds comments only: top-level comments answer never-archived submissions.
    assert s["parent_dangling"] == int(tl[T.parent_dangling].sum()) > 0
    assert tl.filter(pl.col(T.message_id) == "reddit:t1_c1946")[T.parent_dangling].item()
    assert s["wall_span"]["min_created_at"] < "2006" and s["wall_span"]["max_created_at"] > "2024"


def test_real_tables_are_byte_identical_across_runs_and_input_order(real_run, tmp_path_factory):
    again = rerun_my_stages(real_run, tmp_path_factory.mktemp("again"), None)
    shuffled = rerun_my_stages(real_run, tmp_path_factory.mktemp("shuffled"), 11)
    for table in MY_TABLES:
        assert again[table] == shuffled[table], table
    from pipelines.core import storage
    first = {t: [open(f, "rb").read() for f in storage.dataset_files(real_run["config"].table_url(t))]
             for t in MY_TABLES}
    assert first == again
