"""The block reader of Reddit dumps (``reddit.read_batches``, what ``ingest`` runs) gives the
same rows as the line-by-line reference (``reddit.read_file``), for every kind of odd line."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from pipelines.stages.ingest import _rows_to_table, iter_unit_batches
from pipelines.sample import zstd_long
from pipelines.sources import Quarantined, reddit
from pipelines.sources.base import MAX_TEXT_CHARS

BASE = {"body": "plain text", "subreddit": "test", "author": "alice", "id": "c1", "link_id": "t3_abc",
        "parent_id": "t3_abc", "created_utc": 1_600_000_000, "score": 3, "retrieved_on": 1_600_000_100,
        "edited": False, "stickied": False, "distinguished": None, "controversiality": 0}

# Each variant differs from BASE in the fields given (None: the key is removed).
VARIANTS = [
    {}, {"id": "t1_c9"}, {"id": ""}, {"id": 7}, {"id": None, "name": "t1_zz"},
    {"created_utc": "1600000000"}, {"created_utc": 1_600_000_000.5}, {"created_utc": True},
    {"created_utc": 99}, {"created_utc": 4_102_444_800}, {"created_utc": None},
    {"author": None}, {"author": ""}, {"author": "[deleted]"}, {"author": "AutoModerator"},
    {"author": "helper_bot"}, {"author": "\u212aarma"}, {"author": 5}, {"author": "Zoë"},
    {"body": "[deleted]"}, {"body": "[removed]"}, {"body": "a &amp;gt; b &#39;x&#39;"}, {"body": "a\r\nb"},
    {"body": "trailing  \nnext"}, {"body": "a\n\n\n\nb"}, {"body": "\u2003indented"}, {"body": "end\u3000"},
    {"body": "emoji \U0001F600"}, {"body": ""}, {"body": None}, {"body": 12}, {"body": "x" * (MAX_TEXT_CHARS + 1)},
    {"parent_id": None}, {"parent_id": "abc"}, {"parent_id": "c0"}, {"parent_id": 3}, {"link_id": "abc"},
    {"link_id": None}, {"link_id": 4}, {"subreddit": None}, {"subreddit": 1},
    {"edited": True}, {"edited": 1_600_000_500}, {"edited": 1_600_000_500.25}, {"edited": "false"}, {"edited": 1},
    {"_meta": {"retrieved_2nd_on": 1_600_100_000, "removal_type": "moderator"}}, {"_meta": "odd"},
    {"retrieved_on": 5}, {"retrieved_on": None, "retrieved_utc": 1_600_000_200}, {"retrieved_on": "1600000100"},
    {"distinguished": "moderator"}, {"distinguished": ""}, {"stickied": True}, {"controversiality": 1},
    {"controversiality": "1"}, {"is_submitter": True}, {"score": None}, {"score": "12"}, {"score": 2.0},
    {"score": True}, {"body": None, "title": "a post", "selftext": "its text", "url": "https://x.example"},
]


def _lines(variants, big_score: bool) -> list[bytes]:
    out = []
    for i, v in enumerate(variants):
        rec = dict(BASE, id=f"c{i}") | v
        rec = {k: val for k, val in rec.items() if not (val is None and k in v and k in ("body",) and "title" in v)}
        out.append(orjson.dumps(rec))
    out += [b"[1, 2]", b'{"body": "cut', b'{"body": "\xff\xfe", "id": "u"}', b"   ", b"", b"null"]
    if big_score:  # first, so that cutting a .zst short does not remove it
        out.insert(0, orjson.dumps(dict(BASE, id="big", score=2**63)))
    return out


def _reference(path: str):
    outcomes = list(reddit.read_file(path))
    q = [o.row("reddit") for o in outcomes if isinstance(o, Quarantined)]
    table = _rows_to_table([o for o in outcomes if isinstance(o, dict)], "reddit", q)
    return table, q, len(outcomes)


def _ours(path: str, batch_rows: int):
    batches = list(iter_unit_batches("reddit", [path], batch_rows=batch_rows))
    q = [r for b in batches for r in b.quarantine]
    return pa.concat_tables([b.messages for b in batches]), q, sum(b.records for b in batches)


@pytest.mark.parametrize("big_score", [False, True], ids=["column-path", "block-falls-back"])
@pytest.mark.parametrize("batch_rows", [7, 20_000])
@pytest.mark.parametrize("zst", [False, True])
def test_block_reader_equals_line_reader(tmp_path, big_score, batch_rows, zst):
    data = b"\n".join(_lines(VARIANTS * 3, big_score)) + b"\n"
    path = tmp_path / ("RC_2020-09.zst" if zst else "RC_2020-09.ndjson")
    path.write_bytes(zstd_long(data)[:-40] if zst else data)  # a .zst cut short: a truncated tail too
    ref_t, ref_q, ref_n = _reference(str(path))
    t, q, n = _ours(str(path), batch_rows)
    assert n == ref_n
    lines = [x for x in reddit.iter_lines(str(path)) if not isinstance(x, Quarantined)]
    if big_score:  # a score no int64 holds: Arrow refuses the block, the reference reads it
        with pytest.raises(TypeError):
            reddit._fast_block(str(path), lines)
    else:  # the column path takes the ordinary lines, the reference only the odd ones
        fast, slow = reddit._fast_block(str(path), lines)
        assert fast.num_rows > 40 and len(slow) < len(lines) - 40
    assert ref_t.num_rows > 100 and len(ref_q) > 20  # the variants really produce both kinds of row
    assert t.equals(ref_t), "message rows differ from the line-by-line reader"
    key = lambda r: (r["source_record"] if r["source_record"] is not None else -1, r["reason"])
    assert sorted(q, key=key) == sorted(ref_q, key=key)


def test_empty_file(tmp_path):
    path = tmp_path / "RC_2020-09.zst"
    path.write_bytes(b"")
    t, q, n = _ours(str(path), 100)
    assert (t.num_rows, n, [r["reason"] for r in q]) == (0, 1, ["empty_file"])
