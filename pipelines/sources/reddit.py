"""Reddit: Pushshift / Arctic Shift comment and submission dumps (NDJSON, `.zst` or plain).

One file is one unit. Lines are streamed: `.zst` files through a zstd decompressor with the
2 GiB window the monthly dumps declare, everything else as plain bytes; lines are split on
`\\n` bytes, which never occur inside a UTF-8 multi-byte character, so no character is split.
Each line becomes one outcome. See docs/formats/reddit.md for the field mapping.
"""

from __future__ import annotations

import math
import re
from itertools import compress, repeat
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

    A truncated or corrupt `.zst` ends with one Quarantined (``truncated``/``corrupt``); the
    incomplete last line of a truncated stream is reported in it rather than parsed.
    Raises SourceError if the file cannot be opened.
    """
    with open_binary(path) as stream:
        buf = b""
        offset = 0  # decompressed byte offset of buf[0]
        n = 0
        discarding = False  # inside an over-long line, dropping bytes up to its newline
        for chunk in _chunks(path, stream):
            if isinstance(chunk, Quarantined):
                tail = buf.strip()
                yield Quarantined(chunk.source_uri, chunk.reason,
                                  chunk.detail + (f"; incomplete last line of {len(buf)} bytes" if tail else ""),
                                  source_record=n, byte_offset=offset, excerpt=tail or None)
                return
            start = 0
            if discarding:
                nl = chunk.find(b"\n")
                if nl == -1:
                    offset += len(chunk)
                    continue
                discarding = False
                offset += nl + 1
                chunk = chunk[nl + 1:]
            buf += chunk
            while (end := buf.find(b"\n", start)) != -1:
                line = buf[start:end]
                if line.strip():
                    yield n, offset + start, line
                    n += 1
                start = end + 1
            offset += start
            buf = buf[start:]
            if len(buf) > MAX_LINE_BYTES:
                yield Quarantined(path, "too_large", f"line {n} is longer than {MAX_LINE_BYTES} bytes",
                                  source_record=n, byte_offset=offset, excerpt=buf[:800])
                n += 1
                offset += len(buf)
                buf = b""
                discarding = True
        if buf.strip() and not discarding:
            yield n, offset, buf


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
    return guarded(lambda: parse_record(obj, path, n, off, raw), path, n, raw, off)


# --- whole blocks at once ------------------------------------------------------------------------
#
# Most lines of a comment dump are alike: every field has its usual type and value range. For a
# block of lines, those are found by checking each column's types at once, and converted with
# column operations (Polars); the rest (submissions, odd types, out-of-range times, `_meta`,
# broken JSON) go through `_line_outcome` one by one, so each still becomes its own message or
# quarantine row and the output equals `read_file`'s (tests/test_reddit_batches.py).

_NONE, _STR, _INT, _BOOL = type(None), str, int, bool
# The fields a fast comment line may have, with the types the column path handles.
_FAST_TYPES = {"id": {_STR}, "created_utc": {_INT}, "subreddit": {_STR}, "author": {_NONE, _STR},
               "body": {_STR}, "link_id": {_STR}, "parent_id": {_NONE, _STR}, "score": {_NONE, _INT},
               "edited": {_NONE, _BOOL}, "_meta": {_NONE}, "retrieved_on": {_NONE, _INT},
               "retrieved_utc": {_NONE, _INT}, "distinguished": {_NONE, _STR}, "stickied": {_NONE, _BOOL},
               "controversiality": {_NONE, _INT}, "is_submitter": {_NONE, _BOOL}}
# `normalise_newlines` as Polars expressions, except its final `str.strip()`: Python and Polars
# disagree on some Unicode blanks, so a text whose first or last character is not printable
# ASCII, or a body with an entity (`html.unescape`), is left to `unescape` itself.
_UNSAFE_ENDS = r"^[^!-~]|[^!-~]$"


def _strings(values: list):
    import polars as pl

    # Polars builds a string column from Python str far faster than pa.array (20k bodies:
    # about 0.01 s against 0.26 s, measured on RC_2005-12 lines).
    return pl.Series(values, dtype=pl.String).to_arrow()


def _fast_block(path: str, lines: list[tuple[int, int, bytes]]):
    """(Arrow table of the fast lines' messages, the other lines' outcomes), for one block."""
    import polars as pl
    import pyarrow as pa

    from schemas import MESSAGES

    loads = orjson.loads
    objs: list = []
    for _, _, raw in lines:
        try:
            objs.append(loads(raw))
        except Exception:  # noqa: BLE001 - the reference path names the fault
            objs.append(None)
    fast = [i for i, o in enumerate(objs) if type(o) is dict and "body" in o]
    fast_objs = [objs[i] for i in fast]
    cols: dict[str, list] = {}
    for key, types in _FAST_TYPES.items():
        # map(dict.get, ...) runs the loop in C: this is most of the per-line cost left.
        col = cols[key] = list(map(dict.get, fast_objs, repeat(key)))
        if not set(map(type, col)) <= types:
            keep = [type(v) in types for v in col]
            fast, fast_objs = list(compress(fast, keep)), list(compress(fast_objs, keep))
            cols = {k: list(compress(vs, keep)) for k, vs in cols.items()}
    nums = [lines[i][0] for i in fast]
    df = pl.DataFrame({
        "id": pl.Series(cols["id"], dtype=pl.String), "created": pl.Series(cols["created_utc"], dtype=pl.Int64),
        "sub": pl.Series(cols["subreddit"], dtype=pl.String), "author": pl.Series(cols["author"], dtype=pl.String),
        "body": pl.Series(cols["body"], dtype=pl.String), "link": pl.Series(cols["link_id"], dtype=pl.String),
        "parent": pl.Series(cols["parent_id"], dtype=pl.String), "score": pl.Series(cols["score"], dtype=pl.Int64),
        "ron": pl.Series(cols["retrieved_on"], dtype=pl.Int64), "rutc": pl.Series(cols["retrieved_utc"], dtype=pl.Int64),
        "n": pl.Series(nums, dtype=pl.Int64),
    }, strict=True)
    in_range = pl.col("created").is_between(MIN_TIME_S, MAX_TIME_S, closed="left") & pl.col("id").ne("")
    ok = df.select(in_range.alias("ok"))["ok"].to_list()
    if not all(ok):
        fast = [i for i, k in zip(fast, ok) if k]
        df = df.filter(in_range)
        cols = {k: [v for v, k2 in zip(vs, ok) if k2] for k, vs in cols.items()}

    def bare(c):
        return pl.when(c.str.starts_with("t1_") | c.str.starts_with("t3_")).then(c.str.slice(3)).otherwise(c)

    def micros(c):
        return pl.when(c.is_between(MIN_TIME_S, MAX_TIME_S, closed="left")).then(c * 1_000_000)

    thread = pl.lit(f"{PLATFORM}:t3_") + bare(pl.col("link"))
    parent = (pl.when(pl.col("parent").is_null()).then(thread)
              .when(pl.col("parent").str.starts_with("t1_") | pl.col("parent").str.starts_with("t3_"))
              .then(pl.lit(f"{PLATFORM}:") + pl.col("parent"))
              .when(pl.col("parent") == bare(pl.col("link"))).then(thread)
              .otherwise(pl.lit(f"{PLATFORM}:t1_") + pl.col("parent")))
    removed = pl.col("body").is_in(list(REMOVED_BODIES))
    norm = (pl.col("body").str.replace_all("\r\n", "\n", literal=True).str.replace_all("\r", "\n", literal=True)
            .str.replace_all(r"[ \t]+\n", "\n").str.replace_all(r"\n{3,}", "\n\n"))
    out = df.select(
        (pl.lit(f"{PLATFORM}:t1_") + bare(pl.col("id"))).alias(M.message_id),
        (pl.lit("r/") + pl.col("sub")).alias(M.community), thread.alias(M.thread_id), parent.alias(M.parent_id),
        (pl.col("created") * 1_000_000).alias(M.created_at), pl.col("score").alias(M.score),
        pl.coalesce(micros(pl.col("ron")), micros(pl.col("rutc"))).alias(M.retrieved_at),
        pl.when(removed).then(pl.lit("")).otherwise(norm).alias("t"),
        ((norm.str.contains(_UNSAFE_ENDS) | pl.col("body").str.contains("&", literal=True)) & ~removed).alias("py"))
    t = out["t"]
    py_idx = out["py"].arg_true()

    bodies, authors = cols["body"], cols["author"]
    if len(py_idx):
        t = t.scatter(py_idx, [unescape(bodies[i]) for i in py_idx.to_list()])
    bots = {a: is_bot(a) for a in set(authors) if a is not None}
    kinds = ["deleted" if a is None or a in DELETED_AUTHORS or a == "" else "bot" if bots[a] else "user"
             for a in authors]
    names = [None if k == "deleted" else a for a, k in zip(authors, kinds)]
    extra = [None] * len(t)
    for j, (b, d, st, c, isub, ed) in enumerate(zip(bodies, cols["distinguished"], cols["stickied"],
                                                   cols["controversiality"], cols["is_submitter"], cols["edited"])):
        if d or st or c or isub or ed or b in REMOVED_BODIES:
            x = {"removed": b.strip("[]")} if b in REMOVED_BODIES else {}
            x.update(distinguished=d, stickied=st, controversiality=_int_or_none(c), is_submitter=isub)
            if ed is True:
                x["edited"] = True
            extra[j] = _compact(x)
    n_rows = len(t)
    slow_at = set(range(len(lines))).difference(fast)
    too_large = t.str.len_chars() > MAX_TEXT_CHARS
    if too_large.any():  # too_large: the reference writes the quarantine row
        keep = (~too_large).to_list()
        slow_at.update(i for i, k in zip(fast, keep) if not k)
    else:
        keep = None
    table = pa.table({
        M.message_id: out[M.message_id].to_arrow(), M.platform: pa.repeat(PLATFORM, n_rows),
        M.community: out[M.community].to_arrow(), M.thread_id: out[M.thread_id].to_arrow(),
        M.parent_id: out[M.parent_id].to_arrow(), M.author_id: _strings(names),
        M.author_name: _strings(names), M.author_kind: _strings(kinds),
        M.created_at: out[M.created_at].to_arrow(), M.time_kind: pa.repeat("wall", n_rows),
        M.time_precision: pa.repeat("second", n_rows),
        M.order_in_source: df["n"].to_arrow(), M.kind: pa.repeat("comment", n_rows),
        M.text: t.to_arrow(), M.score: out[M.score].to_arrow(),
        M.retrieved_at: out[M.retrieved_at].to_arrow(), M.extra: _strings(extra),
        M.source_uri: pa.repeat(path, n_rows), M.source_record: df["n"].to_arrow(),
    })
    if keep is not None:
        table = table.filter(pa.array(keep))
    slow = [_line_outcome(path, *lines[i]) for i in sorted(slow_at)]
    return MESSAGES.conform(table), slow


def read_batches(paths: list[str], batch_rows: int):
    """Like ``read_unit``, by blocks: yields (message table, other outcomes in file order, records).

    Row for row the same outcomes as ``read_unit``; the message table is in file order.
    A block the column path cannot take as a whole (a value Arrow rejects) is read line by line.
    """
    for path in paths:
        records = 0
        block: list[tuple[int, int, bytes]] = []
        tail: list[Outcome] = []
        for item in iter_lines(path):
            records += 1
            if isinstance(item, Quarantined):  # too_large, truncated, corrupt: numbered like the lines
                tail.append(item)
            else:
                block.append(item)
            if len(block) + len(tail) >= batch_rows:
                yield _block_outcomes(path, block, tail)
                block, tail = [], []
        if records == 0:
            tail.append(Quarantined(path, "empty_file", "the file holds no records", source_record=0, byte_offset=0))
        if block or tail:
            yield _block_outcomes(path, block, tail)


def _block_outcomes(path, block, tail):
    try:
        table, slow = _fast_block(path, block) if block else (None, [])
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a value Arrow or Polars refuses: the reference path takes the block
        table, slow = None, [_line_outcome(path, *line) for line in block]
    outcomes = slow + tail
    outcomes.sort(key=lambda o: (o.source_record if isinstance(o, Quarantined) and o.source_record is not None
                                 else o.get(M.source_record, 0) if isinstance(o, dict) else 0))
    return table, outcomes, len(block) + len(tail)


read_unit = files_in_turn(read_file)


READER = Reader(
    format=PLATFORM,
    description="Pushshift / Arctic Shift Reddit comments and submissions, NDJSON (.zst streamed, or plain)",
    read_unit=read_unit,
    read_batches=read_batches,
    file_patterns=("RC_*.zst", "RS_*.zst", "*.zst", "*.ndjson", "*.jsonl", "*.json"),
)

__all__ = ["READER", "read_file", "iter_lines", "parse_record", "is_bot", "epoch_micros", "SourceError"]
