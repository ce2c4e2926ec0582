"""Helpers shared by the chat-app export readers (Discord, Slack, Telegram, Diplomacy).

These exports are whole-file JSON documents (or JSON lines), so the same few things go wrong
in each: an empty file, bytes that are not UTF-8, JSON that does not parse, a value of the
wrong type. Each helper turns one of those into a :class:`Quarantined` outcome instead of an
exception, so a reader can ``yield`` it and move on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import orjson

# parse_iso_utc is re-exported for the chat readers, which import their helpers from here.
from pipelines.sources.base import Quarantined, open_binary, parse_iso_utc, parse_json  # noqa: F401
from schemas import MESSAGES

# MESSAGES column names as plain attributes: ``Table.__getattr__`` is a slow path, and readers
# build one dict per record. A typo is still an AttributeError.
M = SimpleNamespace(**{name: name for name in MESSAGES.names})

_EXCERPT_BYTES = 400


def read_json_bytes(path: str, data: bytes) -> tuple[Any, Quarantined | None]:
    """Parse ``data`` (the whole content of ``path``) as one JSON document.

    Returns ``(document, None)`` or ``(None, quarantine)`` with reason ``empty_file``,
    ``invalid_utf8`` or ``invalid_json``; the quarantine row stands for the whole file
    (``source_record`` 0), because nothing inside an unparsable document can be trusted.
    """
    if not data.strip():
        return None, Quarantined(path, "empty_file", "the file has no content", source_record=0, byte_offset=0,
                                 excerpt=data)
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM is legal in front of JSON written by Windows tools
        data = data[3:]
    doc, err = parse_json(data)
    if err is None:
        return doc, None
    at = err.byte_offset or 0
    return None, Quarantined(path, err.reason, f"the document does not parse: {err.detail}; the whole file is set aside",
                             source_record=0, byte_offset=err.byte_offset,
                             excerpt=data[max(0, at - 40): at + _EXCERPT_BYTES])


def load_json_file(path: str) -> tuple[Any, Quarantined | None]:
    """Read and parse the JSON document at ``path`` (local path or fsspec URL).

    Raises ``SourceError`` if the file cannot be opened; every content problem comes back as
    a quarantine outcome (see :func:`read_json_bytes`).
    """
    with open_binary(path) as f:
        data = f.read()
    return read_json_bytes(path, data)


def from_unix(value: Any) -> datetime | None:
    """Unix seconds (int, float or numeric string, e.g. Slack `ts` ``"1452837318.000002"``) as UTC.

    The fractional part is kept to the microsecond by string arithmetic (a float would round
    ``.000002`` away). Returns None when the value is not a number or out of range.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = repr(value) if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        return None
    whole, _, frac = value.strip().partition(".")
    if not whole.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    micros = int((frac + "000000")[:6]) if frac else 0
    try:
        return datetime.fromtimestamp(int(whole), tz=timezone.utc).replace(microsecond=micros)
    except (OverflowError, OSError, ValueError):
        return None


def to_json(obj: dict | None) -> str | None:
    """A compact, key-sorted JSON string (deterministic bytes), or None for an empty/absent object."""
    if not obj:
        return None
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
