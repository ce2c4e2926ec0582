"""The block reader of Diplomacy JSONL (``diplomacy.read_batches``, what ``ingest`` runs) gives the
same rows as the per-record reference (``diplomacy.read_unit``), for every kind of odd line."""

from __future__ import annotations

import json

import orjson
import pyarrow as pa
import pytest

from pipelines.sources import Quarantined, diplomacy
from pipelines.sources.base import MAX_TEXT_CHARS
from pipelines.stages.ingest import _rows_to_table, iter_unit_batches

BASE = {
    "messages": ["Hello Italy!", "Sounds good.", "Deal."],
    "sender_labels": [True, False, True],
    "receiver_labels": [True, "NOANNOTATION", False],
    "speakers": ["england", "italy", "england"],
    "receivers": ["italy", "england", "italy"],
    "absolute_message_index": [4, 7, 9],
    "relative_message_index": [0, 1, 2],
    "seasons": ["Spring", "Fall", "Winter"],
    "years": ["1901", "1901", "1902"],
    "game_score": ["3", "4", "5"],
    "game_score_delta": ["0", "-1", "1"],
    "players": ["england", "italy"],
    "game_id": 7,
}


def _first(field: str, value) -> dict:
    """BASE with the first element of ``field`` replaced."""
    return {field: [value, *BASE[field][1:]]}


# Each variant differs from BASE in the fields given (None as a whole value: the key is removed).
VARIANTS = [
    {}, {"game_id": 12}, {"game_id": "12"}, {"game_id": "x"}, {"game_id": 1.5}, {"game_id": True},
    {"game_id": 2**63}, {"game_id": -3}, {"game_id": None}, {"messages": None}, {"speakers": "england"},
    {"years": {"a": 1}}, {"seasons": ["Spring"]}, {k: [] for k in diplomacy.ARRAYS},
    _first("messages", 5), _first("messages", None), _first("messages", ""), _first("messages", "   "),
    _first("messages", "x" * (MAX_TEXT_CHARS + 1)), _first("messages", "a\r\nb\rc"),
    _first("messages", "trailing  \nnext\t\nx"), _first("messages", "a\n\n\n\nb"),
    _first("messages", "\u3000indented"), _first("messages", "end\u00a0"), _first("messages", "end\x1f"),
    _first("messages", "\u2028x"), _first("messages", "emoji \U0001F600"), _first("messages", "é"),
    _first("messages", '"quoted" \\ back'), _first("messages", "\n\nlead and trail\n"),
    _first("speakers", ""), _first("speakers", 5), _first("speakers", "Germany"), _first("speakers", "İTALY"),
    _first("speakers", "ΣΑΣ"), _first("receivers", "ẞ"), _first("receivers", None),
    {"speakers": ["italy", "england", "italy"], "receivers": ["england", "italy", "england"]},
    _first("absolute_message_index", -1), _first("absolute_message_index", 1.5),
    _first("absolute_message_index", True), _first("absolute_message_index", "3"),
    _first("absolute_message_index", 2**63), _first("absolute_message_index", 2**63 - 1),
    _first("relative_message_index", "x"), _first("relative_message_index", 1.5),
    _first("relative_message_index", None), _first("relative_message_index", False),
    _first("seasons", 5), _first("seasons", None), _first("seasons", 'Spr"ing\n'),
    _first("years", 1901), _first("years", "99999999999999999999999"), _first("years", 2**63),
    _first("years", 2**64 - 1), _first("years", 1.5), _first("years", True), _first("years", None),
    _first("years", "+5"), _first("years", "\u0663"), _first("years", "-0"), _first("years", "007"),
    _first("years", "1901 "), _first("game_score", 4), _first("game_score", -9223372036854775808),
    _first("game_score", ""), _first("game_score_delta", [1]), _first("game_score_delta", "x\u2028"),
    _first("sender_labels", "True"), _first("sender_labels", "false"), _first("sender_labels", "tRuE"),
    _first("sender_labels", "NOANNOTATION"), _first("sender_labels", 1), _first("sender_labels", None),
    _first("receiver_labels", "TRUE"), _first("receiver_labels", "False"), _first("receiver_labels", "yes"),
    _first("receiver_labels", 0), _first("receiver_labels", 1.0), _first("receiver_labels", None),
    _first("receiver_labels", "noannotation"), {"players": [99999999999999999999999]},
    {"extra_key": {"messages": 5}},
]
# Lines written by hand: what no dict can hold (repeated keys), escapes, numbers orjson refuses,
# line ends and blanks around records.
_TAIL = (b'"sender_labels":[true],"receiver_labels":[true],"speakers":["france"],"receivers":["russia"],'
         b'"absolute_message_index":[1],"relative_message_index":[0],"seasons":["Fall"],"years":["1905"],'
         b'"game_score":["2"],"game_score_delta":["1"],"game_id":3}')
RAW_LINES = [
    b'{"messages":["first"],"messages":["second"],' + _TAIL,
    b'{"messages":["a"],"game_id":4,' + _TAIL,
    b'{"mess\\u0061ges":["escaped key"],"messages":["plain"],' + _TAIL,
    b'{"messages":["pair \\ud83d\\ude00 ok"],' + _TAIL,
    b'{"messages":["lone \\ud83d here"],' + _TAIL,
    b'{"messages":["escaped \\u00e9 \\/ \\"q\\":"],' + _TAIL,
    b'{"messages":["crlf line"],' + _TAIL + b"\r",
    b'  {"messages":["leading blanks"],' + _TAIL,
    b'{"messages":["trailing blanks"],' + _TAIL + b"  ",
    b'{"messages":["ctl \x01"],' + _TAIL,
    b'{"messages":["big"],"players":[1e400],' + _TAIL,
    b'{"messages":["big int"],"players":[99999999999999999999999],' + _TAIL,
    b'{"messages":["nan"],"players":[NaN],' + _TAIL,
    b'{"messages" : ["spaced"] , ' + _TAIL,
    b"[1, 2]", b"null", b'"a string"', b"5", b'{"messages": ["cut', b'{"messages": ["\xff\xfe"]}', b"{}",
    b"   ", b"", b"\t", b"\r", b"\x0c",
]


def _lines(variants) -> list[bytes]:
    out = []
    for i, v in enumerate(variants):
        rec = dict(BASE, game_id=BASE["game_id"] + i) | v
        rec = {k: val for k, val in rec.items() if not (val is None and k in v)}
        # json, not orjson: ints past 64 bits; every other line with non-ASCII written as \u escapes
        out.append(json.dumps(rec, ensure_ascii=i % 2 == 1, separators=(",", ":") if i % 3 else None).encode())
    return out + RAW_LINES


def _reference(paths: list[str]):
    outcomes = list(diplomacy.read_unit(paths))
    q = [o.row("diplomacy") for o in outcomes if isinstance(o, Quarantined)]
    table = _rows_to_table([o for o in outcomes if isinstance(o, dict)], "diplomacy", q)
    return table, q, len(outcomes)


def _ours(paths: list[str], batch_rows: int):
    batches = list(iter_unit_batches("diplomacy", paths, batch_rows=batch_rows))
    q = [r for b in batches for r in b.quarantine]
    return pa.concat_tables([b.messages for b in batches]), q, sum(b.records for b in batches)


def _same(paths: list[str], batch_rows: int):
    ref_t, ref_q, ref_n = _reference(paths)
    t, q, n = _ours(paths, batch_rows)
    assert n == ref_n
    assert q == ref_q, "quarantine rows differ from the per-record reader"
    if not t.equals(ref_t):
        for name in ref_t.column_names:  # name the first column that differs
            assert t.column(name).to_pylist() == ref_t.column(name).to_pylist(), name
        assert t.equals(ref_t)
    return ref_t, ref_q


@pytest.mark.parametrize("batch_rows", [1, 7, 20_000])
def test_block_reader_equals_reference_on_odd_lines(tmp_path, batch_rows):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(_lines(VARIANTS * 2)) + b"\n")
    ref_t, ref_q = _same([str(path)], batch_rows)
    assert ref_t.num_rows > 200 and len(ref_q) > 60  # the variants really produce both kinds of row


def test_ordinary_lines_take_the_column_path(tmp_path):
    """Only the odd lines go to the reference: the ordinary ones become the block's table."""
    data = b"\n".join(_lines([{}] * 200 + VARIANTS))
    (table, outcomes, _), (_, _, order) = list(diplomacy._block("x.jsonl", 0, 0, data, 0, 10**9))
    assert table.num_rows >= 600 and len(outcomes) < 3 * len(VARIANTS) + len(RAW_LINES)
    assert order == table.num_rows + len(outcomes)


@pytest.mark.parametrize("block_bytes", [1, 100, 4096])
def test_lines_across_block_edges(tmp_path, monkeypatch, block_bytes):
    """Blocks of any size cut between lines, numbered and placed (byte offsets) as the reference
    numbers them: blank lines count, a last line without a newline is read."""
    monkeypatch.setattr(diplomacy, "BLOCK_BYTES", block_bytes)
    path = tmp_path / "train.jsonl"
    lines = _lines(VARIANTS[:12])
    path.write_bytes(b"\n\n".join(lines) + b"\r\n\n" + lines[0])
    _same([str(path)], 5)


def test_several_files_and_empty_ones(tmp_path):
    """A unit of several files: each is numbered on its own; an empty or blank file is one
    ``empty_file`` row, a file of empty dialogs is not."""
    paths = []
    for name, data in [("a.jsonl", b"\n".join(_lines(VARIANTS[:20]))), ("empty.jsonl", b""),
                       ("blank.jsonl", b"\n \n\r\n"), ("b.jsonl", b"\r\n".join(_lines(VARIANTS[20:50]))),
                       ("none.jsonl", orjson.dumps(dict(BASE, **{k: [] for k in diplomacy.ARRAYS})))]:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    _, ref_q = _same(paths, 3)
    assert [r["source_uri"].rsplit("/", 1)[1] for r in ref_q if r["reason"] == "empty_file"] == \
        ["empty.jsonl", "blank.jsonl"]


def test_empty_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"")
    t, q, n = _ours([str(path)], 100)
    assert (t.num_rows, n, [r["reason"] for r in q]) == (0, 1, ["empty_file"])


@pytest.mark.parametrize("batch_rows", [500, 20_000])
def test_block_reader_equals_reference_on_the_real_sample(real, batch_rows):
    """The real train split (189 dialogs, 13,132 messages): mixed label types, scores as strings
    and as ints, emoji written as surrogate pairs, texts with trailing blanks before newlines."""
    path = str(real / "diplomacy" / "train.jsonl")
    ref_t, ref_q = _same([path], batch_rows)
    assert ref_t.num_rows == 13_132 and ref_q == []
    data = open(path, "rb").read().rstrip(b"\n")
    (table, outcomes, _), _ = list(diplomacy._block(path, 0, 0, data, 0, 10**9))
    assert (table.num_rows, outcomes) == (13_132, [])  # every dialog takes the column path
