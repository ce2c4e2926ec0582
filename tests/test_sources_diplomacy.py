"""Diplomacy reader: every array element is a message with its labels and its game order."""

import json
from collections import defaultdict

import pytest

from pipelines.sources import Quarantined, Skipped, get_reader
from schemas import MESSAGES as M

READER = get_reader("diplomacy")


def read(paths):
    return [o for unit in READER.units([str(p) for p in paths]) for o in READER.read_unit(unit)]


@pytest.fixture(scope="module")
def messages(real):
    out = read([real / "diplomacy" / "train.jsonl"])
    assert all(isinstance(o, dict) for o in out), "the real sample has no bad records"
    return out


def test_every_message_of_the_real_sample_is_read(messages):
    assert len(messages) == 13_132
    assert len({m[M.message_id] for m in messages}) == 13_132


def test_every_message_keeps_its_labels(messages):
    labels = [json.loads(m[M.labels]) for m in messages]
    assert all(isinstance(lab["sender_truthful"], bool) for lab in labels)
    assert sum(lab["receiver_truthful"] is None for lab in labels) == 1_107  # the NOANNOTATION count
    assert all(lab["receiver_truthful"] in (True, False, None) for lab in labels)


def test_game_order_is_dense_per_game(messages):
    per_game = defaultdict(list)
    for m in messages:
        assert m.get(M.created_at) is None and m[M.time_kind] == "ordinal"
        per_game[m[M.community]].append(m[M.time_ordinal])
    assert len(per_game) == 9
    for ordinals in per_game.values():
        assert sorted(ordinals) == list(range(len(ordinals)))


def test_dialog_is_the_thread_and_the_receiver_the_recipient(messages):
    m = messages[0]
    assert m[M.message_id] == "diplomacy:1:74"
    assert m[M.thread_id] == "diplomacy:1:germany-italy"
    assert (m[M.author_id], m[M.recipient_ids]) == ("1:italy", ["1:germany"])
    extra = json.loads(m[M.extra])
    assert (extra["year"], extra["season"]) == (1901, "Spring")
    assert all(m[M.author_id].split(":")[1] in m[M.thread_id] for m in messages)


def _dialog(**over):
    d = {"messages": ["hi", "yo"], "sender_labels": [True, False], "receiver_labels": [True, "NOANNOTATION"],
         "speakers": ["italy", "germany"], "receivers": ["germany", "italy"], "absolute_message_index": [0, 1],
         "relative_message_index": [0, 1], "seasons": ["Spring", "Spring"], "years": ["1901", "1901"],
         "game_score": ["3", "3"], "game_score_delta": ["0", "0"], "players": ["italy", "germany"], "game_id": 1}
    d.update(over)
    return json.dumps(d).encode()


def test_broken_lines_are_quarantined_with_their_reason(tmp_path):
    f = tmp_path / "broken.jsonl"
    f.write_bytes(b"\n".join([
        _dialog(),                                   # 2 messages
        b'{"messages": ["unterminated"',             # invalid_json
        b'{"messages": ["caf\xe9"]}',                # invalid_utf8
        _dialog(speakers=["italy"]),                 # unequal arrays -> missing_field
        _dialog(game_id=None),                       # missing_field
        _dialog(messages=["ok", 42]),                # element 1 wrong_type, element 0 kept
        b"[1, 2]",                                   # wrong_type
    ]) + b"\n")
    out = read([f])
    reasons = [o.reason for o in out if isinstance(o, Quarantined)]
    assert reasons == ["invalid_json", "invalid_utf8", "missing_field", "missing_field", "wrong_type", "wrong_type"]
    assert sum(isinstance(o, dict) for o in out) == 3
    assert not any(isinstance(o, Skipped) for o in out)
    assert {o.source_record for o in out if isinstance(o, Quarantined)} == {1, 2, 3, 4, 5, 6}


def test_empty_file_is_one_quarantine_row(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_bytes(b"")
    (q,) = read([f])
    assert isinstance(q, Quarantined) and q.reason == "empty_file"


def test_over_size_text_is_quarantined(tmp_path):
    f = tmp_path / "big.jsonl"
    f.write_bytes(_dialog(messages=["x" * 200_000, "short"]) + b"\n")
    out = read([f])
    assert [o.reason for o in out if isinstance(o, Quarantined)] == ["too_large"]
    assert [o[M.text] for o in out if isinstance(o, dict)] == ["short"]


def test_ingest_writes_every_message_to_the_table(real, tmp_path):
    from pipelines.core import storage
    from pipelines.stages.ingest import ingest

    stats = ingest("diplomacy", [str(real / "diplomacy" / "train.jsonl")], str(tmp_path / "m"), str(tmp_path / "q"))
    assert (stats.records, stats.messages, stats.quarantined, stats.skipped) == (13_132, 13_132, 0, 0)
    table = storage.read(str(tmp_path / "m"))
    assert table.height == 13_132 and table[M.labels].null_count() == 0
