"""Reddit: Pushshift / Arctic Shift comment and submission dumps (NDJSON, `.zst` or plain).

One file is one unit. Lines are streamed: `.zst` files through a zstd decompressor with the
2 GiB window the monthly dumps declare, everything else as plain bytes; lines are split on
`\\n` bytes, which never occur inside a UTF-8 multi-byte character, so no character is split.
Each line becomes one outcome. See docs/formats/reddit.md for the field mapping.
"""

from __future__ import annotations

import io
import math
import re
from typing import Iterator

import orjson
import zstandard

from pipelines.sources.base import (MAX_TEXT_CHARS, files_in_turn, guarded, int64_or_none, parse_json, Outcome,
                                    Quarantined, Reader, SourceError, open_binary, text_size_check)
from pipelines.core.text import unescape
from schemas import MESSAGES as M

PLATFORM = "reddit"
CHUNK_BYTES = 1 << 20
FEED_BYTES = 1 << 16  # compressed bytes per decompressor call
MAX_WINDOW = 2**31  # monthly dumps are written with --long=31
MAX_LINE_BYTES = 64 << 20  # a "line" longer than this is not a record: quarantine it rather than hold it
# Reddit launched in June 2005; anything before 2005 or after 2100 is a broken timestamp.
MIN_TIME_S, MAX_TIME_S = 1_104_537_600, 4_102_444_800
REMOVED_BODIES = ("[deleted]", "[removed]")
DELETED_AUTHORS = ("[deleted]", "[removed]")
# Accounts known to be bots; names ending in `_bot`, `-bot`, `Bot` or `BOT` are treated as bots too.
KNOWN_BOTS = frozenset({"automoderator", "sneakpeekbot", "remindmebot", "wikitextbot", "totesmessenger",
                        "repostsleuthbot", "savevideo", "alphabetorderbot", "b0trank", "converter-bot",
                        "haikusbot", "imguralbumbot", "nice-scores", "timezone_bot", "vredditdownloader"})
_BOT_SUFFIX = re.compile(r"(?:[_-][Bb][Oo][Tt]|[a-z0-9]Bot|BOT)$")
_PREFIXES = ("t1_", "t3_")
# Column names resolved once: the message dict is built by zipping these with the values.
_COLUMNS = (M.message_id, M.platform, M.community, M.thread_id, M.parent_id, M.author_id, M.author_name,
            M.author_kind, M.created_at, M.time_kind, M.time_precision, M.order_in_source, M.kind, M.title,
            M.text, M.score, M.edited_at, M.retrieved_at, M.extra, M.source_uri, M.source_record)


def is_bot(username: str) -> bool:
    """Whether a Reddit username is AutoModerator, a known bot, or named like one (`*_bot`, `*Bot`)."""
    return username.lower() in KNOWN_BOTS or bool(_BOT_SUFFIX.search(username))


# --- streaming lines ---------------------------------------------------------------------------

def _chunks(path: str, stream) -> Iterator[bytes | Quarantined]:
    """Decompressed chunks of ``stream``; a final Quarantined if the zstd data is truncated or corrupt."""
    if not path.endswith(".zst"):
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk
        return
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    dobj = dctx.decompressobj()
    out_bytes = 0
    in_bytes = 0
    # Small compressed slices: on corrupt data, everything decoded before the bad block is kept.
    while raw := stream.read(FEED_BYTES):
        in_bytes += len(raw)
        try:
            while raw:
                if dobj.eof:  # several frames (concatenated dumps): a fresh object per frame
                    dobj = dctx.decompressobj()
                data = dobj.decompress(raw)
                if data:
                    out_bytes += len(data)
                    yield data
                raw = dobj.unused_data if dobj.eof else b""
        except zstandard.ZstdError as e:
            yield Quarantined(path, "corrupt", f"zstd data fails to decode near compressed byte {in_bytes}: {e}",
                              byte_offset=out_bytes)
            return
    if in_bytes and not dobj.eof:
        yield Quarantined(path, "truncated",
                          f"the zstd stream ends in the middle of a frame after {in_bytes} compressed bytes; "
                          "the rest of the file is missing (re-download it)", byte_offset=out_bytes)


def iter_lines(path: str) -> Iterator[tuple[int, int, bytes] | Quarantined]:
    """(line number, decompressed byte offset, raw line) for each non-blank line of a dump file.

    A line longer than MAX_LINE_BYTES is a ``too_large`` Quarantined (numbered like a line); a
    truncated or corrupt `.zst` ends with one Quarantined (``truncated``/``corrupt``), which
    reports the incomplete last line of a truncated stream rather than parsing it.
    Raises SourceError if the file cannot be opened.
    """
    n = 0
    for item in _blocks(path):
        if item[0] != "lines":
            yield _stream_fault(path, item, n)
            n += item[0] == "too_large"
            continue
        _, offset, data = item
        start = 0
        for line in data.split(b"\n")[:-1]:  # the block ends with a newline
            if line.strip():
                yield n, offset + start, line
                n += 1
            start += len(line) + 1


def _stream_fault(path: str, item: tuple, n: int) -> Quarantined:
    """The quarantine row of a ``_blocks`` item that is not lines, numbered ``n``."""
    if item[0] == "too_large":
        return Quarantined(path, "too_large", f"line {n} is longer than {MAX_LINE_BYTES} bytes",
                           source_record=n, byte_offset=item[1], excerpt=item[2])
    chunk, off, buf = item[1:]
    rest = buf.strip()
    return Quarantined(chunk.source_uri, chunk.reason,
                       chunk.detail + (f"; incomplete last line of {len(buf)} bytes" if rest else ""),
                       source_record=n, byte_offset=off, excerpt=rest or None)


def _blocks(path: str):
    """The decompressed bytes of one dump in blocks of whole lines, with the stream's faults where
    ``iter_lines`` has them: ("lines", offset, data ending with a newline), ("too_large", offset,
    excerpt) for a line longer than MAX_LINE_BYTES, ("broken", Quarantined, offset, incomplete last line)."""
    with open_binary(path) as stream:
        parts: list[bytes] = []
        size = 0  # bytes in parts
        tail = 0  # bytes of parts after its last newline (an incomplete line)
        offset = 0  # decompressed offset of parts[0]
        discarding = False  # inside an over-long line, dropping bytes up to its newline
        for chunk in _chunks(path, stream):
            if isinstance(chunk, Quarantined):
                data = b"".join(parts)
                cut = len(data) - tail
                if cut:
                    yield "lines", offset, data[:cut]
                yield "broken", chunk, offset + cut, data[cut:]
                return
            if discarding:
                nl = chunk.find(b"\n")
                if nl == -1:
                    offset += len(chunk)
                    continue
                discarding = False
                offset += nl + 1
                chunk = chunk[nl + 1:]
            parts.append(chunk)
            size += len(chunk)
            nl = chunk.rfind(b"\n")
            tail = len(chunk) - nl - 1 if nl != -1 else tail + len(chunk)
            if tail > MAX_LINE_BYTES:
                data = b"".join(parts)
                cut = len(data) - tail
                if cut:
                    yield "lines", offset, data[:cut]
                yield "too_large", offset + cut, data[cut:cut + 800]
                offset += len(data)
                parts, size, tail, discarding = [], 0, 0, True
            elif size - tail >= BLOCK_BYTES:
                data = b"".join(parts)
                cut = len(data) - tail
                yield "lines", offset, data[:cut]
                offset += cut
                parts, size = ([data[cut:]] if tail else []), tail
        data = b"".join(parts)
        if data:
            yield "lines", offset, data if data.endswith(b"\n") else data + b"\n"


# --- one record --------------------------------------------------------------------------------

def _q(path: str, n: int, off: int, reason: str, detail: str, raw: bytes) -> Quarantined:
    return Quarantined(path, reason, detail, source_record=n, byte_offset=off, excerpt=raw)


def _seconds(value) -> float | None:
    """Epoch seconds from an int, float or numeric string; None if it is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int with hundreds of digits: no epoch time
            return None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def epoch_micros(value) -> int | None:
    """Epoch seconds (int, float or numeric string) as UTC microseconds, or None unless the
    time falls between 2005 and 2100 (the only range a Reddit timestamp can be in)."""
    s = _seconds(value)
    if s is None or not (MIN_TIME_S <= s < MAX_TIME_S):
        return None
    return int(round(s * 1_000_000))


def _bare(fullname: str) -> str:
    return fullname[3:] if fullname[:3] in _PREFIXES else fullname


def _int_or_none(value) -> int | None:
    """An int64 from an int, float or numeric string (``"12"``, ``"1e3"``); None for anything
    else, including NaN, infinities (``"1e400"``) and values an int64 cannot hold."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value)  # exact for digit strings; float() would round past 2**53
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    return int64_or_none(value)


def _compact(d: dict) -> str | None:
    d = {k: v for k, v in d.items() if v is not None and v is not False and v != "" and v != 0}
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode() if d else None


def parse_record(obj, path: str, n: int, off: int, raw: bytes) -> Outcome:
    """One decoded JSON line -> a message dict or a Quarantined (never raises).

    Comments (`body`) become kind `comment` with parent/thread from `parent_id`/`link_id`;
    submissions (`title`/`selftext`) kind `post` threading themselves.
    """
    if not isinstance(obj, dict):
        return _q(path, n, off, "wrong_type", f"line {n} is JSON {type(obj).__name__}, not an object", raw)
    is_comment = "body" in obj
    if not is_comment and "title" not in obj and "selftext" not in obj:
        return _q(path, n, off, "missing_field", f"line {n} has neither `body` (comment) nor `title` (submission)", raw)

    rid = obj.get("id")
    if rid is None and isinstance(obj.get("name"), str):
        rid = obj["name"]
    if rid is None:
        return _q(path, n, off, "missing_field", f"line {n} has no `id`", raw)
    if not isinstance(rid, str) or not rid:
        return _q(path, n, off, "wrong_type", f"line {n}: `id` is {type(rid).__name__} {rid!r}, not a string", raw)
    rid = _bare(rid)

    if "created_utc" not in obj or obj["created_utc"] is None:
        return _q(path, n, off, "missing_field", f"line {n} (id {rid}) has no `created_utc`", raw)
    created = epoch_micros(obj["created_utc"])
    if created is None:
        return _q(path, n, off, "bad_time", f"line {n} (id {rid}): `created_utc` {obj['created_utc']!r} "
                  "is not epoch seconds between 2005 and 2100", raw)

    sub = obj.get("subreddit")
    if sub is None:
        return _q(path, n, off, "missing_field", f"line {n} (id {rid}) has no `subreddit`", raw)
    if not isinstance(sub, str):
        return _q(path, n, off, "wrong_type", f"line {n} (id {rid}): `subreddit` is {type(sub).__name__}", raw)

    author = obj.get("author")
    if author is not None and not isinstance(author, str):
        return _q(path, n, off, "wrong_type", f"line {n} (id {rid}): `author` is {type(author).__name__}", raw)
    if author is None or author in DELETED_AUTHORS or author == "":
        author_id = author_name = None
        author_kind = "deleted"
    else:
        author_id = author_name = author
        author_kind = "bot" if is_bot(author) else "user"

    extra: dict = {}
    if is_comment:
        body = obj["body"]
        if body is None:
            return _q(path, n, off, "missing_field", f"line {n} (id {rid}): `body` is null", raw)
        if not isinstance(body, str):
            return _q(path, n, off, "wrong_type", f"line {n} (id {rid}): `body` is {type(body).__name__}", raw)
        link = obj.get("link_id")
        if link is None:
            return _q(path, n, off, "missing_field", f"line {n} (comment {rid}) has no `link_id`", raw)
        parent = obj.get("parent_id")
        if not isinstance(link, str) or (parent is not None and not isinstance(parent, str)):
            return _q(path, n, off, "wrong_type", f"line {n} (comment {rid}): `link_id`/`parent_id` not strings", raw)
        message_id = f"{PLATFORM}:t1_{rid}"
        thread_id = f"{PLATFORM}:t3_{_bare(link)}"
        # A parent without a prefix is read as a comment unless it is the submission itself.
        if parent is None:
            parent_id = thread_id
        elif parent[:3] in _PREFIXES:
            parent_id = f"{PLATFORM}:{parent}"
        else:
            parent_id = thread_id if parent == _bare(link) else f"{PLATFORM}:t1_{parent}"
        kind, title = "comment", None
        if body in REMOVED_BODIES:
            extra["removed"] = body.strip("[]")
            text = ""
        else:
            text = unescape(body)
        extra.update(distinguished=obj.get("distinguished"), stickied=obj.get("stickied"),
                     controversiality=_int_or_none(obj.get("controversiality")),
                     is_submitter=obj.get("is_submitter"))
    else:
        title_raw = obj.get("title")
        if title_raw is not None and not isinstance(title_raw, str):
            return _q(path, n, off, "wrong_type", f"line {n} (submission {rid}): `title` is {type(title_raw).__name__}", raw)
        selftext = obj.get("selftext") or ""
        if not isinstance(selftext, str):
            return _q(path, n, off, "wrong_type", f"line {n} (submission {rid}): `selftext` is {type(selftext).__name__}", raw)
        message_id = thread_id = f"{PLATFORM}:t3_{rid}"
        parent_id = None
        kind = "post"
        title = unescape(title_raw) if title_raw else None
        url = obj.get("url") if isinstance(obj.get("url"), str) else None
        is_self = obj.get("is_self")
        if selftext in REMOVED_BODIES:
            extra["removed"] = selftext.strip("[]")
            text = ""
        elif not selftext and is_self is False and url:
            # A link post says its link: the URL is its body (the title stays in `title`).
            text = unescape(url)
            extra["link_post"] = True
        else:
            text = unescape(selftext)
        cp = obj.get("crosspost_parent")
        extra.update(domain=obj.get("domain"), over_18=obj.get("over_18"),
                     num_comments=_int_or_none(obj.get("num_comments")), stickied=obj.get("stickied"),
                     distinguished=obj.get("distinguished"),
                     crosspost_parent=f"{PLATFORM}:{cp}" if isinstance(cp, str) else None)

    too_big = text_size_check(text, path, n, raw)
    if too_big is not None:
        return Quarantined(too_big.source_uri, too_big.reason, too_big.detail, n, off, too_big.excerpt)

    edited = obj.get("edited")
    edited_at = None
    if edited is True:
        extra["edited"] = True  # old dumps say only that it was edited, not when
    elif edited not in (None, False, 0, "false"):
        edited_at = epoch_micros(edited)
        if edited_at is None:
            extra["edited"] = True

    meta = obj.get("_meta") if isinstance(obj.get("_meta"), dict) else {}
    # Arctic Shift re-crawls a record ~36 h later and stores the newer values with the 2nd time.
    retrieved_at = epoch_micros(meta.get("retrieved_2nd_on")) or epoch_micros(obj.get("retrieved_on")) \
        or epoch_micros(obj.get("retrieved_utc"))
    if meta.get("removal_type"):
        extra["removal_type"] = meta["removal_type"]
    if meta.get("was_deleted_later"):
        extra["deleted_later"] = True

    return dict(zip(_COLUMNS, (
        message_id, PLATFORM, f"r/{sub}", thread_id, parent_id, author_id, author_name, author_kind,
        created, "wall", "second", n, kind, title, text, _int_or_none(obj.get("score")), edited_at,
        retrieved_at, _compact(extra), path, n)))


def read_file(path: str) -> Iterator[Outcome]:
    """Every record of one Reddit dump file as outcomes, in file order.

    Guarantees one outcome per non-blank line, plus one ``empty_file`` quarantine for a file
    without records and one ``truncated``/``corrupt`` quarantine where a `.zst` stream breaks.
    A line whose conversion raises anyway is a ``bad_value`` quarantine row (see ``guarded``).
    Raises SourceError only if the file cannot be opened.
    """
    records = 0
    for item in iter_lines(path):
        records += 1
        if isinstance(item, Quarantined):
            yield item
            continue
        yield _line_outcome(path, *item)
    if records == 0:
        yield Quarantined(path, "empty_file", "the file holds no records", source_record=0, byte_offset=0)


def _line_outcome(path: str, n: int, off: int, raw: bytes) -> Outcome:
    """The outcome of one line: the reference every faster path must match."""
    obj, err = parse_json(raw)
    if err is not None:
        return _q(path, n, off, err.reason, f"line {n}: {err.detail}", raw)
    obj = _first_wins(raw, obj)
    return guarded(lambda: parse_record(obj, path, n, off, raw), path, n, raw, off)


# --- whole blocks at once ------------------------------------------------------------------------
#
# Most lines of a comment dump are alike: every field has its usual type and value range. A block
# of whole lines is parsed by Polars' NDJSON reader (one call, in Rust, over the decompressed
# bytes) with a schema whose types are strict where the reference checks a type: a `Categorical`
# column takes only JSON strings, `Int64` only integers, `Boolean` only booleans, so a line with a
# value of another type makes the read fail rather than be coerced. Lines are found with numpy
# over the bytes. Everything the column path does not take goes through `_line_outcome` one by one,
# so each still becomes its own message or quarantine row and the output equals `read_file`'s
# (tests/test_reddit_batches.py):
# * lines that are not `{...}` with nothing around (blank lines, a cut line, a leading blank, CRLF);
# * lines with a `\uD8xx`-`\uDFxx` escape (Polars takes a lone surrogate that orjson refuses);
# * lines of a read that fails: the block is read again with the numeric fields as text (a dump
#   that writes times as strings), then in eighths, down to 8 lines, which the reference reads;
# * lines whose values the columns do not cover: no `id`/`body`/`subreddit`/`link_id`, a time out
#   of range, a number written as text that is not a plain integer (Polars writes an integral
#   float as one, so `1706745600.0` is covered), an `edited` of 0.
# A key repeated within a record keeps its first value on both paths (see `_first_wins`).

def _strings(values: list):
    import polars as pl

    # Polars builds a string column from Python str far faster than pa.array (20k bodies:
    # about 0.01 s against 0.26 s, measured on RC_2005-12 lines).
    return pl.Series(values, dtype=pl.String).to_arrow()


BLOCK_BYTES = 16 << 20  # decompressed bytes per Polars read (about 27k Pushshift comment lines)
MIN_SPLIT_LINES = 8  # a failing read of this many lines or fewer goes to the reference line by line
_WS = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() strips
_KEY_END = re.compile(rb'"\s*:')
_PLAIN_INT = r"^-?[0-9]+$"
_NUMERIC = ("created_utc", "score", "retrieved_on", "retrieved_utc", "controversiality")


def _first_wins(raw: bytes, obj):
    """``obj`` as parsed with the first value of each repeated key (orjson keeps the last).

    RFC 8259 leaves repeated keys undefined; Polars' reader (the block path) keeps the first,
    so the reference does too. A record has a repeated key only if it has more `"key":` than
    keys, so the common record pays for one regex count.
    """
    if not isinstance(obj, dict) or len(_KEY_END.findall(raw)) == len(obj):
        return obj
    import json

    def first(pairs):
        d: dict = {}
        for k, v in pairs:
            d.setdefault(k, v)
        return d

    return json.loads(raw, object_pairs_hook=first)


def _schemas():
    import polars as pl

    cat, s = pl.Categorical, pl.String
    meta = pl.Struct({"retrieved_2nd_on": s, "removal_type": cat, "was_deleted_later": pl.Boolean})
    strict = {"id": cat, "created_utc": pl.Int64, "subreddit": cat, "author": cat, "body": cat, "link_id": cat,
              "parent_id": cat, "score": pl.Int64, "edited": s, "_meta": meta, "retrieved_on": pl.Int64,
              "retrieved_utc": pl.Int64, "distinguished": cat, "stickied": pl.Boolean, "controversiality": pl.Int64,
              "is_submitter": pl.Boolean}
    return strict, {k: (s if k in _NUMERIC else t) for k, t in strict.items()}


def _join(data: bytes, starts, ends, idx):
    """The lines ``idx`` of ``data`` as one NDJSON buffer: whole runs of adjacent lines are sliced, not copied line by line."""
    import numpy as np

    s, e = starts[idx], ends[idx]
    breaks = np.flatnonzero(s[1:] != e[:-1] + 1) + 1
    lo = np.r_[0, breaks]
    hi = np.r_[breaks, len(idx)] - 1
    if len(lo) == 1:
        return data[s[0]:e[-1]]
    return b"\n".join(data[a:b] for a, b in zip(s[lo].tolist(), e[hi].tolist()))


def _read(data: bytes, starts, ends, idx, out: list, failed: list, state: dict) -> None:
    """Parse lines ``idx`` with Polars into ``out`` as (frame, line indices, lenient); lines no read
    takes go to ``failed``. ``state["lenient"]``: the schema that read the last block is tried first
    (a dump that writes its times as floats needs the lenient one for every block)."""
    import numpy as np
    import polars as pl

    buf = _join(data, starts, ends, idx)
    strict, lenient_schema = _schemas()
    first = bool(state.get("lenient"))
    for lenient in (first, not first):
        try:
            out.append((pl.read_ndjson(io.BytesIO(buf), schema=lenient_schema if lenient else strict), idx, lenient))
            state["lenient"] = lenient
            return
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - some line Polars refuses: narrow it down
            continue
    if len(idx) <= MIN_SPLIT_LINES:
        failed.extend(idx.tolist())
        return
    for part in (p for p in np.array_split(idx, 8) if len(p)):
        _read(data, starts, ends, part, out, failed, state)


def _columns(path: str, df, lenient: bool, nums):
    """(Arrow table of the rows the columns take, positions in ``df`` of the others), for one parsed read."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    c = pl.col
    checks = [c("id").is_not_null(), c("id").cast(pl.String) != "", c("subreddit").is_not_null(),
              c("body").is_not_null(), c("link_id").is_not_null(),
              c("_meta").struct.field("retrieved_2nd_on").is_null()
              | c("_meta").struct.field("retrieved_2nd_on").str.contains(_PLAIN_INT),
              c("edited").is_null() | c("edited").is_in(["true", "false"])
              | (c("edited").str.contains(_PLAIN_INT) & (c("edited").str.to_integer(strict=False) != 0))]
    if lenient:  # numbers written as text: only plain integers mean the same as the integer
        checks += [c(k).is_null() | c(k).str.contains(_PLAIN_INT) for k in _NUMERIC]
    df = df.with_row_index("_pos").with_columns(pl.all_horizontal(checks).fill_null(False).alias("_ok"))
    if lenient:
        df = df.with_columns(c(k).str.to_integer(strict=False) for k in _NUMERIC)
    in_range = c("created_utc").is_between(MIN_TIME_S, MAX_TIME_S, closed="left")
    df = df.with_columns(c("_ok") & in_range.fill_null(False))
    slow = df.filter(~c("_ok"))["_pos"]
    df = df.filter(c("_ok")).with_columns(c(pl.Categorical).cast(pl.String))

    def bare(x):
        return pl.when(x.str.starts_with("t1_") | x.str.starts_with("t3_")).then(x.str.slice(3)).otherwise(x)

    def micros(x):
        return pl.when(x.is_between(MIN_TIME_S, MAX_TIME_S, closed="left")).then(x * 1_000_000)

    thread = pl.lit(f"{PLATFORM}:t3_") + bare(c("link_id"))
    parent = (pl.when(c("parent_id").is_null()).then(thread)
              .when(c("parent_id").str.starts_with("t1_") | c("parent_id").str.starts_with("t3_"))
              .then(pl.lit(f"{PLATFORM}:") + c("parent_id"))
              .when(c("parent_id") == bare(c("link_id"))).then(thread)
              .otherwise(pl.lit(f"{PLATFORM}:t1_") + c("parent_id")))
    removed = c("body").is_in(list(REMOVED_BODIES))
    edited_n = pl.when(c("edited").str.contains(_PLAIN_INT)).then(c("edited").str.to_integer(strict=False))
    edited_flag = (c("edited") == "true") | (edited_n.is_not_null() & micros(edited_n).is_null())
    deleted = c("author").is_null() | c("author").is_in([*DELETED_AUTHORS, ""])
    meta = c("_meta").struct
    second = meta.field("retrieved_2nd_on").str.to_integer(strict=False)
    removal = meta.field("removal_type").cast(pl.String)
    deleted_later = meta.field("was_deleted_later").fill_null(False)
    out = df.select(
        (pl.lit(f"{PLATFORM}:t1_") + bare(c("id"))).alias(M.message_id),
        (pl.lit("r/") + c("subreddit")).alias(M.community), thread.alias(M.thread_id), parent.alias(M.parent_id),
        pl.when(deleted).then(None).otherwise(c("author")).alias(M.author_id),
        (c("created_utc") * 1_000_000).alias(M.created_at), c("score").alias(M.score),
        micros(edited_n).alias(M.edited_at),
        pl.coalesce(micros(second), micros(c("retrieved_on")), micros(c("retrieved_utc"))).alias(M.retrieved_at),
        pl.when(removed).then(pl.lit("")).otherwise(c("body")).alias("t"), removed.alias("rm"),
        (pl.any_horizontal(c("body").str.contains(s, literal=True) for s in ("\r", " \n", "\t\n", "\n\n\n"))
         & ~removed).alias("nl"),
        (removed | c("distinguished").is_not_null() | c("stickied").fill_null(False)
         | (c("controversiality").fill_null(0) != 0) | c("is_submitter").fill_null(False) | edited_flag
         | (removal.fill_null("") != "") | deleted_later).alias("x"),
        removal.alias("rt"), deleted_later.alias("dl"),
        edited_flag.alias("ef"), deleted.alias("del"), c("_pos"),
        *(pl.lit(v, pl.String).alias(k) for k, v in ((M.platform, PLATFORM), (M.time_kind, "wall"),
                                                     (M.time_precision, "second"), (M.kind, "comment"),
                                                     (M.source_uri, path))))
    t = out["t"]
    nl_idx = out["nl"].arg_true()
    if len(nl_idx):  # `normalise_newlines` but its final strip, on the bodies it changes, step by step
        sub = t.gather(nl_idx)
        if sub.str.contains("\r", literal=True).any():
            sub = sub.str.replace_all("\r\n", "\n", literal=True).str.replace_all("\r", "\n", literal=True)
        if (sub.str.contains(" \n", literal=True) | sub.str.contains("\t\n", literal=True)).any():
            sub = sub.str.replace_all(r"[ \t]+\n", "\n")
        if sub.str.contains("\n\n\n", literal=True).any():
            sub = sub.str.replace_all(r"\n{3,}", "\n\n")
        t = t.scatter(nl_idx, sub)
    # Python and Polars disagree on some Unicode blanks, so a text whose first or last character is
    # not printable ASCII, or a body with an entity (`html.unescape`), is left to `unescape` itself.
    t = t.str.strip_chars(" \t\n\r\x0b\x0c")
    ends = t.str.slice(0, 1).is_between("!", "~") & t.str.slice(-1).is_between("!", "~")
    py_idx = ((~ends | df["body"].str.contains("&", literal=True)) & ~out["rm"]).arg_true()
    if len(py_idx):
        bodies = df["body"].gather(py_idx).to_list()
        t = t.scatter(py_idx, [unescape(b) for b in bodies])
    authors = out[M.author_id]
    bots = {a: is_bot(a) for a in authors.unique().drop_nulls().to_list()}
    bot = authors.replace_strict(bots, default=False, return_dtype=pl.Boolean)
    kinds = pl.select(pl.when(out["del"]).then(pl.lit("deleted")).when(bot).then(pl.lit("bot"))
                      .otherwise(pl.lit("user"))).to_series()
    extra = [None] * len(t)
    x_idx = out["x"].arg_true().to_list()
    if x_idx:
        rows = df.select("body", "distinguished", "stickied", "controversiality", "is_submitter")[x_idx].rows()
        flags = out.select("ef", "rt", "dl")[x_idx].rows()
        for j, (b, d, st, cv, isub), (ef, rt, dl) in zip(x_idx, rows, flags):
            x = {"removed": b.strip("[]")} if b in REMOVED_BODIES else {}
            x.update(distinguished=d, stickied=st, controversiality=cv, is_submitter=isub)
            if ef:
                x["edited"] = True
            if rt:
                x["removal_type"] = rt
            if dl:
                x["deleted_later"] = True
            extra[j] = _compact(x)
    too_large = t.str.len_chars() > MAX_TEXT_CHARS
    table = pa.table({
        M.message_id: out[M.message_id].to_arrow(), M.platform: out[M.platform].to_arrow(),
        M.community: out[M.community].to_arrow(), M.thread_id: out[M.thread_id].to_arrow(),
        M.parent_id: out[M.parent_id].to_arrow(), M.author_id: authors.to_arrow(),
        M.author_name: authors.to_arrow(), M.author_kind: kinds.to_arrow(),
        M.created_at: out[M.created_at].to_arrow(), M.time_kind: out[M.time_kind].to_arrow(),
        M.time_precision: out[M.time_precision].to_arrow(), M.kind: out[M.kind].to_arrow(),
        M.text: t.to_arrow(), M.score: out[M.score].to_arrow(), M.edited_at: out[M.edited_at].to_arrow(),
        M.retrieved_at: out[M.retrieved_at].to_arrow(), M.extra: _strings(extra),
        M.source_uri: out[M.source_uri].to_arrow(),
    })
    pos = out["_pos"].to_numpy()
    table = table.append_column(M.order_in_source, pa.array(nums[pos], pa.int64()))
    table = table.append_column(M.source_record, pa.array(nums[pos], pa.int64()))
    slow = slow.to_numpy()
    if too_large.any():  # the reference writes the quarantine row
        big = too_large.to_numpy()
        slow = np.concatenate([slow, pos[big]])
        table = table.filter(pa.array(~big))
    return table, slow


def _line_table(path: str, offset: int, data: bytes, n0: int, batch_rows: int, state: dict | None = None):
    """(message table, other outcomes in line order, records) for each ``batch_rows`` records of one
    block of whole lines (``data`` ends with a newline; its first non-blank line is number ``n0``)."""
    import numpy as np

    from schemas import MESSAGES

    state = {} if state is None else state
    arr = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.r_[0, ends[:-1] + 1]
    nonempty = ends > starts
    first = np.where(nonempty, arr[np.minimum(starts, len(arr) - 1)], 10)
    last = np.where(nonempty, arr[np.maximum(ends - 1, 0)], 10)
    fast = nonempty & (first == ord("{")) & (last == ord("}"))
    blank = ~nonempty
    for i in np.flatnonzero(nonempty & np.isin(first, list(_WS))).tolist():  # a line that starts blank
        blank[i] = not data[starts[i]:ends[i]].strip()
    # A surrogate escape (`\\uD800`-`\\uDFFF`): only the reference tells a lone one.
    bs = np.flatnonzero(arr[:-5] == ord("\\"))
    bs = bs[(arr[bs + 1] == ord("u")) & ((arr[bs + 2] | 0x20) == ord("d")) & np.isin(arr[bs + 3] | 0x20, list(b"89ab"))]
    fast[np.searchsorted(ends, bs)] = False
    kept = np.flatnonzero(~blank)
    nums = n0 + np.arange(len(kept), dtype=np.int64)
    line_no = np.full(len(ends), -1, dtype=np.int64)
    line_no[kept] = nums
    for g in range(0, len(kept), batch_rows):
        idx = kept[g:g + batch_rows]
        f = idx[fast[idx]]
        slow = idx[~fast[idx]].tolist()
        pieces: list = []
        if len(f):
            _read(data, starts, ends, f, pieces, slow, state)
        tables = []
        for df, lines, lenient in pieces:
            table, rest = _columns(path, df, lenient, line_no[lines])
            tables.append(table)
            slow.extend(lines[rest].tolist())
        outcomes = [_line_outcome(path, int(line_no[i]), offset + int(starts[i]), data[starts[i]:ends[i]])
                    for i in sorted(slow)]
        table = MESSAGES.conform(_concat(tables)) if tables else None
        yield table, outcomes, len(idx)


def _concat(tables):
    import pyarrow as pa

    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")


_END = object()


def _ahead(items: Iterator):
    """The items of ``items``, each next one made in a worker thread while the caller works on the
    one before: decompressing the next block overlaps parsing this one (zstd and Polars release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="reddit-blocks") as pool:
            fut = pool.submit(next, items, _END)
            while (item := fut.result()) is not _END:
                fut = pool.submit(next, items, _END)
                yield item
    finally:
        items.close()


def read_batches(paths: list[str], batch_rows: int):
    """Like ``read_unit``, by blocks: yields (message table or None, other outcomes in file order, records).

    Row for row the same outcomes as ``read_unit``; the message table is in file order.
    """
    for path in paths:
        records = n = 0
        state: dict = {}
        for item in _ahead(_blocks(path)):
            if item[0] == "lines":
                for table, outcomes, k in _line_table(path, item[1], item[2], n, batch_rows, state):
                    n += k
                    records += k
                    yield table, outcomes, k
                continue
            q = _stream_fault(path, item, n)
            n += item[0] == "too_large"
            records += 1
            yield None, [q], 1
        if records == 0:
            yield None, [Quarantined(path, "empty_file", "the file holds no records", source_record=0, byte_offset=0)], 1


read_unit = files_in_turn(read_file)


READER = Reader(
    format=PLATFORM,
    description="Pushshift / Arctic Shift Reddit comments and submissions, NDJSON (.zst streamed, or plain)",
    read_unit=read_unit,
    read_batches=read_batches,
    file_patterns=("RC_*.zst", "RS_*.zst", "*.zst", "*.ndjson", "*.jsonl", "*.json"),
)

__all__ = ["READER", "read_file", "iter_lines", "parse_record", "is_bot", "epoch_micros", "SourceError"]
