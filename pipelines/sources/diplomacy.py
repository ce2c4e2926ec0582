"""Diplomacy: the "It Takes Two to Lie" JSONL (Peskov et al., ACL 2020).

One line is one dialog between two powers of one game, stored as parallel arrays (one
element per message). Every array element becomes one message; there is no wall-clock time,
only ``absolute_message_index``, a dense 0..N-1 order across all dialogs of a game. See
docs/formats/diplomacy.md for the column mapping.
"""

from __future__ import annotations

import re
from typing import Any, Iterator


from pipelines.sources.base import (Outcome, guarded, int64_or_none, parse_json, Quarantined, Reader, iter_lines_utf8,
                                    open_binary, text_size_check)
from pipelines.sources.chatexport import M, to_json
from pipelines.core.text import normalise_newlines

PLATFORM = "diplomacy"
# The parallel arrays that must all have one element per message.
ARRAYS = ("messages", "sender_labels", "receiver_labels", "speakers", "receivers", "absolute_message_index",
          "relative_message_index", "seasons", "years", "game_score", "game_score_delta")
NO_ANNOTATION = "NOANNOTATION"
_DIGITS = re.compile(r"-?[0-9]+")  # ASCII only: str.isdigit() also accepts "²", which int() rejects


def _label(v: Any, allow_missing: bool) -> tuple[bool | None, bool]:
    """(value, ok): a truthfulness label as bool; ``"NOANNOTATION"`` is None where allowed."""
    if isinstance(v, bool):
        return v, True
    if isinstance(v, str) and v.lower() in ("true", "false"):  # the README says labels "can be bool or string"
        return v.lower() == "true", True
    if allow_missing and v == NO_ANNOTATION:
        return None, True
    return None, False


def _int_or_raw(v: Any) -> Any:
    """Scores and years are mostly numeric strings; keep them as ints when they are ASCII digits
    that fit an int64 (a longer string stays a string: JSON cannot carry the int exactly)."""
    if isinstance(v, str) and _DIGITS.fullmatch(v):
        n = int(v)
        if int64_or_none(n) is not None:
            return n
    return v


def _header(path: str, line_no: int, offset: int, raw: bytes) -> tuple[dict, int] | Quarantined:
    """(dialog, game id) of one JSONL line, or the one quarantine row that stands for the line."""
    def bad(reason: str, detail: str) -> Quarantined:
        return Quarantined(path, reason, f"line {line_no}: {detail}", source_record=line_no, byte_offset=offset,
                           excerpt=raw)

    d, err = parse_json(raw)
    if err is not None:
        return bad(err.reason, err.detail)
    if not isinstance(d, dict):
        return bad("wrong_type", f"a dialog must be a JSON object, got {type(d).__name__}")
    missing = [k for k in (*ARRAYS, "game_id") if d.get(k) is None]
    if missing:
        return bad("missing_field", f"missing {', '.join(missing)}")
    not_lists = [k for k in ARRAYS if not isinstance(d[k], list)]
    if not_lists:
        return bad("wrong_type", f"{', '.join(not_lists)} must be arrays")
    lengths = {k: len(d[k]) for k in ARRAYS}
    if len(set(lengths.values())) != 1:
        # Which element belongs to which message is unknowable once the arrays disagree.
        return bad("missing_field", f"parallel arrays have unequal lengths {lengths}")
    game = _int_or_raw(d["game_id"])
    if int64_or_none(game) is None:
        return bad("wrong_type", f"game_id must be an integer, got {d['game_id']!r}")
    return d, game


def _element(path: str, line_no: int, offset: int, d: dict, game: int, i: int, order: int) -> Outcome:
    """The message of element ``i`` of a checked dialog, or its quarantine row."""
    text, speaker, receiver = d["messages"][i], d["speakers"][i], d["receivers"][i]
    index = d["absolute_message_index"][i]
    sender_truthful, ok_s = _label(d["sender_labels"][i], allow_missing=False)
    receiver_truthful, ok_r = _label(d["receiver_labels"][i], allow_missing=True)
    problems = [name for name, ok in (
        ("messages", isinstance(text, str)),
        ("speakers", isinstance(speaker, str) and speaker != ""),
        ("receivers", isinstance(receiver, str) and receiver != ""),
        ("absolute_message_index", int64_or_none(index) is not None and index >= 0),
        ("sender_labels", ok_s), ("receiver_labels", ok_r)) if not ok]
    if problems:
        return Quarantined(path, "wrong_type", f"line {line_no}, element {i}: bad {', '.join(problems)}",
                           source_record=line_no, byte_offset=offset,
                           excerpt=text if isinstance(text, str) else repr(text))
    text = normalise_newlines(text)
    too_big = text_size_check(text, path, line_no)
    if too_big:
        return too_big
    speaker, receiver = speaker.lower(), receiver.lower()
    a, b = sorted((speaker, receiver))
    return {
        M.message_id: f"{PLATFORM}:{game}:{index}",
        M.platform: PLATFORM,
        M.community: f"{PLATFORM}:game{game}",
        M.thread_id: f"{PLATFORM}:{game}:{a}-{b}",
        M.author_id: f"{game}:{speaker}",
        # Texts name powers capitalised ("Germany!"), so this is the form mentions take.
        M.author_name: speaker.capitalize(),
        M.author_kind: "user",
        M.recipient_ids: [f"{game}:{receiver}"],
        M.time_ordinal: index,
        M.time_kind: "ordinal",
        M.time_precision: "ordinal",
        M.order_in_source: order,
        M.kind: "message",
        M.text: text,
        M.labels: to_json({"sender_truthful": sender_truthful, "receiver_truthful": receiver_truthful}),
        M.extra: to_json({
            "year": _int_or_raw(d["years"][i]), "season": d["seasons"][i],
            "game_score": _int_or_raw(d["game_score"][i]),
            "game_score_delta": _int_or_raw(d["game_score_delta"][i]),
            "relative_message_index": d["relative_message_index"][i],
        }),
        M.source_uri: path,
        M.source_record: line_no,
    }


def _dialog(path: str, line_no: int, offset: int, raw: bytes, first_order: int) -> Iterator[Outcome]:
    """Outcomes for one JSONL line: one per array element, or one quarantine for the whole line.

    Both steps go through ``guarded``: a line whose checks raise is one ``bad_value`` row, an
    element whose conversion raises is one ``bad_value`` row in that element's place.
    """
    head = guarded(lambda: _header(path, line_no, offset, raw), path, line_no, raw, offset)
    if isinstance(head, Quarantined):
        yield head
        return
    d, game = head
    for i in range(len(d["messages"])):
        yield guarded(lambda: _element(path, line_no, offset, d, game, i, first_order + i), path, line_no,
                      d["messages"][i], offset)


def read_unit(paths: list[str]) -> Iterator[Outcome]:
    """One outcome per message element of every dialog line in ``paths``.

    A line that cannot be read as a dialog (bad UTF-8, bad JSON, missing or unequal arrays)
    is one quarantine row; a file without any non-blank line is one ``empty_file`` row.
    """
    for path in paths:
        order = 0
        seen_line = False
        with open_binary(path) as f:
            for line_no, offset, raw in iter_lines_utf8(f):
                if not raw.strip():
                    continue  # blank lines are not records
                seen_line = True
                for o in _dialog(path, line_no, offset, raw, order):
                    order += 1
                    yield o
        if not seen_line:
            yield Quarantined(path, "empty_file", "the file has no dialog lines", source_record=0, byte_offset=0)


READER = Reader(
    format=PLATFORM,
    description='"It Takes Two to Lie" Diplomacy dialogs (JSONL, one dialog per line, parallel arrays)',
    read_unit=read_unit,
    file_patterns=("*.jsonl",),
)
