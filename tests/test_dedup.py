"""Record dedup: one row per message_id, the kept copy chosen by a fixed rule, never by input order."""

from datetime import datetime, timezone

import polars as pl
import pytest

from pipelines.core import storage
from pipelines.stages.dedup import dedup_records, result
from pipelines.stages.ingest import ingest
from schemas import MESSAGES as M
from schemas import RECORDS


def _row(mid, text, n, **kw):
    base = {M.message_id: mid, M.platform: "discourse", M.community: "forum", M.thread_id: "t1",
            M.author_kind: "user", M.time_kind: "wall", M.time_precision: "second", M.order_in_source: n,
            M.kind: "comment", M.text: text, M.source_uri: f"page{n}.json", M.source_record: n}
    return {**base, **kw}


def _frame(rows):
    return pl.from_arrow(M.conform(pl.DataFrame(rows, infer_schema_length=None).to_arrow()))


T = lambda d: datetime(2020, 1, d, tzinfo=timezone.utc)  # noqa: E731

ROWS = [
    _row("a", "old", 0, revision=1, retrieved_at=T(5)),
    _row("a", "new", 1, revision=2, retrieved_at=T(1)),          # higher revision wins over later crawl
    _row("b", "first", 2, edited_at=T(1), retrieved_at=T(9)),
    _row("b", "edited", 3, edited_at=T(2), retrieved_at=T(3)),    # later edit wins
    _row("c", "x", 4, retrieved_at=T(1)),
    _row("c", "y", 5, retrieved_at=T(2)),                          # later retrieval wins
    _row("d", "same time, one text", 6), _row("d", "same time, other text", 7),  # content hash decides
    _row("e", "unique", 8),
]


def test_one_row_per_message_id_with_copy_counts():
    out, stats = dedup_records(_frame(ROWS))
    assert out[M.message_id].to_list() == ["a", "b", "c", "d", "e"]
    assert dict(zip(out[M.message_id], out["n_copies"])) == {"a": 2, "b": 2, "c": 2, "d": 2, "e": 1}
    assert stats["rows_in"] == 9 and stats["rows_out"] == 5 and stats["collapsed"] == 4
    assert stats["rows_in"] == stats["rows_out"] + sum(stats["dropped"].values())
    assert stats["collapsed_by_platform"] == {"discourse": 4}


def test_summary_has_dropped_by_reason_and_keeps_dropped_as_its_alias():
    _, stats = dedup_records(_frame(ROWS))
    res = result(stats)
    s = res.summary()
    assert s["dropped_by_reason"] == s["dropped"] == {"duplicate_copy": 4}
    assert [k for k in s if k != "dropped_by_reason"] == list(stats)  # the keys the summary always had
    assert res.conservation().passed


def test_kept_copy_follows_revision_then_edit_then_retrieval():
    out, _ = dedup_records(_frame(ROWS))
    text = dict(zip(out[M.message_id], out[M.text]))
    assert text["a"] == "new" and text["b"] == "edited" and text["c"] == "y"


def test_choice_does_not_depend_on_input_order():
    first, _ = dedup_records(_frame(ROWS))
    for seed in range(3):
        shuffled, _ = dedup_records(_frame(ROWS).sample(fraction=1.0, shuffle=True, seed=seed))
        assert shuffled.equals(first)


@pytest.fixture(scope="module")
def discord_raw(real, tmp_path_factory):
    out = tmp_path_factory.mktemp("dedup_discord")
    ingest("discord", [str(real / "discord" / "dce-frontend-example-guild" / "*.json")],
           str(out / "messages_raw" / "discord"), str(out / "quarantine" / "discord"))
    return storage.read(str(out / "messages_raw"))


def test_real_discord_channel_exported_twice_collapses(discord_raw):
    out, stats = dedup_records(discord_raw)
    assert out[M.message_id].n_unique() == out.height == discord_raw[M.message_id].n_unique()
    assert stats["collapsed_by_platform"]["discord"] == discord_raw.height - out.height > 0
    # every message of the channel exported twice (both files) is one row with two copies
    twice = discord_raw.group_by(M.message_id).agg(pl.col(M.source_uri).n_unique().alias("files"))
    both = set(twice.filter(pl.col("files") == 2)[M.message_id])
    assert both and set(out.filter(pl.col("n_copies") == 2)[M.message_id]) == both
    RECORDS.conform(out.to_arrow())  # fits the `messages` schema


def test_real_discord_dedup_is_deterministic_across_file_order(discord_raw):
    a, _ = dedup_records(discord_raw)
    b, _ = dedup_records(discord_raw.reverse())
    assert a.equals(b)


def test_real_telegram_channel_in_two_export_formats_collapses(real, tmp_path):
    # The reader maps both exports' ids (integer in 2020, "channel…"-prefixed in 2021) to one
    # message id, so the re-export is a record-level copy, resolved here rather than by near-dup.
    ingest("telegram", [str(real / "telegram" / "*.json")], str(tmp_path / "raw" / "telegram"), str(tmp_path / "q"))
    raw = storage.read(str(tmp_path / "raw"))
    out, stats = dedup_records(raw)
    assert raw[M.source_uri].n_unique() == 2
    assert stats["collapsed_by_platform"]["telegram"] > 0
    both = raw.group_by(M.message_id).agg(pl.col(M.source_uri).n_unique().alias("n")).filter(pl.col("n") == 2)
    assert set(out.filter(pl.col("n_copies") == 2)[M.message_id]) == set(both[M.message_id])
