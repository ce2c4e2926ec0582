"""Discourse reader: the real pages of topic 2108 (fetched repeatedly) plus generated broken pages."""

import json
from collections import Counter

import pytest

from pipelines.sources import Quarantined, Skipped, SourceError, get_reader
from schemas import MESSAGES as M


def _read(paths) -> list:
    r = get_reader("discourse")
    return [o for unit in r.units([str(p) for p in paths]) for o in r.read_unit(unit)]


@pytest.fixture(scope="module")
def pages(real):
    return sorted((real / "discourse").glob("*.json"))


@pytest.fixture(scope="module")
def raw_posts(pages):
    return [p for f in pages for p in json.loads(f.read_text())["post_stream"]["posts"]]


@pytest.fixture(scope="module")
def out(pages):
    return _read(pages)


def test_all_pages_of_one_topic_form_one_unit(pages):
    assert get_reader("discourse").units([str(p) for p in pages]) == [[str(p) for p in pages]]


def test_every_copy_is_a_record_and_unique_ids_equal_unique_post_ids(out, raw_posts):
    assert len(out) == len(raw_posts) == 104
    msgs = [o for o in out if isinstance(o, dict)]
    actions = {p["id"] for p in raw_posts if p.get("action_code")}
    assert [o.reason for o in out if isinstance(o, Skipped)] == ["action_post"] and len(actions) == 1
    assert len(msgs) > len({m[M.message_id] for m in msgs})  # repeated posts are repeated records
    assert {m[M.message_id] for m in msgs} == {f"discourse:discourse:{p['id']}" for p in raw_posts} - {
        f"discourse:discourse:{a}" for a in actions}
    assert len({m[M.message_id] for m in msgs}) == 75


def test_reply_to_post_number_resolves_to_the_parent_post_id(out, raw_posts):
    by_number = {p["post_number"]: p["id"] for p in raw_posts}
    by_id = {p["id"]: p for p in raw_posts}
    resolved = 0
    for m in (o for o in out if isinstance(o, dict)):
        post = by_id[int(m[M.message_id].rsplit(":", 1)[1])]
        n = post.get("reply_to_post_number")
        if n is not None and n in by_number:
            assert m[M.parent_id] == f"discourse:discourse:{by_number[n]}"
            resolved += 1
        elif post["post_number"] == 1:
            assert m[M.parent_id] is None and m[M.kind] == "post"
        elif n is None:  # a reply to the topic answers its first post
            assert m[M.parent_id] == f"discourse:discourse:{by_number[1]}"
        else:  # the parent was never fetched: the number is kept in extra
            assert m[M.parent_id] is None and json.loads(m[M.extra])["reply_to_post_number"] == n
    assert resolved > 50


def test_fields_of_a_known_post(out):
    m = next(o for o in out if isinstance(o, dict) and o[M.message_id] == "discourse:discourse:18967")
    assert m[M.thread_id] == "discourse:discourse:t2108" and m[M.parent_id] == "discourse:discourse:18965"
    assert (m[M.author_id], m[M.author_name], m[M.author_kind]) == ("discourse:84", "anonymous45", "user")
    assert m[M.created_at] == 1759444075326000 and m[M.edited_at] == 1759444075326000  # 2025-10-02T22:27:55.326Z
    assert m[M.revision] == 1 and m[M.time_precision] == "millisecond"
    assert "<p>" not in m[M.text] and "> Those solutions are not in place right now, correct?" in m[M.text]
    assert m[M.text].endswith("enjoy sports as much as anyone.")


def test_copies_carry_revision_and_update_time_for_record_dedup(out, raw_posts):
    want = Counter((f"discourse:discourse:{p['id']}", p["version"]) for p in raw_posts if not p.get("action_code"))
    got = Counter((m[M.message_id], m[M.revision]) for m in out if isinstance(m, dict))
    assert got == want
    assert all(m[M.edited_at] is not None for m in out if isinstance(m, dict))


# --- broken inputs ------------------------------------------------------------------------------

def _post(pid, number, topic=7, **over):
    p = {"id": pid, "post_number": number, "topic_id": topic, "username": "ann", "user_id": 3,
         "created_at": "2024-05-01T10:00:00.000Z", "updated_at": "2024-05-01T10:00:00.000Z", "version": 1,
         "cooked": f"<p>post {pid}</p>", "post_type": 1, "reply_to_post_number": None}
    p.update(over)
    return {k: v for k, v in p.items() if v is not ...}


@pytest.fixture()
def forum(tmp_path):
    d = tmp_path / "forum.example.org"
    d.mkdir()
    (d / "t7_a.json").write_text(json.dumps({"id": 7, "title": "Hello", "post_stream": {"posts": [
        _post(70, 1),
        _post(71, 2, reply_to_post_number=1, username="system", user_id=-1),
        _post(72, 3, id=...),
        _post(73, 4, created_at="yesterday"),
        _post(74, 5, cooked=None),
        _post(75, 6, id="75"),
        _post(76, 7, post_type=3, action_code="closed.enabled"),
        _post(77, 8, post_type=4),
        "not a post",
        _post(78, 9, reply_to_post_number=2, user_id=None, username=None),
    ]}}))
    # A latest_posts page spanning topics 7 and 8 joins both into one unit.
    (d / "latest.json").write_text(json.dumps({"latest_posts": [_post(79, 10, reply_to_post_number=9,
                                                                          updated_at="2024-05-02T00:00:00.000Z",
                                                                          version=2),
                                                                    _post(80, 1, topic=8)]}))
    (d / "t9.json").write_text(json.dumps({"id": 9, "post_stream": {"posts": [_post(90, 1, topic=9)]}}))
    (d / "bad.json").write_text('{"post_stream": {"posts": [')
    (d / "utf8.json").write_bytes(b'{"latest_posts": ["\xff"]}')
    (d / "empty.json").write_bytes(b"")
    (d / "none.json").write_text(json.dumps({"post_stream": {"posts": []}}))
    (d / "other.json").write_text(json.dumps({"users": []}))
    return d


def test_units_group_pages_by_shared_topics(forum):
    units = get_reader("discourse").units([str(p) for p in forum.glob("*.json")])
    names = sorted(sorted(p.rsplit("/", 1)[1] for p in u) for u in units)
    assert ["latest.json", "t7_a.json"] in names and ["t9.json"] in names
    assert sum(len(u) for u in units) == 8


def test_each_broken_post_or_page_lands_in_quarantine_with_its_reason(forum):
    out = _read(forum.glob("*.json"))
    reasons = Counter(o.reason for o in out if isinstance(o, (Quarantined, Skipped)))
    assert reasons == {"missing_field": 3, "bad_time": 1, "wrong_type": 2, "action_post": 1, "whisper": 1,
                       "truncated": 1, "invalid_utf8": 1, "empty_file": 2}
    msgs = {m[M.message_id]: m for m in out if isinstance(m, dict)}
    assert sorted(msgs) == [f"discourse:forum.example.org:{i}" for i in (70, 71, 78, 79, 80, 90)]
    assert msgs["discourse:forum.example.org:70"][M.title] == "Hello"
    assert msgs["discourse:forum.example.org:71"][M.author_kind] == "bot"
    assert msgs["discourse:forum.example.org:78"][M.author_kind] == "deleted"
    assert msgs["discourse:forum.example.org:78"][M.parent_id] == "discourse:forum.example.org:71"
    late = msgs["discourse:forum.example.org:79"]  # on the latest page, reply resolved via the topic page
    assert late[M.parent_id] == "discourse:forum.example.org:78" and late[M.revision] == 2
    assert late[M.community] == "forum.example.org" and late[M.thread_id] == "discourse:forum.example.org:t7"


def test_missing_page_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="gone.json"):
        list(get_reader("discourse").read_unit([str(tmp_path / "gone.json")]))
