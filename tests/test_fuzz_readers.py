"""Property-based fuzzing of every reader (issue #11): real sample records with fields replaced by
wrong types, huge numbers, nulls, deep nesting and odd Unicode, written in the format's real layout.

Invariants, for every format:
* no exception escapes the reader or the ingest batching (``iter_unit_batches``, which also
  fits rows to the schema), and every quarantine row fits the quarantine table;
* ``records == messages + quarantined + skipped``;
* every record yields exactly one outcome: the record count is the number of records the test
  wrote (or, where the mutation broke the file's own structure, one row for the whole file),
  and every mutated record is a message row or a quarantine row at its own record number
  (or one of the skipped records, for formats that skip).

Bugs found here are kept as plain tests in tests/test_reader_regressions.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings, strategies as st

from pipelines.stages.ingest import iter_unit_batches
from pipelines.sources import get_reader
from schemas import MESSAGES as M, QUARANTINE

# The `real` fixture (tests/conftest.py) fails with a clear message when the samples are missing;
# the loaders below read through the same path, cached across examples.
from conftest import REAL

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
# A deeper run than CI's: SOCIALCORPUS_FUZZ_SCALE=20 pytest tests/test_fuzz_readers.py
SCALE = int(os.environ.get("SOCIALCORPUS_FUZZ_SCALE", "1"))


def _nested(depth: int):
    v: object = "deep"
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


# Values a field should never hold, chosen from what real dumps and real bugs have shown.
BAD_VALUES = [
    None, True, False, 0, -1, 5, 1.5, -0.0, 1e308, -1e308, 2**63, 2**64 - 1, -(2**63) - 1, 10**30,
    "", " ", "x", "1e400", "-1e400", "NaN", "inf", "99999999999999999999999", "²", "١٢٣", "-", "--5",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2020-02-30T25:61:00", "1970-01-01T00:00:00Z",
    "\x00", "\u202e\u200b", "\ufeff", "a\u0301", "𝕏🙂", "\ud800", "\r\n\u2028\u2029", "<@U0BMQB6JE>", "@name",
    "<row Id=\"1\"/>", "&amp;", [], {}, [5], ["x", None], {"a": 1}, {"count": 10**30}, [{"count": 2**63}],
    _nested(40), "x" * 100_001,
]
_listed = st.sampled_from(BAD_VALUES)
bad_values = st.one_of(
    _listed, _listed, _listed,  # weighted: the listed values are the ones real bugs came from
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)


# Values that look almost right: in range for a parser, out of range for what comes after it.
# Drawn often, so that aimed at a time or a number field they meet the conversion behind it.
TRAPS = ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "1e400", "-1e400", "inf", "NaN",
         "99999999999999999999999", 2**63, 2**64 - 1, 1e308, "²", -1]


@dataclass(frozen=True)
class Mutation:
    slot: int  # which path (modulo how many there are)
    op: str  # replace | delete | nest | trap (replace with a TRAPS value)
    value: object
    key: str | None = None  # aim at a path ending in this key, when there is one


def mutations(keys: tuple[str, ...] = (), max_size: int = 8):
    """Lists of mutations; most aim at ``keys`` (the fields the reader reads), the rest anywhere."""
    aim = st.one_of(st.none(), st.sampled_from(keys), st.sampled_from(keys)) if keys else st.none()
    one = st.one_of(
        st.builds(Mutation, st.integers(0, 2**20), st.sampled_from(["replace", "replace", "delete", "nest"]),
                  bad_values, aim),
        st.builds(Mutation, st.integers(0, 2**20), st.just("trap"), st.sampled_from(TRAPS), aim))
    return st.lists(one, min_size=1, max_size=max_size)


# The fields each reader reads (from docs/formats/*.md), which mutations mostly aim at.
KEYS = {
    "reddit": ("id", "name", "created_utc", "subreddit", "author", "body", "link_id", "parent_id", "title",
               "selftext", "url", "is_self", "score", "edited", "_meta", "retrieved_on", "retrieved_utc",
               "retrieved_2nd_on", "removal_type", "was_deleted_later", "distinguished", "stickied",
               "controversiality", "is_submitter", "num_comments", "domain", "over_18", "crosspost_parent"),
    "stackexchange": ("Id", "PostTypeId", "ParentId", "CreationDate", "Body", "Title", "Tags", "OwnerUserId",
                      "OwnerDisplayName", "Score", "ViewCount", "LastEditDate", "ClosedDate", "AcceptedAnswerId",
                      "CommunityOwnedDate", "ContentLicense", "PostId", "Text", "UserId", "UserDisplayName"),
    "discourse": ("id", "post_number", "created_at", "cooked", "topic_id", "action_code", "post_type", "username",
                  "user_id", "user_deleted", "name", "reply_to_post_number", "title", "topic_title", "reads",
                  "hidden", "deleted_at", "wiki", "accepted_answer", "actions_summary", "count", "updated_at",
                  "version", "post_stream", "posts"),
    "discord": ("id", "type", "timestamp", "timestampEdited", "author", "name", "nickname", "isBot", "content",
                "reference", "messageId", "reactions", "count", "stickers", "attachments", "embeds", "isPinned",
                "guild", "channel", "exportedAt", "messages"),
    "slack": ("user", "text", "ts", "subtype", "thread_ts", "parent_user_id", "bot_id", "username", "user_profile",
              "files", "reactions", "edited", "name", "id", "members", "real_name", "profile", "display_name",
              "is_bot", "deleted", "replies", "attachments", "comment"),
    "telegram": ("id", "type", "date", "date_unixtime", "edited", "edited_unixtime", "from", "from_id", "actor",
                 "actor_id", "text", "text_entities", "reply_to_message_id", "forwarded_from", "chats", "list",
                 "messages", "name", "photo", "file", "sticker_emoji", "media_type"),
}


def _paths(obj, prefix=(), depth=5) -> list[tuple]:
    """Every key path into ``obj`` (dict keys and list indices), up to ``depth`` levels."""
    out = []
    if depth == 0:
        return out
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(_paths(v, prefix + (k,), depth - 1))
    return out


def _clone(obj):
    # Not copy.deepcopy: it keeps aliases, and a record picked twice must be mutated once.
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    return obj


def mutate(doc, muts: list[Mutation], allowed=lambda path: True) -> tuple[object, list[tuple]]:
    """A deep copy of ``doc`` with ``muts`` applied to paths ``allowed`` accepts; and the paths touched."""
    doc = _clone(doc)
    touched = []
    for mu in muts:
        paths = [p for p in _paths(doc) if allowed(p)]
        if not paths:
            break
        aimed = [p for p in paths if p[-1] == mu.key]
        path = (aimed or paths)[mu.slot % len(aimed or paths)]
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if mu.op == "delete" and isinstance(parent, dict):
            del parent[key]
        elif mu.op == "nest":
            parent[key] = [[{"v": parent[key]}]]
        else:
            parent[key] = _clone(mu.value)
        touched.append(path)
    return doc, touched


def dump(obj) -> bytes:
    # stdlib json writes what orjson cannot (ints beyond 64 bits, NaN); lone surrogates become
    # the invalid UTF-8 a broken exporter writes.
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def utf8(data: bytes) -> bool:
    """Whether ``data`` decodes: a whole-file JSON document that does not is one row for the file."""
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@dataclass
class Result:
    records: int
    messages: list[tuple[str, int]]  # (source_uri, source_record) of each message row
    quarantine: list[dict]
    skipped: int


def ingest_outcomes(fmt: str, paths: list[str]) -> Result:
    """What ingest makes of ``paths``: the shared per-unit batching both engines run."""
    reader = get_reader(fmt)
    res = Result(0, [], [], 0)
    for unit in reader.units(paths):
        for b in iter_unit_batches(fmt, unit, batch_rows=7):  # small batches: the batch edges get fuzzed too
            res.records += b.records
            res.messages += list(zip(b.messages.column(M.source_uri).to_pylist(),
                                     b.messages.column(M.source_record).to_pylist()))
            res.quarantine += b.quarantine
            res.skipped += sum(b.skipped.values())
    QUARANTINE.conform(pa.Table.from_pylist(res.quarantine, schema=QUARANTINE.arrow))  # writable as it is
    assert res.records == len(res.messages) + len(res.quarantine) + res.skipped
    return res


def assert_one_outcome_each(res: Result, expected: int | None, structure_broken: bool,
                            mutated: set[tuple[str, int]]):
    """``expected`` records (or one file-level row where the file's structure was broken), and every
    mutated (file, record) accounted for by a message, a quarantine row or a skip."""
    if structure_broken:
        assert res.records == expected or (res.records == 1 and len(res.quarantine) == 1), res
    else:
        assert res.records == expected, (res.records, expected, res.quarantine)
    located = set(res.messages) | {(q["source_uri"], q["source_record"]) for q in res.quarantine}
    missing = {m for m in mutated if m not in located}
    file_rows = {q["source_uri"] for q in res.quarantine if q["source_record"] in (0, None)}
    missing = {m for m in missing if m[0] not in file_rows}
    assert len(missing) <= res.skipped, (missing, res)


def _get(doc, path):
    """``doc`` at ``path``, or None where the path no longer exists."""
    for k in path:
        if isinstance(doc, dict) and k in doc:
            doc = doc[k]
        elif isinstance(doc, list) and isinstance(k, int) and k < len(doc):
            doc = doc[k]
        else:
            return None
    return doc


def _tmp():
    return tempfile.TemporaryDirectory(prefix="fuzz-")


# --- real records ------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _json(rel: str):
    return json.loads((REAL / rel).read_bytes())


@lru_cache(maxsize=None)
def reddit_records() -> list[dict]:
    import zstandard

    with open(REAL / "reddit" / "RC_2005-12.zst", "rb") as f:
        data = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read()
    lines = data.splitlines()[:40]
    for name in ("paul-e_test_comments.ndjson", "paul-e_test_submissions.ndjson"):
        lines += (REAL / "reddit" / name).read_bytes().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


@lru_cache(maxsize=None)
def se_rows() -> dict[str, list[dict]]:
    import xml.etree.ElementTree as ET

    out = {}
    for name in ("Posts", "Comments", "Users"):
        root = ET.fromstring((REAL / "stackexchange" / f"{name}.xml").read_bytes().decode("utf-8-sig")
                             .split("\n", 2)[2])  # past the XML declaration and the DOCTYPE
        out[name] = [dict(r.attrib) for r in root][:200]
    return out


# --- one property per format ----------------------------------------------------------------------

@settings(max_examples=400 * SCALE, **SETTINGS)
@given(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=4), muts=mutations(KEYS["reddit"]), zst=st.booleans())
def test_reddit_survives_any_mutated_line(real, picks, muts, zst):
    pool = reddit_records()
    lines = [pool[p % len(pool)] for p in picks]
    lines, touched = mutate(lines, muts, allowed=lambda p: True)
    with _tmp() as d:
        data = b"".join(dump(x) + b"\n" for x in lines)
        path = os.path.join(d, "dump.ndjson")
        if zst:
            import zstandard

            path, data = os.path.join(d, "dump.zst"), zstandard.ZstdCompressor().compress(data)
        Path(path).write_bytes(data)
        res = ingest_outcomes("reddit", [path])
    assert_one_outcome_each(res, len(lines), False, {(path, p[0]) for p in touched})


def _xml(tag: str, rows: list[dict]) -> bytes:
    from xml.sax.saxutils import quoteattr

    def attr(v):
        return quoteattr(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))

    body = "".join("  <row " + " ".join(f"{k}={attr(v)}" for k, v in r.items()) + " />\n" for r in rows)
    return (f'\ufeff<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE {tag} SYSTEM \'{tag}.dtd\'>\n'
            f"<{tag}>\n{body}</{tag}>\n").encode("utf-8", "surrogatepass")


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(posts=st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
       comments=st.lists(st.integers(0, 10**6), max_size=4), muts=mutations(KEYS["stackexchange"]))
def test_stackexchange_survives_any_mutated_row(real, posts, comments, muts):
    rows = se_rows()
    doc = {"Posts": [rows["Posts"][i % len(rows["Posts"])] for i in posts],
           "Comments": [rows["Comments"][i % len(rows["Comments"])] for i in comments]}
    # Attribute values only: XML has nothing but strings, and the files' structure is the writer's.
    doc, touched = mutate(doc, muts, allowed=lambda p: len(p) >= 3)
    with _tmp() as d:
        site = os.path.join(d, "fuzz.stackexchange.com")
        os.mkdir(site)
        for name in ("Posts", "Comments"):
            Path(site, f"{name}.xml").write_bytes(_xml(name.lower(), doc[name]))
        Path(site, "Users.xml").write_bytes(_xml("users", rows["Users"][:50]))
        res = ingest_outcomes("stackexchange", [site])
        expected = len(doc["Posts"]) + len(doc["Comments"])
        mutated = {(os.path.join(site, f"{p[0]}.xml"), p[1]) for p in touched}
    # An empty Comments.xml is one `empty_file` row of its own.
    assert_one_outcome_each(res, expected + (not doc["Comments"]), False, mutated)


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(picks=st.lists(st.lists(st.integers(0, 10**6), min_size=1, max_size=4), min_size=1, max_size=2),
       muts=mutations(KEYS["discourse"]))
def test_discourse_survives_any_mutated_post(real, picks, muts):
    """One or two pages of one topic (so one unit, with reply numbers resolved across pages)."""
    pages = []
    for name, pick in zip(("t_2108_posts_pn_41.json", "t_2108_posts_pn_5.json"), picks):
        page = _json(f"discourse/{name}")
        posts = page["post_stream"]["posts"]
        pages.append({**page, "post_stream": {**page["post_stream"], "posts": [posts[p % len(posts)] for p in pick]}})
    pages, touched = mutate(pages, muts)
    with _tmp() as d:
        folder = os.path.join(d, "forum.example.org")
        os.mkdir(folder)
        paths = [os.path.join(folder, f"t_2108_{i}.json") for i in range(len(pages))]
        for path, page in zip(paths, pages):
            Path(path).write_bytes(dump(page))
        res = ingest_outcomes("discourse", paths)
    # Per page: its posts, or (where the mutation broke the page itself) possibly one row for the page.
    totals = {0}
    for i, page in enumerate(pages):
        posts = _get(page, ("post_stream", "posts"))
        n = len(posts) if isinstance(posts, list) and posts else 1
        broken = any(p[0] == i and (p[1:3] != ("post_stream", "posts") or len(p) < 4) for p in touched) \
            or not utf8(dump(page))
        totals = {t + k for t in totals for k in ({n, 1} if broken else {n})}
    assert res.records in totals, (res.records, totals, res.quarantine)
    located = set(res.messages) | {(q["source_uri"], q["source_record"]) for q in res.quarantine}
    mutated = {(paths[p[0]], p[3]) for p in touched if len(p) >= 4 and p[1:3] == ("post_stream", "posts")}
    page_rows = {q["source_uri"] for q in res.quarantine if q["source_record"] == 0}
    assert len({m for m in mutated if m not in located and m[0] not in page_rows}) <= res.skipped


@lru_cache(maxsize=None)
def diplomacy_dialogs() -> list[dict]:
    lines = (REAL / "diplomacy" / "train.jsonl").read_bytes().splitlines()
    # Short dialogs keep each example small; the arrays are what matters.
    return sorted((json.loads(x) for x in lines if x.strip()), key=lambda d: len(d["messages"]))[:40]


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=3), muts=mutations())
def test_diplomacy_survives_any_mutated_dialog(real, picks, muts):
    pool = diplomacy_dialogs()
    lines = [pool[p % len(pool)] for p in picks]
    lines, touched = mutate(lines, muts)
    with _tmp() as d:
        path = os.path.join(d, "train.jsonl")
        Path(path).write_bytes(b"".join(dump(x) + b"\n" for x in lines))
        res = ingest_outcomes("diplomacy", [path])
    # Every outcome of a dialog line carries the line's number: one per element, or one for the line.
    per_line = Counter(r for _, r in res.messages) + Counter(q["source_record"] for q in res.quarantine)
    assert res.skipped == 0 and sum(per_line.values()) == res.records
    for i, line in enumerate(lines):
        n = len(line["messages"]) if isinstance(line, dict) and isinstance(line.get("messages"), list) else None
        line_level = any(p[0] == i and len(p) <= 2 for p in touched) or not utf8(dump(line))
        if line_level or n is None:
            assert per_line[i] in (n, 1), (i, per_line, res.quarantine)
        else:
            assert per_line[i] == n, (i, per_line, res.quarantine)


DCE = "discord/dce-frontend-example-guild/Example guild - Text Channels - general [1012224565567721552].json"


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=4), muts=mutations(KEYS["discord"]))
def test_discord_survives_any_mutated_message(real, picks, muts):
    doc = _json(DCE)
    doc = {**doc, "messages": [doc["messages"][p % len(doc["messages"])] for p in picks]}
    doc, touched = mutate(doc, muts)
    with _tmp() as d:
        path = os.path.join(d, "Example guild - general [1].json")
        Path(path).write_bytes(dump(doc))
        res = ingest_outcomes("discord", [path])
    msgs = doc.get("messages") if isinstance(doc, dict) else None
    broken = any(p[0] != "messages" or len(p) < 2 for p in touched) or not utf8(dump(doc))
    assert_one_outcome_each(res, len(msgs) if isinstance(msgs, list) else 1, broken,
                            {(path, p[1]) for p in touched if p[0] == "messages" and len(p) >= 2})


SLACK = "slack/slack-export-viewer_testarchive"
SLACK_META = ("channels.json", "users.json")


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=5), muts=mutations(KEYS["slack"]))
def test_slack_survives_any_mutated_export(real, picks, muts):
    day = _json(f"{SLACK}/enrique/2016-01-14.json") + _json(f"{SLACK}/enrique/2016-01-15.json")
    doc = {"channels.json": _json(f"{SLACK}/channels.json"), "users.json": _json(f"{SLACK}/users.json"),
           "day": [day[p % len(day)] for p in picks]}
    doc, touched = mutate(doc, muts, allowed=lambda p: len(p) >= 2)
    with _tmp() as d:
        root = os.path.join(d, "workspace")
        os.makedirs(os.path.join(root, "enrique"))
        for name in SLACK_META:
            Path(root, name).write_bytes(dump(doc[name]))
        day_path = os.path.join(root, "enrique", "2016-01-14.json")
        Path(day_path).write_bytes(dump(doc["day"]))
        res = ingest_outcomes("slack", [root])
    meta_rows = sum(1 for q in res.quarantine if q["source_uri"].endswith(SLACK_META))
    # Metadata rows do not replace messages; a broken metadata file is one extra row.
    res.records -= meta_rows
    res.quarantine = [q for q in res.quarantine if not q["source_uri"].endswith(SLACK_META)]
    assert_one_outcome_each(res, len(doc["day"]), not utf8(dump(doc["day"])),
                            {(day_path, p[1]) for p in touched if p[0] == "day"})


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=5), muts=mutations(KEYS["telegram"]),
       full_export=st.booleans())
def test_telegram_survives_any_mutated_message(real, picks, muts, full_export):
    chat = _json("telegram/tg2md_result.json")
    chat = {**chat, "messages": [chat["messages"][p % len(chat["messages"])] for p in picks]}
    prefix = ("chats", "list", 0) if full_export else ()
    doc = {"about": "Telegram Desktop export", "chats": {"about": "", "list": [chat]}} if full_export else chat
    doc, touched = mutate(doc, muts)
    with _tmp() as d:
        path = os.path.join(d, "result.json")
        Path(path).write_bytes(dump(doc))
        res = ingest_outcomes("telegram", [path])
    at = len(prefix)
    records = [p for p in touched if p[:at] == prefix and len(p) >= at + 2 and p[at] == "messages"]
    broken = len(records) < len(touched) or not utf8(dump(doc))
    node = _get(doc, prefix + ("messages",))
    assert_one_outcome_each(res, len(node) if isinstance(node, list) else 1, broken,
                            {(path, p[at + 1]) for p in records})


IRC_DAY = "irc/ubuntu/2013/01/02/#kubuntu.txt"
IRC_BAD_TEXT = ["[99:99]", "[9999999999999999999:00]", "[--:--]", "\x00", "\ud800", "\u2028", "\r", "\n",
                "<>", "< >", "<\u202e>", "=== ", "* ", "\ufeff", "x" * 100_001, "[01:02] <a", "𝕏🙂"]


@settings(max_examples=300 * SCALE, **SETTINGS)
@given(start=st.integers(0, 10**6), count=st.integers(1, 6),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 400), st.sampled_from(["insert", "replace", "line"]),
                                st.one_of(st.sampled_from(IRC_BAD_TEXT), st.text(max_size=12))),
                      min_size=1, max_size=3),
       date=st.sampled_from(["2013/01/02", "2013/02/30", "2013/13/01", "0000/00/00", "9999/12/31"]),
       bad_bytes=st.booleans())
def test_irc_survives_any_mutated_line(real, start, count, edits, date, bad_bytes):
    real_lines = (REAL / IRC_DAY).read_text("utf-8").splitlines()
    lines = [real_lines[(start + i) % len(real_lines)] for i in range(count)]
    for slot, at, op, value in edits:
        i = slot % len(lines)
        line = lines[i]
        lines[i] = value if op == "line" else line[:at] + value + line[at + (len(value) if op == "replace" else 0):]
    data = "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"
    if bad_bytes:
        data = data.replace(b"a", b"\xff", 1)
    with _tmp() as d:
        path = os.path.join(d, "ubuntu", *date.split("/"), "#kubuntu.txt")
        os.makedirs(os.path.dirname(path))
        Path(path).write_bytes(data)
        res = ingest_outcomes("irc", [path])
    # The reader's records are its non-blank lines (a BOM in front of the first does not count).
    raw = data.split(b"\n")
    raw[0] = raw[0][3:] if raw[0].startswith(b"\xef\xbb\xbf") else raw[0]
    expected = sum(1 for x in raw if x.rstrip(b"\r\n").strip()) or 1
    # A date folder that is no calendar date may set the whole file aside in one row.
    assert_one_outcome_each(res, expected, date != "2013/01/02" and date != "9999/12/31", set())


@settings(max_examples=150 * SCALE, **SETTINGS)
@given(picks=st.lists(st.integers(0, 10**6), max_size=3), cut=st.integers(0, 10**6), garbage=st.binary(max_size=64),
       zst=st.booleans())
def test_reddit_file_without_a_month_always_has_a_partition_and_ingest_agrees(real, picks, cut, garbage, zst):
    """build (through month_of_file) and ingest agree on any file, however broken: it has a month,
    and reading it yields at least one outcome (the file's quarantine row if nothing else)."""
    import zstandard

    from pipelines.core.partitions import UNDATED_MONTH, month_of_file

    pool = reddit_records()
    data = garbage + b"".join(dump(pool[p % len(pool)]) + b"\n" for p in picks)
    if zst:
        data = zstandard.ZstdCompressor().compress(data)
    data = data[: cut % (len(data) + 1)]  # cut anywhere, as an interrupted download is
    with _tmp() as d:
        path = os.path.join(d, "export.zst" if zst else "export.ndjson")
        Path(path).write_bytes(data)
        month = month_of_file(path)
        res = ingest_outcomes("reddit", [path])
    assert len(month) == 7 and month >= UNDATED_MONTH
    assert res.records >= 1
