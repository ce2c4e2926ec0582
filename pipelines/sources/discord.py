"""Discord: DiscordChatExporter (DCE) JSON exports of guild channels, threads and DMs.

One file is one channel (or thread, or DM) with a ``messages`` array. Ids are Discord
snowflakes, globally unique, so the same channel exported twice yields the same
``message_id`` values and record dedup collapses the copies. See docs/formats/discord.md.
"""

from __future__ import annotations

from typing import Any, Iterator

from pipelines.sources.base import (files_in_turn, guarded, int64_or_none, Outcome, aliases, Quarantined, Reader, Skipped,
                                    text_size_check)
from pipelines.sources.chatexport import M, load_json_file, parse_iso_utc, to_json
from pipelines.core.text import normalise_newlines

PLATFORM = "discord"
SPEECH_TYPES = ("Default", "Reply")  # every other DCE message type is a system event (join, pin, thread created…)
DM_TYPES = ("DirectTextChat", "DirectGroupTextChat")
DELETED_NAME = "Deleted User"  # how Discord (and so DCE) shows an account that no longer exists


def _snowflake(v: Any) -> str | None:
    """A Discord id as its decimal string; DCE writes strings, hand-made files sometimes ints."""
    if isinstance(v, str) and v.isdigit():
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return str(v)
    return None


def _count(v: Any) -> int | None:
    """How many attachments/embeds a message has; None for none or for a value that is not a list."""
    return (len(v) or None) if isinstance(v, list) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _message(path: str, i: int, m: Any, community: str, thread: str,
             recipients: dict[str, list[str]] | None, retrieved_at) -> Outcome:
    def bad(reason: str, detail: str) -> Quarantined:
        return Quarantined(path, reason, f"messages[{i}]: {detail}", source_record=i,
                           excerpt=repr(m)[:400] if not isinstance(m, dict) else str(m.get("content", m))[:400])

    if not isinstance(m, dict):
        return bad("wrong_type", f"a message must be an object, got {type(m).__name__}")
    mid = _snowflake(m.get("id"))
    if mid is None:
        return bad("missing_field" if m.get("id") is None else "wrong_type", f"bad message id {m.get('id')!r}")
    mtype = m.get("type", "Default")
    if mtype not in SPEECH_TYPES:
        return Skipped("system_event")
    created = parse_iso_utc(m.get("timestamp"))
    if created is None:
        return bad("bad_time" if m.get("timestamp") is not None else "missing_field",
                   f"message {mid}: unreadable timestamp {m.get('timestamp')!r}")
    author = m.get("author")
    if not isinstance(author, dict):
        return bad("missing_field" if author is None else "wrong_type", f"message {mid}: no author object")
    content = m.get("content", "")
    if content is None:
        content = ""
    if not isinstance(content, str):
        return bad("wrong_type", f"message {mid}: content must be a string")
    text = normalise_newlines(content)
    too_big = text_size_check(text, path, i)
    if too_big:
        return too_big

    name = _str(author.get("nickname")) or _str(author.get("name"))
    author_id = _snowflake(author.get("id"))
    if author.get("name") == DELETED_NAME:
        kind, author_id, name = "deleted", None, None
    elif author.get("isBot") is True:
        kind = "bot"
    else:
        kind = "user"
    if kind != "deleted" and author_id is None:
        return bad("missing_field", f"message {mid}: author has no id")

    ref = m.get("reference")
    parent = _snowflake(ref.get("messageId")) if isinstance(ref, dict) else None
    reactions = m.get("reactions")
    score = None
    if isinstance(reactions, list):
        score = int64_or_none(sum(r["count"] for r in reactions
                                  if isinstance(r, dict) and int64_or_none(r.get("count")) is not None))
    stickers = m.get("stickers")
    stickers = [s["name"] for s in stickers if isinstance(s, dict) and _str(s.get("name"))] \
        if isinstance(stickers, list) else []
    extra = {
        "attachments": _count(m.get("attachments")),  # counts only: file names can carry PII
        "embeds": _count(m.get("embeds")),
        "stickers": stickers or None,
        "pinned": True if m.get("isPinned") is True else None,
        "type": mtype if mtype != "Default" else None,
    }
    return {
        M.message_id: f"{PLATFORM}:{mid}",
        M.platform: PLATFORM,
        M.community: community,
        M.thread_id: thread,
        M.parent_id: f"{PLATFORM}:{parent}" if parent else None,
        M.author_id: author_id,
        M.author_name: name,
        M.author_aliases: aliases(name, author.get("name"), author.get("nickname")) if author_id else None,
        M.author_kind: kind,
        M.recipient_ids: None if recipients is None or author_id is None else recipients.get(author_id),
        M.created_at: created,
        M.time_kind: "wall",
        M.time_precision: "millisecond",
        M.order_in_source: i,
        M.kind: "message",
        M.text: text,
        M.score: score,
        M.edited_at: parse_iso_utc(m.get("timestampEdited")),
        M.retrieved_at: retrieved_at,
        M.extra: to_json({k: v for k, v in extra.items() if v is not None}),
        M.source_uri: path,
        M.source_record: i,
    }


def _dm_recipients(messages: list) -> dict[str, list[str]]:
    """In a DM, each author's recipients are the other people who wrote in it (DCE lists no members)."""
    ids = sorted({a for m in messages if isinstance(m, dict) and isinstance(m.get("author"), dict)
                  and m["author"].get("name") != DELETED_NAME for a in [_snowflake(m["author"].get("id"))] if a})
    return {a: [b for b in ids if b != a] or None for a in ids}


def read_file(path: str) -> Iterator[Outcome]:
    """One outcome per element of the export's ``messages`` array.

    An unreadable file (empty, not UTF-8, not JSON, no channel id, no messages array) is one
    quarantine row for the file; a bad element is one quarantine row for that element.
    """
    doc, q = load_json_file(path)
    if q is not None:
        yield q
        return
    if not isinstance(doc, dict):
        yield Quarantined(path, "wrong_type", f"a DCE export is a JSON object, got {type(doc).__name__}",
                          source_record=0)
        return
    channel = doc.get("channel") if isinstance(doc.get("channel"), dict) else {}
    guild = doc.get("guild") if isinstance(doc.get("guild"), dict) else {}
    channel_id, messages = _snowflake(channel.get("id")), doc.get("messages")
    if channel_id is None or not isinstance(messages, list):
        what = "channel.id" if channel_id is None else "a messages array"
        yield Quarantined(path, "missing_field", f"the export has no {what}", source_record=0,
                          excerpt=str({k: v for k, v in doc.items() if k != "messages"}))
        return
    is_dm = channel.get("type") in DM_TYPES or _snowflake(guild.get("id")) in (None, "0")
    community = f"{PLATFORM}:{channel_id}" if is_dm else f"{PLATFORM}:{_snowflake(guild.get('id'))}"
    recipients = _dm_recipients(messages) if is_dm else None
    retrieved_at = parse_iso_utc(doc.get("exportedAt"))
    for i, m in enumerate(messages):
        yield guarded(lambda: _message(path, i, m, community, f"{PLATFORM}:{channel_id}", recipients, retrieved_at),
                      path, i, m)


read_unit = files_in_turn(read_file)


READER = Reader(
    format=PLATFORM,
    description="DiscordChatExporter JSON exports (guild channels, threads, DMs)",
    read_unit=read_unit,
    file_patterns=("*.json",),
)
