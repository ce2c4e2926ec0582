"""Slack: a workspace export, as a folder or its ``.zip``.

The export holds ``channels.json`` (and ``groups.json``, ``mpims.json``, ``dms.json`` in
newer exports), ``users.json`` and one folder of day files per conversation
(``<channel>/<YYYY-MM-DD>.json``, each a JSON array of messages). Day files are split by the
workspace's local date, so times come from each message's ``ts`` (Unix seconds, UTC), never
from the file name. The whole export is one unit: names and ids are resolved across it.
See docs/formats/slack.md.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import fsspec

from pipelines.sources.base import Outcome, aliases, Quarantined, Reader, Skipped, SourceError, open_binary, text_size_check
from pipelines.sources.chatexport import M, from_unix, read_json_bytes, to_json
from pipelines.text import normalise_newlines

PLATFORM = "slack"
META_FILES = ("channels.json", "groups.json", "mpims.json", "dms.json", "users.json", "integration_logs.json",
              "canvases.json", "huddle_transcripts.json", "file_conversations.json")
CONVERSATION_LISTS = ("channels.json", "groups.json", "mpims.json", "dms.json")

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
        return prof.get("display_name") or u.get("name") or prof.get("real_name") or u.get("real_name") or uid

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


class _Files:
    """Uniform access to the export's files, in a folder (any fsspec URL) or inside a zip."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.zip = None
        self._zip_handle = None
        self.prefix = ""

    def open(self) -> None:
        if self.root.lower().endswith(".zip"):
            self._zip_handle = open_binary(self.root)
            self.zip = zipfile.ZipFile(self._zip_handle)  # BadZipFile is handled by the caller
            names = [n for n in self.zip.namelist() if not n.endswith("/")]
            metas = sorted((n for n in names if posixpath.basename(n) in ("channels.json", "users.json")),
                           key=lambda n: (n.count("/"), n))
            self.prefix = posixpath.dirname(metas[0]) + "/" if metas and "/" in metas[0] else ""
            self.names = sorted(n[len(self.prefix):] for n in names if n.startswith(self.prefix))
        else:
            fs, path = fsspec.core.url_to_fs(self.root)
            if not fs.isdir(path):
                raise SourceError(f"{self.root}: a Slack export must be a folder or a .zip")
            base = path.rstrip("/")
            self.names = sorted(p[len(base) + 1:] for p in fs.find(base))

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
            self._zip_handle.close()

    def uri(self, rel: str) -> str:
        return f"zip://{self.prefix}{rel}::{self.root}" if self.zip is not None else f"{self.root}/{rel}"

    def read(self, rel: str) -> bytes:
        if self.zip is None:
            with open_binary(self.uri(rel)) as f:
                return f.read()
        return self.zip.read(self.prefix + rel)


def _load_meta(files: _Files, name: str) -> tuple[Any, Quarantined | None]:
    try:
        data = files.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError) as e:
        return None, Quarantined(files.uri(name), "corrupt", f"cannot read from the export: {e}", source_record=0)
    doc, q = read_json_bytes(files.uri(name), data)
    if q is None and not isinstance(doc, list):
        return None, Quarantined(files.uri(name), "wrong_type", f"{name} must be a JSON array", source_record=0,
                                 excerpt=data)
    return doc, q


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


def read_export(root: str) -> Iterator[Outcome]:
    """One outcome per message in every day file of the export at ``root`` (folder or .zip).

    Broken metadata files are one quarantine row each and the reader falls back (folder
    names as conversation ids, raw user ids as names); a broken day file is one row.
    """
    workspace = posixpath.basename(root.rstrip("/"))
    if workspace.lower().endswith(".zip"):
        workspace = workspace[:-4]
    files = _Files(root)
    try:
        files.open()
    except (zipfile.BadZipFile, zlib.error) as e:
        yield Quarantined(root, "corrupt", f"not a readable zip archive: {e}", source_record=0)
        return
    try:
        ex = _Export(workspace)
        names = set(files.names)
        dm_members: dict[str, list[str]] = {}
        for meta in CONVERSATION_LISTS:
            if meta not in names:
                continue
            doc, q = _load_meta(files, meta)
            if q is not None:
                yield q
                continue
            for c in doc:
                if isinstance(c, dict) and isinstance(c.get("id"), str):
                    # DMs have no name: their folder is named by the conversation id.
                    ex.conversations[c.get("name") or c["id"]] = c
                    if meta in ("dms.json", "mpims.json") and isinstance(c.get("members"), list):
                        dm_members[c["id"]] = [u for u in c["members"] if isinstance(u, str)]
        if "users.json" in names:
            doc, q = _load_meta(files, "users.json")
            if q is not None:
                yield q
            else:
                ex.users = {u["id"]: u for u in doc if isinstance(u, dict) and isinstance(u.get("id"), str)}

        day_files = [n for n in files.names if n.count("/") == 1 and n.endswith(".json")]
        if not day_files and not names:
            yield Quarantined(root, "empty_file", "the export holds no files", source_record=0)
        for rel in day_files:
            folder = rel.split("/", 1)[0]
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
            except (zipfile.BadZipFile, zlib.error, OSError) as e:
                yield Quarantined(uri, "corrupt", f"cannot read from the export: {e}", source_record=0)
                continue
            doc, q = read_json_bytes(uri, data)
            if q is not None:
                yield q
                continue
            if not isinstance(doc, list):
                yield Quarantined(uri, "wrong_type", f"a day file must be a JSON array, got {type(doc).__name__}",
                                  source_record=0, excerpt=data)
                continue
            for i, m in enumerate(doc):
                yield _message(ex, conv_id, recipients, uri, i, m)
    finally:
        files.close()


def units(paths: list[str]) -> list[list[str]]:
    """One unit per export: a folder or .zip as given, or the export folder around a file inside one."""
    roots = set()
    for p in paths:
        p = p.rstrip("/")
        fs, local = fsspec.core.url_to_fs(p)
        if p.lower().endswith(".zip") or fs.isdir(local):
            roots.add(p)
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
