"""Stack Exchange: a site dump folder with Posts.xml, Comments.xml and Users.xml.

One site folder is one unit; the folder name is the site (`history.meta.stackexchange.com`).
Every value in these files is an attribute of a one-line `<row …/>` element under the root.
The files are scanned incrementally as bytes: a row is the text from `<row` to the next `<`
(a raw `<` cannot occur inside an attribute value), parsed on its own with ElementTree. So
no DTD is ever loaded (the DOCTYPE line names a missing .dtd; entity declarations are never
seen, so no entity expansion or network access can happen), a broken row costs only itself,
and memory stays bounded by the longest row. See docs/formats/stackexchange.md.
"""

from __future__ import annotations

import logging
import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Iterator

import fsspec
import orjson

from pipelines.sources.base import (Outcome, guarded, int64_or_none, iso_micros, Quarantined, Reader, Skipped, SourceError,
                                    open_binary, text_size_check)
from pipelines.core.text import html_to_text, normalise_newlines
from schemas import MESSAGES as M

PLATFORM = "stackexchange"
CHUNK_BYTES = 1 << 20
MAX_ROW_BYTES = 16 << 20  # a row longer than this is quarantined as too_large
COMMUNITY_USER = "-1"  # the Community bot owns wiki posts and bumps old questions
QUESTION, ANSWER = "1", "2"
NON_QA_POLICY = "non_qa_post"  # tag wikis, excerpts, nominations, …: not conversation
_BOM = b"\xef\xbb\xbf"
# The root element's tags (`<posts>`, `</posts>`, `<comments/>`); any other markup is quarantined.
_ROOT_TAG = re.compile(rb"</?(?:posts|comments|users|badges|tags|votes|postlinks|posthistory)\s*/?>", re.I)
_MENTION = re.compile(r"@([^\s@,:;!?()]{3,})")
log = logging.getLogger("socialcorpus.sources.stackexchange")

_COLUMNS = (M.message_id, M.platform, M.community, M.thread_id, M.parent_id, M.parent_inferred, M.author_id,
            M.author_name, M.author_kind, M.created_at, M.time_kind, M.time_precision, M.order_in_source, M.kind,
            M.title, M.text, M.score, M.edited_at, M.extra, M.source_uri, M.source_record)


# --- rows -------------------------------------------------------------------------------------

def iter_rows(path: str) -> Iterator[tuple[int, int, dict] | Quarantined]:
    """(row number, byte offset, attributes) for every `<row/>` of one dump file, in file order.

    A row that does not parse (or is not UTF-8) becomes one Quarantined in its place; other
    markup (XML declaration, DOCTYPE, the root's start and end tag) is structure, not records.
    A file with no row yields one ``empty_file`` quarantine. Raises SourceError if unopenable.
    """
    n = 0
    with open_binary(path) as stream:
        buf = b""
        base = 0  # file byte offset of buf[0]
        first, eof, discarding = True, False, False
        while not eof:
            chunk = stream.read(CHUNK_BYTES)
            eof = not chunk
            if first and chunk.startswith(_BOM):
                chunk, base = chunk[len(_BOM):], len(_BOM)
            first = False
            if discarding:  # inside an over-long element: drop bytes up to the next element
                lt = chunk.find(b"<")
                if lt == -1:
                    base += len(chunk)
                    continue
                discarding, chunk, base = False, chunk[lt:], base + lt
            buf += chunk
            pos = 0
            while True:
                lt = buf.find(b"<", pos)
                stray = buf[pos:] if lt == -1 else buf[pos:lt]
                if stray.strip():  # only possible before the first element: rows run up to the next `<`
                    yield Quarantined(path, "invalid_xml", "text outside any element", source_record=n,
                                      byte_offset=base + pos, excerpt=stray)
                    n += 1
                if lt == -1:
                    pos = len(buf)
                    break
                nxt = buf.find(b"<", lt + 1)
                if nxt == -1 and not eof:
                    pos = lt  # the element may go on in the next chunk
                    break
                end = len(buf) if nxt == -1 else nxt
                segment = buf[lt:end].rstrip()
                pos = end
                if segment.startswith(b"<row") and segment[4:5] in (b" ", b"\t", b"\n", b"\r", b"/"):
                    yield _parse_row(path, n, base + lt, segment, at_end=nxt == -1)
                    n += 1
                elif not (segment[:2] in (b"<?", b"<!") or _ROOT_TAG.fullmatch(segment)):
                    yield Quarantined(path, "invalid_xml", "markup that is not a <row/> element", source_record=n,
                                      byte_offset=base + lt, excerpt=segment)
                    n += 1
            base += pos
            buf = buf[pos:]
            if len(buf) > MAX_ROW_BYTES:
                yield Quarantined(path, "too_large", f"row {n} is longer than {MAX_ROW_BYTES} bytes",
                                  source_record=n, byte_offset=base, excerpt=buf[:800])
                n += 1
                base += len(buf)
                buf, discarding = b"", True
    if n == 0:
        yield Quarantined(path, "empty_file", "the file holds no <row/> elements", source_record=0, byte_offset=0)


def _parse_row(path: str, n: int, off: int, segment: bytes, at_end: bool) -> tuple[int, int, dict] | Quarantined:
    try:
        markup = segment.decode("utf-8")
    except UnicodeDecodeError as e:
        return Quarantined(path, "invalid_utf8", f"row {n}: {e}", source_record=n, byte_offset=off, excerpt=segment)
    try:
        el = ET.fromstring(markup)
    except ET.ParseError as e:
        # The last element of a file cut short has no `/>`: the file was truncated, not malformed.
        reason = "truncated" if at_end and not segment.endswith(b"/>") else "invalid_xml"
        return Quarantined(path, reason, f"row {n} does not parse: {e}", source_record=n, byte_offset=off,
                           excerpt=segment)
    return n, off, el.attrib


# --- values -----------------------------------------------------------------------------------

_micros = iso_micros


def _int(value: str | None) -> int | None:
    """An attribute as an int64, or None if absent, not an integer or beyond int64."""
    try:
        return int64_or_none(int(value)) if value is not None else None
    except ValueError:
        return None


def _tags(value: str | None) -> list[str] | None:
    """`<a><b>` (older dumps) or `|a|b|` (2023+) to a list."""
    if not value:
        return None
    if value.startswith("<"):
        return [t for t in value[1:-1].split("><") if t]
    return [t for t in value.split("|") if t]


def _norm_name(name: str) -> str:
    # Stack Exchange matches @mentions against display names with spaces removed, case-insensitively.
    return name.replace(" ", "").lower()


def _compact(d: dict) -> str | None:
    d = {k: v for k, v in d.items() if v is not None and v is not False}
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode() if d else None


# --- a site -----------------------------------------------------------------------------------

def _site_files(folder: str) -> dict[str, str]:
    fs, root = fsspec.core.url_to_fs(folder)
    proto = folder.split("://", 1)[0] + "://" if "://" in folder else ""
    try:
        names = {posixpath.basename(p.rstrip("/")).lower(): p for p in fs.ls(root, detail=False)}
    except (FileNotFoundError, NotADirectoryError, OSError) as e:
        raise SourceError(f"{folder}: not a readable Stack Exchange site folder ({e}).") from e
    out = {}
    for kind in ("posts", "comments", "users"):
        p = names.get(f"{kind}.xml")
        if p is not None:
            out[kind] = proto + p if proto and not p.startswith(proto) else p
    if "posts" not in out:
        raise SourceError(f"{folder}: no Posts.xml in this folder. A Stack Exchange source is a site folder "
                          "holding Posts.xml (and Comments.xml, Users.xml) as unpacked from the site's .7z.")
    return out


def _author(attrs: dict, id_key: str, name_key: str, site: str, users: dict[str, str]):
    uid = attrs.get(id_key)
    if uid is None:
        # Deleted accounts keep only a display name like `user39`.
        return None, attrs.get(name_key), "deleted"
    return f"{site}:{uid}", users.get(uid, attrs.get(name_key)), "bot" if uid == COMMUNITY_USER else "user"


def _msg(*values) -> dict:
    return dict(zip(_COLUMNS, values))


def read_site(folder: str) -> Iterator[Outcome]:
    """All posts and comments of one site folder as outcomes: Posts.xml rows, then Comments.xml rows.

    Users.xml rows are read first for display names; only its broken rows (and an empty
    file) produce outcomes. Guarantees one outcome per Posts/Comments row. Raises
    SourceError if the folder or its Posts.xml cannot be opened.
    """
    files = _site_files(folder)
    site = posixpath.basename(folder.rstrip("/")) or folder
    for missing in {"comments", "users"} - files.keys():
        log.warning("%s: no %s.xml; reading the site without it", folder, missing.capitalize())

    users: dict[str, str] = {}
    if "users" in files:
        for item in iter_rows(files["users"]):
            if isinstance(item, Quarantined):
                yield item
            elif item[2].get("Id") is not None and item[2].get("DisplayName") is not None:
                users[item[2]["Id"]] = item[2]["DisplayName"]

    # post id -> (question id, owner display name); None for posts skipped by policy.
    posts: dict[str, tuple[str, str | None] | None] = {}
    path = files["posts"]
    for item in iter_rows(path):
        if isinstance(item, Quarantined):
            yield item
            continue
        n, off, a = item
        yield guarded(lambda: _post(a, n, off, path, site, users, posts), path, n, str(a), off)

    if "comments" in files:
        path = files["comments"]
        # (post id) -> {normalised display name: latest comment message id}, for @name replies.
        said: dict[str, dict[str, str]] = {}
        for item in iter_rows(path):
            if isinstance(item, Quarantined):
                yield item
                continue
            n, off, a = item
            yield guarded(lambda: _comment(a, n, off, path, site, users, posts, said), path, n, str(a), off)


def _post(a: dict, n: int, off: int, path: str, site: str, users: dict, posts: dict) -> Outcome:
    pid, ptype = a.get("Id"), a.get("PostTypeId")
    if pid is None or ptype is None:
        return Quarantined(path, "missing_field", f"row {n} has no Id or PostTypeId", n, off, str(a))
    if ptype not in (QUESTION, ANSWER):
        posts[pid] = None
        return Skipped(NON_QA_POLICY)
    created = _micros(a.get("CreationDate"))
    if created is None:
        reason = "missing_field" if a.get("CreationDate") is None else "bad_time"
        return Quarantined(path, reason, f"post {pid}: CreationDate {a.get('CreationDate')!r}", n, off, str(a))
    if a.get("Body") is None:
        return Quarantined(path, "missing_field", f"post {pid} has no Body", n, off, str(a))
    if ptype == ANSWER:
        qid = a.get("ParentId")
        if qid is None:
            return Quarantined(path, "missing_field", f"answer {pid} has no ParentId", n, off, str(a))
    else:
        qid = pid
    text = html_to_text(a["Body"])
    big = text_size_check(text, path, n, a["Body"])
    if big is not None:
        return replace(big, byte_offset=off)
    author_id, author_name, author_kind = _author(a, "OwnerUserId", "OwnerDisplayName", site, users)
    posts[pid] = (qid, author_name)
    thread = f"{PLATFORM}:{site}:p{qid}"
    extra = {"tags": _tags(a.get("Tags")), "accepted_answer": a.get("AcceptedAnswerId"),
             "views": _int(a.get("ViewCount")), "closed_at": a.get("ClosedDate"),
             "community_owned": True if a.get("CommunityOwnedDate") else None,
             "license": a.get("ContentLicense")}
    return _msg(f"{PLATFORM}:{site}:p{pid}", PLATFORM, site, thread, None if ptype == QUESTION else thread, None,
                author_id, author_name, author_kind, created, "wall", "millisecond", n,
                "post" if ptype == QUESTION else "comment",
                normalise_newlines(a["Title"]) if ptype == QUESTION and a.get("Title") else None,
                text, _int(a.get("Score")), _micros(a.get("LastEditDate")), _compact(extra), path, n)


def _comment(a: dict, n: int, off: int, path: str, site: str, users: dict, posts: dict, said: dict) -> Outcome:
    cid, pid = a.get("Id"), a.get("PostId")
    if cid is None or pid is None:
        return Quarantined(path, "missing_field", f"row {n} has no Id or PostId", n, off, str(a))
    post = posts.get(pid, False)
    if post is None:
        return Skipped(NON_QA_POLICY)  # a comment on a tag wiki or other non-Q&A post
    created = _micros(a.get("CreationDate"))
    if created is None:
        reason = "missing_field" if a.get("CreationDate") is None else "bad_time"
        return Quarantined(path, reason, f"comment {cid}: CreationDate {a.get('CreationDate')!r}", n, off, str(a))
    if a.get("Text") is None:
        return Quarantined(path, "missing_field", f"comment {cid} has no Text", n, off, str(a))
    # Comment text is already plain (markdown-ish) once the XML attribute is decoded.
    text = normalise_newlines(a["Text"])
    big = text_size_check(text, path, n, a["Text"])
    if big is not None:
        return replace(big, byte_offset=off)
    author_id, author_name, author_kind = _author(a, "UserId", "UserDisplayName", site, users)
    parent = f"{PLATFORM}:{site}:p{pid}"
    # A post missing from the dump (deleted) still anchors its comments: it is their thread too.
    qid, owner = post if post else (pid, None)
    inferred = None
    m = _MENTION.search(text)
    if m:
        target = m.group(1).lower().rstrip(".")
        earlier = said.get(pid, {})
        # Latest earlier comment whose author's name starts with the mentioned name (SE's rule).
        for name, mid in reversed(earlier.items()):
            if name.startswith(target):
                inferred = mid
                break
        else:
            if owner and _norm_name(owner).startswith(target):
                inferred = parent
    message_id = f"{PLATFORM}:{site}:c{cid}"
    if author_name:
        names = said.setdefault(pid, {})
        key = _norm_name(author_name)
        names.pop(key, None)  # re-insert so dict order is "latest speaker last"
        names[key] = message_id
    return _msg(message_id, PLATFORM, site, f"{PLATFORM}:{site}:p{qid}", parent, inferred, author_id, author_name,
                author_kind, created, "wall", "millisecond", n, "comment", None, text, _int(a.get("Score")), None,
                _compact({"license": a.get("ContentLicense")}), path, n)


# --- units ------------------------------------------------------------------------------------

def site_units(paths: list[str]) -> list[list[str]]:
    """One unit per site folder; a path to a file inside a site folder stands for its folder."""
    folders = set()
    for p in paths:
        fs, local = fsspec.core.url_to_fs(p)
        if not fs.isdir(local) and posixpath.basename(local).lower().endswith(".xml"):
            p = p.rstrip("/").rsplit("/", 1)[0]
        folders.add(p.rstrip("/"))
    return [[f] for f in sorted(folders)]


def read_unit(paths: list[str]) -> Iterator[Outcome]:
    for folder in paths:
        yield from read_site(folder)


READER = Reader(
    format=PLATFORM,
    description="Stack Exchange site dump folder (Posts.xml, Comments.xml, Users.xml)",
    read_unit=read_unit,
    units=site_units,
    file_patterns=("Posts.xml", "Comments.xml", "Users.xml"),
)

__all__ = ["READER", "read_site", "iter_rows", "site_units", "SourceError"]
