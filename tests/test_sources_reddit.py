"""Reddit reader: real Pushshift / Arctic Shift samples plus generated broken dumps."""

import json
from collections import Counter
from datetime import datetime, timezone

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines import cli
from pipelines.sources import Quarantined, SourceError, get_reader
from pipelines.sources import reddit
from schemas import MESSAGES as M


def _us(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()) * 1_000_000


def _read(path) -> list:
    r = get_reader("reddit")
    return [o for unit in r.units([str(path)]) for o in r.read_unit(unit)]


def _raw_lines(path) -> list[dict]:
    if str(path).endswith(".zst"):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read()
    else:
        data = path.read_bytes()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def rc(real):
    return _read(real / "reddit" / "RC_2005-12.zst")


@pytest.fixture(scope="module")
def rc_by_id(rc):
    return {m[M.message_id]: m for m in rc}


def test_rc_2005_12_yields_exactly_1075_comments(rc):
    assert len(rc) == 1075
    assert all(isinstance(o, dict) for o in rc)
    assert {m[M.kind] for m in rc} == {"comment"}
    assert len({m[M.message_id] for m in rc}) == 1075
    assert all(m[M.message_id].startswith("reddit:t1_") for m in rc)


def test_rc_2005_12_hand_checked_values(rc_by_id):
    first = rc_by_id["reddit:t1_c13"]
    assert first[M.created_at] == _us("2005-12-12T05:26:28")
    assert first[M.parent_id] == "reddit:t3_17863" and first[M.thread_id] == "reddit:t3_17863"
    assert (first[M.author_id], first[M.author_name], first[M.author_kind]) == ("frjo", "frjo", "user")
    assert first[M.community] == "r/reddit.com" and first[M.score] == 2
    assert first[M.retrieved_at] == 1473738411 * 1_000_000
    reply = rc_by_id["reddit:t1_c33"]  # AaronSw answering c29 in thread 17844
    assert reply[M.parent_id] == "reddit:t1_c29" and reply[M.thread_id] == "reddit:t3_17844"
    assert reply[M.created_at] == _us("2005-12-12T11:19:48")
    last = rc_by_id["reddit:t1_c2713"]
    assert last[M.created_at] == _us("2005-12-31T23:53:40") and last[M.parent_id] == "reddit:t1_c2701"
    assert last[M.text] == "Again.  Relax.  It's funny.  Sheesh."


def test_rc_parents_keep_their_t1_t3_prefix(rc, real):
    raw = _raw_lines(real / "reddit" / "RC_2005-12.zst")
    expected = Counter(d["parent_id"][:3] for d in raw)
    got = Counter(m[M.parent_id].split(":", 1)[1][:3] for m in rc)
    assert got == expected == Counter({"t3_": 746, "t1_": 329})
    by_id = {d["id"]: d for d in raw}
    for m in rc:
        assert m[M.parent_id] == "reddit:" + by_id[m[M.message_id][len("reddit:t1_"):]]["parent_id"]


def test_rc_times_are_utc_microseconds_inside_the_month(rc):
    lo, hi = _us("2005-12-01T00:00:00"), _us("2006-01-01T00:00:00")
    assert all(lo <= m[M.created_at] < hi and m[M.created_at] % 1_000_000 == 0 for m in rc)
    assert {m[M.time_kind] for m in rc} == {"wall"} and {m[M.time_precision] for m in rc} == {"second"}


def test_deleted_authors_and_removed_bodies_are_kept_as_context(rc):
    deleted = [m for m in rc if m[M.author_kind] == "deleted"]
    assert len(deleted) == 185
    assert all(m[M.author_id] is None and m[M.author_name] is None for m in deleted)
    removed = Counter(json.loads(m[M.extra])["removed"] for m in rc if m[M.extra] and "removed" in m[M.extra])
    assert removed == {"deleted": 105, "removed": 15}
    assert all(m[M.text] == "" for m in rc if m[M.extra] and '"removed"' in m[M.extra])


def test_html_entities_are_unescaped(rc_by_id):
    text = rc_by_id["reddit:t1_c35"][M.text]
    assert "&amp;" not in text and "?ex=1291870800&en=d3e174110265b5be" in text


def test_paul_e_samples_parse_every_created_utc_type(real):
    for name, n in (("paul-e_test_comments.ndjson", 27), ("paul-e_test_submissions.ndjson", 31)):
        path = real / "reddit" / name
        raw = _raw_lines(path)
        assert {type(d["created_utc"]) for d in raw} == {int, str, float}
        out = _read(path)
        assert len(out) == n and all(isinstance(o, dict) for o in out)
        for d, m in zip(raw, out):
            assert m[M.created_at] == int(float(d["created_utc"])) * 1_000_000


def test_2024_meta_second_retrieval_is_the_retrieval_time(real):
    path = real / "reddit" / "paul-e_test_comments.ndjson"
    for d, m in zip(_raw_lines(path), _read(path)):
        meta = d.get("_meta", {})
        want = meta.get("retrieved_2nd_on", d.get("retrieved_on"))
        assert m[M.retrieved_at] == (want * 1_000_000 if want else None)


def test_submissions_are_posts_with_titles_and_crossposts_are_not_messages(real):
    path = real / "reddit" / "paul-e_test_submissions.ndjson"
    raw = _raw_lines(path)
    out = _read(path)
    ids = {m[M.message_id] for m in out}
    assert all(m[M.kind] == "post" and m[M.thread_id] == m[M.message_id] and m[M.parent_id] is None for m in out)
    cross = [(d, m) for d, m in zip(raw, out) if d.get("crosspost_parent_list")]
    assert cross
    for d, m in cross:
        for original in d["crosspost_parent_list"]:
            assert f"reddit:t3_{original['id']}" not in ids
        assert json.loads(m[M.extra])["crosspost_parent"] == f"reddit:{d['crosspost_parent']}"
    link = next(m for d, m in zip(raw, out) if d["id"] == "87")  # 2005 link post, empty selftext
    assert link[M.title] == "The Downing Street Memo" and link[M.text] == "http://www.downingstreetmemo.com"
    edited = next(m for d, m in zip(raw, out) if d["id"] == "j08bcm")
    assert edited[M.edited_at] == 1606781062 * 1_000_000


def test_bots_are_flagged(real):
    out = {m[M.author_name]: m for m in _read(real / "reddit" / "paul-e_test_comments.ndjson")}
    assert out["Bitty_Bot"][M.author_kind] == "bot"
    assert out["DubsAli"][M.author_kind] == "user"
    assert reddit.is_bot("AutoModerator") and not reddit.is_bot("Talbot")


# --- broken inputs ------------------------------------------------------------------------------

GOOD = {"id": "x1", "author": "alice", "body": "hi &amp; bye\r\nsecond line", "created_utc": "1300000000",
        "subreddit": "test", "link_id": "t3_aa", "parent_id": "t1_zz", "score": 3}


def _line(**over) -> bytes:
    d = {**GOOD, **over}
    return orjson.dumps({k: v for k, v in d.items() if v is not ...})


def _reasons(out) -> list:
    return [o.reason if isinstance(o, Quarantined) else "message" for o in out]


def test_each_broken_line_lands_in_quarantine_with_its_reason(tmp_path):
    lines = [
        _line(),
        b'{"id": "x2", "body": \xff\xfe "bad utf8"}',
        b'{"id": "x3", "body": "unterminated',
        _line(id="x4", created_utc="yesterday"),
        _line(id="x5", created_utc=True),
        _line(id="x6", body=...),  # a comment without body reads as neither comment nor submission
        _line(id="x7", body=None),
        _line(id=...),
        _line(id=42),
        b"[1, 2, 3]",
        _line(id="x8", body="y" * 100_001),
        b"",  # blank lines are not records
        _line(id="x9", created_utc=1.3e9, author="[deleted]"),
    ]
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(lines))
    out = _read(path)
    assert _reasons(out) == ["message", "invalid_utf8", "invalid_json", "bad_time", "bad_time", "missing_field",
                             "missing_field", "missing_field", "wrong_type", "wrong_type", "too_large", "message"]
    good = out[0]
    assert good[M.text] == "hi & bye\nsecond line" and good[M.created_at] == 1_300_000_000 * 1_000_000
    assert out[-1][M.author_kind] == "deleted"
    assert [o.source_record for o in out if isinstance(o, Quarantined)] == list(range(1, 11))


def test_truncated_zst_keeps_what_decodes_and_quarantines_the_rest(real, tmp_path):
    data = (real / "reddit" / "RC_2005-12.zst").read_bytes()
    path = tmp_path / "RC_cut.zst"
    path.write_bytes(data[: len(data) // 2])
    out = _read(path)
    assert _reasons(out)[-1] == "truncated" and out[-1].excerpt  # the incomplete line is the excerpt
    assert all(isinstance(o, dict) for o in out[:-1]) and 300 < len(out) - 1 < 1075


def test_corrupt_zst_is_quarantined_not_raised(real, tmp_path):
    data = bytearray((real / "reddit" / "RC_2005-12.zst").read_bytes())
    for i in range(60_000, 60_200):
        data[i] ^= 0x5A
    path = tmp_path / "RC_bad.zst"
    path.write_bytes(bytes(data))
    out = _read(path)
    assert "corrupt" in _reasons(out)
    assert sum(isinstance(o, dict) for o in out) > 300  # what decoded before the damage is kept


def test_concatenated_zst_frames_are_all_read(real, tmp_path):
    raw = b"\n".join(orjson.dumps(d) for d in _raw_lines(real / "reddit" / "RC_2005-12.zst")) + b"\n"
    cut = raw.find(b"\n", len(raw) // 2) + 1
    c = zstandard.ZstdCompressor()
    path = tmp_path / "two_frames.zst"
    path.write_bytes(c.compress(raw[:cut]) + c.compress(raw[cut:]))
    assert len([o for o in _read(path) if isinstance(o, dict)]) == 1075


def test_utf8_characters_split_across_chunks_survive(tmp_path, monkeypatch):
    monkeypatch.setattr(reddit, "CHUNK_BYTES", 7)
    monkeypatch.setattr(reddit, "FEED_BYTES", 5)
    text = "naïve café ✓ 😀 " * 20
    raw = _line(body=text) + b"\n" + _line(id="x2", body=text)
    (tmp_path / "u.ndjson").write_bytes(raw)
    (tmp_path / "u.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    for name in ("u.ndjson", "u.zst"):
        out = _read(tmp_path / name)
        assert [m[M.text] for m in out] == [text.strip()] * 2


@pytest.mark.parametrize("content", [b"", zstandard.ZstdCompressor().compress(b""), b"\n\n"])
def test_empty_file_is_one_quarantine_row(tmp_path, content):
    path = tmp_path / ("e.zst" if content[:1] == b"\x28" else "e.ndjson")
    path.write_bytes(content)
    out = _read(path)
    assert _reasons(out) == ["empty_file"]


def test_missing_file_is_a_source_error_naming_it(tmp_path):
    missing = tmp_path / "RC_1999-01.zst"
    with pytest.raises(SourceError, match="RC_1999-01.zst"):
        _read(missing)


def test_fsspec_urls_are_accepted(real):
    out = _read("file://" + str(real / "reddit" / "paul-e_test_comments.ndjson"))
    assert len(out) == 27 and all(isinstance(o, dict) for o in out)


def test_cli_ingest_conserves_counts(real, tmp_path, capsys):
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(_line() + b"\n{oops\n" + _line(id="x2", created_utc="never") + b"\n")
    rc = cli.main(["ingest", "reddit", str(real / "reddit" / "RC_2005-12.zst"), str(bad), "--out", str(tmp_path / "o")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["format"] == "reddit"
    assert summary["records"] == summary["messages"] + summary["quarantined"] + summary["skipped"]
    assert (summary["records"], summary["messages"]) == (1078, 1076)
    assert summary["quarantined_by_reason"] == {"bad_time": 1, "invalid_json": 1}
    table = pq.read_table(tmp_path / "o" / "messages_raw" / "reddit")
    assert table.num_rows == 1076
    assert pq.read_table(tmp_path / "o" / "quarantine" / "reddit").num_rows == 2


def test_an_over_long_line_is_quarantined_and_reading_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(reddit, "CHUNK_BYTES", 64)
    monkeypatch.setattr(reddit, "MAX_LINE_BYTES", 200)
    path = tmp_path / "long.ndjson"
    path.write_bytes(_line() + b"\n" + _line(id="x2", body="z" * 1000) + b"\n" + _line(id="x3") + b"\n")
    out = _read(path)
    assert _reasons(out) == ["message", "too_large", "message"]
    assert out[2][M.message_id] == "reddit:t1_x3" and out[2][M.source_record] == 2
    # the block reader (what ingest runs) streams the file the same way
    from pipelines.stages.ingest import iter_unit_batches

    batches = list(iter_unit_batches("reddit", [str(path)]))
    assert [q["reason"] for b in batches for q in b.quarantine] == ["too_large"]
    assert [r for b in batches for r in b.messages.column(M.source_record).to_pylist()] == [0, 2]
