"""Anonymise: `messages` -> `messages_anon`. Authors become keyed pseudonyms, mentions become
pseudonym tokens, other PII becomes typed placeholders. Fully offline.

* ``author_id`` -> ``u`` + 16 hex chars: the first 64 bits of HMAC-SHA256(secret,
  platform + "\\x1f" + native author id). Same secret -> same pseudonyms in every run;
  another secret -> unlinkable ones. ``author_name`` becomes null; ``recipient_ids`` are
  pseudonymised the same way.
* Mentions in ``text``, ``title`` and ``extra`` become ``<@u…>`` (see :func:`mention_rules`
  for exactly which forms and names count).
* Other PII (e-mail, phone, IP, card, IBAN, profile URL, person names with NER) becomes
  ``<EMAIL>``, ``<PHONE>``, … via Presidio (pipelines/core/pii.py), only on the messages the
  regex prefilter flags.
* ``pii_types`` lists one entry per replacement in ``title`` then ``text``: a placeholder
  type or ``MENTION``.
* Ids that would name a person (a Telegram personal chat's id is the peer's user id; Slack DMs;
  IRC query logs named after a nick) get that part keyed-hashed in ``message_id``,
  ``thread_id``, ``parent_id``, ``parent_inferred`` and ``community`` (:func:`hash_scoped_ids`);
  ``source_uri`` becomes a keyed hash of the file (:func:`source_key`): file names can name people.

Written once for both engines (see pipelines/engines): the per-record rules are Polars code
over one Arrow batch (:func:`anonymize_batch`), run through ``engine.map_batches`` (in
process on Polars, ``mapInArrow`` on Spark, one Presidio engine per Python process:
:func:`pii_engine`); the name and scope tables are counted by the engine from per-batch rows
and only their distinct rows are collected (:func:`build_name_table`, :func:`build_scope_table`);
each batch's counters come back on its first output row (:func:`anonymize_stats`).

The secret is read from ``ctx.secret()`` and never logged, written or returned; on Spark it
reaches the executors inside the task closure (like any UDF argument): run production
clusters with `spark.authenticate` and `spark.network.crypto.enabled`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import narwhals as nw
import polars as pl
import pyarrow as pa

from pipelines.core.pii import PREFILTER, PiiEngine
from pipelines.engines.workers import worker_state
from pipelines.core.settings import AnonymizeConfig  # the [anonymize] section, with every section in core/settings
from pipelines.core.results import StageResult
from schemas import ANON, RECORDS
from schemas import MESSAGES as M
from schemas.messages import ROLE_PLATFORMS
from schemas.placeholders import PSEUDONYM_HEX, PSEUDONYM_PREFIX, mention

MENTION_TYPE = "MENTION"

# Name-table columns (an internal table, not a stored one).
N_COMMUNITY, N_KEY, N_FIRST, N_PSEUDONYM, N_MENTIONABLE = "community", "key", "first_word", "pseudonym", "mentionable"

# Name-table rows are keyed by community; names looked for in every community of a platform
# (distinctive multi-word display names) are keyed by this marker + the platform instead.
PLATFORM_WIDE = "*"

# Conversation scopes inside structural ids, per id format (`telegram:<chat>`,
# `slack:<workspace>:<conversation>`, `irc:<network>/<channel>`); an id either is its scope
# (community, thread) or continues after it with `:` (message ids, day threads).
SCOPE_RE = r"^(telegram:-?\d+|slack:[^:]+:[^:]+|irc:[^:]+)(?::|$)"
# The id columns that carry a scope (and so may carry a person's id) from `messages_anon` on.
SCOPED_ID_COLUMNS = (M.message_id, M.thread_id, M.parent_id, M.parent_inferred, M.community)
# HMAC domain tags: one key, distinct inputs per kind of value, so a hashed scope or file can
# never equal an author pseudonym (those hash `platform \x1f id`, and no platform is named so).
SCOPE_TAG, SOURCE_TAG = "scope", "source_uri"
SOURCE_PREFIX = "src:"
HASHED_SCOPE_PREFIX = "p"

# Tokens already produced by anonymisation (placeholders, mention tokens): kept as they are.
_KEEP = r"<(?:[A-Z_]+|@" + PSEUDONYM_PREFIX + r"[0-9a-f]{" + str(PSEUDONYM_HEX) + r"})>"
# `u/name`, `/u/name` (Reddit) and `@name`; the look-behinds keep e-mail addresses and
# paths out.
_EXPLICIT = r"(?P<pre>(?<![\w/])/?u/|(?<![\w@+\-])@)(?P<h>\w[\w\-]*)"
# IRC-style addressing at the very start of a message: `nick: …` or `nick, …`.
_ADDRESS = r"\A(?P<a>[^\s:,<>@]+)(?=[:,](?:\s|\Z))"
# Polars (Rust regex) flag for rows that might hold an explicit mention.
_EXPLICIT_FLAG = r"(?:^|[^\w/])/?u/\w|(?:^|[^\w@+\-])@\w"
_WORD = r"\w+"
_JSON_ESCAPES = r"\\[nrtbf\"\\/]"


def pseudonym(secret: bytes, platform: str, author_id: str) -> str:
    """The author pseudonym: ``u`` + first 64 bits (16 hex) of HMAC-SHA256(secret, platform \\x1f id)."""
    digest = hmac.new(secret, f"{platform}\x1f{author_id}".encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX]


def pseudonym_expr(platform: pl.Expr, ids: pl.Expr, frame: pl.DataFrame, secret: bytes) -> pl.Series:
    """Pseudonyms for (platform, id) columns of ``frame``; HMAC runs once per distinct pair."""
    pairs = frame.select(platform.alias("p"), ids.alias("i"))
    uniq = pairs.unique().drop_nulls()
    # hmac needs Python: once per distinct author, not per message.
    table = uniq.with_columns(pl.Series("ps", [pseudonym(secret, p, i) for p, i in uniq.iter_rows()],
                                        dtype=pl.String))
    return pairs.join(table, on=["p", "i"], how="left", maintain_order="left")["ps"]


@lru_cache(maxsize=8)
def common_words(min_zipf: float) -> pl.Series:
    """English words (wordfreq's bundled `best` list, lower case) with a Zipf frequency of at least
    ``min_zipf``. One dictionary scan per threshold, kept as a Series so every `is_in` reuses it."""
    from wordfreq import get_frequency_dict

    floor = 10 ** (min_zipf - 9)  # Zipf = log10(frequency per billion words)
    return pl.Series("common", sorted(w for w, f in get_frequency_dict("en", wordlist="best").items() if f >= floor),
                     dtype=pl.String)


def is_mentionable(key: pl.Expr, cfg: AnonymizeConfig) -> pl.Expr:
    """Whether a lower-cased name may be replaced where it occurs as a plain word (the rule
    shared with the leak scanner): long enough, not all digits unless long, not a common
    English word (:func:`common_words` at ``cfg.common_word_zipf``), not an extra stopword."""
    digits = key.str.contains(r"^\d+$")
    return ((key.str.len_chars() >= cfg.min_name_length)
            & (~digits | (key.str.len_chars() >= cfg.min_numeric_id_length))
            & ~key.is_in(common_words(cfg.common_word_zipf).implode())
            & ~key.is_in(list(cfg.extra_stopwords)))


def is_platform_name(key: pl.Expr, cfg: AnonymizeConfig) -> pl.Expr:
    """Whether a lower-cased name is distinctive enough to be looked for in every community of its
    platform: two or more words separated by spaces, one of them rarer than ``cfg.platform_name_zipf``."""
    words = key.str.extract_all(r"\w+")
    rare = words.list.eval(~pl.element().is_in(common_words(cfg.platform_name_zipf).implode())).list.any()
    return key.str.contains(r"\w\s+\w") & (words.list.len() >= 2) & rare


def platform_scope(platform: pl.Expr | str) -> pl.Expr | str:
    """The name-table `community` under which a platform's platform-wide names sit."""
    return PLATFORM_WIDE + platform if isinstance(platform, str) else pl.lit(PLATFORM_WIDE) + platform


def mentionable(frame: pl.DataFrame, cfg: AnonymizeConfig) -> pl.Series:
    """:func:`is_mentionable` plus the community rule: a name that is a word of its community's
    name (a nick `ubuntu` in `#kubuntu` on `ubuntu`) is not replaced as a plain word, since the
    community's topic is said all the time. ``frame`` has columns community and key."""
    comm_words = (frame.select(N_COMMUNITY).unique()
                  .with_columns(pl.col(N_COMMUNITY).str.to_lowercase().str.extract_all(r"\w+").alias("_cw"))
                  .explode("_cw").drop_nulls("_cw").unique().with_columns(pl.lit(True).alias("_in")))
    in_comm = frame.join(comm_words, left_on=[N_COMMUNITY, N_KEY], right_on=[N_COMMUNITY, "_cw"], how="left",
                         maintain_order="left").select(pl.col("_in").fill_null(False))
    return frame.select(is_mentionable(pl.col(N_KEY), cfg)).to_series() & ~in_comm.to_series()


def author_keys(messages: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Every name by which text may refer to a known author: one row per message and name.

    Out: platform, community, author_id, key (lower-cased, stripped). Names are the
    ``author_name``, each of ``author_aliases`` and the native part of ``author_id`` (readers
    scope ids as ``<workspace>:<user>``; text can only show the native part). Authors on
    ``ROLE_PLATFORMS`` (game roles such as Diplomacy powers) have no names here: their names
    are game vocabulary, not personal data. The anonymiser and the leak scanner both use this,
    so what is replaced and what is checked are the same set.
    """
    lf = messages.lazy() if isinstance(messages, pl.DataFrame) else messages
    authors = lf.filter(pl.col(M.author_id).is_not_null() & ~pl.col(M.platform).is_in(list(ROLE_PLATFORMS)))
    base = authors.select(M.platform, M.community, M.author_id)
    parts = [base.with_columns(pl.col(M.author_id).str.split(":").list.last().alias(N_KEY)),
             authors.select(M.platform, M.community, M.author_id, pl.col(M.author_name).alias(N_KEY))]
    if M.author_aliases in lf.collect_schema().names():  # tables written before the column existed lack it
        parts.append(authors.select(M.platform, M.community, M.author_id,
                                    pl.col(M.author_aliases).alias(N_KEY)).explode(N_KEY))
    return (pl.concat(parts).with_columns(pl.col(N_KEY).str.strip_chars().str.to_lowercase())
        .filter(pl.col(N_KEY).str.len_chars() > 0).collect())


def build_name_table(messages, secret: bytes, cfg: AnonymizeConfig | None = None, engine=None) -> pl.DataFrame:
    """Per community, every known author name and handle -> that author's pseudonym (a Polars
    DataFrame, on either engine).

    In: a frame (native Polars or Spark, or narwhals with ``engine``) with ``platform``,
    ``community``, ``author_id``, ``author_name``, ``author_aliases``. :func:`author_keys` per
    batch; the engine counts rows per (platform, community, author, key), which shrinks the
    data to distinct names before any HMAC; pseudonyms per batch; the engine sums per
    (platform, community, key, pseudonym), and only those counts are collected for
    :func:`name_table_from_counts`.
    """
    from pipelines.engines import to_polars

    cfg = cfg or AnonymizeConfig()
    messages, engine = _frame(messages, engine)
    keys = engine.map_batches(messages.select(*_KEY_COLS), _author_key_batches, _KEYS)
    counted = keys.group_by(*_KEYS.names).agg(nw.len().cast(nw.Int64).alias("_n"))
    named = engine.map_batches(counted, functools.partial(_pseudonym_batches, secret), _COUNTED)
    sums = named.group_by(M.platform, M.community, N_KEY, N_PSEUDONYM).agg(nw.col("_n").sum().alias("n"))
    return name_table_from_counts(to_polars(sums).cast(_COUNT_SCHEMA).select(*_COUNT_SCHEMA), cfg)


def _frame(messages, engine=None):
    """(narwhals frame, engine) of a native Polars/Spark frame or of a narwhals one (its engine)."""
    from pipelines import engines

    if isinstance(messages, (nw.LazyFrame, nw.DataFrame)):
        frame = messages.lazy() if isinstance(messages, nw.DataFrame) else messages
        return frame, engine or engines.of(frame.to_native())
    return engines.frame(messages), engine or engines.of(messages)


_KEY_COLS = (M.platform, M.community, M.author_id, M.author_name, M.author_aliases)
_KEYS = pa.schema([pa.field(c, pa.string()) for c in (M.platform, M.community, M.author_id, N_KEY)])
_COUNTED = pa.schema([*_KEYS, pa.field("_n", pa.int64()), pa.field(N_PSEUDONYM, pa.string())])


def _author_key_batches(batches):
    """map_batches: message rows -> :func:`author_keys` of each batch."""
    for b in batches:
        if b.num_rows:
            yield from author_keys(pl.from_arrow(b)).to_arrow().to_batches()


def _pseudonym_batches(secret: bytes, batches):
    """map_batches: (platform, community, author_id, key, _n) -> the same rows plus the pseudonym."""
    for b in batches:
        if b.num_rows:
            df = pl.from_arrow(b)
            yield from df.with_columns(pseudonym_expr(pl.col(M.platform), pl.col(M.author_id), df, secret)
                                       .alias(N_PSEUDONYM)).to_arrow().to_batches()


_COUNT_SCHEMA = {M.platform: pl.String, M.community: pl.String, N_KEY: pl.String, N_PSEUDONYM: pl.String,
                 "n": pl.Int64}


def _winners(counts: pl.DataFrame, by: str) -> pl.DataFrame:
    return (counts.group_by(by, N_KEY, N_PSEUDONYM).agg(pl.col("n").sum())
            .sort([by, N_KEY, "n", N_PSEUDONYM], descending=[False, False, True, False])
            .unique([by, N_KEY], keep="first", maintain_order=True))


def name_table_from_counts(counts: pl.DataFrame, cfg: AnonymizeConfig) -> pl.DataFrame:
    """The name table from message counts per (platform, community, key, pseudonym, n); shared by
    the Polars and the Spark engine, so both give the same table.

    Out, sorted by community then key: community, key (lower-cased name), first_word (first
    ``\\w+`` run of key, for joins against text words), pseudonym, mentionable (see
    :func:`mentionable`). One row per (community, key): when one key names several authors the
    one with most messages wins (then the smaller pseudonym). Distinctive multi-word names
    (:func:`is_platform_name`) also get a row under ``platform_scope(platform)``, won the same
    way over the whole platform: a full name written in another community is that person too.
    """
    local = _winners(counts, M.community).select(pl.col(M.community).alias(N_COMMUNITY), N_KEY, N_PSEUDONYM)
    wide = (_winners(counts.filter(is_platform_name(pl.col(N_KEY), cfg)), M.platform)
            .select(platform_scope(pl.col(M.platform)).alias(N_COMMUNITY), N_KEY, N_PSEUDONYM))
    table = (pl.concat([local, wide]).sort(N_COMMUNITY, N_KEY)
             .select(N_COMMUNITY, N_KEY, pl.col(N_KEY).str.extract(r"(\w+)").alias(N_FIRST), N_PSEUDONYM))
    return table.with_columns(mentionable(table, cfg).alias(N_MENTIONABLE))


def _keyed_hex(secret: bytes, tag: str, value: str) -> str:
    return hmac.new(secret, f"{tag}\x1f{value}".encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def private_scope_candidates(messages: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The conversation scopes (see :data:`SCOPE_RE`) whose ids would name a person, one row each
    (column ``scope``). Row-local rules, so the union over batches is the answer for the whole input:

    * Telegram: ``telegram:<n>`` for every user id ``user<n>`` among authors and recipients (a
      personal or bot chat's id *is* the peer's user id), and every chat with recipients (the reader
      sets them only for personal and bot chats);
    * Slack: conversations with recipients (DMs, multi-person DMs: ``dms.json``/``mpims.json``) and
      ``mpdm-a--b--c-1`` folders (named after their members) even when unlisted;
    * IRC: logs whose channel has no channel sigil (``#&+!``): a private query, named after the nick.

    Discord DM ids are channel snowflakes (no user id); every other platform's ids embed no person.
    """
    lf = messages.lazy() if isinstance(messages, pl.DataFrame) else messages
    plat, rec = pl.col(M.platform), pl.col(M.recipient_ids)
    users = (lf.filter(plat == "telegram")
             .select(pl.concat_list(pl.col(M.author_id), rec.fill_null(pl.lit([], pl.List(pl.String)))).alias("_u"))
             .explode("_u").select((pl.lit("telegram:") + pl.col("_u").str.extract(r"^user(\d+)$")).alias("scope")))
    with_recipients = (lf.filter(plat.is_in(["telegram", "slack"]) & rec.is_not_null())
                       .select(pl.col(M.thread_id).str.extract(SCOPE_RE).alias("scope")))
    mpdm = lf.filter(plat == "slack").select(pl.col(M.thread_id).str.extract(r"^(slack:[^:]+:mpdm-[^:]+)").alias("scope"))
    query = lf.filter(plat == "irc").select(pl.col(M.community).str.extract(r"^(irc:[^/:]+/[^#&+!:][^:]*)$").alias("scope"))
    return pl.concat([users, with_recipients, mpdm, query]).drop_nulls().unique().sort("scope").collect()


def scope_table(candidates: pl.DataFrame, secret: bytes) -> pl.DataFrame:
    """Private scope -> its keyed replacement: the scope's last part (after the last `:` or `/`)
    becomes ``p`` + 16 hex of HMAC-SHA256(secret, "scope" \\x1f scope); the readable prefix
    (platform, Slack workspace, IRC network) stays, so ids still sort and group by platform."""
    scopes = candidates["scope"].unique().sort().to_list()
    hashed = [re.sub(r"[^:/]+$", HASHED_SCOPE_PREFIX + _keyed_hex(secret, SCOPE_TAG, s), s) for s in scopes]
    return pl.DataFrame({"scope": scopes, "hashed": hashed}, schema={"scope": pl.String, "hashed": pl.String})


def hash_scoped_ids(df: pl.DataFrame, scopes: pl.DataFrame) -> pl.DataFrame:
    """``df`` with the private scope inside every id of :data:`SCOPED_ID_COLUMNS` replaced by its
    keyed form (the rest of the id unchanged), so message, parent and thread ids stay consistent
    and joins downstream still work. Relational: one join per column, no Python per row."""
    cols = [c for c in SCOPED_ID_COLUMNS if c in df.columns]
    if scopes.height == 0 or not cols:
        return df
    exprs = []
    for col in cols:
        sc = df.select(pl.col(col).str.extract(SCOPE_RE).alias("scope"))
        rep = sc.join(scopes, on="scope", how="left", maintain_order="left")
        if rep["hashed"].null_count() == rep.height:
            continue
        exprs.append(pl.when(rep["hashed"].is_not_null())
                     .then(rep["hashed"] + pl.col(col).str.slice(rep["scope"].str.len_chars()))
                     .otherwise(pl.col(col)).alias(col))
    return df.with_columns(exprs) if exprs else df


def source_key(secret: bytes, source_uri: str) -> str:
    """``source_uri`` as stored from `messages_anon` on: ``src:`` + 16 hex of HMAC-SHA256(secret,
    "source_uri" \\x1f uri). File names can name a person (DiscordChatExporter names DM files after
    the other side); to find a row's file, hash the raw table's ``source_uri`` values and join."""
    return SOURCE_PREFIX + _keyed_hex(secret, SOURCE_TAG, source_uri)


def _hash_sources(df: pl.DataFrame, secret: bytes) -> pl.Series:
    uniq = df[M.source_uri].unique().drop_nulls()
    # hmac needs Python: once per distinct file, not per message.
    table = pl.DataFrame({"u": uniq, "k": [source_key(secret, u) for u in uniq.to_list()]},
                         schema={"u": pl.String, "k": pl.String})
    return df.select(pl.col(M.source_uri).alias("u")).join(table, on="u", how="left", maintain_order="left")["k"]


_SIMPLE = re.compile(r"\w+")
# Strings kept in the Presidio memo of one run before it is emptied (input + result, a few hundred
# bytes each for typical messages: ~100-200 MB at the cap).
PRESIDIO_MEMO_MAX = 200_000


@lru_cache(maxsize=1024)
def _mention_regex(complex_names: tuple[str, ...], words: bool = True) -> re.Pattern:
    # Names that are one \w+ run are matched by the generic word alternative `w` and looked up
    # in a set, so the common case needs no per-row regex; only names with other characters
    # (spaces, `-`, IRC brackets) get alternatives of their own (compiled once per name set).
    # Without one-word names to look for, `w` is left out: it only ever returned words
    # unchanged, and no other alternative can start inside a word (each needs a non-word
    # character before it or starts with one), so the matches are the same, minus a Python
    # callback per word.
    known = ""
    if complex_names:
        alts = "|".join(re.escape(c) for c in sorted(complex_names, key=lambda c: (-len(c), c)))
        known = (rf"|(?P<kpre>(?<![\w/])/?u/|(?<![\w@+\-])@)(?P<k>{alts})(?!\w)"
                 rf"|(?<!\w)(?P<n>{alts})(?!\w)")
    word = r"|(?<!\w)(?P<w>\w+)" if words else ""
    return re.compile(rf"(?P<keep>{_KEEP}){known}|{_EXPLICIT}|{_ADDRESS}{word}", re.IGNORECASE)


_ASCII = [chr(i) for i in range(128)]


@lru_cache(maxsize=65536)
def _ascii_foldable(name: str) -> bool:
    """Whether every character of ``name`` can match some ASCII character under ``re.I``
    (`ſ` can match `s`, `ಠ` matches nothing ASCII)."""
    return all(ch.isascii() or any(re.fullmatch(re.escape(ch), a, re.IGNORECASE) for a in _ASCII)
               for ch in name)


def mention_rules() -> str:
    """The mention rule, in words (also in docs/stages/anonymize.md)."""
    return ("explicit `u/name`, `/u/name`, `@name` always count (a name unknown in the community "
            "gets the pseudonym of that handle on the platform); `name:`/`name,` at the start of a message "
            "counts when the name is a known author of the community; plain whole-word occurrences count "
            "for known names that are mentionable (length, digits and word-frequency rule), in the author's "
            "communities, and for distinctive multi-word names in every community of the platform")


def _known(lookup: dict[tuple[str, str], str], community: str, platform: str, key: str) -> str | None:
    """The pseudonym of a known name: an author of this community first, else a platform-wide name."""
    return lookup.get((community, key)) or lookup.get((platform_scope(platform), key))


@lru_cache(maxsize=8192)
def _split_names(cands: tuple[str, ...]) -> tuple[frozenset, tuple, tuple, tuple, bool]:
    """A row's candidate names split as :func:`replace_mentions` uses them: (one-word names, the same
    sorted, the other names sorted, whether each of those is ASCII, whether every one-word name is
    ASCII). Rows of a community share their candidate tuple, so the split is made once per
    distinct tuple, not per row."""
    simple = frozenset(c for c in cands if _SIMPLE.fullmatch(c))
    complex_sorted = tuple(sorted(c for c in cands if c not in simple))
    return (simple, tuple(sorted(simple)), complex_sorted, tuple(c.isascii() for c in complex_sorted),
            all(c.isascii() for c in simple))


def replace_mentions(text: str, community: str, platform: str, cands: tuple[str, ...],
                     lookup: dict[tuple[str, str], str], secret: bytes) -> tuple[str, int]:
    """Replace mentions in one string (Python ``re`` with a callback: the replacement depends on
    a lookup). ``cands`` are the mentionable known names (lower case) whose first word occurs in it."""
    n = 0
    simple, simple_sorted, complex_sorted, complex_ascii, simple_ascii = _split_names(cands)
    # Only the multi-part names whose first word occurs here, and of those only the ones that
    # can match at all: for ASCII text and an ASCII name a case-insensitive match needs the
    # name as a substring of the lower-cased text (non-ASCII names are kept: `re.I` folds
    # e.g. `ſ` onto `s`). Most rows then share the one pattern with no name alternatives, so
    # the regex is compiled once per distinct set of names actually present, not per row.
    folded = text.lower() if text.isascii() else None
    # A name is dropped only when it certainly has no case-insensitive match in the (ASCII,
    # lower-cased) text: an ASCII name must be a substring; a name with a character that matches
    # no ASCII character cannot match at all; other non-ASCII names are kept (conservative).
    complex_names = (complex_sorted if folded is None
                     else tuple(c for c, asc in zip(complex_sorted, complex_ascii)
                                if (c in folded if asc else _ascii_foldable(c))))

    def sub(m: re.Match) -> str:
        nonlocal n
        # `w` (a plain word) is by far the most frequent match: test it first, by lastgroup
        # (the only group of its alternative), with no group look-ups for the common miss.
        if m.lastgroup == "w":
            w = m.group(0).lower()
            if w not in simple:
                return m.group(0)
            n += 1
            return mention(lookup[(community, w)])
        if m.group("keep") is not None:
            return m.group(0)
        if complex_names and (m.group("k") or m.group("n")) is not None:
            n += 1
            return mention(_known(lookup, community, platform, (m.group("k") or m.group("n")).lower()))
        if m.group("h") is not None:
            h = m.group("h")
            n += 1
            return mention(_known(lookup, community, platform, h.lower()) or pseudonym(secret, platform, h))
        ps = lookup.get((community, m.group("a").lower()))
        if ps is None:
            return m.group(0)
        n += 1
        return mention(ps)

    if simple and folded is not None and simple_ascii:
        hits = _name_hits(folded, tuple(c for c in simple_sorted if c in folded))
        rx = _mention_regex(complex_names, False)
        if not hits:
            return rx.sub(sub, text), n
        # For ASCII text and ASCII one-word names, the names are found by `str.find` instead of a
        # `w` alternative per word (a callback per word) or a pattern listing the names present
        # (compiled once per distinct set: 643 compiles, 1.0 s, on the planted 100k). The
        # scan is the regex's with the names as its last alternative `(?<!\w)(?P<w>name|...)(?!\w)`:
        # the leftmost match wins, and at one start the pattern's own alternatives come first. A
        # name of `\w` characters with `(?<!\w)`/`(?!\w)` around it spans exactly one word, which
        # for ASCII matches under `re.I` iff its `lower()` is the name.
        out, last, k, m = [], 0, 0, rx.search(text)
        while True:
            while k < len(hits) and hits[k][0] < last:
                k += 1
            if m is not None and m.start() < last:
                m = rx.search(text, last)
            if k < len(hits) and (m is None or hits[k][0] < m.start()):
                i, j = hits[k]
                out += (text[last:i], mention(lookup[(community, folded[i:j])]))
                n += 1
                last = j
            elif m is not None:
                out += (text[last:m.start()], sub(m))
                last = m.end()
            else:
                break
        out.append(text[last:])
        return "".join(out), n
    return _mention_regex(complex_names, bool(simple)).sub(sub, text), n


def _name_hits(folded: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    r"""(start, end) of each whole-word occurrence of the one-word ASCII ``names`` in the lower-cased
    ASCII ``folded``, in text order: what `(?<!\w)(?P<w>name|...)(?!\w)` matches. Whole words
    never overlap, so there is at most one hit per start."""
    hits = []
    size = len(folded)
    for name in names:
        i = folded.find(name)
        while i != -1:
            j = i + len(name)
            if (i == 0 or not _is_word(folded[i - 1])) and (j == size or not _is_word(folded[j])):
                hits.append((i, j))
            i = folded.find(name, j)  # one starting inside this one has a word character before it
    hits.sort()
    return hits


def _is_word(ch: str) -> bool:
    """`\\w` for one ASCII character."""
    return ch.isalnum() or ch == "_"


def replace_mentions_reference(text: str, community: str, platform: str, cands: tuple[str, ...],
                               lookup: dict[tuple[str, str], str], secret: bytes) -> tuple[str, int]:
    """The slow reference for :func:`replace_mentions`: one regex with a callback on every word
    and every name alternative, no ASCII shortcuts. Tests hold the fast path to it."""
    simple = {c for c in cands if _SIMPLE.fullmatch(c)}
    complex_names = tuple(sorted(c for c in cands if c not in simple))
    n = 0

    def sub(m: re.Match) -> str:
        nonlocal n
        if m.group("keep") is not None:
            return m.group(0)
        if complex_names and (m.group("k") or m.group("n")) is not None:
            n += 1
            return mention(_known(lookup, community, platform, (m.group("k") or m.group("n")).lower()))
        if m.group("h") is not None:
            n += 1
            h = m.group("h")
            return mention(_known(lookup, community, platform, h.lower()) or pseudonym(secret, platform, h))
        if m.group("a") is not None:
            ps = lookup.get((community, m.group("a").lower()))
            if ps is None:
                return m.group(0)
            n += 1
            return mention(ps)
        w = m.group("w").lower()
        if w not in simple:
            return m.group(0)
        n += 1
        return mention(lookup[(community, w)])

    return _mention_regex(complex_names, True).sub(sub, text), n


@dataclass
class _Ctx:
    secret: bytes
    engine: PiiEngine
    lookup: dict[tuple[str, str], str]
    stats: Counter = field(default_factory=Counter)
    presidio_memo: dict[str, tuple[str, list[str]]] = field(default_factory=dict)


def _anon_string(s: str, community: str, platform: str, cands: tuple[str, ...], pii: bool, c: _Ctx
                 ) -> tuple[str, list[str]]:
    types: list[str] = []
    if pii:
        c.stats["presidio_strings"] += 1
        # Same string, same result (the engine is deterministic): re-posts, cross-posts and a
        # title repeated in `extra` cost one Presidio call per batch.
        hit = c.presidio_memo.get(s)
        if hit is None:
            hit = c.presidio_memo[s] = c.engine.anonymize(s)
        s, types = hit
    s, n = replace_mentions(s, community, platform, cands, c.lookup, c.secret)
    return s, types + [MENTION_TYPE] * n


def _anon_json(value, community: str, platform: str, cands: tuple[str, ...], pii: bool, c: _Ctx):
    """Walk a decoded ``extra`` JSON value: a string equal to a known name becomes the bare
    pseudonym (it was a handle field); other strings and keys are anonymised like text."""
    if isinstance(value, str):
        ps = _known(c.lookup, community, platform, value.strip().lower())
        if ps is not None:
            c.stats["extra_handles"] += 1
            return ps
        out, types = _anon_string(value, community, platform, cands, pii, c)
        c.stats.update(f"extra_{t}" for t in types)
        return out
    if isinstance(value, list):
        return [_anon_json(v, community, platform, cands, pii, c) for v in value]
    if isinstance(value, dict):
        return {_anon_json(k, community, platform, cands, pii, c): _anon_json(v, community, platform, cands, pii, c)
                for k, v in value.items()}
    return value


def _rows_with(table: pl.DataFrame, col: str, values: pl.Series) -> pl.DataFrame:
    """The rows of ``table`` (sorted by ``col``, no nulls in it) whose ``col`` is one of ``values``:
    two binary searches per distinct value, so the cost grows with the values (a batch's words),
    not with the table (every known name of the corpus), and nothing is hashed per call."""
    v = values.drop_nulls().unique()
    s = table[col]
    lo, hi = s.search_sorted(v, side="left"), s.search_sorted(v, side="right")
    idx = pl.select(pl.int_ranges(lo, hi, dtype=pl.UInt32).explode().drop_nulls()).to_series()
    return table[idx.sort()]


@dataclass(frozen=True)
class NameIndex:
    """The name table as each batch reads it, built once per run (per Spark partition), so no
    batch pays for the corpus' names: before, each batch filtered the table to its communities,
    built a dict of it and one Aho-Corasick automaton over every first word per column (at 4M
    messages and 200k names, 1.2 s of a batch's 3.9 s; it grew with the corpus).

    ``lookup``: (community, key) -> pseudonym, every name. ``first_mentionable`` / ``first_all``:
    (community, first_word, key) sorted by first_word, the mentionable names and every name (the
    `extra` column looks for every key). ``keys``: (community, key) sorted by key.
    ``with_mentionable`` / ``with_names``: the communities (or platform scopes) that have any."""
    lookup: dict
    first_mentionable: pl.DataFrame
    first_all: pl.DataFrame
    keys: pl.DataFrame
    with_mentionable: list
    with_names: list

    @classmethod
    def of(cls, names: pl.DataFrame) -> "NameIndex":
        first = names.select(N_COMMUNITY, N_FIRST, N_KEY, N_MENTIONABLE).drop_nulls(N_FIRST).sort(N_FIRST, N_COMMUNITY, N_KEY)
        mentionable = first.filter(pl.col(N_MENTIONABLE)).drop(N_MENTIONABLE)
        return cls(dict(zip(zip(names[N_COMMUNITY].to_list(), names[N_KEY].to_list()), names[N_PSEUDONYM].to_list())),
                   mentionable, first.drop(N_MENTIONABLE), names.select(N_COMMUNITY, N_KEY).sort(N_KEY, N_COMMUNITY),
                   names.filter(pl.col(N_MENTIONABLE))[N_COMMUNITY].unique().to_list(),
                   names[N_COMMUNITY].unique().to_list())


def _flags(df: pl.DataFrame, col: str, names: NameIndex | pl.DataFrame, all_keys: bool, force_pii: bool,
           reference: bool = False) -> pl.DataFrame:
    """Per row of ``df``: whether ``col`` needs the Python pass, whether it needs Presidio, and
    the mentionable known names occurring in it as words (relational: words joined with names).
    ``reference=True`` is the plain reference (the words joined with the whole name table)."""
    index = names if isinstance(names, NameIndex) else NameIndex.of(names)
    text = pl.col(col)
    if col == M.extra:  # look through JSON escapes so `\\nBob` still shows the word Bob
        text = text.str.replace_all(_JSON_ESCAPES, " ")
    base = df.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), pl.col(M.community),
                     platform_scope(pl.col(M.platform)).alias("_scope"), text.alias("_t"))
    pii = pl.lit(True) if force_pii else pl.col("_t").str.contains(PREFILTER).fill_null(False)
    explicit = pl.col("_t").str.contains(_EXPLICIT_FLAG).fill_null(False)
    flags = base.select("_row", pii.alias("_pii"), explicit.alias("_explicit"),
                        pl.col("_t").str.extract(r"^([^\s:,<>@]+)[:,](?:\s|$)").str.to_lowercase().alias("_addr"))
    first = index.first_all if all_keys else index.first_mentionable
    with_names = index.with_names if all_keys else index.with_mentionable
    # Only rows of communities (or platforms, for platform-wide names) that have names to find
    # are split into words (Diplomacy, the bulk of some corpora, has none: ROLE_PLATFORMS), the
    # rest cannot join anyway.
    words = (base.filter(pl.col(M.community).is_in(with_names) | pl.col("_scope").is_in(with_names))
             .select("_row", M.community, "_scope", pl.col("_t").str.to_lowercase().str.extract_all(_WORD).alias("_w"))
             .explode("_w"))
    # The names whose first word is a word of this batch, found by binary search in the sorted
    # first words (:func:`_rows_with`): the joins below then build on those few rows, not on
    # every name of the corpus. The reference joins the whole table; the result is the same.
    if not reference:
        first = _rows_with(first, N_FIRST, words["_w"])
    # Join first, then de-duplicate: the join keeps only the few words that start a known
    # name, so the unique runs on those instead of on every word of every message.
    first = first.select(N_COMMUNITY, N_FIRST, N_KEY)
    hits = (pl.concat([words.join(first, left_on=[M.community, "_w"], right_on=[N_COMMUNITY, N_FIRST]),
                       words.join(first, left_on=["_scope", "_w"], right_on=[N_COMMUNITY, N_FIRST])])
            .group_by("_row").agg(pl.col(N_KEY).unique().sort().alias("_cands")))
    keys = index.keys if reference else _rows_with(index.keys, N_KEY, flags["_addr"])
    addr = (base.select("_row", M.community).join(flags.select("_row", "_addr"), on="_row")
            .join(keys, left_on=[M.community, "_addr"], right_on=[N_COMMUNITY, N_KEY],
                  how="semi").select("_row", pl.lit(True).alias("_addr_hit")))
    out = (flags.join(hits, on="_row", how="left").join(addr, on="_row", how="left")
           .with_columns(pl.col("_addr_hit").fill_null(False)).sort("_row"))
    return out.with_columns(
        (pl.col("_pii") | pl.col("_explicit") | pl.col("_addr_hit") | pl.col("_cands").is_not_null()).alias("_todo"))


def _anonymize(df: pl.DataFrame, names: NameIndex | pl.DataFrame, scopes: pl.DataFrame, secret: bytes, engine: PiiEngine,
               cfg: AnonymizeConfig, presidio_memo: dict | None = None) -> tuple[pl.DataFrame, Counter]:
    index = names if isinstance(names, NameIndex) else NameIndex.of(names)
    c = _Ctx(secret, engine, index.lookup)
    if presidio_memo is not None:  # shared by the batches of one run: re-posts across batches too
        c.presidio_memo = presidio_memo
    force = engine.needs_all_messages
    new_cols, types_by_row = {}, {}
    for col in (M.title, M.text, M.extra):
        fl = _flags(df, col, index, all_keys=(col == M.extra), force_pii=force)
        todo = fl.filter(pl.col("_todo"))
        c.stats[f"{col}_rows_flagged"] += todo.height
        # Python per flagged row: Presidio and callback-driven replacement need it; most rows are not
        # flagged, and only the flagged rows' values leave Arrow (gathered, then scattered back).
        c.stats[f"{col}_presidio_rows"] += int(todo["_pii"].sum())
        rows = todo["_row"]
        values = df[col].gather(rows).to_list()
        communities, platforms = df[M.community].gather(rows).to_list(), df[M.platform].gather(rows).to_list()
        for i, (row, pii, cands) in enumerate(zip(rows.to_list(), todo["_pii"].to_list(), todo["_cands"].to_list())):
            v = values[i]
            if v is None:
                continue
            cands_t = tuple(cands or ())
            if col == M.extra:
                try:
                    decoded = json.loads(v)
                except ValueError:
                    # Not JSON (a reader bug): anonymise it as text rather than leak or drop it.
                    c.stats["extra_not_json"] += 1
                    values[i], _ = _anon_string(v, communities[i], platforms[i], cands_t, pii, c)
                    continue
                values[i] = json.dumps(_anon_json(decoded, communities[i], platforms[i], cands_t, pii, c),
                                       ensure_ascii=False, separators=(",", ":"))
            else:
                values[i], types = _anon_string(v, communities[i], platforms[i], cands_t, pii, c)
                if types:  # title types first, then text (the column order of this loop)
                    types_by_row.setdefault(row, []).extend(types)
        new_col = df[col].clone()
        if len(rows):
            new_col.scatter(rows, pl.Series(values, dtype=pl.String))
        new_cols[col] = new_col
    for ts in types_by_row.values():
        c.stats.update(ts)
    # Built from one flat list and offsets (Arrow), not from a list of lists: Polars would convert
    # each inner list on its own.
    offsets = [0]
    for ts in types_by_row.values():
        offsets.append(offsets[-1] + len(ts))
    flat = pa.array([t for ts in types_by_row.values() for t in ts], pa.string())
    typed = pl.DataFrame({"_row": pl.Series(list(types_by_row), dtype=pl.UInt32),
                          ANON.pii_types: pl.from_arrow(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat))})
    pii_types = (df.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))
                 .join(typed, on="_row", how="left", maintain_order="left")[ANON.pii_types]
                 .fill_null(pl.lit([], dtype=pl.List(pl.String))))
    rec = (df.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), M.platform, M.recipient_ids)
           .explode(M.recipient_ids))
    rec = rec.with_columns(pseudonym_expr(pl.col(M.platform), pl.col(M.recipient_ids), rec, secret)
                           .alias(M.recipient_ids))
    rec = rec.group_by("_row", maintain_order=True).agg(pl.col(M.recipient_ids).drop_nulls())
    had_recipients = df[M.recipient_ids].is_not_null()
    out = df.with_columns(
        pseudonym_expr(pl.col(M.platform), pl.col(M.author_id), df, secret).alias(M.author_id),
        pl.lit(None, dtype=pl.String).alias(M.author_name),
        pl.lit(None, dtype=pl.List(pl.String)).alias(M.author_aliases),
        pl.when(had_recipients).then(rec.sort("_row")[M.recipient_ids]).otherwise(None).alias(M.recipient_ids),
        *new_cols.values(),
        pii_types,
        _hash_sources(df, secret).alias(M.source_uri),
    )
    return hash_scoped_ids(out, scopes), c.stats


def anonymize_batch(batch: pa.RecordBatch | pa.Table, names: pl.DataFrame, secret: bytes,
                    cfg: AnonymizeConfig, engine: PiiEngine | None = None,
                    scopes: pl.DataFrame | None = None) -> pa.RecordBatch:
    """Anonymise one Arrow batch of ``messages`` rows into ``messages_anon`` rows (same order).

    ``names`` comes from :func:`build_name_table` and ``scopes`` from :func:`scope_table` of
    :func:`private_scope_candidates`, both over the whole input (so a name is known in every
    batch of its community, and a reply in one batch to a private chat seen in another gets the
    same hashed id). ``scopes=None`` derives them from this batch alone: right only when the
    batch is the whole input. Pure per batch; the stage runs the same rules per batch through
    ``engine.map_batches`` (:func:`anonymize_frame`).
    """
    engine = engine or pii_engine(cfg)
    df = pl.from_arrow(batch)
    if scopes is None:
        scopes = scope_table(private_scope_candidates(df), secret)
    out, _ = _anonymize(df, names, scopes, secret, engine, cfg)
    batches = ANON.conform(out.to_arrow()).combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=ANON.arrow)


# One Presidio engine per Python process and config (building one takes seconds): the Polars
# engine's process, each Spark Python worker. Reached only from module-level functions, so it
# is never shipped with a task.
_PII_ENGINES: dict[tuple, PiiEngine] = {}


def pii_engine(cfg: AnonymizeConfig) -> PiiEngine:
    """This process's Presidio engine for ``cfg`` (built on first use)."""
    key = (cfg.presidio_score_threshold, cfg.spacy_model)
    if key not in _PII_ENGINES:
        _PII_ENGINES[key] = PiiEngine(cfg.presidio_score_threshold, cfg.spacy_model)
    return _PII_ENGINES[key]


_SCOPE_COLS = (M.platform, M.community, M.thread_id, M.author_id, M.recipient_ids)
_SCOPES = pa.schema([pa.field("scope", pa.string())])
# Per batch, its counters (JSON) ride on the batch's first output row; null on the others.
_STATS = "_batch_stats"
# ... with the Presidio engine's summary under this key: the process that collects the counts
# (the build's, Spark's driver) need not build an engine of its own, nor import Presidio.
_PII_SUMMARY = "_pii"
# The input's `message_id`, the output's sort key: hashing a private scope changes a message's
# id, and the table keeps the input's order (`messages` is sorted by its ids).
_INPUT_ID = "_input_message_id"
_ANON_OUT = pa.schema([*ANON.arrow, pa.field(_STATS, pa.string()), pa.field(_INPUT_ID, pa.string())])
_COLUMNS = (M.title, M.text, M.extra)


def _scope_batches(batches):
    """map_batches: message rows -> :func:`private_scope_candidates` of each batch."""
    for b in batches:
        if b.num_rows:
            yield from private_scope_candidates(pl.from_arrow(b)).to_arrow().to_batches()


def build_scope_table(messages, secret: bytes, engine=None) -> pl.DataFrame:
    """:func:`scope_table` of the whole input: the row-local candidates per batch, made distinct
    by the engine; only the distinct scopes are collected and hashed."""
    from pipelines.engines import to_polars

    messages, engine = _frame(messages, engine)
    cands = engine.map_batches(messages.select(*_SCOPE_COLS), _scope_batches, _SCOPES).unique()
    return scope_table(to_polars(cands).cast({"scope": pl.String}), secret)


def _anonymize_batches(names: pl.DataFrame, scopes: pl.DataFrame, secret: bytes, cfg: AnonymizeConfig, batches):
    """map_batches: `messages` rows -> `messages_anon` rows (same order) plus :data:`_STATS`; the
    Presidio memo is shared by the batches of one call (one Spark partition, or the whole run on
    Polars), bounded by :data:`PRESIDIO_MEMO_MAX`."""
    # In a worker process (the Polars engine's `processes`), one call per batch: the index and the
    # memo are kept across the calls; in this process, per call, as before.
    index, memo = worker_state(names, lambda: (NameIndex.of(names), {}))
    engine = pii_engine(cfg)
    for b in batches:
        if not b.num_rows:
            continue
        if len(memo) > PRESIDIO_MEMO_MAX:  # bounded memory on inputs of any size
            memo.clear()
        out, stats = _anonymize(pl.from_arrow(b), index, scopes, secret, engine, cfg, memo)
        stats["messages_with_replacements"] += int((out[ANON.pii_types].list.len() > 0).sum())
        table = ANON.conform(out.to_arrow()).combine_chunks()
        table = (table.append_column(_STATS, pa.array([json.dumps({**stats, _PII_SUMMARY: engine.summary()},
                                                                   sort_keys=True)]
                                                       + [None] * (table.num_rows - 1), pa.string()))
                 .append_column(_INPUT_ID, b.column(M.message_id).cast(pa.string())))
        yield from table.to_batches()


def anonymize_frame(messages: nw.LazyFrame, secret: bytes, cfg: AnonymizeConfig, engine
                    ) -> tuple[nw.LazyFrame, pl.DataFrame, pl.DataFrame]:
    """`messages` rows in; (`messages_anon` rows with :data:`_STATS`, the name table, the scope
    table) out. The two tables are built over the whole input and shipped with the per-batch
    function (Spark broadcasts a large one); :func:`anonymize_batch`'s rules run per batch."""
    names = build_name_table(messages, secret, cfg, engine)
    scopes = build_scope_table(messages, secret, engine)
    out = engine.map_batches(messages.select(*RECORDS.names),
                             functools.partial(_anonymize_batches, names, scopes, secret, cfg), _ANON_OUT,
                             batch_rows=cfg.batch_rows, processes=cfg.processes)
    return out, names, scopes


def anonymize_stats(messages: nw.LazyFrame, out: nw.LazyFrame, names: pl.DataFrame, scopes: pl.DataFrame,
                    cfg: AnonymizeConfig) -> dict:
    """The summary, from aggregates only: input counts by the engine, the per-batch counters
    (one row per batch), the two (driver-side) tables.

    Counts: rows_in, rows_out (equal: nothing is dropped), replacements by type, rows sent to
    Presidio, rows flagged per column, authors pseudonymised, names known (and platform-wide),
    private scopes hashed, and which recognizers were active. Never contains the secret.
    """
    from pipelines.engines import to_polars

    rows_in = int(to_polars(messages.select(nw.len().alias("n")))["n"][0])
    authors = int(to_polars(messages.filter(~nw.col(M.author_id).is_null())
                            .select(nw.col(M.author_id).n_unique().alias("n")))["n"][0] or 0)
    per_batch = to_polars(out.filter(~nw.col(_STATS).is_null()).select(_STATS))
    rows_out = int(to_polars(out.select(nw.len().alias("n")))["n"][0])
    stats: Counter = Counter()
    pii = None
    for s in per_batch[_STATS].to_list():
        batch = json.loads(s)
        pii = batch.pop(_PII_SUMMARY, None) or pii
        stats.update(batch)
    replaced = {k: v for k, v in sorted(stats.items())
                if k.isupper() or (k.startswith("extra_") and k[6:].isupper()) or k == "extra_handles"}
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "dropped": {},
        "authors": authors,
        "names_known": names.height,
        "names_mentionable": int(names[N_MENTIONABLE].sum()) if names.height else 0,
        "names_platform_wide": int(names[N_COMMUNITY].str.starts_with(PLATFORM_WIDE).sum()) if names.height else 0,
        # private-scope table rows (every Telegram user id is one: it is the id of a personal chat with them)
        "private_scopes": scopes.height,
        "presidio_rows": {c: stats[f"{c}_presidio_rows"] for c in _COLUMNS},
        "presidio_strings": stats["presidio_strings"],
        # share of messages whose text went through Presidio (the prefilter's hit rate)
        "presidio_rate": round(stats[f"{M.text}_presidio_rows"] / max(rows_in, 1), 4),
        "rows_flagged": {c: stats[f"{c}_rows_flagged"] for c in sorted(_COLUMNS)},
        "replacements": replaced,
        "messages_with_replacements": stats["messages_with_replacements"],
        "pii": pii if pii is not None else pii_engine(cfg).summary(),  # no batch (an empty input): built here
    }


def anonymize_messages(messages, secret: bytes, cfg: AnonymizeConfig | None = None,
                       pii: PiiEngine | None = None):
    """Anonymise a whole native ``messages`` frame, Polars or Spark (the same rules and counts:
    see :func:`anonymize_stats`). Out: (`messages_anon` rows, summary): a Polars DataFrame in
    input order, or a cached Spark DataFrame in no order. ``pii``: the Presidio engine to use
    in this process for ``cfg`` (Spark workers build their own)."""
    cfg = cfg or AnonymizeConfig()
    if pii is not None:
        _PII_ENGINES[(cfg.presidio_score_threshold, cfg.spacy_model)] = pii
    frame, engine = _frame(messages)
    out, names, scopes = anonymize_frame(frame, secret, cfg, engine)
    with engine.held(out) as df:
        summary = anonymize_stats(frame, df, names, scopes, cfg)
        native = df.drop(_STATS, _INPUT_ID).to_native()
        native = native.collect() if isinstance(native, pl.LazyFrame) else native.cache()
    return native, summary


def run(ctx, engine=None) -> StageResult:
    """Read `messages`, write `messages_anon` in the input's `message_id` order (ids of private
    scopes change, their rows keep their place); return the counts (see
    :func:`anonymize_stats`; its ``dropped`` stays a figure, the JSON summary's older name for
    ``dropped_by_reason``). ``engine``: the run's (:func:`pipelines.engines.for_run`) by default."""
    from pipelines import engines

    engine = engine or engines.for_run(ctx)
    cfg = ctx.config.section(AnonymizeConfig)
    secret = ctx.secret()  # raises MissingSecretError with what to do
    with engine.held(engine.scan(ctx.config.table_url(RECORDS.name), RECORDS)) as messages:
        out, names, scopes = anonymize_frame(messages, secret, cfg, engine)
        with engine.held(out) as df:
            summary = anonymize_stats(messages, df, names, scopes, cfg)
            # Polars keeps the input's order (one partition, batches in turn): no sort, which would
            # hold the whole table; Spark's rows come in no order.
            ordered = df if engine.in_order(df, _INPUT_ID) else df.sort(_INPUT_ID)
            engine.write(ordered.drop(_STATS, _INPUT_ID), ctx.config.table_url(ANON.name), ANON)
    ctx.log.info("anonymize: %d rows, %d strings sent to Presidio, recognizers %s", summary["rows_out"],
                 summary["presidio_strings"], ", ".join(summary["pii"]["recognizers"]))
    return StageResult.from_summary("anonymize", summary)
