"""Telegram: Telegram Desktop's JSON export (``result.json``).

Three shapes are read: a single-chat export (``{"name", "type", "id", "messages"}``), in
both the older format (integer ``from_id``, channel ids shifted by 2**33) and the newer one
(prefixed string ids such as ``"user123"``/``"channel123"``), and a full account export
whose chats sit under ``chats.list`` (and ``left_chats.list``). See docs/formats/telegram.md.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import ijson

from pipelines.sources.base import (files_in_turn, guarded, open_binary, Outcome, Quarantined, Reader, Skipped,
                                    text_size_check)
from pipelines.sources.chatexport import M, from_unix, parse_iso_utc, read_json_bytes, to_json
from pipelines.core.text import normalise_newlines

PLATFORM = "telegram"
# Older exports wrote peer ids in Telegram Desktop's internal encoding: a user id as is, a
# basic group +2**32, a channel/supergroup +2**33 (seen in the real sample: the same channel is
# 9882011936 in 2020 and 1292077344 in 2021, and 9882011936 - 2**33 == 1292077344).
_CHAT_SHIFT, _CHANNEL_SHIFT = 2**32, 2**33
# Files up to this size are parsed whole with orjson (peak memory 3-7x the file); larger ones
# are streamed (about as fast on 300 MB exports, peak memory flat; see docs/formats/telegram.md).
STREAM_ABOVE_BYTES = 64 << 20
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


_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses


def _chat_id(v: Any, legacy: bool) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, str)) or not _INTEGER.fullmatch(str(v)):
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


def _senders(messages: list, legacy: bool) -> set[str]:
    return {p for m in messages if isinstance(m, dict) and m.get("from") is not None
            for p in [_peer(m.get("from_id"), legacy)] if p}


def _chat(path: str, chat: dict, messages: Iterable | None, base_record: int, legacy: bool,
          senders: set[str]) -> Iterator[Outcome]:
    """The outcomes of one chat: ``chat`` holds its fields (``id``, ``name``, ``type``),
    ``messages`` its messages (None when the chat has no array of them), ``senders`` the
    author ids of all its messages (private chats' recipients are the other side)."""
    chat_id = _chat_id(chat.get("id"), legacy)
    if chat_id is None or messages is None:
        yield Quarantined(path, "missing_field", f"chat {chat.get('name')!r} has no {'id' if chat_id is None else 'messages'}",
                          source_record=base_record, excerpt=str({k: v for k, v in chat.items() if k != "messages"}))
        return
    others = None
    if chat.get("type") in ("personal_chat", "bot_chat"):
        # A private chat's recipients are the other side: whoever else wrote in it, else the chat peer.
        ids = senders | {f"user{chat_id}"}
        others = {a: sorted(ids - {a}) or None for a in ids}
    for i, m in enumerate(messages):
        rec = base_record + i
        yield guarded(lambda: _message(path, chat_id, legacy, others, i, rec, m), path, rec, raw=m)


def _message(path: str, chat_id: str, legacy: bool, others: dict | None, i: int, rec: int, m: Any) -> Outcome:
    def bad(reason: str, detail: str) -> Quarantined:
        return Quarantined(path, reason, f"chat {chat_id}, messages[{i}]: {detail}", source_record=rec,
                           excerpt=str(m.get("text")) if isinstance(m, dict) else repr(m))

    if not isinstance(m, dict):
        return bad("wrong_type", f"a message must be an object, got {type(m).__name__}")
    if m.get("type", "message") != "message":
        return Skipped("service_message")  # joins, pins, title changes, calls…
    mid = m.get("id")
    if not isinstance(mid, int) or isinstance(mid, bool):
        return bad("missing_field" if mid is None else "wrong_type", f"bad message id {mid!r}")
    # date_unixtime is UTC; `date` is the exporting computer's local time without an offset.
    created = from_unix(m["date_unixtime"]) if m.get("date_unixtime") is not None else parse_iso_utc(m.get("date"))
    if created is None:
        return bad("bad_time" if m.get("date") is not None else "missing_field",
                   f"message {mid}: unreadable date {m.get('date')!r}")
    text = plain_text(m.get("text", ""))
    if text is None:
        return bad("wrong_type", f"message {mid}: text is neither a string nor a list of strings and entities")
    text = normalise_newlines(text)
    too_big = text_size_check(text, path, rec)
    if too_big:
        return too_big
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
    return {
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
    unique within the file even for a full export with many chats. Files over
    ``STREAM_ABOVE_BYTES`` are streamed (same outcomes, bounded memory).
    """
    with open_binary(path) as f:
        f.seek(0, 2)
        if f.tell() > STREAM_ABOVE_BYTES:
            big = True
        else:
            f.seek(0)
            big, data = False, f.read()
    if big:
        yield from _stream_file(path)
        return
    doc, q = read_json_bytes(path, data)
    del data
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
        chats = []
        for key in ("chats", "left_chats"):
            listed = doc[key].get("list") if isinstance(doc.get(key), dict) else None
            if listed is not None and not isinstance(listed, list):
                yield Quarantined(path, "wrong_type", f"`{key}.list` must be an array, got {type(listed).__name__}",
                                  source_record=0)
                return
            chats += listed or []
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
        messages = chat.get("messages") if isinstance(chat.get("messages"), list) else None
        legacy = _legacy(messages) if messages is not None else False
        yield from _chat(path, chat, messages, record, legacy, _senders(messages or [], legacy))
        record += len(messages) if messages is not None else 1


# ---------------------------------------------------------------------------------------------
# Large exports are streamed with ijson (C backend), so memory stays bounded by one message rather
# than by the file (a 282 MB result.json parsed whole took 1.97 GB). Pass 1 walks the parse events
# once, keeping only each chat's scalar fields, its message count and its senders; pass 2 lets
# ijson build the messages one at a time (in C) and hands each to the same conversion.

_VALUES = frozenset(("start_map", "start_array", "string", "number", "boolean", "null"))
_JSON_TYPE = {"start_map": "dict", "start_array": "list", "string": "str", "number": "number",
              "boolean": "bool", "null": "NoneType"}
_LIST_KEYS = ("chats", "left_chats")


@dataclass
class _ChatScan:
    """One chat as pass 1 saw it."""

    is_object: bool = True
    header: dict = field(default_factory=dict)  # the chat's scalar fields (`id`, `name`, `type`)
    messages_is_list: bool = False
    items: int = 0  # values pass 2 meets at this chat's `…messages.item` prefix
    legacy: bool | None = None
    senders: set = field(default_factory=set)  # from_id of messages whose `from` is not null


@dataclass
class _Scan:
    root_type: str = "NoneType"
    root_keys: set = field(default_factory=set)
    list_type: dict = field(default_factory=dict)  # "chats" -> JSON type of `chats.list`
    chats: dict = field(default_factory=lambda: {k: [] for k in ("", *_LIST_KEYS)})


def _open_skipping_bom(path: str):
    f = open_binary(path)
    if f.read(3) != b"\xef\xbb\xbf":  # a BOM is legal in front of JSON written by Windows tools
        f.seek(0)
    return f


def _scan(path: str) -> _Scan:
    """Pass 1 over ``path``. Raises ``ijson.JSONError`` if the document does not parse, before
    anything is yielded, so a broken file is set aside whole as in the whole-file path."""
    scan = _Scan()
    chat_at = {"": "", **{f"{k}.list.item": k for k in _LIST_KEYS}}  # chat prefix -> list key
    item_at = {("messages" if not p else p + ".messages") + ".item": k for p, k in chat_at.items()}
    list_at = {f"{k}.list": k for k in _LIST_KEYS}
    sender_at = {f"{i}.{f}": (k, f) for i, k in item_at.items() for f in ("from", "from_id", "actor_id")}

    def classify(prefix: str):
        """(what, list key, field name) for a prefix; most prefixes (inside messages) are ignored."""
        if prefix in sender_at:
            return ("sender", *sender_at[prefix])
        if prefix in item_at:
            return "item", item_at[prefix], None
        if prefix in list_at:
            return "list", list_at[prefix], None
        if prefix in chat_at:
            return ("root" if not prefix else "chat"), chat_at[prefix], None
        head, _, name = prefix.rpartition(".")
        if head in chat_at:
            return "field", chat_at[head], name
        return None

    kinds: dict[str, tuple | None] = {}  # a file has few distinct prefixes: classify each once
    cur: dict[str, _ChatScan] = {"": _ChatScan()}
    msg: dict[str, list] = {}  # list key -> [from is not None, from_id] of the message being read
    with _open_skipping_bom(path) as f:
        # Floats as floats, as orjson gives them (and, like orjson, 1e400 does not parse).
        events = ijson.parse(f, use_float=True)
        for prefix, event, value in events:
            scan.root_type = _JSON_TYPE.get(event, "NoneType")
            break
        if scan.root_type != "dict":
            return scan
        for prefix, event, value in events:
            if event == "map_key":  # a third of all events; only the root's keys matter
                if not prefix:
                    scan.root_keys.add(value)
                continue
            try:
                kind = kinds[prefix]
            except KeyError:
                kind = kinds[prefix] = classify(prefix)
            if kind is None:
                continue
            what, key, name = kind
            if event not in _VALUES:
                if what == "item" and event == "end_map":
                    fr, fid = msg.pop(key, (False, None))
                    if fr and cur[key].messages_is_list:
                        cur[key].senders.add(fid)
                continue
            if what == "sender":
                if name == "from":
                    msg.setdefault(key, [False, None])[0] = value is not None or event.startswith("start")
                    continue
                c = cur[key]
                if c.legacy is None and value is not None:
                    c.legacy = isinstance(value, int) and not isinstance(value, bool)
                if name == "from_id":
                    msg.setdefault(key, [False, None])[1] = value
            elif what == "item":
                cur[key].items += 1
                msg[key] = [False, None]
            elif what == "list":
                scan.list_type[key] = _JSON_TYPE[event]
            elif what == "chat":
                cur[key] = _ChatScan(is_object=event == "start_map")
                scan.chats[key].append(cur[key])
            elif what == "field":
                c = cur.get(key)
                if c is None:
                    continue
                if name == "messages":
                    c.messages_is_list = event == "start_array"
                elif not event.startswith("start"):
                    c.header[name] = value
    if "messages" in scan.root_keys:
        scan.chats[""] = [cur[""]]
    return scan


def _stream_file(path: str) -> Iterator[Outcome]:
    """:func:`read_file` for a large export: the same outcomes, in bounded memory."""
    try:
        scan = _scan(path)
    except ijson.JSONError as e:
        msg = e.args[0] if e.args else ""
        detail = (msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)).split("\n", 1)[0].strip()
        reason = "invalid_utf8" if "UTF8" in detail else "invalid_json"
        yield Quarantined(path, reason, f"the document does not parse: {detail}; the whole file is set aside",
                          source_record=0)
        return
    if scan.root_type != "dict":
        yield Quarantined(path, "wrong_type", f"a Telegram export is a JSON object, got {scan.root_type}",
                          source_record=0)
        return
    keys = [""] if "messages" in scan.root_keys else [k for k in _LIST_KEYS if k in scan.list_type]
    for k in keys:
        if k and scan.list_type[k] not in ("list", "NoneType"):
            yield Quarantined(path, "wrong_type", f"`{k}.list` must be an array, got {scan.list_type[k]}",
                              source_record=0)
            return
    if not any(scan.chats[k] for k in keys):
        yield Quarantined(path, "missing_field", "neither `messages` nor `chats.list`: not a Telegram export",
                          source_record=0, excerpt=str(sorted(scan.root_keys)[:20]))
        return
    record = 0
    for k in keys:
        item_prefix = f"{k}.list.item.messages.item" if k else "messages.item"
        with _open_skipping_bom(path) as f:
            messages = ijson.items(f, item_prefix, use_float=True)
            for c in scan.chats[k]:
                # Each chat takes its own run of values from the one stream, in file order.
                own = itertools.islice(messages, c.items)
                if not c.is_object:
                    yield Quarantined(path, "wrong_type", "a chat must be an object", source_record=record)
                    record += 1
                    continue
                legacy = bool(c.legacy)
                senders = {p for v in c.senders for p in [_peer(v, legacy)] if p}
                yield from _chat(path, c.header, own if c.messages_is_list else None, record, legacy, senders)
                for _ in own:  # values under a `messages` that is not an array: consumed, not read
                    pass
                record += c.items if c.messages_is_list else 1


read_unit = files_in_turn(read_file)


READER = Reader(
    format=PLATFORM,
    description="Telegram Desktop JSON export (result.json: one chat, or a full export with chats.list)",
    read_unit=read_unit,
    file_patterns=("result.json", "*.json"),
)
