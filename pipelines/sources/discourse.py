"""Discourse: raw API JSON pages, topic pages (`/t/<id>/posts.json`, `/t/<id>.json`) and
`/posts.json` (`latest_posts`) pages.

The forum is the name of the folder holding the page files (name it after the forum host,
e.g. `meta.discourse.org/`). A unit is every page file of one forum that shares a topic,
directly or through a `latest_posts` page listing posts of several topics, so that
`reply_to_post_number` (a number within the topic) can be resolved to the parent's post id.
Every copy of a post on every page is its own record: the record-dedup stage collapses copies
by (`revision`, `edited_at`, `retrieved_at`, content). See docs/formats/discourse.md.
"""

from __future__ import annotations

import posixpath
from typing import Iterator

import orjson

from pipelines.sources.base import (Outcome, aliases, guarded, int64_or_none, iso_micros, parse_json, Quarantined, Reader,
                                    Skipped, open_binary, text_size_check)
from pipelines.core.text import html_to_text, normalise_newlines
from schemas import MESSAGES as M

PLATFORM = "discourse"
MAX_PAGE_BYTES = 256 << 20  # a page larger than this is not an API page: quarantined whole
ACTION_POLICY = "action_post"  # "closed the topic", "pinned", "split this topic": not speech
WHISPER_POLICY = "whisper"  # staff-only whispers (post_type 4) were never public
SMALL_ACTION, WHISPER = 3, 4
LIKE_ACTION = 2  # `actions_summary` id of a like
# Built-in accounts: `system` (-1) and `discobot` (-2) post automatically.
BOT_USERNAMES = frozenset({"system", "discobot"})

_COLUMNS = (M.message_id, M.platform, M.community, M.thread_id, M.parent_id, M.author_id, M.author_name,
            M.author_aliases, M.author_kind, M.created_at, M.time_kind, M.time_precision, M.order_in_source, M.kind, M.title,
            M.text, M.score, M.edited_at, M.revision, M.extra, M.source_uri, M.source_record)


def forum_of(path: str) -> str:
    """The forum name of a page file: its folder's name."""
    folder = posixpath.dirname(path.rstrip("/").split("://", 1)[-1])
    return posixpath.basename(folder) or "discourse"


# --- pages ------------------------------------------------------------------------------------

def _load(path: str) -> tuple[dict | None, Quarantined | None]:
    """The parsed page, or the reason it cannot be one (raises SourceError if unopenable)."""
    with open_binary(path) as f:
        data = f.read(MAX_PAGE_BYTES + 1)
    if len(data) > MAX_PAGE_BYTES:
        return None, Quarantined(path, "too_large", f"page file over {MAX_PAGE_BYTES} bytes", 0, 0, data[:800])
    if not data.strip():
        return None, Quarantined(path, "empty_file", "the file is empty", 0, 0)
    page, err = parse_json(data)
    if err is not None:
        # A page file is fetched whole: one that ends mid-value was cut off (a truncated download).
        reason = "truncated" if err.cut_short else err.reason
        return None, Quarantined(path, reason, f"the page does not parse: {err.detail}", 0, err.byte_offset, data)
    if not isinstance(page, dict):
        return None, Quarantined(path, "wrong_type", f"the page is JSON {type(page).__name__}, not an object",
                                 0, 0, data)
    return page, None


def _posts(page: dict):
    """The posts list of a topic or latest_posts page, or None if the page is neither."""
    stream = page.get("post_stream")
    if isinstance(stream, dict) and "posts" in stream:
        return stream["posts"]
    if "latest_posts" in page:
        return page["latest_posts"]
    return None


def _topic_ids(page: dict) -> set[int]:
    ids = set()
    if isinstance(page.get("post_stream"), dict) and _int_field(page, "id") is not None:
        ids.add(page["id"])
    posts = _posts(page)
    if isinstance(posts, list):
        ids.update(p["topic_id"] for p in posts if isinstance(p, dict) and _int_field(p, "topic_id") is not None)
    return ids


def topic_units(paths: list[str]) -> list[list[str]]:
    """Group page files into units: same forum and a shared topic id (transitively).

    Opens each page once to read its topic ids; a page that cannot be parsed is a unit of
    its own (reading it then yields its quarantine row). Deterministic: units and their
    files are sorted.
    """
    parent = {p: p for p in paths}

    def find(p):
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    owner: dict[tuple[str, int], str] = {}
    for p in sorted(paths):
        page, _ = _load(p)
        for t in sorted(_topic_ids(page)) if page is not None else ():
            key = (forum_of(p), t)
            if key in owner:
                parent[find(p)] = find(owner[key])
            else:
                owner[key] = p
    groups: dict[str, list[str]] = {}
    for p in sorted(paths):
        groups.setdefault(find(p), []).append(p)
    return sorted(groups.values())


# --- posts ------------------------------------------------------------------------------------

_micros = iso_micros


def _likes(post: dict) -> int | None:
    summary = post.get("actions_summary")
    for a in summary if isinstance(summary, list) else ():
        if isinstance(a, dict) and a.get("id") == LIKE_ACTION:
            return int64_or_none(a.get("count"))
    return None


def _compact(d: dict) -> str | None:
    d = {k: v for k, v in d.items() if v is not None and v is not False}
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode() if d else None


def _int_field(post: dict, key: str):
    return int64_or_none(post.get(key))


def _post(post, n: int, path: str, forum: str, page: dict, numbers: dict) -> Outcome:
    if not isinstance(post, dict):
        return Quarantined(path, "wrong_type", f"post {n} is JSON {type(post).__name__}, not an object",
                           n, None, str(post))
    raw = lambda: orjson.dumps(post)[:800]  # noqa: E731 - excerpt only built on the bad path
    for key in ("id", "post_number", "created_at", "cooked"):
        if post.get(key) is None:
            return Quarantined(path, "missing_field", f"post {n} has no `{key}`", n, None, raw())
    pid, number = _int_field(post, "id"), _int_field(post, "post_number")
    if pid is None or number is None or not isinstance(post["cooked"], str):
        return Quarantined(path, "wrong_type", f"post {n}: `id`/`post_number` not integers or `cooked` not a string",
                           n, None, raw())
    topic = _int_field(post, "topic_id") or (_int_field(page, "id") if isinstance(page.get("post_stream"), dict) else None)
    if not isinstance(topic, int):
        return Quarantined(path, "missing_field", f"post {pid} has no `topic_id`", n, None, raw())
    if post.get("action_code") or post.get("post_type") == SMALL_ACTION:
        return Skipped(ACTION_POLICY)
    if post.get("post_type") == WHISPER:
        return Skipped(WHISPER_POLICY)
    created = _micros(post["created_at"])
    if created is None:
        return Quarantined(path, "bad_time", f"post {pid}: `created_at` {post['created_at']!r}", n, None, raw())
    text = html_to_text(post["cooked"])
    big = text_size_check(text, path, n, raw())
    if big is not None:
        return big

    username, uid = post.get("username"), _int_field(post, "user_id")
    if post.get("user_deleted") or uid is None or not isinstance(username, str):
        author_id, author_name, author_kind = None, username if isinstance(username, str) else None, "deleted"
    else:
        author_id, author_name = f"{forum}:{uid}", username
        author_kind = "bot" if uid < 0 or username.lower() in BOT_USERNAMES else "user"

    thread = f"{PLATFORM}:{forum}:t{topic}"
    reply_to = _int_field(post, "reply_to_post_number")
    # No reply_to means a reply to the topic, i.e. to its first post (Reddit's top-level comments likewise).
    parent_number = reply_to if reply_to is not None else (1 if number > 1 else None)
    parent_post = numbers.get((topic, parent_number)) if parent_number is not None else None
    title = page.get("title") if number == 1 else None
    if title is None and number == 1:
        title = post.get("topic_title")
    extra = {"post_number": number,
             "reply_to_post_number": reply_to if reply_to is not None and parent_post is None else None,
             "reads": _int_field(post, "reads"), "hidden": post.get("hidden") is True or None,
             "deleted_at": post.get("deleted_at") if isinstance(post.get("deleted_at"), str) else None,
             "wiki": post.get("wiki") is True or None, "accepted_answer": post.get("accepted_answer") is True or None,
             "moderator_action": True if post.get("post_type") == 2 else None}
    return dict(zip(_COLUMNS, (
        f"{PLATFORM}:{forum}:{pid}", PLATFORM, forum, thread,
        f"{PLATFORM}:{forum}:{parent_post}" if parent_post is not None else None,
        author_id, author_name, aliases(author_name, post.get("name")) if author_id else None,
        author_kind, created, "wall", "millisecond", n,
        "post" if number == 1 else "comment", normalise_newlines(title) if isinstance(title, str) else None,
        text, _likes(post), _micros(post.get("updated_at")), _int_field(post, "version"), _compact(extra),
        path, n)))


def read_unit(paths: list[str]) -> Iterator[Outcome]:
    """Every post on every page of one unit as outcomes, pages in path order, posts in page order.

    Guarantees one outcome per post entry, plus one quarantine row for each page that is
    empty, unparsable or of an unknown shape. Raises SourceError if a page cannot be opened.
    """
    pages = []
    numbers: dict[tuple[int, int], int] = {}  # (topic id, post_number) -> post id, over all pages
    for path in sorted(paths):
        page, bad = _load(path)
        if bad is not None:
            pages.append((path, None, bad))
            continue
        posts = _posts(page)
        if posts is None:
            bad = Quarantined(path, "missing_field", "neither `post_stream.posts` nor `latest_posts`: "
                              "not a Discourse topic or posts page", 0, 0, orjson.dumps(page)[:800])
        elif not isinstance(posts, list):
            bad = Quarantined(path, "wrong_type", "the posts field is not a list", 0, 0, orjson.dumps(page)[:800])
        elif not posts:
            bad = Quarantined(path, "empty_file", "the page lists no posts", 0, 0)
        pages.append((path, page, bad))
        if bad is None:
            default_topic = _int_field(page, "id") if isinstance(page.get("post_stream"), dict) else None
            for p in posts:
                if isinstance(p, dict) and _int_field(p, "id") is not None and _int_field(p, "post_number") is not None:
                    topic = _int_field(p, "topic_id") or default_topic
                    numbers.setdefault((topic, p["post_number"]), p["id"])
    for path, page, bad in pages:
        if bad is not None:
            yield bad
            continue
        forum = forum_of(path)
        for n, post in enumerate(_posts(page)):
            yield guarded(lambda: _post(post, n, path, forum, page, numbers), path, n, post)


READER = Reader(
    format=PLATFORM,
    description="Discourse API JSON: topic pages (post_stream) and latest_posts pages",
    read_unit=read_unit,
    units=topic_units,
    file_patterns=("*.json",),
)

__all__ = ["READER", "read_unit", "topic_units", "forum_of"]
