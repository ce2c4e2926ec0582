"""Telegram: Telegram Desktop's JSON export (``result.json``).

Three shapes are read: a single-chat export (``{"name", "type", "id", "messages"}``), in
both the older format (integer ``from_id``, channel ids shifted by 2**33) and the newer one
(prefixed string ids such as ``"user123"``/``"channel123"``), and a full account export
whose chats sit under ``chats.list`` (and ``left_chats.list``). See docs/formats/telegram.md.
"""

from __future__ import annotations

from typing import Any, Iterator

from pipelines.sources.base import files_in_turn, Outcome, Quarantined, Reader, Skipped, text_size_check
from pipelines.sources.chatexport import M, from_unix, load_json_file, parse_iso_utc, to_json
from pipelines.text import normalise_newlines

PLATFORM = "telegram"
# Older exports wrote peer ids in Telegram Desktop's internal encoding: a user id as is, a
# basic group +2**32, a channel/supergroup +2**33 (seen in the real sample: the same channel is
# 9882011936 in 2020 and 1292077344 in 2021, and 9882011936 - 2**33 == 1292077344).
_CHAT_SHIFT, _CHANNEL_SHIFT = 2**32, 2**33
MEDIA_FIELDS = ("photo", "file", "sticker_emoji", "media_type", "poll", "contact_information", "location_information")


def _peer(v: Any, legacy: bool) -> str | None:
    """A sender id in the newer prefixed form (``user123``, ``chat123``, ``channel123``)."""
    if isinstance(v, str) and v:
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        if legacy and v >= _CHANNEL_SHIFT:
            return f"channel{v - _CHANNEL_SHIFT}"
        if legacy and v >= _CHAT_SHIFT:
            return f"chat{v - _CHAT_SHIFT}"
        return f"user{v}"
    return None


def _chat_id(v: Any, legacy: bool) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).lstrip("-").isdigit():
        return None
    v = int(v)
    if legacy and v >= _CHANNEL_SHIFT:
        v -= _CHANNEL_SHIFT
    elif legacy and v >= _CHAT_SHIFT:
        v -= _CHAT_SHIFT
    return str(v)


def plain_text(value: Any) -> str | None:
    """The export's ``text`` (a string, or a list of strings and entity objects) as plain text.

    Entities contribute their ``text``; a ``text_link`` also its target, as ``label (url)``.
    Returns None for any other shape.
    """
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None
    parts = []
    for part in value:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            href = part.get("href")
            if part.get("type") == "text_link" and isinstance(href, str) and href and href != part["text"].strip():
                label = part["text"]
                stripped = label.rstrip()
                parts.append(f"{stripped} ({href}){label[len(stripped):]}")
            else:
                parts.append(part["text"])
        else:
            return None
    return "".join(parts)


def _legacy(messages: list) -> bool:
    """True for the older format: integer sender ids (the newer one prefixes them)."""
    for m in messages:
        if isinstance(m, dict):
            for k in ("from_id", "actor_id"):
                if k in m and m[k] is not None:
                    return isinstance(m[k], int) and not isinstance(m[k], bool)
    return False


def _chat(path: str, chat: dict, base_record: int) -> Iterator[Outcome]:
    messages = chat.get("messages")
    legacy = _legacy(messages) if isinstance(messages, list) else False
    chat_id = _chat_id(chat.get("id"), legacy)
    if chat_id is None or not isinstance(messages, list):
        yield Quarantined(path, "missing_field", f"chat {chat.get('name')!r} has no {'id' if chat_id is None else 'messages'}",
                          source_record=base_record, excerpt=str({k: v for k, v in chat.items() if k != "messages"}))
        return
    others = None
    if chat.get("type") in ("personal_chat", "bot_chat"):
        # A private chat's recipients are the other side: whoever else wrote in it, else the chat peer.
        ids = {p for m in messages if isinstance(m, dict) and m.get("from") is not None
               for p in [_peer(m.get("from_id"), legacy)] if p}
        ids.add(f"user{chat_id}")
        others = {a: sorted(ids - {a}) or None for a in ids}
    for i, m in enumerate(messages):
        rec = base_record + i

        def bad(reason: str, detail: str) -> Quarantined:
            return Quarantined(path, reason, f"chat {chat_id}, messages[{i}]: {detail}", source_record=rec,
                               excerpt=str(m.get("text")) if isinstance(m, dict) else repr(m))

        if not isinstance(m, dict):
            yield bad("wrong_type", f"a message must be an object, got {type(m).__name__}")
            continue
        if m.get("type", "message") != "message":
            yield Skipped("service_message")  # joins, pins, title changes, calls…
            continue
        mid = m.get("id")
        if not isinstance(mid, int) or isinstance(mid, bool):
            yield bad("missing_field" if mid is None else "wrong_type", f"bad message id {mid!r}")
            continue
        # date_unixtime is UTC; `date` is the exporting computer's local time without an offset.
        created = from_unix(m["date_unixtime"]) if m.get("date_unixtime") is not None else parse_iso_utc(m.get("date"))
        if created is None:
            yield bad("bad_time" if m.get("date") is not None else "missing_field",
                      f"message {mid}: unreadable date {m.get('date')!r}")
            continue
        text = plain_text(m.get("text", ""))
        if text is None:
            yield bad("wrong_type", f"message {mid}: text is neither a string nor a list of strings and entities")
            continue
        text = normalise_newlines(text)
        too_big = text_size_check(text, path, rec)
        if too_big:
            yield too_big
            continue
        author_id = _peer(m.get("from_id"), legacy)
        name = m.get("from") if isinstance(m.get("from"), str) else None
        if author_id is None or (m.get("from") is None and "from" in m):
            kind, author_id, name = "deleted", None, None  # "Deleted Account": from is null
        else:
            kind = "bot" if author_id.startswith("bot") else "user"
        reply = m.get("reply_to_message_id")
        reply_chat = _chat_id(m.get("reply_to_peer_id"), legacy) if m.get("reply_to_peer_id") else chat_id
        edited = (from_unix(m["edited_unixtime"]) if m.get("edited_unixtime") is not None
                  else parse_iso_utc(m.get("edited")))
        reactions = m.get("reactions")
        extra = {
            # Marked, but the forwarder's name is not kept: it is a person outside the chat.
            "forwarded": True if m.get("forwarded_from") is not None or m.get("saved_from") is not None else None,
            "media": next((k for k in MEDIA_FIELDS if m.get(k)), None),
            "via_bot": m.get("via_bot") if isinstance(m.get("via_bot"), str) else None,
            # created_at came from the local `date` taken as UTC: off by the exporter's UTC offset.
            "local_time": True if m.get("date_unixtime") is None else None,
        }
        yield {
            M.message_id: f"{PLATFORM}:{chat_id}:{mid}",
            M.platform: PLATFORM,
            M.community: f"{PLATFORM}:{chat_id}",
            M.thread_id: f"{PLATFORM}:{chat_id}",
            M.parent_id: f"{PLATFORM}:{reply_chat}:{reply}" if isinstance(reply, int) and reply_chat else None,
            M.author_id: author_id,
            M.author_name: name,
            M.author_kind: kind,
            M.recipient_ids: others.get(author_id) if others and author_id else None,
            M.created_at: created,
            M.time_kind: "wall",
            M.time_precision: "second",
            M.order_in_source: rec,
            M.kind: "message",
            M.text: text,
            M.score: sum(r.get("count", 0) for r in reactions if isinstance(r, dict) and isinstance(r.get("count"), int))
            if isinstance(reactions, list) else None,
            M.edited_at: edited,
            M.extra: to_json({k: v for k, v in extra.items() if v is not None}),
            M.source_uri: path,
            M.source_record: rec,
        }


def read_file(path: str) -> Iterator[Outcome]:
    """One outcome per message of every chat in the export at ``path``.

    ``source_record`` counts messages across the whole file (chats in file order), so it is
    unique within the file even for a full export with many chats.
    """
    doc, q = load_json_file(path)
    if q is not None:
        yield q
        return
    if not isinstance(doc, dict):
        yield Quarantined(path, "wrong_type", f"a Telegram export is a JSON object, got {type(doc).__name__}",
                          source_record=0)
        return
    if "messages" in doc:
        chats = [doc]
    else:
        chats = [c for key in ("chats", "left_chats") if isinstance(doc.get(key), dict)
                 for c in doc[key].get("list") or []]
        if not chats:
            yield Quarantined(path, "missing_field", "neither `messages` nor `chats.list`: not a Telegram export",
                              source_record=0, excerpt=str(list(doc)[:20]))
            return
    record = 0
    for chat in chats:
        if not isinstance(chat, dict):
            yield Quarantined(path, "wrong_type", "a chat must be an object", source_record=record)
            record += 1
            continue
        n = len(chat["messages"]) if isinstance(chat.get("messages"), list) else 1
        yield from _chat(path, chat, record)
        record += n


read_unit = files_in_turn(read_file)


READER = Reader(
    format=PLATFORM,
    description="Telegram Desktop JSON export (result.json: one chat, or a full export with chats.list)",
    read_unit=read_unit,
    file_patterns=("result.json", "*.json"),
)
