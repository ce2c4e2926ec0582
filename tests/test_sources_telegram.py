"""Telegram reader on the real channel exported in the 2020 and 2021 formats, plus broken exports."""

import json
from datetime import datetime, timezone

import pytest

from pipelines.stages.ingest import ingest
from pipelines.sources import Quarantined, Skipped, get_reader
from schemas import MESSAGES as M

READER = get_reader("telegram")


def read(paths):
    return [o for unit in READER.units([str(p) for p in paths]) for o in READER.read_unit(unit)]


@pytest.fixture(scope="module")
def old(real):
    return read([real / "telegram" / "tg2md_result_2020-11.json"])


@pytest.fixture(scope="module")
def new(real):
    return read([real / "telegram" / "tg2md_result.json"])


def test_both_formats_parse_and_counts_conserve(old, new, real, tmp_path):
    assert (len(old), sum(isinstance(o, dict) for o in old)) == (13, 12)
    assert (len(new), sum(isinstance(o, dict) for o in new)) == (19, 18)
    assert [o for o in old + new if not isinstance(o, dict)] == [Skipped("service_message")] * 2
    stats = ingest("telegram", [str(real / "telegram" / "*.json")], str(tmp_path / "m"), str(tmp_path / "q"))
    assert (stats.records, stats.messages, stats.skipped, stats.quarantined) == (32, 30, 2, 0)


def test_the_two_formats_agree_on_ids_and_authors(old, new):
    o = {m[M.message_id]: m for m in old if isinstance(m, dict)}
    n = {m[M.message_id]: m for m in new if isinstance(m, dict)}
    # 2020 wrote the channel as 9882011936 (= 1292077344 + 2**33); both map to one chat.
    assert set(o) < set(n)
    assert {m[M.author_id] for m in o.values()} == {m[M.author_id] for m in n.values()} == {"channel1292077344"}
    assert all(o[k][M.text] == n[k][M.text] for k in o)


def test_texts_from_entity_lists(new):
    by_id = {m[M.message_id]: m for m in new if isinstance(m, dict)}
    assert by_id["telegram:1292077344:9"][M.text] == "italic in text\n\nitalic on whole line"
    assert by_id["telegram:1292077344:14"][M.text] == \
        "text link (http://example.com/)\n\nexample.com\n\nexample@example.com"
    assert by_id["telegram:1292077344:21"][M.text] == "тестирование utf-8."
    m5 = by_id["telegram:1292077344:5"]
    assert m5[M.created_at] == datetime(2020, 11, 12, 12, 58, 18, tzinfo=timezone.utc)
    assert m5[M.edited_at] == datetime(2020, 11, 12, 13, 3, tzinfo=timezone.utc)
    assert json.loads(m5[M.extra]) == {"local_time": True}


def test_full_export_replies_forwards_unixtime_and_deleted_accounts(tmp_path):
    chat = {"name": "Bob", "type": "personal_chat", "id": 42, "messages": [
        {"id": 1, "type": "message", "date": "2021-01-01T10:00:00", "date_unixtime": "1609495200",
         "from": "Bob", "from_id": "user42", "text": "hi"},
        {"id": 2, "type": "message", "date": "2021-01-01T10:01:00", "date_unixtime": "1609495260",
         "from": "Me", "from_id": "user7", "text": ["see ", {"type": "mention", "text": "@bob"}],
         "reply_to_message_id": 1, "forwarded_from": "Some Stranger"},
        {"id": 3, "type": "message", "date": "2021-01-01T10:02:00", "from": None, "from_id": "user9", "text": "x"},
        {"id": 4, "type": "service", "date": "2021-01-01T10:03:00", "action": "pin_message"},
    ]}
    f = tmp_path / "result.json"
    f.write_text(json.dumps({"about": "full export", "chats": {"list": [chat]}, "left_chats": {"list": []}}))
    bob, me, gone, service = read([f])
    assert bob[M.created_at] == datetime(2021, 1, 1, 10, 0, tzinfo=timezone.utc) and bob[M.extra] is None
    assert bob[M.recipient_ids] == ["user7"] and me[M.recipient_ids] == ["user42"]
    assert me[M.parent_id] == "telegram:42:1" and me[M.text] == "see @bob"
    assert json.loads(me[M.extra]) == {"forwarded": True}
    assert "Some Stranger" not in json.dumps(me, default=str)
    assert (gone[M.author_kind], gone[M.author_id]) == ("deleted", None)
    assert service == Skipped("service_message")


def test_broken_exports_are_quarantined(tmp_path):
    good = {"id": 1, "type": "message", "date": "2021-01-01T10:00:00", "from": "a", "from_id": "user1", "text": "ok"}
    chat = {"name": "c", "type": "public_supergroup", "id": 5, "messages": [
        good, "junk", dict(good, id=None), dict(good, id=3, date="31/12/2020"), dict(good, id=4, text=7)]}
    files = {"empty.json": b"", "bad.json": b'{"messages": [', "latin1.json": b'{"name": "caf\xe9"}',
             "other.json": b'{"hello": 1}', "chat.json": json.dumps(chat).encode()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = read(sorted(tmp_path.glob("*.json")))
    reasons = [(o.source_uri.rsplit("/", 1)[1], o.reason) for o in out if isinstance(o, Quarantined)]
    assert reasons == [("bad.json", "invalid_json"), ("chat.json", "wrong_type"), ("chat.json", "missing_field"),
                       ("chat.json", "bad_time"), ("chat.json", "wrong_type"), ("empty.json", "empty_file"),
                       ("latin1.json", "invalid_utf8"), ("other.json", "missing_field")]
    assert sum(isinstance(o, dict) for o in out) == 1


def _broken_files(tmp_path):
    good = {"id": 1, "type": "message", "date": "2021-01-01T10:00:00", "from": "a", "from_id": "user1", "text": "ok"}
    chat = {"name": "c", "type": "public_supergroup", "id": 5, "messages": [
        good, "junk", dict(good, id=None), dict(good, id=3, date="9999-12-31T23:59:59-05:00"), dict(good, id=4, text=7),
        dict(good, id=5, reactions=5)]}
    private = {"name": "Bob", "type": "personal_chat", "id": 42, "messages": [
        dict(good, id=1, from_id="user42", **{"from": "Bob"}), dict(good, id=2, from_id="user7", **{"from": "Me"}),
        {"id": 3, "type": "service", "date": "2021-01-01T10:03:00", "actor_id": "user7", "action": "pin_message"}]}
    files = {
        "bad.json": b'{"messages": [', "latin1.json": b'{"name": "caf\xe9"}', "list.json": b"[1]",
        "other.json": b'{"hello": 1}', "chat.json": json.dumps(chat).encode(),
        "bom.json": b"\xef\xbb\xbf" + json.dumps(chat).encode(),
        "full.json": json.dumps({"chats": {"list": [private, 5, {"name": "x", "messages": 3}, chat]},
                                 "left_chats": {"list": [dict(chat, id=6)]}}).encode(),
        "list5.json": b'{"chats": {"list": 5}}', "nochats.json": b'{"chats": {"list": []}}',
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return sorted(tmp_path.glob("*.json"))


def _comparable(outcomes):
    return [(o.source_uri, o.reason, o.source_record) if isinstance(o, Quarantined) else o for o in outcomes]


def test_one_bad_value_is_one_row_and_the_export_goes_on(tmp_path):
    out = read(_broken_files(tmp_path))
    by_file = {}
    for o in (o for o in out if not isinstance(o, Skipped)):
        name = (o.source_uri if isinstance(o, Quarantined) else o[M.source_uri]).rsplit("/", 1)[1]
        by_file.setdefault(name, []).append(o.reason if isinstance(o, Quarantined) else "message")
    assert by_file["chat.json"] == ["message", "wrong_type", "missing_field", "bad_time", "wrong_type", "message"]
    assert by_file["list5.json"] == ["wrong_type"] and by_file["nochats.json"] == ["missing_field"]
    assert by_file["full.json"] == ["message", "message", "wrong_type", "missing_field"] + by_file["chat.json"] * 2
    assert [o for o in out if isinstance(o, Skipped)] == [Skipped("service_message")]


def test_a_large_export_is_streamed_with_the_same_outcomes(real, tmp_path, monkeypatch):
    from pipelines.sources import telegram

    paths = _broken_files(tmp_path) + sorted((real / "telegram").glob("*.json"))
    whole = read(paths)
    monkeypatch.setattr(telegram, "STREAM_ABOVE_BYTES", 0)  # every file above it: all streamed
    streamed = read(paths)
    assert _comparable(streamed) == _comparable(whole)
    private = [o for o in streamed if isinstance(o, dict) and o[M.thread_id] == "telegram:42"]
    assert [o[M.recipient_ids] for o in private] == [["user7"], ["user42"]]
