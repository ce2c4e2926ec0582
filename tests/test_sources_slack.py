"""Slack reader on the real 2016 workspace export (folder and .zip) and on broken exports."""

import json
import shutil
import zipfile
from datetime import datetime, timezone

import pytest

from pipelines.stages.ingest import ingest
from pipelines.sources import Quarantined, Skipped, SourceError, get_reader
from schemas import MESSAGES as M

READER = get_reader("slack")
WS = "slack-export-viewer_testarchive"


def read(paths):
    return [o for unit in READER.units([str(p) for p in paths]) for o in READER.read_unit(unit)]


@pytest.fixture(scope="module")
def export(real):
    return real / "slack" / WS


@pytest.fixture(scope="module")
def outcomes(export):
    return read([export])


def test_counts_conserve_with_named_skip_policies(outcomes, export, tmp_path):
    msgs = [o for o in outcomes if isinstance(o, dict)]
    assert len(outcomes) == 158 and len(msgs) == 147
    assert sorted(o.reason for o in outcomes if isinstance(o, Skipped)) == ["join_leave"] * 8 + ["system_event"] * 3
    stats = ingest("slack", [str(export)], str(tmp_path / "m"), str(tmp_path / "q"))
    assert (stats.records, stats.messages, stats.skipped, stats.quarantined) == (158, 147, 11, 0)


def test_bot_messages_without_user_are_bots_with_text_from_attachments(outcomes):
    bots = [o for o in outcomes if isinstance(o, dict) and o[M.author_kind] == "bot"]
    assert len(bots) == 94
    assert {b[M.author_id] for b in bots} == {f"{WS}:B0JL6RASU", f"{WS}:B0JL6UFSL", f"{WS}:B0VJZKVHC"}
    assert all(b[M.text] for b in bots)  # the raw `text` is empty; the words are in attachments
    first = next(b for b in bots if b[M.message_id].endswith(":1454892394.000004"))
    assert first[M.text].startswith("[enrique:master] 1 new commit by Anthony Bilinski:\ned1acbe (https://github.com/")


def test_times_come_from_ts_not_the_day_file(outcomes):
    msgs = [o for o in outcomes if isinstance(o, dict)]
    m = next(o for o in msgs if o[M.message_id] == f"slack:{WS}:C0JGLMMNX:1452837352.000006")
    assert m[M.created_at] == datetime(2016, 1, 15, 5, 55, 52, 6, tzinfo=timezone.utc)
    assert m[M.source_uri].endswith("enrique/2016-01-14.json")  # filed under the local date
    assert sum(o[M.created_at].date().isoformat() != o[M.source_uri][-15:-5] for o in msgs) > 0


def test_mentions_render_as_display_names_and_users_are_scoped(outcomes):
    m = next(o for o in outcomes if isinstance(o, dict) and o[M.message_id].endswith(":1452837352.000006"))
    assert m[M.text].startswith("@abilinski: Created an issue")
    assert (m[M.author_id], m[M.author_name]) == (f"{WS}:U0BMQB6JE", "hamza")
    assert m[M.thread_id] == f"slack:{WS}:C0JGLMMNX" and m[M.community] == f"slack:{WS}"
    assert not any("<@U" in o[M.text] for o in outcomes if isinstance(o, dict))


def test_zip_gives_the_same_messages_as_the_folder(outcomes, export, tmp_path):
    z = tmp_path / f"{WS}.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(export.rglob("*.json")):
            zf.write(p, f"{WS}/{p.relative_to(export)}")  # zips often wrap the export in one folder
    from_zip = read([z])
    ids = lambda out: sorted(o[M.message_id] for o in out if isinstance(o, dict))  # noqa: E731
    assert ids(from_zip) == ids(outcomes)
    assert all(o[M.source_uri].startswith("zip://") for o in from_zip if isinstance(o, dict))


def _workspace(tmp_path, days: dict[str, bytes]):
    root = tmp_path / "ws"
    (root / "general").mkdir(parents=True)
    (root / "channels.json").write_text(json.dumps([{"id": "C1", "name": "general"}]))
    (root / "users.json").write_text(json.dumps([{"id": "U1", "name": "ann", "profile": {"display_name": "Ann"}}]))
    for name, data in days.items():
        (root / "general" / name).write_bytes(data)
    return root


def test_threads_tombstones_links_and_broken_day_files(tmp_path):
    day = [
        {"type": "message", "user": "U1", "text": "root <http://x.org/a|the doc> &amp; <#C1|general>",
         "ts": "1700000000.000100", "thread_ts": "1700000000.000100"},
        {"type": "message", "user": "U1", "text": "reply to <@U1>", "ts": "1700000001.000200",
         "thread_ts": "1700000000.000100", "edited": {"user": "U1", "ts": "1700000005.000000"}},
        {"type": "message", "subtype": "tombstone", "text": "This message was deleted.", "ts": "1700000002.0"},
        {"type": "message", "subtype": "channel_topic", "user": "U1", "text": "set the topic", "ts": "1700000003.0"},
        {"type": "message", "user": "U1", "text": "no time"},
        {"type": "message", "user": "U1", "text": "bad time", "ts": "soon"},
        {"type": "message", "subtype": "some_future_subtype", "ts": "1700000004.0"},
    ]
    root = _workspace(tmp_path, {
        "2023-11-14.json": json.dumps(day).encode(),
        "2023-11-15.json": b"",
        "2023-11-16.json": b"[{\"ts\": ",
        "2023-11-17.json": b'[{"text": "caf\xe9"}]',
        "2023-11-18.json": b'{"not": "a list"}',
    })
    out = read([root])
    root_msg, reply = out[0], out[1]
    assert root_msg[M.text] == "root the doc (http://x.org/a) & #general"
    assert root_msg[M.parent_id] is None
    assert reply[M.parent_id] == root_msg[M.message_id] == "slack:ws:C1:1700000000.000100"
    assert reply[M.text] == "reply to @Ann"
    assert reply[M.edited_at] == datetime(2023, 11, 14, 22, 13, 25, tzinfo=timezone.utc)
    rest = [o.reason for o in out[2:]]
    assert rest == ["tombstone", "topic_change", "missing_field", "bad_time", "unknown_subtype",
                    "empty_file", "invalid_json", "invalid_utf8", "wrong_type"]
    assert all(isinstance(o, Quarantined) for o in out[4:6] + out[7:])


def test_a_corrupt_zip_is_quarantined(tmp_path):
    z = tmp_path / "broken.zip"
    z.write_bytes(b"PK\x03\x04 this is not really a zip")
    (q,) = read([z])
    assert isinstance(q, Quarantined) and q.reason == "corrupt"


def test_an_export_given_one_level_too_high_is_found(outcomes, export, tmp_path):
    (tmp_path / "landing").mkdir()
    shutil.copytree(export, tmp_path / "landing" / WS)  # a copy in tmp: 200 KB
    assert READER.units([str(tmp_path / "landing")]) == [[str(tmp_path / "landing" / WS)]]
    ids = sorted(o[M.message_id] for o in read([tmp_path / "landing"]) if isinstance(o, dict))
    assert ids == sorted(o[M.message_id] for o in outcomes if isinstance(o, dict))  # same workspace, same ids


def test_a_zip_without_channels_and_users_json_still_gives_every_message(export, tmp_path, caplog):
    z = tmp_path / f"{WS}.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(export.rglob("*.json")):
            if p.name not in ("channels.json", "users.json"):
                zf.write(p, f"backup/2016/{WS}/{p.relative_to(export)}")  # two extra folder levels
    with caplog.at_level("WARNING", logger="socialcorpus.sources.slack"):
        out = read([z])
    assert (len(out), sum(isinstance(o, dict) for o in out)) == (158, 147)
    assert "without channels.json and users.json" in caplog.text
    m = next(o for o in out if isinstance(o, dict) and o[M.message_id].endswith(":1452837352.000006"))
    # Without channels.json the folder name is the channel id; without users.json the user id is the name.
    assert m[M.message_id] == f"slack:{WS}:enrique:1452837352.000006"
    assert (m[M.author_id], m[M.author_name]) == (f"{WS}:U0BMQB6JE", "U0BMQB6JE")


def test_a_path_holding_no_export_is_a_clear_error(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.json").write_text("[]")
    with pytest.raises(SourceError, match="no Slack export found"):
        READER.units([str(tmp_path / "notes")])
    z = tmp_path / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("holiday/img.json", "[]")
    with pytest.raises(SourceError, match=f"{z}: no Slack export found"):
        read([z])


def test_one_bad_value_sets_aside_its_record_and_the_export_goes_on(tmp_path):
    root = _workspace(tmp_path, {"2023-11-14.json": json.dumps([
        {"type": "message", "user": "U2", "text": "hi <@U2>", "ts": "1700000000.000100"},
        {"type": "message", "user": "U1", "text": "bad attachments", "ts": "1700000001.0", "attachments": 5,
         "subtype": "bot_message", "bot_id": "B1"},
        {"type": "message", "user": "U1", "text": "huge ts", "ts": "99999999999999999999.0"},
        {"type": "message", "user": "U1", "text": "after", "ts": "1700000002.0"},
    ]).encode()})
    # A channel whose name is a list, and a user whose display_name is a number.
    (root / "channels.json").write_text(json.dumps([{"id": "C1", "name": ["general"]}, {"id": "C1", "name": "general"}]))
    (root / "users.json").write_text(json.dumps([{"id": "U2", "name": "bo", "profile": {"display_name": 42}}]))
    out = read([root])
    assert [(o.reason, o.source_record) for o in out if isinstance(o, Quarantined)] == [
        ("bad_value", 0), ("bad_value", 1), ("bad_time", 2)]
    assert out[0].source_uri.endswith("channels.json") and "name" in out[0].detail
    assert "TypeError" in out[2].detail and out[2].source_uri.endswith("general/2023-11-14.json")
    msgs = [o for o in out if isinstance(o, dict)]
    assert [m[M.text] for m in msgs] == ["hi @bo", "after"]
    assert msgs[0][M.author_name] == "bo" and msgs[0][M.thread_id] == "slack:ws:C1"


def test_a_day_file_over_the_per_file_cap_is_quarantined(export, monkeypatch):
    # users.json is 8,902 bytes: a cap of 9,000 reads it and sets aside the six larger day files.
    monkeypatch.setenv("SOCIALCORPUS_SLACK_MAX_MEMBER_BYTES", "9000")
    out = read([export])
    big = [o for o in out if isinstance(o, Quarantined)]
    assert len(big) == 6 and {o.reason for o in big} == {"too_large"}
    assert {o.source_uri.rsplit("/", 2)[-2] + "/" + o.source_uri.rsplit("/", 1)[-1] for o in big} == {
        "enrique/2016-02-07.json", "enrique/2016-03-26.json", "enrique/2016-03-28.json",
        "traveling-sailor/2016-02-08.json", "traveling-sailor/2016-03-26.json", "traveling-sailor/2016-03-27.json"}
    assert all("per-file cap" in o.detail for o in big)
    monkeypatch.setenv("SOCIALCORPUS_SLACK_MAX_MEMBER_BYTES", "5000")
    with pytest.raises(SourceError, match=r"users\.json: the file is larger than 5000 bytes"):
        read([export])


def test_a_zip_over_the_archive_cap_sets_aside_the_members_past_it(export, tmp_path, monkeypatch):
    z = tmp_path / f"{WS}.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(export.rglob("*.json")):
            zf.write(p, str(p.relative_to(export)))
    monkeypatch.setenv("SOCIALCORPUS_SLACK_MAX_ARCHIVE_BYTES", "40000")
    out = read([z])
    over = [o for o in out if isinstance(o, Quarantined)]
    assert over and all(o.reason == "too_large" and "per-archive cap" in o.detail for o in over)
    # Metadata first (10 KB), then day files in name order until the next one would pass 40,000 bytes.
    read_days = sorted({o[M.source_uri].split("::")[0][len("zip://"):] for o in out if isinstance(o, dict)})
    assert read_days == [f"enrique/2016-0{d}.json" for d in ("1-14", "1-15", "1-16", "2-07", "2-08")]
    assert len(over) == 17 - 5 and sum(isinstance(o, dict) for o in out) < 147
    monkeypatch.setenv("SOCIALCORPUS_SLACK_MAX_ARCHIVE_BYTES", "lots")
    with pytest.raises(SourceError, match="SOCIALCORPUS_SLACK_MAX_ARCHIVE_BYTES='lots'"):
        read([z])
