"""Slack reader on the real 2016 workspace export (folder and .zip) and on broken exports."""

import json
import zipfile
from datetime import datetime, timezone

import pytest

from pipelines.ingest import ingest
from pipelines.sources import Quarantined, Skipped, get_reader
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
