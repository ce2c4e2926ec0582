"""IRC reader on a week of real #kubuntu day logs, plus generated logs with bad lines."""

from datetime import datetime, timezone

import pytest

from pipelines.stages.ingest import ingest
from pipelines.sources import Quarantined, Skipped, SourceError, get_reader
from schemas import MESSAGES as M

READER = get_reader("irc")


def read(paths):
    return [o for unit in READER.units([str(p) for p in paths]) for o in READER.read_unit(unit)]


@pytest.fixture(scope="module")
def days(real):
    return sorted((real / "irc" / "ubuntu").glob("*/*/*/*.txt"))


@pytest.fixture(scope="module")
def outcomes(days):
    return read(days)


@pytest.fixture(scope="module")
def messages(outcomes):
    return [o for o in outcomes if isinstance(o, dict)]


def test_one_unit_per_channel_in_date_order(days):
    (unit,) = READER.units([str(p) for p in reversed(days)])
    assert [p.split("/")[-2] for p in unit] == ["01", "02", "03", "04", "05", "06", "07"]


def test_counts_conserve(outcomes, real, tmp_path):
    assert len(outcomes) == 2036  # every line of the seven files is a record
    assert [o.reason for o in outcomes if not isinstance(o, dict)] == ["nick_change"] * 264
    stats = ingest("irc", [str(real / "irc" / "ubuntu" / "*/*/*/*.txt")], str(tmp_path / "m"), str(tmp_path / "q"))
    assert (stats.records, stats.messages, stats.skipped, stats.quarantined) == (2036, 1772, 264, 0)


def test_a_renamed_author_keeps_one_identity_across_days(messages):
    lord = [m for m in messages if m[M.author_name] in ("LordOfTime", "TheLordOfTime")]
    assert len(lord) == 45
    assert {m[M.author_id] for m in lord} == {"ubuntu:LordOfTime"}  # the first nick of the chain
    assert {m[M.author_name] for m in lord} == {"TheLordOfTime"}
    assert len({m[M.created_at].date() for m in lord}) == 5  # seen on five different days


def test_ids_times_and_actions(messages):
    first = messages[0]
    assert first[M.message_id] == "irc:ubuntu/#kubuntu:2013-01-01:2"
    assert first[M.created_at] == datetime(2013, 1, 1, 1, 33, tzinfo=timezone.utc)
    assert (first[M.time_precision], first[M.order_in_source]) == ("minute", 2)
    actions = [m for m in messages if m[M.kind] == "action"]
    assert len(actions) == 6
    assert any(m[M.author_name] == "Wizard" and m[M.text] == "hands beer to andybrine." for m in actions)


def test_addressing_becomes_an_inferred_reply(messages):
    by_id = {m[M.message_id]: m for m in messages}
    snow = next(m for m in messages if m[M.author_name] == "Snowhog" and m[M.text].startswith("TheLordOfTime:"))
    target = by_id[snow[M.parent_inferred]]
    assert target[M.author_id] == "ubuntu:LordOfTime"
    assert target[M.message_id] < snow[M.message_id] or target[M.created_at] <= snow[M.created_at]
    assert sum(m[M.parent_inferred] is not None for m in messages) > 200
    assert all(m.get(M.parent_id) is None for m in messages)


def test_bots_are_flagged(messages):
    bots = {m[M.author_name] for m in messages if m[M.author_kind] == "bot"}
    assert bots == {"ubottu", "FloodBotK1"}


def test_bad_lines_and_empty_files(tmp_path):
    day = tmp_path / "libera" / "2024" / "02" / "29"
    day.mkdir(parents=True)
    (day / "#test.txt").write_bytes("\n".join([
        "[10:00] <alice> hi all",
        "[10:01] <bob> alice: hello",
        "=== alice is now known as alice_away",
        "=== alice_away is now known as carol",
        "[10:02] <carol> back",
        "[10:02] <dave> bob, carol: ping",
        "this is not an irc line",
        "[25:99] <bob> impossible time",
        "=== ChanServ changed the topic of #test to: welcome",
        "=== erin [~e@host] has joined #test",
        "=== something else entirely",
        "",  # a blank line is not a record
        "",
    ]).encode() + b"[10:03] <bob> caf\xe9\n")
    empty = tmp_path / "libera" / "2024" / "03" / "01"
    empty.mkdir(parents=True)
    (empty / "#test.txt").write_bytes(b"")
    out = read([day / "#test.txt", empty / "#test.txt"])
    msgs = [o for o in out if isinstance(o, dict)]
    assert [m[M.author_id] for m in msgs] == ["libera:alice", "libera:bob", "libera:alice", "libera:dave"]
    assert msgs[1][M.parent_inferred] == msgs[0][M.message_id]
    assert msgs[3][M.parent_inferred] == msgs[1][M.message_id]  # "bob, …" addresses bob's latest message
    assert [o.reason for o in out if isinstance(o, Skipped)] == ["nick_change", "nick_change", "topic_change",
                                                                "join_part", "system_line"]
    q = [(o.reason, o.source_record) for o in out if isinstance(o, Quarantined)]
    assert q == [("unparsable_line", 6), ("bad_time", 7), ("invalid_utf8", 12), ("empty_file", 0)]


def test_a_path_without_date_and_channel_is_a_clear_error(tmp_path):
    f = tmp_path / "log.txt"
    f.write_text("[10:00] <a> b\n")
    with pytest.raises(SourceError, match="YYYY/MM/DD"):
        READER.units([str(f)])


def test_a_folder_is_walked_like_its_day_files(real, days, outcomes, tmp_path):
    assert READER.units([str(real / "irc")]) == READER.units([str(p) for p in days])
    assert read([real / "irc" / "ubuntu" / "2013"]) == outcomes
    stats = ingest("irc", [str(real / "irc")], str(tmp_path / "m"), str(tmp_path / "q"))
    assert (stats.records, stats.messages, stats.skipped, stats.quarantined) == (2036, 1772, 264, 0)


def test_an_impossible_date_folder_is_one_quarantine_row_naming_the_file(tmp_path):
    for day in ("2013/02/28", "2013/02/30", "2013/03/01"):
        (tmp_path / "net" / day).mkdir(parents=True)
        (tmp_path / "net" / day / "#c.txt").write_text("[10:00] <a> hello\n")
    out = read([tmp_path])
    assert [m[M.created_at].date().isoformat() for m in out if isinstance(m, dict)] == ["2013-02-28", "2013-03-01"]
    (q,) = [o for o in out if isinstance(o, Quarantined)]
    assert (q.reason, q.source_uri) == ("bad_time", str(tmp_path / "net/2013/02/30/#c.txt"))
    assert "2013/02/30 is not a calendar date" in q.detail


def test_a_folder_without_day_files_is_a_clear_error(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "notes.txt").write_text("[10:00] <a> b\n")
    with pytest.raises(SourceError, match=r"logs: no IRC day file below this folder.*YYYY/MM/DD"):
        READER.units([str(tmp_path / "logs")])
