"""Stack Exchange reader: the real History-meta site dump plus generated broken site folders."""

import re
import shutil
import string
from collections import Counter
from datetime import datetime, timezone

import pytest

from pipelines.sources import Quarantined, Skipped, SourceError, get_reader
from schemas import MESSAGES as M


def _read(*paths) -> list:
    r = get_reader("stackexchange")
    return [o for unit in r.units([str(p) for p in paths]) for o in r.read_unit(unit)]


def _us(iso: str) -> int:
    dt = datetime.fromisoformat(iso).replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


@pytest.fixture(scope="module")
def site(real):
    return real / "stackexchange"


@pytest.fixture(scope="module")
def out(site):
    return _read(site)


@pytest.fixture(scope="module")
def by_id(out):
    return {o[M.message_id]: o for o in out if isinstance(o, dict)}


def _pid(n) -> str:
    return f"stackexchange:stackexchange:p{n}"


def test_counts_match_the_xml(site, out):
    posts = (site / "Posts.xml").read_text(encoding="utf-8-sig")
    types = Counter(re.findall(r'<row [^>]*?PostTypeId="(\d+)"', posts))
    comments = len(re.findall(r"<row ", (site / "Comments.xml").read_text(encoding="utf-8-sig")))
    msgs = [o for o in out if isinstance(o, dict)]
    from_posts = [m for m in msgs if m[M.message_id].split(":")[-1].startswith("p")]
    assert Counter(m[M.kind] for m in from_posts) == {"post": types["1"], "comment": types["2"]}
    assert sum(1 for m in msgs if ":c" in m[M.message_id]) == comments == 3454
    skipped = [o for o in out if isinstance(o, Skipped)]
    assert len(skipped) == sum(v for k, v in types.items() if k not in ("1", "2")) == 6
    assert {s.reason for s in skipped} == {"non_qa_post"}
    assert not [o for o in out if isinstance(o, Quarantined)]
    assert len(out) == sum(types.values()) + comments


def test_question_fields_and_rendered_html(by_id):
    q = by_id[_pid(1)]
    assert q[M.kind] == "post" and q[M.title] == "Should we include sources in answers?"
    assert q[M.thread_id] == _pid(1) and q[M.parent_id] is None
    assert (q[M.author_id], q[M.author_name]) == ("stackexchange:12", "Sorcerer Blob")  # name from Users.xml
    assert q[M.created_at] == _us("2011-10-11T19:42:20.713") and q[M.time_precision] == "millisecond"
    assert q[M.text].startswith("As a historian I know") and "<p>" not in q[M.text]
    assert q[M.score] == 18 and '"tags":["discussion","answers"]' in q[M.extra]
    assert not any("<p>" in m[M.text] or "&lt;" in m[M.text] for m in by_id.values())


def test_answers_reply_to_their_question_and_comments_to_their_post(by_id):
    a = by_id[_pid(2)]
    assert a[M.kind] == "comment" and a[M.parent_id] == _pid(1) and a[M.thread_id] == _pid(1)
    c = by_id["stackexchange:stackexchange:c5"]  # on answer 2
    assert c[M.parent_id] == _pid(2) and c[M.thread_id] == _pid(1)


def test_deleted_users_keep_their_display_name(by_id):
    c = by_id["stackexchange:stackexchange:c5"]
    assert (c[M.author_id], c[M.author_name], c[M.author_kind]) == (None, "user39", "deleted")
    a = by_id[_pid(8)]  # an answer by OwnerDisplayName="user39"
    assert (a[M.author_id], a[M.author_name], a[M.author_kind]) == (None, "user39", "deleted")


def test_community_user_is_a_bot(site, by_id):
    owned = re.findall(r'<row Id="(\d+)" PostTypeId="[12]"[^>]*OwnerUserId="-1"',
                       (site / "Posts.xml").read_text(encoding="utf-8-sig"))
    assert owned
    for pid in owned:
        m = by_id[_pid(pid)]
        assert (m[M.author_id], m[M.author_name], m[M.author_kind]) == ("stackexchange:-1", "Community", "bot")


def test_at_name_comments_infer_the_addressed_comment(by_id):
    c = by_id["stackexchange:stackexchange:c12"]  # "@DForck42 It has different issues…"
    target = by_id[c[M.parent_inferred]]
    assert target[M.author_name] == "DForck42" and target[M.parent_id] == c[M.parent_id]
    assert target[M.created_at] < c[M.created_at]
    to_owner = [m for m in by_id.values() if m[M.parent_inferred] and m[M.parent_inferred] == m[M.parent_id]]
    assert to_owner  # "@Robert" addressing the post's owner resolves to the post itself
    for m in to_owner:
        owner = by_id[m[M.parent_id]][M.author_name].replace(" ", "").lower()
        assert owner.startswith(re.search(r"@(\S{3,})", m[M.text]).group(1).lower().rstrip(string.punctuation))


def test_a_file_path_stands_for_its_site_folder(site):
    r = get_reader("stackexchange")
    assert r.units([str(site / "Posts.xml"), str(site / "Comments.xml")]) == [[str(site)]]


# --- broken inputs ------------------------------------------------------------------------------

HEAD = b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE posts SYSTEM \'posts.dtd\'>\n<posts>\n'


def _row(**attrs) -> bytes:
    return ("  <row " + " ".join(f'{k}="{v}"' for k, v in attrs.items()) + " />\n").encode()


Q = dict(Id=1, PostTypeId=1, CreationDate="2020-01-02T03:04:05.678", Score=1, Body="&lt;p&gt;Why?&lt;/p&gt;",
         OwnerUserId=7, Title="A question")


@pytest.fixture()
def broken_site(tmp_path):
    d = tmp_path / "example.stackexchange.com"
    d.mkdir()
    (d / "Posts.xml").write_bytes(HEAD + b"".join([
        _row(**Q),
        _row(Id=2, PostTypeId=2, ParentId=1, CreationDate="2020-01-02T04:00:00.000", Body="&lt;p&gt;Because.&lt;/p&gt;",
             OwnerDisplayName="user99"),
        b'  <row Id="3" PostTypeId="2" ParentId="1" Body="a & b" CreationDate="2020-01-02T04:00:00.000" />\n',
        b'  <row Id="4" PostTypeId="2" ParentId="1" Body="\xff\xfe" CreationDate="2020-01-02T04:00:00.000" />\n',
        _row(PostTypeId=1, CreationDate="2020-01-02T04:00:00.000", Body="x"),
        _row(Id=6, PostTypeId=2, ParentId=1, CreationDate="not a date", Body="x"),
        _row(Id=7, PostTypeId=2, CreationDate="2020-01-02T04:00:00.000", Body="x"),
        _row(Id=8, PostTypeId=5, CreationDate="2020-01-02T04:00:00.000", Body="wiki"),
        _row(Id=9, PostTypeId=2, ParentId=1, CreationDate="2020-01-02T04:00:00.000", Body="y" * 100_001),
        b"  <bogus/>\n",
        b'  <row Id="10" PostTypeId="2" ParentId="1" Body="&xxe;" CreationDate="2020-01-02T04:00:00.000" />\n',
        b'  <row Id="11" PostTypeId="2" ParentId="1" Body="cut off here',
    ]))
    (d / "Comments.xml").write_bytes(HEAD.replace(b"posts", b"comments") + b"".join([
        _row(Id=1, PostId=1, Text="first", CreationDate="2020-01-03T00:00:00.000", UserId=8),
        _row(Id=2, PostId=1, Text="@Bob. fair", CreationDate="2020-01-03T00:01:00.000", UserId=9),
        _row(Id=3, PostId=8, Text="on the wiki", CreationDate="2020-01-03T00:01:00.000", UserId=9),
        _row(Id=4, PostId=1, Text="@alice ok", CreationDate="2020-01-03T00:02:00.000", UserId=8),
    ]) + b"</comments>\n")
    (d / "Users.xml").write_bytes(HEAD.replace(b"posts", b"users") + b"".join([
        _row(Id=7, DisplayName="Alice Smith"), _row(Id=8, DisplayName="Bob Jones"), _row(Id=9, DisplayName="Carol"),
    ]) + b"</users>\n")
    return d


def test_each_broken_row_lands_in_quarantine_with_its_reason(broken_site):
    out = _read(broken_site)
    kinds = [o.reason if isinstance(o, (Quarantined, Skipped)) else "message" for o in out]
    assert kinds == ["message", "message", "invalid_xml", "invalid_utf8", "missing_field", "bad_time",
                     "missing_field", "non_qa_post", "too_large", "invalid_xml", "invalid_xml", "truncated",
                     "message", "message", "non_qa_post", "message"]
    msgs = {m[M.message_id]: m for m in out if isinstance(m, dict)}
    q = msgs["stackexchange:example.stackexchange.com:p1"]
    assert q[M.community] == "example.stackexchange.com" and q[M.text] == "Why?"
    assert q[M.author_name] == "Alice Smith"
    c2 = msgs["stackexchange:example.stackexchange.com:c2"]
    assert c2[M.parent_inferred] == "stackexchange:example.stackexchange.com:c1"  # "@Bob." -> Bob Jones
    c4 = msgs["stackexchange:example.stackexchange.com:c4"]
    assert c4[M.parent_inferred] == "stackexchange:example.stackexchange.com:p1"  # the post's owner
    entity = next(o for o in out if isinstance(o, Quarantined) and "xxe" in str(o.excerpt))
    assert entity.reason == "invalid_xml"  # undefined entities are never expanded


def test_empty_comments_file_is_one_quarantine_row(broken_site):
    (broken_site / "Comments.xml").write_bytes(HEAD.replace(b"posts", b"comments") + b"</comments>\n")
    out = _read(broken_site)
    empty = [o for o in out if isinstance(o, Quarantined) and o.reason == "empty_file"]
    assert [o.source_uri.endswith("Comments.xml") for o in empty] == [True]


def test_a_site_folder_without_posts_is_a_source_error(broken_site):
    (broken_site / "Posts.xml").unlink()
    with pytest.raises(SourceError, match="example.stackexchange.com"):
        _read(broken_site)


def test_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="nowhere"):
        _read(tmp_path / "nowhere")


def test_rows_split_across_read_chunks_parse(site, tmp_path, monkeypatch):
    from pipelines.sources import stackexchange

    d = tmp_path / "copy"
    d.mkdir()
    head = (site / "Posts.xml").read_bytes()[:20_000]
    head = head[: head.rfind(b"/>") + 2] + b"\n</posts>\n"
    (d / "Posts.xml").write_bytes(head)
    whole = _read(d)
    monkeypatch.setattr(stackexchange, "CHUNK_BYTES", 97)
    assert _read(d) == whole and len(whole) > 5 and all(isinstance(o, dict) for o in whole)
    shutil.rmtree(d)
