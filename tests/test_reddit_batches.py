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
    {"edited": 0}, {"edited": "0"}, {"edited": "1600000500"}, {"edited": "true"}, {"edited": {"at": 1}},
    {"edited": -5}, {"stickied": "yes"}, {"distinguished": 3}, {"is_submitter": 1}, {"_meta": None},
    {"id": "t3_c7"}, {"controversiality": 2.5},
    {"retrieved_on": 1_600_000_100.5}, {"score": "-3"}, {"score": "1e3"}, {"created_utc": "01600000000"},
    {"created_utc": 1_600_000_000.0}, {"retrieved_on": 1_600_000_100.0}, {"edited": 1_600_000_500.0},
    {"edited": 0.0}, {"score": 1e20}, {"_meta": {}}, {"_meta": {"was_deleted_later": True, "x": [1]}},
    {"_meta": {"retrieved_2nd_on": 1_600_100_000.0, "removal_type": ""}}, {"_meta": {"removal_type": 3}},
    {"_meta": {"retrieved_2nd_on": "soon"}},
    # submissions (no `body`, a `title`): link posts, removed, entities, crossposts, odd types
    {"body": None, "title": "t", "selftext": "", "is_self": False, "url": "https://x.example/a&amp;b"},
    {"body": None, "title": "t", "selftext": "", "is_self": True, "url": "https://x.example/self"},
    {"body": None, "title": "t", "selftext": "", "is_self": None, "url": "https://x.example/none"},
    {"body": None, "title": "t", "selftext": "s", "is_self": False, "url": "https://x.example/s"},
    {"body": None, "title": "t", "selftext": "", "is_self": False, "url": ""},
    {"body": None, "title": "t", "selftext": "[removed]"}, {"body": None, "title": "t", "selftext": "[deleted]",
                                                            "author": "[deleted]"},
    {"body": None, "title": "a &amp;amp; b", "selftext": "x\r\ny  \n\n\n\nz"}, {"body": None, "title": "", "selftext": "x"},
    {"body": None, "title": "  ", "selftext": " x "}, {"body": None, "title": "caf\u00e9", "selftext": "na\u00efve"},
    {"body": None, "title": "\u2003wide", "selftext": "end\u3000"},
    {"body": None, "title": "t", "crosspost_parent": "t3_xyz", "domain": "v.redd.it", "over_18": True,
     "num_comments": 5, "stickied": True, "distinguished": "moderator", "edited": 1_600_000_500.5},
    {"body": None, "title": "t", "num_comments": "7"}, {"body": None, "title": "t", "num_comments": 7.0},
    {"body": None, "title": "t", "num_comments": True},
    {"body": None, "title": "t", "selftext": "", "is_self": False, "url": 5},
    {"body": None, "title": "t", "selftext": "", "is_self": "false", "url": "u"},
    {"body": None, "title": 5}, {"body": None, "title": "t", "selftext": None}, {"body": None, "title": "t", "selftext": 3},
    {"body": None, "title": "t", "over_18": "yes"}, {"body": None, "title": "t", "crosspost_parent": 4},
    {"body": None, "title": "t", "domain": 4}, {"body": None, "title": "t", "created_utc": "1600000000"},
    {"body": None, "title": "t", "_meta": {"removal_type": "deleted", "was_deleted_later": True}},
    {"body": None, "title": "t", "selftext": "x" * (MAX_TEXT_CHARS + 1)},
    {"body": None, "title": "t", "id": "t3_p9", "author": "AutoModerator", "score": "12"},
]
# Lines written by hand: what no dict can hold (a repeated key), escapes orjson writes otherwise,
# and line ends and blanks around records.
RAW_LINES = [
    b'{"body":"first","body":"second","subreddit":"t","id":"d1","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"x","author":"bob","author":null,"subreddit":"t","id":"d2","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"x","author":null,"author":"eve","subreddit":"t","id":"d3","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"x","score":1,"score":"y","subreddit":"t","id":"d4","link_id":"t3_a","created_utc":1600000000}',
    b'{"body" : "spaced", "subreddit" : "t", "id" : "d5", "link_id" : "t3_a", "created_utc" : 1600000000}',
    b'{"body":"pair \\ud83d\\ude00 ok","subreddit":"t","id":"d6","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"lone \\ud83d here","subreddit":"t","id":"d7","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"escaped \\u00e9 \\/ \\"q\\":","subreddit":"t","id":"d8","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"crlf","subreddit":"t","id":"d9","link_id":"t3_a","created_utc":1600000000}\r',
    b'  {"body":"lead","subreddit":"t","id":"d10","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"trail","subreddit":"t","id":"d11","link_id":"t3_a","created_utc":1600000000}  ',
    b'{"body":"nested","q":{"body":5,"id":[1]},"subreddit":"t","id":"d12","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"ctl \x01","subreddit":"t","id":"d13","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":"big","score":99999999999999999999999,"subreddit":"t","id":"d14","link_id":"t3_a","created_utc":1600000000}',
    b'{"body":null,"title":"t","subreddit":"t","id":"p1","created_utc":1600000000}',
    b'{"b\\u006fdy":null,"title":"t","subreddit":"t","id":"p2","created_utc":1600000000}',
    b'{"title":"body","selftext":"\\u00e9","subreddit":"t","id":"p3","created_utc":1600000000}',
    b'{"title":"a","title":"b","subreddit":"t","id":"p4","created_utc":1600000000}',
    b'{"title":"t","selftext":"s","subreddit":"t","id":"p5","created_utc":1600000000,"body":null}',
    b'{"title":"t","num_comments":99999999999999999999999,"subreddit":"t","id":"p6","created_utc":1600000000}',
    b"\t", b"\r",
]


def _lines(variants, big_score: bool) -> list[bytes]:
    out = []
    for i, v in enumerate(variants):
        rec = dict(BASE, id=f"c{i}") | v
        rec = {k: val for k, val in rec.items() if not (val is None and k in v and k in ("body",) and "title" in v)}
        out.append(orjson.dumps(rec))
    out += [b"[1, 2]", b'{"body": "cut', b'{"body": "\xff\xfe", "id": "u"}', b"   ", b"", b"null", *RAW_LINES]
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


@pytest.mark.parametrize("big_score", [False, True], ids=["column-path", "block-read-again"])
@pytest.mark.parametrize("batch_rows", [7, 20_000])
@pytest.mark.parametrize("zst", [False, True])
def test_block_reader_equals_line_reader(tmp_path, big_score, batch_rows, zst):
    data = b"\n".join(_lines(VARIANTS * 3, big_score)) + b"\n"
    path = tmp_path / ("RC_2020-09.zst" if zst else "RC_2020-09.ndjson")
    path.write_bytes(zstd_long(data)[:-40] if zst else data)  # a .zst cut short: a truncated tail too
    ref_t, ref_q, ref_n = _reference(str(path))
    t, q, n = _ours(str(path), batch_rows)
    assert n == ref_n
    # The column path takes the ordinary lines and the reference only the odd ones, also when a
    # number no int64 holds makes the strict read fail and the block is read again.
    mixed = b"\n".join(_lines([{}] * 300 + VARIANTS, big_score)) + b"\n"
    (fast, slow, n_rows), = [(t.num_rows, len(o), k) for t, o, k in reddit._line_table(str(path), 0, mixed, 0, 10**9)]
    assert fast >= 300 and slow < len(VARIANTS) + len(RAW_LINES) + 6
    assert ref_t.num_rows > 100 and len(ref_q) > 20  # the variants really produce both kinds of row
    assert t.equals(ref_t), "message rows differ from the line-by-line reader"
    key = lambda r: (r["source_record"] if r["source_record"] is not None else -1, r["reason"])
    assert sorted(q, key=key) == sorted(ref_q, key=key)


def test_empty_file(tmp_path):
    path = tmp_path / "RC_2020-09.zst"
    path.write_bytes(b"")
    t, q, n = _ours(str(path), 100)
    assert (t.num_rows, n, [r["reason"] for r in q]) == (0, 1, ["empty_file"])


@pytest.mark.parametrize("name", ["RC_2005-12.zst", "paul-e_test_comments.ndjson", "paul-e_test_submissions.ndjson"])
def test_block_reader_equals_line_reader_on_real_dumps(real, name):
    """The real samples: 2005 comments, and 2005-2024 layouts (float times, `_meta`, submissions)."""
    path = str(real / "reddit" / name)
    ref_t, ref_q, ref_n = _reference(path)
    t, q, n = _ours(path, 20_000)
    assert (n, q) == (ref_n, ref_q) and t.equals(ref_t)
    if "comments" in name or name.startswith("RC_"):  # comments of every layout take the column path
        data = b"".join(x[2] for x in reddit._blocks(path) if x[0] == "lines")
        (fast, slow, _), = [(t.num_rows, len(o), k) for t, o, k in reddit._line_table(path, 0, data, 0, 10**9)]
        assert slow <= fast // 10, (fast, slow)
