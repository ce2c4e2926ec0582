"""Slack: a workspace export, as a folder or its ``.zip``.

The export holds ``channels.json`` (and ``groups.json``, ``mpims.json``, ``dms.json`` in
newer exports), ``users.json`` and one folder of day files per conversation
(``<channel>/<YYYY-MM-DD>.json``, each a JSON array of messages). Day files are split by the
workspace's local date, so times come from each message's ``ts`` (Unix seconds, UTC), never
from the file name. The whole export is one unit: names and ids are resolved across it.
See docs/formats/slack.md.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import fsspec

from pipelines.sources.base import (Outcome, aliases, guarded, Quarantined, Reader, Skipped, SourceError, open_binary,
                                    text_size_check)
from pipelines.sources.chatexport import M, from_unix, read_json_bytes, to_json
from pipelines.core.text import normalise_newlines

PLATFORM = "slack"
META_FILES = ("channels.json", "groups.json", "mpims.json", "dms.json", "users.json", "integration_logs.json",
              "canvases.json", "huddle_transcripts.json", "file_conversations.json")
CONVERSATION_LISTS = ("channels.json", "groups.json", "mpims.json", "dms.json")
# A conversation folder is recognised by its day files; other files in it are read as day files too.
DAY_FILE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")

# Size caps (inflated bytes). A day file or metadata file is parsed whole, so one file over
# MAX_MEMBER_BYTES would need several times that in memory; a .zip whose members inflate to more
# than MAX_ARCHIVE_BYTES in all is a zip bomb or not a chat export. The environment variables
# below raise or lower them (they reach Spark executors that inherit the driver's environment).
MAX_MEMBER_BYTES = 256 << 20
MAX_ARCHIVE_BYTES = 16 << 30
MEMBER_CAP_ENV, ARCHIVE_CAP_ENV = "SOCIALCORPUS_SLACK_MAX_MEMBER_BYTES", "SOCIALCORPUS_SLACK_MAX_ARCHIVE_BYTES"
_CHUNK = 1 << 20

log = logging.getLogger("socialcorpus.sources.slack")


def caps() -> tuple[int, int]:
    """(per-file cap, per-archive cap) in inflated bytes: the module defaults or the environment's values."""
    out = []
    for env, default in ((MEMBER_CAP_ENV, MAX_MEMBER_BYTES), (ARCHIVE_CAP_ENV, MAX_ARCHIVE_BYTES)):
        raw = os.environ.get(env)
        if raw is None or not raw.strip():
            out.append(default)
            continue
        try:
            value = int(raw.strip())
        except ValueError:
            value = 0
        if value <= 0:
            raise SourceError(f"{env}={raw!r}: must be a positive number of bytes (default {default})")
        out.append(value)
    return out[0], out[1]

# Subtypes that are speech (kept as messages); everything else is skipped under a named policy.
SPEECH_SUBTYPES = {None: "message", "bot_message": "message", "me_message": "action", "file_share": "message",
                   "file_comment": "message", "thread_broadcast": "message", "file_mention": "message"}
SKIP_POLICIES = {
    "tombstone": "tombstone",  # a deleted thread root kept as a placeholder
    **{s: "join_leave" for s in ("channel_join", "channel_leave", "group_join", "group_leave")},
    **{s: "topic_change" for s in ("channel_topic", "group_topic", "channel_purpose", "group_purpose",
                                   "channel_name", "group_name")},
    **{s: "system_event" for s in ("channel_archive", "channel_unarchive", "group_archive", "group_unarchive",
                                   "pinned_item", "unpinned_item", "bot_add", "bot_remove", "bot_enable",
                                   "bot_disable", "reminder_add", "app_conversation_join",
                                   "channel_convert_to_private", "message_changed", "message_deleted",
                                   "sh_room_created", "huddle_thread")},
}
UNKNOWN_SUBTYPE_POLICY = "unknown_subtype"

_ENTITY = re.compile(r"<([^<>]*)>")


@dataclass
class _Export:
    """What the metadata files say about the workspace; every lookup has a fallback."""

    workspace: str
    users: dict[str, dict] = field(default_factory=dict)  # U id -> users.json entry
    conversations: dict[str, dict] = field(default_factory=dict)  # folder name -> conversation entry

    def user_name(self, uid: str) -> str:
        u = self.users.get(uid)
        if not u:
            return uid
        prof = u.get("profile") if isinstance(u.get("profile"), dict) else {}
        # Only strings name anyone: a numeric or empty display_name falls through to the next name.
        for name in (prof.get("display_name"), u.get("name"), prof.get("real_name"), u.get("real_name")):
            if isinstance(name, str) and name:
                return name
        return uid

    def render(self, text: str) -> str:
        """Slack mrkdwn to plain text: ``<@U1>`` -> ``@name``, ``<url|label>`` -> ``label (url)``.

        Mentions become the display name so the anonymiser sees a known author name.
        """
        def one(match: re.Match) -> str:
            body = match.group(1)
            target, _, label = body.partition("|")
            if target.startswith("@"):
                return "@" + (self.user_name(target[1:]) if target[1:] in self.users or not label else label)
            if target.startswith("#"):
                return "#" + (label or target[1:])
            if target.startswith("!"):
                if label:
                    return label if label.startswith("@") or target.startswith("!date") else "@" + label
                return "@" + target[1:].split("^")[0]
            if label and label != target and not target.endswith(label):
                return f"{label} ({target})"
            return label if target.startswith("mailto:") and label else target

        text = _ENTITY.sub(one, text)
        # Slack escapes exactly these three characters in message text (once, unlike Pushshift).
        return normalise_newlines(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


class _TooLarge(Exception):
    """A file of the export over a size cap; the message says which cap and how to raise it."""


class _Files:
    """Uniform access to the files below ``root``: a folder (any fsspec URL) or a zip, read member by member.

    ``names`` are paths relative to ``root`` ('/'-separated). Reads are capped: one file at
    ``member_cap`` inflated bytes (checked against the zip's declared size before inflating, and
    counted while streaming), all members of a zip together at ``archive_cap``.
    """

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.zip = None
        self._zip_handle = None
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self.member_cap, self.archive_cap = caps()
        self.inflated = 0  # bytes inflated from the zip so far, against archive_cap
        self.archive_full = False

    def open(self) -> None:
        if self.root.lower().endswith(".zip"):
            self._zip_handle = open_binary(self.root)
            try:
                self.zip = zipfile.ZipFile(self._zip_handle)  # BadZipFile is handled by the caller
            except BaseException:
                self._zip_handle.close()
                raise
            self._infos = {i.filename: i for i in self.zip.infolist() if not i.is_dir()}
            self.names = sorted(self._infos)
            self.present = set(self.names)
        else:
            fs, path = fsspec.core.url_to_fs(self.root)
            if not fs.isdir(path):
                raise SourceError(f"{self.root}: a Slack export must be a folder or a .zip")
            base = path.rstrip("/")
            self.names = sorted(p[len(base) + 1:] for p in fs.find(base))
            self.present = set(self.names)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
            self._zip_handle.close()

    def uri(self, rel: str) -> str:
        return f"zip://{rel}::{self.root}" if self.zip is not None else f"{self.root}/{rel}"

    def _cap_hint(self, env: str) -> str:
        return f"set {env} to a larger number of bytes to read it"

    def read(self, rel: str) -> bytes:
        """The whole (inflated) content of ``rel``, or ``_TooLarge`` if it is over a cap."""
        if self.zip is None:
            with open_binary(self.uri(rel)) as f:
                data = f.read(self.member_cap + 1)
            if len(data) > self.member_cap:
                raise _TooLarge(f"the file is larger than {self.member_cap} bytes (the per-file cap; "
                                f"{self._cap_hint(MEMBER_CAP_ENV)})")
            return data
        info = self._infos[rel]
        if info.file_size > self.member_cap:
            raise _TooLarge(f"the member inflates to {info.file_size} bytes, over the per-file cap of "
                            f"{self.member_cap} ({self._cap_hint(MEMBER_CAP_ENV)}); it was not inflated")
        left = min(self.member_cap, self.archive_cap - self.inflated)
        if info.file_size > left or self.archive_full:
            self.archive_full = True  # the members after it are refused too, however small
            raise _TooLarge(f"the archive's members inflate to more than {self.archive_cap} bytes in all (the "
                            f"per-archive cap; {self._cap_hint(ARCHIVE_CAP_ENV)}); this member was not inflated")
        chunks, size = [], 0
        with self.zip.open(info) as f:
            # zipfile stops at the declared size, but count anyway: the cap must not rest on a header.
            while chunk := f.read(_CHUNK):
                size += len(chunk)
                if size > left:
                    raise _TooLarge(f"the member inflates past {left} bytes, more than it declares "
                                    f"({info.file_size}); it was not read further")
                chunks.append(chunk)
        self.inflated += size
        return b"".join(chunks)


def _load_meta(files: _Files, name: str) -> tuple[Any, Quarantined | None]:
    try:
        data = files.read(name)
    except _TooLarge as e:
        # Without its metadata the export's names and channels cannot be resolved: refuse it whole.
        raise SourceError(f"{files.uri(name)}: {e}") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as e:
        return None, Quarantined(files.uri(name), "corrupt", f"cannot read from the export: {e}", source_record=0)
    doc, q = read_json_bytes(files.uri(name), data)
    if q is None and not isinstance(doc, list):
        return None, Quarantined(files.uri(name), "wrong_type", f"{posixpath.basename(name)} must be a JSON array",
                                 source_record=0, excerpt=data)
    return doc, q


def export_roots(names: list[str]) -> list[str]:
    """The export roots among relative file ``names``: prefixes ('' or 'a/b/') of folders that hold
    conversation folders (folders of ``YYYY-MM-DD.json`` day files) or ``channels.json``/``users.json``.

    An export given one level too high, or zipped inside a wrapper folder, is found all the same.
    """
    roots = set()
    for n in names:
        parts = n.split("/")
        if len(parts) >= 2 and DAY_FILE_RE.match(parts[-1]):
            roots.add("".join(p + "/" for p in parts[:-2]))
        elif parts[-1] in ("channels.json", "users.json"):
            roots.add("".join(p + "/" for p in parts[:-1]))
    return sorted(roots)


def _message(ex: _Export, conv_id: str, recipients: dict | None, uri: str, i: int, m: Any) -> Outcome:
    def bad(reason: str, detail: str) -> Quarantined:
        return Quarantined(uri, reason, f"message {i}: {detail}", source_record=i,
                           excerpt=str(m.get("text")) if isinstance(m, dict) else repr(m))

    if not isinstance(m, dict):
        return bad("wrong_type", f"a message must be an object, got {type(m).__name__}")
    subtype = m.get("subtype")
    if subtype not in SPEECH_SUBTYPES:
        return Skipped(SKIP_POLICIES.get(subtype, UNKNOWN_SUBTYPE_POLICY))
    if m.get("ts") is None:
        return bad("missing_field", "no ts")
    created = from_unix(m["ts"])
    if created is None:
        return bad("bad_time", f"unreadable ts {m['ts']!r}")
    ts = m["ts"] if isinstance(m["ts"], str) else str(m["ts"])
    text = m.get("text", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        return bad("wrong_type", "text must be a string")

    user = m.get("user")
    if user is None and subtype == "file_comment" and isinstance(m.get("comment"), dict):
        user = m["comment"].get("user")  # file comments carry the commenter inside `comment`
    if user is not None and not isinstance(user, str):
        return bad("wrong_type", f"user must be a string id, got {user!r}")
    parts = [text]
    other_names = None
    if subtype == "bot_message" or (user is None and (m.get("bot_id") or m.get("username"))):
        # Integrations post without `user`; their words are often only in attachments.
        bot = m.get("bot_id") or m.get("username")
        profile = m.get("bot_profile") if isinstance(m.get("bot_profile"), dict) else {}
        author_id, author_kind = f"{ex.workspace}:{bot}", "bot"
        author_name = m.get("username") or profile.get("name") or bot
        for a in m.get("attachments") or []:
            if isinstance(a, dict):
                own = [a.get(k) for k in ("pretext", "title", "text") if isinstance(a.get(k), str) and a.get(k)]
                parts += own or ([a["fallback"]] if isinstance(a.get("fallback"), str) else [])
    elif user:
        info = ex.users.get(user, {})
        author_id, author_name = f"{ex.workspace}:{user}", ex.user_name(user)
        author_kind = "bot" if info.get("is_bot") or user == "USLACKBOT" else "user"
        prof = info.get("profile") if isinstance(info.get("profile"), dict) else {}
        other_names = aliases(author_name, info.get("name"), prof.get("display_name"), prof.get("real_name"),
                              info.get("real_name"))
    else:
        author_id, author_name, author_kind = None, None, "deleted"
    text = ex.render("\n".join(p for p in parts if p))
    too_big = text_size_check(text, uri, i)
    if too_big:
        return too_big

    thread_ts = m.get("thread_ts")
    parent = None
    if isinstance(thread_ts, (str, float, int)) and str(thread_ts) != ts:
        parent = f"{PLATFORM}:{ex.workspace}:{conv_id}:{thread_ts}"
    edited = m.get("edited")
    reactions = m.get("reactions")
    score = None
    if isinstance(reactions, list):
        score = sum(r["count"] if isinstance(r.get("count"), int) else len(r.get("users") or [])
                    for r in reactions if isinstance(r, dict))
    files = m.get("files") if isinstance(m.get("files"), list) else ([m["file"]] if m.get("file") else [])
    return {
        M.message_id: f"{PLATFORM}:{ex.workspace}:{conv_id}:{ts}",
        M.platform: PLATFORM,
        M.community: f"{PLATFORM}:{ex.workspace}",
        M.thread_id: f"{PLATFORM}:{ex.workspace}:{conv_id}",
        M.parent_id: parent,
        M.author_id: author_id,
        M.author_name: author_name,
        M.author_aliases: other_names,
        M.author_kind: author_kind,
        M.recipient_ids: recipients.get(author_id) if recipients and author_id else None,
        M.created_at: created,
        M.time_kind: "wall",
        M.time_precision: "microsecond",
        M.order_in_source: i,
        M.kind: SPEECH_SUBTYPES[subtype],
        M.text: text,
        M.score: score,
        M.edited_at: from_unix(edited.get("ts")) if isinstance(edited, dict) else None,
        M.extra: to_json({k: v for k, v in {"subtype": subtype, "files": len(files) or None}.items()
                          if v is not None}),
        M.source_uri: uri,
        M.source_record: i,
    }


def _conversations(files: _Files, root: str, ex: _Export, dm_members: dict) -> Iterator[Quarantined]:
    """Fill ``ex.conversations`` and ``dm_members`` from the conversation lists; yield a row per bad file or entry."""
    for meta in CONVERSATION_LISTS:
        if root + meta not in files.present:
            continue
        doc, q = _load_meta(files, root + meta)
        if q is not None:
            yield q
            continue
        for j, c in enumerate(doc):
            if not (isinstance(c, dict) and isinstance(c.get("id"), str)):
                yield Quarantined(files.uri(root + meta), "bad_value", f"entry {j}: a conversation needs a string "
                                  "`id`; the entry is ignored", source_record=j, excerpt=repr(c))
                continue
            name = c.get("name")
            if name is not None and not isinstance(name, str):
                yield Quarantined(files.uri(root + meta), "bad_value",
                                  f"entry {j}: `name` is a {type(name).__name__}, not a string; its folder is "
                                  "matched by the id instead", source_record=j, excerpt=repr(c))
                name = None
            # DMs have no name: their folder is named by the conversation id.
            ex.conversations[name or c["id"]] = c
            if meta in ("dms.json", "mpims.json") and isinstance(c.get("members"), list):
                dm_members[c["id"]] = [u for u in c["members"] if isinstance(u, str)]


def _read_root(files: _Files, root: str, workspace: str) -> Iterator[Outcome]:
    """One outcome per message of the export whose files sit under ``root`` (a prefix of ``files.names``)."""
    ex = _Export(workspace)
    dm_members: dict[str, list[str]] = {}
    yield from _conversations(files, root, ex, dm_members)
    if root + "users.json" in files.present:
        doc, q = _load_meta(files, root + "users.json")
        if q is not None:
            yield q
        else:
            ex.users = {u["id"]: u for u in doc if isinstance(u, dict) and isinstance(u.get("id"), str)}

    folders = {n[len(root):].split("/")[0] for n in files.names
               if n.startswith(root) and n[len(root):].count("/") == 1 and DAY_FILE_RE.match(posixpath.basename(n))}
    day_files = [n for n in files.names if n.startswith(root) and n.endswith(".json")
                 and n[len(root):].count("/") == 1 and n[len(root):].split("/")[0] in folders]
    where = files.uri(root.rstrip("/")) if root else files.root
    if not day_files:
        yield Quarantined(where, "empty_file", "the export has metadata but no conversation folder of "
                          "YYYY-MM-DD.json day files", source_record=0)
        return
    missing = [m for m in ("channels.json", "users.json") if root + m not in files.present]
    if missing:
        log.warning("%s: Slack export without %s: %s", where, " and ".join(missing), "; ".join(
            {"channels.json": "conversation ids are the folder names",
             "users.json": "authors are named by their user ids"}[m] for m in missing))
    for rel in day_files:
        folder = rel[len(root):].split("/", 1)[0]
        conv = ex.conversations.get(folder, {})
        conv_id = conv.get("id") or folder
        members = dm_members.get(conv_id)
        recipients = None
        if members:
            scoped = [f"{workspace}:{u}" for u in sorted(members)]
            recipients = {a: [b for b in scoped if b != a] or None for a in scoped}
        uri = files.uri(rel)
        try:
            data = files.read(rel)
        except _TooLarge as e:
            yield Quarantined(uri, "too_large", f"day file not read: {e}", source_record=0)
            continue
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as e:
            yield Quarantined(uri, "corrupt", f"cannot read from the export: {e}", source_record=0)
            continue
        doc, q = read_json_bytes(uri, data)
        head, data = data[:800], None  # the parsed document is all that is needed from here on
        if q is not None:
            yield q
            continue
        if not isinstance(doc, list):
            yield Quarantined(uri, "wrong_type", f"a day file must be a JSON array, got {type(doc).__name__}",
                              source_record=0, excerpt=head)
            continue
        for i, m in enumerate(doc):
            yield guarded(lambda: _message(ex, conv_id, recipients, uri, i, m), uri, i, raw=m)


def _workspace(stem: str, root: str, n_roots: int, in_zip: bool) -> str:
    """The workspace name: the export folder's name; for a zip, the zip's (so a re-zipped export,
    wrapped in a folder or not, keeps its message ids), or zip/folder when the zip holds several."""
    if not root:
        return stem
    if in_zip:
        return stem if n_roots == 1 else f"{stem}/{root.rstrip('/')}"
    return posixpath.basename(root.rstrip("/"))


def read_export(path: str) -> Iterator[Outcome]:
    """One outcome per message in every day file of the export(s) at ``path`` (folder or .zip).

    The export may sit anywhere below ``path`` (see :func:`export_roots`); a zip holding several
    exports is read as each of them. Broken metadata files are one quarantine row each and the
    reader falls back (folder names as conversation ids, raw user ids as names); a broken or
    over-cap day file is one row. Raises SourceError when ``path`` holds no recognisable export
    or a metadata file is over the size cap.
    """
    name = posixpath.basename(path.rstrip("/"))
    stem = name[:-4] if name.lower().endswith(".zip") else name
    files = _Files(path)
    try:
        files.open()
    except (zipfile.BadZipFile, zlib.error) as e:
        yield Quarantined(path, "corrupt", f"not a readable zip archive: {e}", source_record=0)
        return
    try:
        if not files.names:
            yield Quarantined(path, "empty_file", "the export holds no files", source_record=0)
            return
        roots = export_roots(files.names)
        if not roots:
            raise SourceError(f"{path}: no Slack export found: nothing below it is a conversation folder of "
                              "YYYY-MM-DD.json day files, a channels.json or a users.json")
        for root in roots:
            yield from _read_root(files, root, _workspace(stem, root, len(roots), files.zip is not None))
    finally:
        files.close()


def _under_folder(p: str) -> list[str]:
    """The exports below folder ``p``: each export root found in it, and each .zip in it."""
    fs, local = fsspec.core.url_to_fs(p)
    base = local.rstrip("/")
    names = sorted(n[len(base) + 1:] for n in fs.find(base))
    roots = export_roots(names)
    # An export nested inside another is read with the outer one.
    top = [r for r in roots if not any(o != r and r.startswith(o) for o in roots)]
    out = [p + ("/" + r.rstrip("/") if r else "") for r in top]
    # Zipped exports in a landing folder; a zip inside an export is an attachment, not an export.
    out += [f"{p}/{n}" for n in names if n.lower().endswith(".zip") and not any(n.startswith(r) for r in top)]
    if not out and any("/" not in n and DAY_FILE_RE.match(n) for n in names):
        out = [posixpath.dirname(p)]  # a conversation folder itself: widened to its export, as a day file is
    if not out:
        raise SourceError(f"{p}: no Slack export found: nothing below it is a conversation folder of "
                          "YYYY-MM-DD.json day files, a channels.json, a users.json or a .zip")
    return out


def units(paths: list[str]) -> list[list[str]]:
    """One unit per export: a .zip as given, each export found below a folder, or the export around a file."""
    roots = set()
    for p in paths:
        p = p.rstrip("/")
        fs, local = fsspec.core.url_to_fs(p)
        if p.lower().endswith(".zip"):
            roots.add(p)
        elif fs.isdir(local):
            roots.update(_under_folder(p))
        elif posixpath.basename(p) in META_FILES:
            roots.add(posixpath.dirname(p))
        else:  # a day file: <export>/<channel>/<date>.json
            roots.add(posixpath.dirname(posixpath.dirname(p)))
    return [[r] for r in sorted(roots)]


def read_unit(paths: list[str]) -> Iterator[Outcome]:
    for root in paths:
        yield from read_export(root)


READER = Reader(
    format=PLATFORM,
    description="Slack workspace export (folder or .zip: channels.json, users.json, day files per channel)",
    read_unit=read_unit,
    units=units,
    file_patterns=("*.zip",),
)
