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

from pipelines.sources.base import (Outcome, guarded, Quarantined, Reader, Skipped, SourceError, iter_lines_utf8,
                                    open_binary, text_size_check)
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


READER = Reader(
    format=PLATFORM,
    description="irclogs-style IRC day files (<network>/YYYY/MM/DD/#channel.txt)",
    read_unit=read_unit,
    units=units,
    file_patterns=("*.txt", "*.log"),
)
