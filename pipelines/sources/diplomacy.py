"""Diplomacy: the "It Takes Two to Lie" JSONL (Peskov et al., ACL 2020).

One line is one dialog between two powers of one game, stored as parallel arrays (one
element per message). Every array element becomes one message; there is no wall-clock time,
only ``absolute_message_index``, a dense 0..N-1 order across all dialogs of a game. See
docs/formats/diplomacy.md for the column mapping.
"""

from __future__ import annotations

import re
from itertools import chain
from operator import itemgetter
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.sources.base import (MAX_TEXT_CHARS, Outcome, guarded, int64_or_none, parse_json, Quarantined, Reader,
                                    iter_lines_utf8, open_binary, text_size_check)
from pipelines.sources.chatexport import M, to_json
from pipelines.core.text import normalise_newlines
from schemas import MESSAGES

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


# --- the block reader --------------------------------------------------------------------------
# ``read_batches`` gives the outcomes of ``read_unit`` with the per-element work done on columns.
# Every line is parsed by orjson, as the reference parses it, so which bytes are JSON, which of
# two repeated keys counts and which numbers are ints cannot differ. The arrays of the dialogs in
# the common shape are joined into Arrow columns and converted at once; a line goes to the
# reference (``_dialog``) whole when anything about it is not that shape: not an object, a missing
# or non-array field, unequal arrays, a ``game_id`` that is not an int64, or one element the
# columns do not cover (a text that is not a string or is over MAX_TEXT_CHARS, a speaker or
# receiver that is not a non-empty string, an index that is not an int64 >= 0, a label other than
# a bool / "true" / "false" (any of three spellings) / "NOANNOTATION", a season that is not a
# string, a year or score that is neither a string nor an int64). See docs/formats/diplomacy.md.

BLOCK_BYTES = 8 << 20  # bytes of whole lines converted together
_GET_ARRAYS = itemgetter(*ARRAYS)
# (extra key, array) in the key order `to_json` writes (sorted)
_EXTRA = tuple(sorted({"year": "years", "season": "seasons", "game_score": "game_score",
                       "game_score_delta": "game_score_delta",
                       "relative_message_index": "relative_message_index"}.items()))
# Label -> code (0 false, 1 true, 2 NOANNOTATION); other spellings of "true"/"false" go to the reference.
_LABEL_CODES = {True: 1, False: 0, NO_ANNOTATION: 2,
                **{s: int(s.lower() == "true") for s in ("true", "True", "TRUE", "false", "False", "FALSE")}}
# The labels JSON of code 2 * receiver code + sender code, as `_element` writes it.
_LABELS = [to_json({"sender_truthful": bool(s), "receiver_truthful": None if r == 2 else bool(r)})
           for r in range(3) for s in range(2)]


def _blocks(f) -> Iterator[tuple[int, int, bytes]]:
    """(number of the first line, byte offset, lines) for blocks of whole lines of ``f``; lines are
    numbered as ``iter_lines_utf8`` numbers them (blank lines count), ``lines`` is without its
    final newline."""
    n = offset = 0
    rest = b""
    while chunk := f.read(BLOCK_BYTES):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if not cut:
            rest = data
            continue
        yield n, offset, data[:cut - 1]
        n += data.count(b"\n", 0, cut)
        offset += cut
        rest = data[cut:]
    if rest:
        yield n, offset, rest


def _is_int64(v) -> bool:
    return type(v) is int and int64_or_none(v) is not None


def _is_str(v) -> bool:
    return type(v) is str


def _array(values: list, type_: pa.DataType, ok) -> pa.Array:
    """``values`` as an Arrow array of ``type_``; where the strict conversion fails (pa.array takes
    no bool for an int, no int for a string), each element ``ok`` rejects becomes null."""
    try:
        return pa.array(values, type_)
    except (TypeError, ValueError, OverflowError, pa.ArrowException):
        return pa.array([v if ok(v) else None for v in values], type_)


def _str_or_int(values: list) -> pa.Array:
    """Years and scores: strings, and int64s as their digits (``_int_or_raw`` makes the same int
    of both); null for anything else."""
    try:
        return pa.array(values, pa.string())
    except (TypeError, ValueError, OverflowError, pa.ArrowException):
        return pa.array([v if type(v) is str else str(v) if _is_int64(v) else None for v in values], pa.string())


def _codes(values: list, allow_missing: bool) -> np.ndarray:
    """Label codes (0 false, 1 true, 2 NOANNOTATION), -1 where the columns do not take the label."""
    if set(map(type, values)) <= {bool, str}:  # a dict lookup alone would take 1 and 1.0 for True
        codes = list(map(_LABEL_CODES.get, values))
    else:
        codes = [_LABEL_CODES.get(v) if type(v) in (bool, str) else None for v in values]
    out = np.array([-1 if c is None else c for c in codes] if None in codes else codes, np.int8)
    if not allow_missing:
        out[out == 2] = -1
    return out


def _per(n: int, keys: tuple, make) -> pa.Array:
    """A string array of ``n`` values that depend only on ``keys`` (pairs of a code array and the
    number of codes): ``make(*codes)`` is called once per combination present."""
    code = np.zeros(n, np.int64)
    size = 1
    for k, m in keys:
        code = code * m + k
        size *= m
    if size <= 4 * n + 1024:  # a table of all combinations: no sort
        present = np.zeros(size, bool)
        present[code] = True
        u = np.flatnonzero(present)
        inv = (np.cumsum(present) - 1)[code]
    else:
        u, inv = np.unique(code, return_inverse=True)
    values = []
    for c in u.tolist():
        parts = []
        for _, m in reversed(keys):
            parts.append(c % m)
            c //= m
        values.append(make(*reversed(parts)))
    return pa.array(values, pa.string()).take(pa.array(inv.reshape(-1)))


def _may_change(t: pa.Array) -> np.ndarray:
    """Which texts of ``t`` `normalise_newlines` may change: those with a CR, a space or tab before
    a newline or three newlines in a row, and those whose first or last byte is not printable ASCII
    (``strip`` removes Unicode blanks, on which Python and Arrow disagree). Found on the bytes; a
    match across two texts only sends both to Python."""
    t = pa.concat_arrays([t]) if t.offset else t  # buffers from offset 0
    n = len(t)
    offsets = np.frombuffer(t.buffers()[1], np.int32, n + 1)
    size = int(offsets[-1]) if n else 0
    if not size:
        return np.ones(n, bool)
    data = np.frombuffer(t.buffers()[2], np.uint8, size)
    lo, hi = offsets[:-1], offsets[1:]
    first, last = data[np.minimum(lo, size - 1)], data[np.maximum(hi - 1, 0)]
    odd = (hi == lo) | (first < 0x21) | (first > 0x7E) | (last < 0x21) | (last > 0x7E)
    nl = np.flatnonzero(data == 10)
    at = [np.flatnonzero(data == 13), nl[np.isin(data[np.maximum(nl - 1, 0)], (32, 9))],
          nl[2:][nl[2:] - nl[:-2] == 2]]
    at = np.concatenate(at)
    if len(at):
        odd[np.searchsorted(offsets, at, side="right") - 1] = True
    return odd


def _fragment(v: str) -> str:
    """The JSON text `to_json` writes for a year, season or score read as the string ``v``."""
    return orjson.dumps(_int_or_raw(v)).decode()


def _extra(base: dict) -> pa.Array:
    """The ``extra`` JSON of each message, keys in `to_json`'s (sorted) order: the text before and
    after ``relative_message_index`` is made once per combination of the values it holds."""
    keys = [k for k, _ in _EXTRA]
    mid = keys.index("relative_message_index")
    encoded = {k: pc.dictionary_encode(base[a]) for k, a in _EXTRA if k != "relative_message_index"}
    frags = {k: [_fragment(v) for v in e.dictionary.to_pylist()] for k, e in encoded.items()}
    n = len(base["relative_message_index"])

    def part(names: list[str], lead: str, end: str) -> pa.Array:
        codes = tuple((encoded[k].indices.to_numpy(), max(len(frags[k]), 1)) for k in names)
        return _per(n, codes, lambda *c: lead + ",".join(f'"{k}":{frags[k][i]}' for k, i in zip(names, c)) + end)

    return pc.binary_join_element_wise(part(keys[:mid], "{", ',"relative_message_index":'),
                                       pc.cast(base["relative_message_index"], pa.string()),
                                       part(keys[mid + 1:], ",", "}"), "")


def _columns(path: str, dialogs: list[dict], lines: list[int], firsts: list[int]) -> tuple[pa.Table, np.ndarray]:
    """(message table, positions in ``dialogs`` of the dialogs it leaves to the reference) for
    dialogs whose header checks passed; the table's rows are in dialog and element order."""
    ns = np.fromiter((len(d["messages"]) for d in dialogs), np.int64, len(dialogs))
    col = {k: list(chain.from_iterable(map(itemgetter(k), dialogs))) for k in ARRAYS}
    of = np.repeat(np.arange(len(dialogs)), ns)  # the dialog of each element
    base = {
        "messages": _array(col["messages"], pa.string(), _is_str),
        "speakers": _array(col["speakers"], pa.string(), _is_str),
        "receivers": _array(col["receivers"], pa.string(), _is_str),
        "absolute_message_index": _array(col["absolute_message_index"], pa.int64(), _is_int64),
        "relative_message_index": _array(col["relative_message_index"], pa.int64(), _is_int64),
        "seasons": _array(col["seasons"], pa.string(), _is_str),
        **{k: _str_or_int(col[k]) for k in ("years", "game_score", "game_score_delta")},
    }
    sender = _codes(col["sender_labels"], allow_missing=False)
    receiver = _codes(col["receiver_labels"], allow_missing=True)
    bad = (sender < 0) | (receiver < 0)
    for a in base.values():
        if a.null_count:
            bad |= a.is_null().to_numpy(zero_copy_only=False)
    checks = [pc.less(base["absolute_message_index"], 0),
              pc.greater(pc.utf8_length(base["messages"]), MAX_TEXT_CHARS),
              pc.equal(base["speakers"], ""), pc.equal(base["receivers"], "")]
    for m in checks:
        bad |= m.fill_null(True).to_numpy(zero_copy_only=False)
    slow = np.unique(of[bad])
    kept = np.arange(len(of))
    if len(slow):
        keep_line = np.ones(len(dialogs), bool)
        keep_line[slow] = False
        kept = np.flatnonzero(keep_line[of])
        base = {k: a.take(pa.array(kept)) for k, a in base.items()}
        sender, receiver = sender[kept], receiver[kept]
    of = of[kept]
    n = len(of)
    text = base["messages"]
    odd = _may_change(text)
    if odd.any():  # `normalise_newlines` itself, on the texts it may change
        mask = pa.array(odd)
        text = pc.replace_with_mask(text, mask, pa.array(
            [normalise_newlines(x) for x in text.filter(mask).to_pylist()], pa.string()))
    # Ids depend on the game and the powers only: each is made once per combination present.
    games, g_of = np.unique(np.fromiter((d["game_id"] for d in dialogs), np.int64, len(dialogs)), return_inverse=True)
    game = [str(g) for g in games.tolist()]
    enc_s, enc_r = pc.dictionary_encode(base["speakers"]), pc.dictionary_encode(base["receivers"])
    spk = [v.lower() for v in enc_s.dictionary.to_pylist()]
    rcv = [v.lower() for v in enc_r.dictionary.to_pylist()]
    G = (g_of.reshape(-1)[of], max(len(game), 1))
    S, R = (enc_s.indices.to_numpy(), max(len(spk), 1)), (enc_r.indices.to_numpy(), max(len(rcv), 1))

    def thread(g, s, r):
        a, b = sorted((spk[s], rcv[r]))
        return f"{PLATFORM}:{game[g]}:{a}-{b}"

    def const(v: str) -> pa.Array:
        return pa.repeat(pa.scalar(v, pa.string()), n)

    index = base["absolute_message_index"]
    starts = np.r_[0, np.cumsum(ns)[:-1]]
    table = pa.table({
        M.message_id: pc.binary_join_element_wise(_per(n, (G,), lambda g: f"{PLATFORM}:{game[g]}:"),
                                                  pc.cast(index, pa.string()), ""),
        M.platform: const(PLATFORM),
        M.community: _per(n, (G,), lambda g: f"{PLATFORM}:game{game[g]}"),
        M.thread_id: _per(n, (G, S, R), thread),
        M.author_id: _per(n, (G, S), lambda g, s: f"{game[g]}:{spk[s]}"),
        M.author_name: _per(n, (S,), lambda s: spk[s].capitalize()),
        M.author_kind: const("user"),
        M.recipient_ids: pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)),
                                                  _per(n, (G, R), lambda g, r: f"{game[g]}:{rcv[r]}")),
        M.time_ordinal: index,
        M.time_kind: const("ordinal"),
        M.time_precision: const("ordinal"),
        M.order_in_source: pa.array(np.asarray(firsts, np.int64)[of] + kept - starts[of]),
        M.kind: const("message"),
        M.text: text,
        M.labels: pa.array(_LABELS, pa.string()).take(pa.array(receiver.astype(np.int64) * 2 + sender)),
        M.extra: _extra(base),
        M.source_uri: const(path),
        M.source_record: pa.array(np.asarray(lines, np.int64)[of]),
    })
    return MESSAGES.conform(table), slow


def _block(path: str, n0: int, offset: int, data: bytes, order: int, batch_rows: int):
    """(message table or None, other outcomes in line order, records) per about ``batch_rows``
    records of one block of lines, and finally the order of the next message, as ``(None, None, order)``."""
    dialogs, lines, firsts, raws, offs = [], [], [], [], []
    slow: dict[int, list] = {}  # line number -> the reference's outcomes
    for i, line in enumerate(data.split(b"\n")):
        raw = line.rstrip(b"\r\n")
        at = offset
        offset += len(line) + 1
        if not raw.strip():
            continue  # blank lines are not records
        try:
            d = orjson.loads(raw)
            arrays = _GET_ARRAYS(d) if type(d) is dict else None
        except (orjson.JSONDecodeError, KeyError):
            arrays = None
        if (arrays is not None and set(map(type, arrays)) == {list} and len(set(map(len, arrays))) == 1
                and _is_int64(d.get("game_id"))):
            dialogs.append(d)
            lines.append(n0 + i)
            firsts.append(order)
            raws.append(raw)
            offs.append(at)
            order += len(arrays[0])
        else:
            slow[n0 + i] = list(_dialog(path, n0 + i, at, raw, order))
            order += len(slow[n0 + i])
    table = None
    counts = {ln: len(o) for ln, o in slow.items()}
    if dialogs:
        try:
            table, demoted = _columns(path, dialogs, lines, firsts)
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - a case the columns do not foresee: the reference reads these lines
            table, demoted = None, np.arange(len(dialogs))
        for j in demoted.tolist():  # a header the reference takes: one outcome per element, as counted
            slow[lines[j]] = list(_dialog(path, lines[j], offs[j], raws[j], firsts[j]))
        counts.update((ln, len(d["messages"])) for ln, d in zip(lines, dialogs))
    order_lines = sorted(counts)
    records = table.column(M.source_record).to_numpy() if table is not None else None
    k = 0
    while k < len(order_lines):
        j, n = k, 0
        while j < len(order_lines) and (j == k or n < batch_rows):
            n += counts[order_lines[j]]
            j += 1
        part = None
        if table is not None:
            a, b = np.searchsorted(records, [order_lines[k], order_lines[j - 1] + 1])
            part = table.slice(a, b - a)
        yield part, [o for ln in order_lines[k:j] if ln in slow for o in slow[ln]], n
        k = j
    yield None, None, order


def read_batches(paths: list[str], batch_rows: int):
    """Like ``read_unit``, by blocks: yields (message table or None, the other outcomes in file order,
    records) for about ``batch_rows`` records at a time (whole dialogs).

    Row for row the same outcomes as ``read_unit``; the message table is in file order.
    """
    for path in paths:
        order = 0
        seen_line = False
        with open_binary(path) as f:
            for n0, offset, data in _blocks(f):
                for table, outcomes, n in _block(path, n0, offset, data, order, batch_rows):
                    if outcomes is None:
                        order = n
                        continue
                    seen_line = True
                    yield table, outcomes, n
        if not seen_line:
            yield None, [Quarantined(path, "empty_file", "the file has no dialog lines", source_record=0,
                                     byte_offset=0)], 1


READER = Reader(
    format=PLATFORM,
    description='"It Takes Two to Lie" Diplomacy dialogs (JSONL, one dialog per line, parallel arrays)',
    read_unit=read_unit,
    read_batches=read_batches,
    file_patterns=("*.jsonl",),
)
