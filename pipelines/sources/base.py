"""What every dump reader is: a function from a unit of files to a stream of outcomes.

A reader turns each input record into exactly one outcome:

* a message: a ``dict`` keyed by ``MESSAGES`` column names (absent keys are null),
* :class:`Quarantined`: the record is bad; it is kept with a reason code from
  ``schemas.QUARANTINE_REASONS``,
* :class:`Skipped`: the record is not speech (a join, a pin, a topic change) and is
  counted under a named policy.

So ``records == messages + quarantined + skipped`` holds by construction, as long as a
reader never drops a record without yielding an outcome for it.

A *unit* is the smallest group of files a reader must see together (a Slack export
folder, a Stack Exchange site, all pages of a Discourse topic, one IRC channel's day
files in date order). Units are independent of each other, so engines may read them in
parallel (the Spark engine ships one unit per task).
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Union

import fsspec
import orjson

from schemas import QUARANTINE_REASONS

EXCERPT_CHARS = 200
MAX_TEXT_CHARS = 100_000  # messages longer than this are quarantined as too_large


class SourceError(Exception):
    """A dump file that cannot be read at all. The message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class Quarantined:
    source_uri: str
    reason: str
    detail: str
    source_record: int | None = None
    byte_offset: int | None = None
    excerpt: str | bytes | None = None

    def __post_init__(self):
        if self.reason not in QUARANTINE_REASONS:
            raise ValueError(f"unknown quarantine reason {self.reason!r}; known: {sorted(QUARANTINE_REASONS)}")

    def row(self, format: str) -> dict:
        ex = self.excerpt
        if isinstance(ex, bytes):
            ex = ex[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
        elif ex is not None and not isinstance(ex, str):
            ex = repr(ex)
        return {
            "format": format,
            "source_uri": self.source_uri,
            "source_record": self.source_record,
            "byte_offset": self.byte_offset,
            "reason": self.reason,
            "detail": _utf8(self.detail),
            "excerpt": None if ex is None else _utf8(ex[:EXCERPT_CHARS]),
        }


def _utf8(text: str) -> str:
    # A lone surrogate (from a value the reader could not convert) cannot be written to Parquet.
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str  # a policy name, e.g. "system_event", "action_post", "service_message"


Outcome = Union[dict, Quarantined, Skipped]


@dataclass(frozen=True)
class Reader:
    """A dump format.

    ``units(paths)`` groups the expanded input paths into independent units (default: one
    file per unit, in sorted order). ``read_unit(paths)`` yields one outcome per record.
    """

    format: str
    description: str
    read_unit: Callable[[list[str]], Iterator[Outcome]]
    units: Callable[[list[str]], list[list[str]]] = field(default=lambda paths: [[p] for p in sorted(paths)])
    # Which file names a landing-folder sensor should treat as dumps of this format.
    file_patterns: tuple[str, ...] = ("*",)
    # Optional block reader, ``(paths, batch_rows) -> (messages table or None, other outcomes,
    # records)`` per block: the same outcomes as ``read_unit``, the common records converted by
    # column operations (pipelines/stages/ingest.py uses it where present).
    read_batches: Callable | None = None


def open_binary(path: str):
    """Open a local path or fsspec URL for binary reading, or raise SourceError naming it."""
    try:
        return fsspec.open(path, "rb").open()
    except FileNotFoundError as e:
        raise SourceError(f"{path}: file not found. Check the `paths` of this source in the corpus config.") from e
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise SourceError(f"{path}: cannot be opened ({e}).") from e


def guarded(convert: Callable[[], "Outcome"], source_uri: str, record: int | None, raw=None,
            byte_offset: int | None = None) -> "Outcome":
    """``convert()``, or a ``bad_value`` quarantine row for this one record if it raises.

    Every reader turns each record into its outcome through this, so one field with an
    unexpected type or an out-of-range value (a score of ``1e400``, a year 99999) sets that
    record aside with the exception named, and the file goes on. ``raw`` (the record's bytes
    or value) becomes the excerpt. Running out of memory (MemoryError) and interrupts
    are not records' faults and propagate.
    """
    try:
        return convert()
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any fault of one record is that record's quarantine row
        if raw is not None and not isinstance(raw, (str, bytes)):
            try:
                raw = orjson.dumps(raw, default=str, option=orjson.OPT_PASSTHROUGH_DATACLASS)
            except Exception:  # noqa: BLE001
                raw = repr(raw)[: EXCERPT_CHARS * 4]
        return Quarantined(source_uri, "bad_value", f"record cannot be converted: {type(e).__name__}: {e}"[:500],
                           source_record=record, byte_offset=byte_offset, excerpt=raw)


def excerpt(data: str | bytes | None) -> str | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        data = data[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return data[:EXCERPT_CHARS]


def text_size_check(text: str, source_uri: str, record: int, raw: str | bytes | None = None) -> Quarantined | None:
    """A ``too_large`` quarantine outcome if ``text`` is over the size cap, else None."""
    if len(text) > MAX_TEXT_CHARS:
        return Quarantined(source_uri, "too_large", f"text has {len(text)} characters (cap {MAX_TEXT_CHARS})",
                           source_record=record, excerpt=raw if raw is not None else text)
    return None


def iter_lines_utf8(stream: io.BufferedIOBase) -> Iterator[tuple[int, int, bytes]]:
    """Yield (line number, byte offset, raw line without newline) from a binary stream."""
    offset = 0
    for n, line in enumerate(stream):
        yield n, offset, line.rstrip(b"\r\n")
        offset += len(line)


@dataclass(frozen=True, slots=True)
class JsonError:
    """Why bytes did not parse as JSON. ``reason`` is `invalid_utf8` or `invalid_json`;
    ``cut_short`` says the input ends in the middle of a value (for a whole file read at
    once, a truncated file; readers choose the quarantine reason from that)."""

    reason: str
    detail: str
    byte_offset: int | None
    cut_short: bool


def parse_json(data: bytes) -> tuple[object, JsonError | None]:
    """``(value, None)``, or ``(None, JsonError)`` naming the bad byte or the JSON error.

    orjson rejects invalid UTF-8 too, so UTF-8 is checked only after a failure (the
    common, valid case pays for one pass).
    """
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError as e:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as u:
            return None, JsonError("invalid_utf8", f"byte {u.start} is not UTF-8 ({u.reason})", u.start, False)
        return None, JsonError("invalid_json", f"not valid JSON ({e})", getattr(e, "pos", None),
                               "unexpected end" in str(e).lower())


def files_in_turn(read_file: Callable[[str], Iterator[Outcome]]) -> Callable[[list[str]], Iterator[Outcome]]:
    """A ``read_unit`` for formats whose files are independent: each file read in turn."""

    def read_unit(paths: list[str]) -> Iterator[Outcome]:
        for path in paths:
            yield from read_file(path)

    return read_unit


def parse_iso_utc(value) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime; naive times are taken as UTC.

    Returns None for a missing or unreadable value, and for one whose UTC instant falls
    outside what a datetime can hold (``9999-12-31T23:59:59-05:00`` is year 10000 in UTC):
    the caller decides whether that is fatal (readers quarantine it as ``bad_time``).
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_micros(value) -> int | None:
    """Microseconds since the Unix epoch of an ISO-8601 time (naive = UTC), or None if unreadable
    or out of range (see :func:`parse_iso_utc`)."""
    t = parse_iso_utc(value)
    if t is None:
        return None
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def int64_or_none(value) -> int | None:
    """``value`` if it is an int (not a bool) that fits an int64 column, else None.

    For optional numbers (scores, view counts, revisions): JSON holds integers up to 2**64-1
    and XML any number of digits, and a value the column cannot hold says nothing usable.
    """
    if isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


def aliases(primary: str | None, *names) -> list[str] | None:
    """The other names an author is shown by (``author_aliases``): distinct non-empty strings
    among ``names`` other than ``primary``, in the given order; None when there are none."""
    seen = {primary.strip().casefold()} if isinstance(primary, str) else set()
    out = []
    for n in names:
        if isinstance(n, str) and n.strip() and n.strip().casefold() not in seen:
            seen.add(n.strip().casefold())
            out.append(n.strip())
    return out or None


def count_outcomes(outcomes: Iterable[Outcome]) -> dict[str, int]:
    c = {"messages": 0, "quarantined": 0, "skipped": 0}
    for o in outcomes:
        if isinstance(o, Quarantined):
            c["quarantined"] += 1
        elif isinstance(o, Skipped):
            c["skipped"] += 1
        else:
            c["messages"] += 1
    return c


def expand_paths(patterns: Iterable[str], log: logging.Logger | None = None) -> list[str]:
    """Expand globs (local or fsspec URLs) into a sorted, de-duplicated list of paths.

    A literal path that does not exist is a SourceError. A glob that matches nothing is
    only logged (a landing folder is often empty), but if no pattern matches anything the
    source is a SourceError: it would silently ingest nothing.
    """
    patterns = list(patterns)
    out: list[str] = []
    empty: list[str] = []
    for pat in patterns:
        fs, path = fsspec.core.url_to_fs(pat)
        proto = pat.split("://", 1)[0] + "://" if "://" in pat else ""
        # A literal path wins over glob syntax: DiscordChatExporter names files "… [<id>].json".
        if any(ch in path for ch in "*?[") and not fs.exists(path):
            hits = sorted(fs.glob(path))
            if not hits:
                empty.append(pat)
            out.extend(proto + h if proto and not h.startswith(proto) else h for h in hits)
        else:
            if not fs.exists(path):
                raise SourceError(f"{pat}: file not found. Check the `paths` of this source.")
            out.append(pat)
    if not out:
        raise SourceError(f"{', '.join(patterns)}: the pattern matches no file")
    for pat in empty:
        (log or logging.getLogger("socialcorpus.ingest")).warning("%s: the pattern matches no file (yet)", pat)
    return sorted(set(out))
