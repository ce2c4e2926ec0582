"""IRC: irclogs-style day files, ``.../<network>/YYYY/MM/DD/#channel.txt``.

Lines are ``[HH:MM] <nick> text`` (messages), ``[HH:MM]  * nick text`` (``/me`` actions) and
``=== …`` system lines (nick changes, topic changes, joins, parts, quits). Date, channel and
network exist only in the path. A unit is every day file of one (network, channel) in date
order, so an author is followed across renames and across days. See docs/formats/irc.md.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from datetime import date, datetime, timezone
from typing import Iterator

import fsspec
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.sources.base import (MAX_TEXT_CHARS, Outcome, guarded, Quarantined, Reader, Skipped, SourceError,
                                    iter_lines_utf8, open_binary, text_size_check)
from pipelines.sources.chatexport import M

PLATFORM = "irc"
PATH_RE = re.compile(r"(?P<root>.*?)(?P<network>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
                     r"(?P<channel>[^/]+?)\.(?:txt|log)$")
MESSAGE_RE = re.compile(r"^\[(\d\d):(\d\d)\] <[@+%&~]?([^>\s]+)> ?(.*)$")
ACTION_RE = re.compile(r"^\[(\d\d):(\d\d)\]\s+\* ([^\s]+) ?(.*)$")
NICK_RE = re.compile(r"^=== (\S+) is now known as (\S+)\s*$")
TOPIC_RE = re.compile(r"^=== \S+ changed the topic of ")
JOIN_PART_RE = re.compile(r"^=== \S+ (?:\[[^\]]*\] )?has (?:joined|left|quit|parted)\b")
ADDRESS_RE = re.compile(r"^([^\s:,]+)[:,](?:\s|$)")
# ubottu and its siblings answer factoids; FloodBot* and *Bot* nicks are channel guards.
KNOWN_BOTS = {"ubottu", "ubot2", "ubot5", "ubot93", "lubotu1", "lubotu2", "lubotu3", "chanserv", "nickserv"}
BOT_RE = re.compile(r"Bot|^bot(?![a-z])|bot\d*_*$")
LOG_SUFFIXES = (".txt", ".log")

log = logging.getLogger("socialcorpus.sources.irc")


def is_bot(nick: str) -> bool:
    """Heuristic: a known service bot, or a nick with ``Bot``/a ``bot`` prefix or suffix."""
    return nick.lower() in KNOWN_BOTS or bool(BOT_RE.search(nick))


def _parse_path(path: str) -> re.Match:
    m = PATH_RE.search(path)
    if m is None:
        raise SourceError(f"{path}: an IRC log must be laid out as <network>/YYYY/MM/DD/<#channel>.txt "
                          "(date, channel and network are read from the path)")
    return m


def _walk(folder: str) -> list[str]:
    """The day files below ``folder`` (an irclogs root, network, year or month folder)."""
    fs, local = fsspec.core.url_to_fs(folder)
    proto = folder.split("://", 1)[0] + "://" if "://" in folder else ""
    found = sorted(proto + f if proto and not f.startswith(proto) else f for f in fs.find(local)
                   if f.endswith(LOG_SUFFIXES))
    days = [f for f in found if PATH_RE.search(f)]
    if not days:
        raise SourceError(f"{folder}: no IRC day file below this folder; an IRC log must be laid out as "
                          "<network>/YYYY/MM/DD/<#channel>.txt (date, channel and network are read from the path)")
    if len(days) < len(found):
        others = [f for f in found if not PATH_RE.search(f)]
        log.warning("%s: %d .txt/.log files are not laid out as <network>/YYYY/MM/DD/<#channel>.txt and are not "
                    "read, e.g. %s", folder, len(others), others[0])
    return days


def units(paths: list[str]) -> list[list[str]]:
    """One unit per (network folder, channel): its day files sorted by date. A folder is walked."""
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    day_files: dict[str, None] = {}  # ordered set: a folder and a file inside it give that file once
    for p in paths:
        fs, local = fsspec.core.url_to_fs(p)
        day_files.update(dict.fromkeys(_walk(p.rstrip("/")) if fs.isdir(local) else [p]))
    for p in day_files:
        m = _parse_path(p)
        groups[(m["root"], m["network"], m["channel"])].append((f"{m['y']}-{m['m']}-{m['d']}", p))
    return [[p for _, p in sorted(files)] for _, files in sorted(groups.items())]


class _Channel:
    """Who is who in one channel, carried across the unit's day files.

    ``root`` maps a current nick (case-insensitively, as IRC compares nicks) to the first
    nick of its rename chain, which names the author for good.
    """

    def __init__(self, network: str):
        self.network = network
        self.root: dict[str, str] = {}
        self.last_message: dict[str, str] = {}  # root nick (folded) -> latest message_id

    def identity(self, nick: str) -> str:
        return self.root.get(nick.casefold(), nick)

    def rename(self, old: str, new: str) -> None:
        root = self.identity(old)
        self.root.pop(old.casefold(), None)  # the old nick is free now; someone else may take it
        self.root[new.casefold()] = root

    def addressed(self, text: str, author_root: str) -> str | None:
        """The latest earlier message of the person a ``nick: …``/``nick, …`` line addresses."""
        m = ADDRESS_RE.match(text)
        if not m:
            return None
        root = self.identity(m.group(1))
        if root.casefold() == author_root.casefold():
            return None
        return self.last_message.get(root.casefold())


def _line(path: str, ch: _Channel, scope: str, network: str, day: str, ymd: tuple[int, int, int], n: int,
          offset: int, raw: bytes) -> Outcome:
    """The outcome of line ``n`` (``raw``, without its newline) of one day file."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Quarantined(path, "invalid_utf8", f"line {n}: byte {e.start} is not UTF-8",
                           source_record=n, byte_offset=offset, excerpt=raw)
    if line.startswith("==="):
        nick = NICK_RE.match(line)
        if nick:
            ch.rename(nick.group(1), nick.group(2))
            return Skipped("nick_change")
        if TOPIC_RE.match(line):
            return Skipped("topic_change")
        if JOIN_PART_RE.match(line):
            return Skipped("join_part")
        return Skipped("system_line")
    m, kind = MESSAGE_RE.match(line), "message"
    if m is None:
        m, kind = ACTION_RE.match(line), "action"
    if m is None:
        return Quarantined(path, "unparsable_line", f"line {n}: matches no IRC line form",
                           source_record=n, byte_offset=offset, excerpt=line)
    hh, mm, nick, text = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4).rstrip()
    if hh > 23 or mm > 59:
        return Quarantined(path, "bad_time", f"line {n}: time {hh:02d}:{mm:02d} out of range",
                           source_record=n, byte_offset=offset, excerpt=line)
    too_big = text_size_check(text, path, n, raw)
    if too_big:
        return too_big
    root = ch.identity(nick)
    message_id = f"{PLATFORM}:{scope}:{day}:{n}"
    parent_inferred = ch.addressed(text, root) if kind == "message" else None
    ch.last_message[root.casefold()] = message_id
    return {
        M.message_id: message_id,
        M.platform: PLATFORM,
        M.community: f"{PLATFORM}:{scope}",
        # One thread per channel-day: a channel never ends, and splitting examples by
        # thread needs more than one thread per channel (see docs/formats/irc.md).
        M.thread_id: f"{PLATFORM}:{scope}:{day}",
        M.parent_inferred: parent_inferred,
        M.author_id: f"{network}:{root}",
        M.author_name: nick,
        M.author_kind: "bot" if is_bot(nick) or is_bot(root) else "user",
        # irclogs.ubuntu.com writes UTC; other loggers may not (see docs/formats/irc.md).
        M.created_at: datetime(*ymd, hh, mm, tzinfo=timezone.utc),
        M.time_kind: "wall",
        M.time_precision: "minute",
        M.order_in_source: n,
        M.kind: kind,
        M.text: text,
        M.source_uri: path,
        M.source_record: n,
    }


def _read_day(path: str, ch: _Channel) -> Iterator[Outcome]:
    pm = _parse_path(path)
    network, channel = pm["network"], pm["channel"]
    ymd = int(pm["y"]), int(pm["m"]), int(pm["d"])
    day = f"{pm['y']}-{pm['m']}-{pm['d']}"
    try:
        date(*ymd)
    except ValueError:
        # Every time in the file would be on a day that does not exist: set the file aside whole.
        yield Quarantined(path, "bad_time", f"the date folder {pm['y']}/{pm['m']}/{pm['d']} is not a calendar "
                          "date; the file is not read", source_record=0, byte_offset=0)
        return
    scope = f"{network}/{channel}"
    seen = False
    with open_binary(path) as f:
        for n, offset, raw in iter_lines_utf8(f):
            if n == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue  # blank lines are not records
            seen = True
            yield guarded(lambda: _line(path, ch, scope, network, day, ymd, n, offset, raw), path, n, raw=raw,
                          byte_offset=offset)
    if not seen:
        yield Quarantined(path, "empty_file", "the log file has no lines", source_record=0, byte_offset=0)


def read_unit(paths: list[str]) -> Iterator[Outcome]:
    """One outcome per non-blank line of each day file; ``paths`` is one channel's files in date order."""
    if not paths:
        return
    ch = _Channel(_parse_path(paths[0])["network"])
    for path in paths:
        yield from _read_day(path, ch)


# --- the block reader: what ingest runs; the same outcomes as read_unit --------------------------
#
# A block is consecutive day files of one unit, read whole into one buffer. numpy finds the lines
# and checks the fixed layout of the common ones (``[HH:MM] <nick> text``, ``[HH:MM]  * nick text``)
# byte by byte; what it cannot decide exactly goes to the reference ``_line``: system lines (renames
# are the channel state), lines that are not UTF-8, bad times, over-long lines, nicks or addressed
# nicks that are not ASCII or are longer than the scan window, a control byte U+001C-U+001F anywhere
# (Python's ``str.isspace`` takes those for whitespace), and everything that matches no form.

_BOM = b"\xef\xbb\xbf"
_WINDOWS = (16, 64)  # bytes scanned for the end of a nick or an addressed nick; a longer one: the reference
_MODES = np.frombuffer(b"@+%&~", np.uint8)
_SPACE = b" \t\n\r\x0b\x0c"  # bytes.strip()'s whitespace, and the ASCII part of Python's \s
_OK, _STOP, _BAD, _NONE = 0, 1, 2, 3  # byte classes of a scan: go on, end here, the reference, no match
_ASKED = object()  # parent_inferred of a reference message row until the block's messages are known
_MICROS_PER_DAY = 86_400_000_000


def _classes(stop: bytes, none: bytes = b"") -> np.ndarray:
    """A byte -> class table; non-ASCII bytes, U+001C-U+001F and whitespace not named are _BAD (the reference's)."""
    t = np.zeros(256, np.uint8)
    t[0x80:] = _BAD
    t[0x1c:0x20] = _BAD
    t[list(_SPACE)] = _BAD
    t[list(none)] = _NONE
    t[list(stop)] = _STOP
    return t


_MESSAGE_NICK = _classes(b">")  # `<nick>`; whitespace before `>` is no message: the reference says what it is
_ACTION_NICK = _classes(_SPACE)  # `* nick text`: whitespace ends the nick
_ADDRESS = _classes(b":,", none=_SPACE)  # ADDRESS_RE: `nick:` / `nick,`, then whitespace or the end
_IS_SPACE = np.zeros(256, bool)
_IS_SPACE[list(_SPACE)] = True
_CR = np.zeros(256, bool)
_CR[13] = True


class _Day:
    """One day file of a unit, read whole: its path fields and bytes (None: a bad date folder)."""

    def __init__(self, path: str):
        pm = _parse_path(path)
        self.path, self.network = path, pm["network"]
        self.scope = f"{pm['network']}/{pm['channel']}"
        self.day = f"{pm['y']}-{pm['m']}-{pm['d']}"
        self.ymd = int(pm["y"]), int(pm["m"]), int(pm["d"])
        self.data, self.lines, self.bad_date = None, 0, None
        try:
            self.epoch_day = (date(*self.ymd) - date(1970, 1, 1)).days
        except ValueError:
            self.bad_date = Quarantined(path, "bad_time", f"the date folder {pm['y']}/{pm['m']}/{pm['d']} is not a "
                                        "calendar date; the file is not read", source_record=0, byte_offset=0)
            return
        self.data = _read(path)
        self.lines = self.data.count(b"\n") + 1  # pieces of split(b"\n"): the last one may be empty

    def undecodable(self) -> list[int]:
        """Numbers of the lines that are not UTF-8 (the reference quarantines them)."""
        try:
            self.data.decode("utf-8")
            return []
        except UnicodeDecodeError:
            pass
        lines = self.data.split(b"\n")
        if lines[0].startswith(_BOM):
            lines[0] = lines[0][3:]
        bad = []
        for n, raw in enumerate(lines):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(n)
        return bad


def _read(path: str) -> bytes:
    if "://" not in path:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            pass  # open_binary says what is wrong, as the reference does
    with open_binary(path) as f:
        return f.read()


class _Recording(_Channel):
    """The channel as the reference lines of a block see it: renames apply at once (and are
    recorded, for the as-of lookups of the other rows); a message's last-message lookup and
    write are recorded instead, and resolved once every message of the block is known."""

    def __init__(self, ch: _Channel):
        self.network, self.root, self.last_message = ch.network, ch.root, self
        self.pos = -1
        self.renames: list[tuple[int, str, str | None]] = []  # (record, folded nick, its root now)
        self.asked: dict[int, str] = {}  # record -> folded root whose latest message it addresses
        self.said: list[tuple[int, str, str]] = []  # (record, folded root, message_id)

    def rename(self, old: str, new: str) -> None:
        super().rename(old, new)
        for key in dict.fromkeys((old.casefold(), new.casefold())):
            self.renames.append((self.pos, key, self.root.get(key)))

    def get(self, key: str, default=None):  # last_message.get, from _Channel.addressed
        self.asked[self.pos] = key
        return _ASKED

    def __setitem__(self, key: str, message_id: str) -> None:  # last_message[...] = ..., from _line
        self.said.append((self.pos, key, message_id))


def _scan(arr: np.ndarray, begin: np.ndarray, limit: np.ndarray, classes: np.ndarray, past: int):
    """Per row, the first byte from ``begin`` whose class is not _OK: (its distance, its class).
    Bytes at or after ``limit`` have class ``past``; none within the window: _BAD. A short window
    first, a wide one for the rows it does not settle."""
    k = np.zeros(len(begin), np.int64)
    c = np.full(len(begin), _BAD, np.uint8)
    rows = np.arange(len(begin))
    for width in _WINDOWS:
        if not len(rows):
            break
        b = begin[rows]
        cls = classes[sliding_window_view(arr, width)[b]]
        short = np.flatnonzero(limit[rows] - b < width)
        if len(short):
            part = cls[short]
            part[np.arange(width) >= (limit[rows[short]] - b[short])[:, None]] = past
            cls[short] = part
        first = (cls != _OK).argmax(axis=1)
        found = cls[np.arange(len(rows)), first]
        done = (first > 0) | (found != _OK)
        k[rows[done]], c[rows[done]] = first[done], found[done]
        rows = rows[~done]
    return k, c


def _strip_end(arr: np.ndarray, start: np.ndarray, end: np.ndarray, space: np.ndarray) -> np.ndarray:
    """``end`` moved back over the bytes ``space`` marks (not before ``start``)."""
    end = end.copy()
    idx = np.flatnonzero((end > start) & space[arr[end - 1]])
    while len(idx):
        end[idx] -= 1
        idx = idx[(end[idx] > start[idx]) & space[arr[end[idx] - 1]]]
    return end


def _strings(data: pa.Buffer, bounds: list[np.ndarray], take: int) -> pa.Array:
    """The string ``data[bounds[take][i]:bounds[take + 1][i]]`` of each row (bounds ascend row by row)."""
    offsets = np.stack(bounds, axis=1).ravel()
    kind = pa.StringArray if data.size < 2**31 else pa.LargeStringArray
    offsets = offsets.astype(np.int32 if kind is pa.StringArray else np.int64)
    whole = kind.from_buffers(max(len(offsets) - 1, 0), pa.py_buffer(offsets), data)
    return whole.take(pa.array(np.arange(len(bounds[0])) * len(bounds) + take))


def _repeat(value: str, n: int) -> pa.Array:
    raw = value.encode()
    return pa.StringArray.from_buffers(n, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * len(raw)),
                                       pa.py_buffer(raw * n))


def _utf8(data: bytes, size: int, starts: list[bytes]) -> bool:
    """Whether each file is UTF-8: ``data[:size]`` (the files one after another) is, checked without
    building a str, and no file starts inside a character (so the files' boundaries are characters')."""
    if any(0x80 <= b[0] <= 0xbf for b in starts if b):
        return False
    try:
        pa.LargeStringArray.from_buffers(1, pa.py_buffer(np.array([0, size], np.int64)), pa.py_buffer(data)).validate(
            full=True)
        return True
    except pa.ArrowInvalid:
        return False


class _Codes(dict):
    """Folded nicks as integers, so that the as-of lookups are numpy searches."""

    def of(self, values) -> np.ndarray:
        return np.array([self.setdefault(v, len(self)) for v in values], np.int64)


class _AsOf:
    """Entries (key, position), searched for the latest entry of a key before a position."""

    def __init__(self, keys: np.ndarray, pos: np.ndarray):
        self.keys, self.span = keys, int(pos.max(initial=0)) + 2  # positions are >= -1
        self.order = np.argsort(keys * self.span + pos + 1, kind="stable")
        self.sorted = (keys * self.span + pos + 1)[self.order]

    def latest_before(self, q_keys: np.ndarray, q_pos: np.ndarray) -> np.ndarray:
        """For each query, the index of the entry with its key and the greatest position before
        ``q_pos``, or -1."""
        if not len(self.keys):
            return np.full(len(q_keys), -1, np.int64)
        q_pos = np.minimum(q_pos, self.span - 1)  # past every entry: the same answer
        i = np.maximum(np.searchsorted(self.sorted, q_keys * self.span + q_pos + 1, "left") - 1, 0)
        return np.where(self.keys[self.order[i]] == q_keys, self.order[i], -1)

    def last_of_each_key(self) -> np.ndarray:
        """The index of each key's latest entry."""
        k = self.keys[self.order]
        return self.order[np.r_[k[1:] != k[:-1], True]] if len(k) else self.order


def _block(ch: _Channel, days: list[_Day], batch_rows: int):
    """(message table or None, other outcomes, records) for every ``batch_rows`` records of ``days``
    (consecutive day files of one unit), with ``ch`` carried on."""
    from schemas import MESSAGES

    read = [i for i, d in enumerate(days) if d.data is not None]
    sizes = np.array([len(days[i].data) for i in read], np.int64)
    # Padded: reads past the end are zeros. `data` is the files without the padding.
    padded = b"".join([*(days[i].data for i in read), bytes(_WINDOWS[-1] + 16)])
    arr = np.frombuffer(padded, np.uint8)
    data = memoryview(padded)[:int(sizes.sum())]
    base = np.cumsum(sizes) - sizes
    nl = np.flatnonzero(arr[:len(data)] == 10)
    # The pieces of each file's split(b"\n"), in order; a file's last piece ends at its end.
    start = np.sort(np.concatenate([base, nl + 1]))
    end = np.sort(np.concatenate([base + sizes, nl]))
    counts = np.array([days[i].lines for i in read], np.int64)
    first = np.cumsum(counts) - counts
    day_of = np.repeat(np.array(read, np.int64), counts)
    line_no = np.arange(len(start)) - np.repeat(first, counts)
    offset = start - np.repeat(base, counts)
    for j, i in enumerate(read):
        if days[i].data.startswith(_BOM):
            start[first[j]] += 3
    end = _strip_end(arr, start, end, _CR)
    blank = end == start
    for i in np.flatnonzero(~blank & _IS_SPACE[arr[start]]).tolist():  # a line that starts blank
        blank[i] = not bytes(data[start[i]:end[i]]).strip()
    slow = end - start > MAX_TEXT_CHARS
    if not _utf8(padded, len(data), [days[i].data[:1] for i in read]):
        for j, i in enumerate(read):
            slow[first[j] + np.array(days[i].undecodable(), np.int64)] = True
    if any(c in padded for c in (b"\x1c", b"\x1d", b"\x1e", b"\x1f")):
        at = np.flatnonzero((arr[:len(data)] >= 0x1c) & (arr[:len(data)] <= 0x1f))
        slow[np.searchsorted(start, at, "right") - 1] = True
    kept = np.flatnonzero(~blank)
    # Record numbers in unit order: a file's lines, or its one file-level record (bad date, empty).
    per_day = np.bincount(day_of[kept], minlength=len(days))
    records = np.maximum(per_day, 1)
    first_record = np.cumsum(records) - records
    rec_no = np.arange(len(kept)) + (first_record - (np.cumsum(per_day) - per_day))[day_of[kept]]
    outcomes: list[tuple[int, Outcome]] = []
    for i, d in enumerate(days):
        if d.bad_date is not None:
            outcomes.append((int(first_record[i]), d.bad_date))
        elif per_day[i] == 0:
            outcomes.append((int(first_record[i]), Quarantined(d.path, "empty_file", "the log file has no lines",
                                                               source_record=0, byte_offset=0)))

    # The fixed layout of message and action lines, byte by byte.
    s, e = start[kept], end[kept]
    at = lambda k: arr[s + k]  # noqa: E731
    digit = lambda k: (at(k) - 48) < 10  # noqa: E731 - uint8 wraps below "0"
    head = ((e - s > 11) & (at(0) == 91) & digit(1) & digit(2) & (at(3) == 58) & digit(4) & digit(5)
            & (at(6) == 93) & (at(7) == 32) & ~slow[kept])
    hh = (at(1) - 48).astype(np.int64) * 10 + (at(2) - 48)
    mm = (at(4) - 48).astype(np.int64) * 10 + (at(5) - 48)
    head &= (hh <= 23) & (mm <= 59)
    message = head & (at(8) == 60)
    action1 = head & (at(8) == 42) & (at(9) == 32)  # `[HH:MM] * nick`
    action2 = head & (at(8) == 32) & (at(9) == 42) & (at(10) == 32)  # `[HH:MM]  * nick`
    mode = np.isin(at(9), _MODES)
    nick_start = np.where(message, s + 9 + mode, np.where(action1, s + 10, s + 11))
    nick_end = nick_start.copy()
    for rows, classes, past in ((np.flatnonzero(message), _MESSAGE_NICK, _BAD),
                                (np.flatnonzero(action1 | action2), _ACTION_NICK, _STOP)):
        k, c = _scan(arr, nick_start[rows], e[rows], classes, past)
        nick_end[rows[(c == _STOP) & (k > 0)]] += k[(c == _STOP) & (k > 0)]
    fast = (message | action1 | action2) & (nick_end > nick_start)
    message &= fast
    after = nick_end + message  # past `>`
    text_start = after + ((after < e) & (arr[after] == 32))
    text_end = _strip_end(arr, text_start, e, _IS_SPACE)
    for i in np.flatnonzero(fast & (text_end > text_start) & (arr[text_end - 1] >= 0x80)).tolist():
        # Unicode whitespace at the end (U+3000, U+00A0, ...): str.rstrip, exactly.
        text_end[i] = text_start[i] + len(bytes(data[text_start[i]:text_end[i]]).decode("utf-8").rstrip().encode())
    # ADDRESS_RE: `nick:` / `nick,` at the start of a message's text, then whitespace or the end.
    rows = np.flatnonzero(message)
    k, c = _scan(arr, text_start[rows], text_end[rows], _ADDRESS, _NONE)
    nxt = text_start[rows] + k + 1
    follow = np.where(nxt >= text_end[rows], _NONE, _ADDRESS[arr[nxt]])
    colon = (c == _STOP) & (k > 0)
    fast[rows[(c == _BAD) | (colon & (follow == _BAD))]] = False  # non-ASCII: the reference decides
    address_end = text_start.copy()
    hit = colon & (follow == _NONE)
    address_end[rows[hit]] += k[hit]

    # The reference, in record order, for every other line (system lines too), on the live channel.
    rec = _Recording(ch)
    initial_root, initial_last = dict(ch.root), dict(ch.last_message)
    slow_rows: list[dict] = []
    j = np.flatnonzero(~fast)
    i = kept[j]
    for r, di, n, off, a, b in zip(*(x.tolist() for x in (rec_no[j], day_of[i], line_no[i], offset[i], start[i], end[i]))):
        d, raw = days[di], bytes(data[a:b])
        rec.pos = r
        o = guarded(lambda: _line(d.path, rec, d.scope, d.network, d.day, d.ymd, n, off, raw), d.path, n,
                    raw=raw, byte_offset=off)
        if isinstance(o, dict):
            o["_r"] = r
            slow_rows.append(o)
        else:
            outcomes.append((r, o))
    outcomes.sort(key=lambda x: x[0])

    # The fast rows' columns.
    f = np.flatnonzero(fast)
    r, fday, n = rec_no[f], day_of[kept[f]], line_no[kept[f]]
    message = message[f]
    addressed = message & (address_end[f] > text_start[f])
    buf = pa.py_buffer(padded)
    bounds = [nick_start[f], nick_end[f], text_start[f], text_end[f]]
    nick, text = _strings(buf, bounds, 0), _strings(buf, bounds, 2)
    a = np.flatnonzero(addressed)
    address = _strings(buf, [text_start[f][a], address_end[f][a]], 0)
    per_day = lambda values: pa.array(values, pa.string()).take(pa.array(fday))  # noqa: E731
    thread = per_day([f"{PLATFORM}:{d.scope}:{d.day}" for d in days])
    message_id = pc.binary_join_element_wise(thread, pa.array(n).cast(pa.string()), ":")

    # Identity: the root map as of the record (the latest rename of that folded nick), else the nick.
    codes = _Codes()
    nicks = nick.dictionary_encode()
    distinct, which = nicks.dictionary.to_pylist(), nicks.indices.to_numpy(zero_copy_only=False)
    nick_code = codes.of([v.casefold() for v in distinct])[which]
    renames = [(-1, key, root) for key, root in initial_root.items()] + rec.renames
    ev_pos = np.array([x[0] for x in renames] + [-1], np.int64)
    ev_key = np.append(codes.of([x[1] for x in renames]), -1)  # and one that matches nothing: never empty
    ev_root = [x[2] for x in renames] + [None]
    ev_root_code = np.array([-1 if x is None else codes.setdefault(x.casefold(), len(codes)) for x in ev_root],
                            np.int64)
    ev_root_bot = np.array([x is not None and is_bot(x) for x in ev_root], bool)

    events = _AsOf(ev_key, ev_pos)

    def identity(q_key, q_pos):  # (event index or -1, folded root code)
        i = events.latest_before(q_key, q_pos)
        i[i >= 0] = np.where(ev_root_code[i[i >= 0]] >= 0, i[i >= 0], -1)  # renamed away: the nick itself
        return i, np.where(i >= 0, ev_root_code[np.maximum(i, 0)], q_key)

    ev, root_code = identity(nick_code, r)
    renamed = ev >= 0
    # Per distinct root (the nick, or a rename chain's first nick): author_id and whether it is a bot.
    root_of = np.where(renamed, len(distinct) + ev, which)
    roots = distinct + [x or "" for x in ev_root]
    nick_bot = np.array([is_bot(v) for v in distinct], bool)
    bot = nick_bot[which] | (renamed & ev_root_bot[np.maximum(ev, 0)])
    if len({d.network for d in days}) == 1:
        author_id = pa.array([f"{days[0].network}:{x}" for x in roots], pa.string()).take(pa.array(root_of))
    else:
        author_id = pc.binary_join_element_wise(per_day([d.network for d in days]),
                                                pa.array(roots, pa.string()).take(pa.array(root_of)), ":")

    # parent_inferred: the latest earlier message (here, from the reference or an earlier block) of
    # the addressed person, by identity; not for self-address.
    said_pos = np.concatenate([np.full(len(initial_last), -1, np.int64), r,
                               np.array([x[0] for x in rec.said], np.int64)])
    said_key = np.concatenate([codes.of(initial_last), root_code, codes.of([x[1] for x in rec.said])])
    said_mid = pa.concat_arrays([pa.array(list(initial_last.values()), pa.string()), message_id,
                                 pa.array([x[2] for x in rec.said], pa.string())])
    said = _AsOf(said_key, said_pos)
    parent = np.full(len(f), -1, np.int64)
    if len(a):
        addresses = address.dictionary_encode()
        _, target = identity(codes.of([v.casefold() for v in addresses.dictionary.to_pylist()])[
            addresses.indices.to_numpy(zero_copy_only=False)], r[a])
        own = target != root_code[a]
        parent[a[own]] = said.latest_before(target[own], r[a][own])
    if rec.asked:
        asked = [x for x in rec.asked.items()]
        got = said.latest_before(codes.of([x[1] for x in asked]), np.array([x[0] for x in asked], np.int64))
        answer = dict(zip([x[0] for x in asked], said_mid.take(pa.array(got, mask=got < 0)).to_pylist()))
        for row in slow_rows:
            if row[M.parent_inferred] is _ASKED:
                row[M.parent_inferred] = answer[row["_r"]]
    if len(said_pos):
        last = said.last_of_each_key()
        names = list(codes)
        ch.last_message.update(zip([names[x] for x in said_key[last]], said_mid.take(pa.array(last)).to_pylist()))

    day_us = np.array([0 if d.bad_date else d.epoch_day * _MICROS_PER_DAY for d in days], np.int64)
    n_arr = pa.array(n)
    table = MESSAGES.conform(pa.table({
        M.message_id: message_id,
        M.platform: _repeat(PLATFORM, len(f)),
        M.community: per_day([f"{PLATFORM}:{d.scope}" for d in days]),
        M.thread_id: thread,
        M.parent_inferred: said_mid.take(pa.array(parent, mask=parent < 0)),
        M.author_id: author_id,
        M.author_name: nick,
        M.author_kind: pa.array(["user", "bot"], pa.string()).take(pa.array(bot.view(np.int8))),
        M.created_at: pa.array(day_us[fday] + (hh[f] * 60 + mm[f]) * 60_000_000, pa.timestamp("us", "UTC")),
        M.time_kind: _repeat("wall", len(f)),
        M.time_precision: _repeat("minute", len(f)),
        M.order_in_source: n_arr,
        M.kind: pa.array(["action", "message"], pa.string()).take(pa.array(message.view(np.int8))),
        M.text: text,
        M.source_uri: per_day([d.path for d in days]),
        M.source_record: n_arr,
    }))
    order = r
    if slow_rows:
        order = np.concatenate([order, np.array([row.pop("_r") for row in slow_rows], np.int64)])
        table = pa.concat_tables([table, MESSAGES.conform(pa.Table.from_pylist(slow_rows, schema=MESSAGES.arrow))])
        by = np.argsort(order, kind="stable")
        table, order = table.take(pa.array(by)), order[by]
    total = int(records.sum())
    out_r = np.array([x[0] for x in outcomes], np.int64)
    for lo in range(0, total, batch_rows):
        hi = min(lo + batch_rows, total)
        x, y = np.searchsorted(order, [lo, hi])
        u, v = np.searchsorted(out_r, [lo, hi])
        yield (table.slice(x, y - x) if y > x else None), [o for _, o in outcomes[u:v]], hi - lo


def read_batches(paths: list[str], batch_rows: int):
    """Like ``read_unit``, by blocks of whole day files: yields (message table or None, the other
    outcomes in record order, records) per ``batch_rows`` records, row for row what ``read_unit`` gives.

    Lines are split, checked and cut into columns by numpy operations on the block's bytes;
    identities and inferred parents are as-of searches over the block's renames and messages.
    System lines and every line those checks cannot settle exactly (bad UTF-8, bad times, odd
    whitespace, non-ASCII or long nicks, over-long lines, anything unmatched) go to the per-line
    reference ``_line``, in record order, on the same channel state.
    """
    if not paths:
        return
    ch = _Channel(_parse_path(paths[0])["network"])
    days: list[_Day] = []
    lines = 0
    for path in paths:
        days.append(_Day(path))
        lines += days[-1].lines
        if lines >= batch_rows:
            yield from _block(ch, days, batch_rows)
            days, lines = [], 0
    if days:
        yield from _block(ch, days, batch_rows)


READER = Reader(
    format=PLATFORM,
    description="irclogs-style IRC day files (<network>/YYYY/MM/DD/#channel.txt)",
    read_unit=read_unit,
    read_batches=read_batches,
    units=units,
    file_patterns=("*.txt", "*.log"),
)
