"""Anonymise: `messages` -> `messages_anon`. Authors become keyed pseudonyms, mentions become
pseudonym tokens, other PII becomes typed placeholders. Fully offline.

* ``author_id`` -> ``u`` + 16 hex chars: the first 64 bits of HMAC-SHA256(secret,
  platform + "\\x1f" + native author id). Same secret -> same pseudonyms in every run;
  another secret -> unlinkable ones. ``author_name`` becomes null; ``recipient_ids`` are
  pseudonymised the same way.
* Mentions in ``text``, ``title`` and ``extra`` become ``<@u…>`` (see :func:`mention_rules`
  for exactly which forms and names count).
* Other PII (e-mail, phone, IP, card, IBAN, profile URL, person names with NER) becomes
  ``<EMAIL>``, ``<PHONE>``, … via Presidio (pipelines/pii.py), only on the messages the
  regex prefilter flags.
* ``pii_types`` lists one entry per replacement in ``title`` then ``text``: a placeholder
  type or ``MENTION``.

The secret is read from ``ctx.secret()`` and never logged, written or returned.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import polars as pl
import pyarrow as pa

from pipelines import storage
from pipelines.pii import PREFILTER, PiiEngine
from schemas import ANON, RECORDS
from schemas import MESSAGES as M
from schemas.messages import ROLE_PLATFORMS
from schemas.placeholders import PSEUDONYM_HEX, PSEUDONYM_PREFIX, mention

MENTION_TYPE = "MENTION"

# Name-table columns (an internal table, not a stored one).
N_COMMUNITY, N_KEY, N_FIRST, N_PSEUDONYM, N_MENTIONABLE = "community", "key", "first_word", "pseudonym", "mentionable"

# Plain (un-prefixed) occurrences of these words are never taken as mentions, even when an
# author is called that: they are common English and chat words, and handles equal to
# them ("the", "help", "admin", "lol") would otherwise turn ordinary text into tokens.
# Explicit forms (`@help`, `u/help`, `help: …` addressing) still count.
STOPWORDS = frozenset("""
a about above after again against all also am an and any anyone anything are around as at away back
be because been before being below best better between both bot but by can cannot come could day did
do does doing done down during each else even ever every few first for free from fun further get
give go going good got great guy guys had has have having he hello help her here hers herself hey hi
him himself his home how however i if in info into is it its itself just know last least left let
lets like little lol long look lot love made make man many may me mean might mine more most much must
my myself need never new news next nice night no nobody none nor not nothing now of off ok okay old
on once one only or other our ours ourselves out over own people please post really right same say
see she should since so some someone something still such sure take tell than thank thanks that the
their theirs them themselves then there these they thing think this those though through time to
today too true under until up us use user very want was way we well were what when where which while
who whom why will with without work would yes yet you your yours yourself yourselves admin guest
root test anonymous deleted unknown system channel everyone here moderator mod bug code data
year years world life game play player team war peace north south east west
""".split())

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


@dataclass(frozen=True)
class AnonymizeConfig:
    """The `[anonymize]` config section.

    demo_secret: a fixed pseudonym key for the demo configuration only (labelled as such);
        real builds take the key from $SOCIALCORPUS_SECRET or the Dagster resource.
    spacy_model: installed spaCy pipeline name enabling PERSON detection (None: no NER).
    presidio_score_threshold: minimum Presidio score to replace a span (phones score 0.4).
    min_name_length: shortest display name / handle replaced where it occurs as a plain word.
    min_numeric_id_length: shortest all-digit author id replaced as a plain word.
    extra_stopwords: more words never taken as plain-name mentions.
    batch_rows: rows per Arrow batch handed to :func:`anonymize_batch`.
    """

    demo_secret: str | None = None
    spacy_model: str | None = None
    presidio_score_threshold: float = 0.35
    min_name_length: int = 3
    min_numeric_id_length: int = 6
    extra_stopwords: tuple[str, ...] = ()
    batch_rows: int = 50_000

    def __post_init__(self):
        object.__setattr__(self, "extra_stopwords", tuple(w.lower() for w in self.extra_stopwords))
        if self.min_name_length < 1 or self.min_numeric_id_length < 1:
            raise ValueError("min_name_length and min_numeric_id_length must be >= 1")

    def __repr__(self) -> str:  # never show the demo secret in logs or errors
        return (f"AnonymizeConfig(spacy_model={self.spacy_model!r}, presidio_score_threshold="
                f"{self.presidio_score_threshold}, min_name_length={self.min_name_length}, demo_secret="
                f"{'<set>' if self.demo_secret else None})")


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


def is_mentionable(key: pl.Expr, cfg: AnonymizeConfig) -> pl.Expr:
    """Whether a lower-cased name may be replaced where it occurs as a plain word (the rule
    shared with the leak scanner): long enough, not all digits unless long, not a stopword."""
    stop = sorted(STOPWORDS | set(cfg.extra_stopwords))
    digits = key.str.contains(r"^\d+$")
    return ((key.str.len_chars() >= cfg.min_name_length)
            & (~digits | (key.str.len_chars() >= cfg.min_numeric_id_length))
            & ~key.is_in(stop))


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


def build_name_table(messages: pl.DataFrame | pl.LazyFrame, secret: bytes,
                     cfg: AnonymizeConfig | None = None) -> pl.DataFrame:
    """Per community, every known author name and handle -> that author's pseudonym.

    In: rows with ``platform``, ``community``, ``author_id``, ``author_name``. Out: columns
    community, key (lower-cased author_name or author_id), first_word (first ``\\w+`` run of
    key, for joins against text words), pseudonym, mentionable (see :func:`is_mentionable`).
    When one key names several authors in a community, the author with most messages wins
    (then the smaller pseudonym), so the table is deterministic.
    """
    cfg = cfg or AnonymizeConfig()
    keys = author_keys(messages)
    if keys.height == 0:
        return pl.DataFrame(schema={N_COMMUNITY: pl.String, N_KEY: pl.String, N_FIRST: pl.String,
                                    N_PSEUDONYM: pl.String, N_MENTIONABLE: pl.Boolean})
    keys = keys.with_columns(
        pseudonym_expr(pl.col(M.platform), pl.col(M.author_id), keys, secret).alias(N_PSEUDONYM))
    table = (keys.group_by(M.community, N_KEY, N_PSEUDONYM).agg(pl.len().alias("n"))
             .sort([M.community, N_KEY, "n", N_PSEUDONYM], descending=[False, False, True, False])
             .unique([M.community, N_KEY], keep="first", maintain_order=True)
             .select(pl.col(M.community).alias(N_COMMUNITY), N_KEY,
                     pl.col(N_KEY).str.extract(r"(\w+)").alias(N_FIRST), N_PSEUDONYM))
    return table.with_columns(mentionable(table, cfg).alias(N_MENTIONABLE))


_SIMPLE = re.compile(r"\w+")


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


def _may_occur(name: str, folded_ascii_text: str) -> bool:
    """False only when ``name`` certainly has no case-insensitive match in the (ASCII,
    lower-cased) text: an ASCII name must be a substring; a name with a character that
    matches no ASCII character cannot match at all; others are kept (conservative)."""
    if name.isascii():
        return name in folded_ascii_text
    return _ascii_foldable(name)


def mention_rules() -> str:
    """The mention rule, in words (also in docs/stages/anonymize.md)."""
    return ("explicit `u/name`, `/u/name`, `@name` always count (a name unknown in the community "
            "gets the pseudonym of that handle on the platform); `name:`/`name,` at the start of a message "
            "counts when the name is a known author of the community; plain whole-word occurrences count "
            "for known names that are mentionable (length, digits and stopword rule)")


def replace_mentions(text: str, community: str, platform: str, cands: tuple[str, ...],
                     lookup: dict[tuple[str, str], str], secret: bytes) -> tuple[str, int]:
    """Replace mentions in one string (Python ``re`` with a callback: the replacement depends on
    a lookup). ``cands`` are the mentionable known names (lower case) whose first word occurs in it."""
    n = 0
    simple = {c for c in cands if _SIMPLE.fullmatch(c)}
    # Only the multi-part names whose first word occurs here, and of those only the ones that
    # can match at all: for ASCII text and an ASCII name a case-insensitive match needs the
    # name as a substring of the lower-cased text (non-ASCII names are kept: `re.I` folds
    # e.g. `ſ` onto `s`). Most rows then share the one pattern with no name alternatives, so
    # the regex is compiled once per distinct set of names actually present, not per row.
    folded = text.lower() if text.isascii() else None
    complex_names = tuple(sorted(c for c in cands if c not in simple
                                 and (folded is None or _may_occur(c, folded))))

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
            return mention(lookup[(community, (m.group("k") or m.group("n")).lower())])
        if m.group("h") is not None:
            h = m.group("h")
            n += 1
            return mention(lookup.get((community, h.lower())) or pseudonym(secret, platform, h))
        ps = lookup.get((community, m.group("a").lower()))
        if ps is None:
            return m.group(0)
        n += 1
        return mention(ps)

    return _mention_regex(complex_names, bool(simple)).sub(sub, text), n


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
        ps = c.lookup.get((community, value.strip().lower()))
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


def _flags(df: pl.DataFrame, col: str, names: pl.DataFrame, all_keys: bool, force_pii: bool) -> pl.DataFrame:
    """Per row of ``df``: whether ``col`` needs the Python pass, whether it needs Presidio, and
    the mentionable known names occurring in it as words (relational: words joined with names)."""
    text = pl.col(col)
    if col == M.extra:  # look through JSON escapes so `\\nBob` still shows the word Bob
        text = text.str.replace_all(_JSON_ESCAPES, " ")
    base = df.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), pl.col(M.community), text.alias("_t"))
    pii = pl.lit(True) if force_pii else pl.col("_t").str.contains(PREFILTER).fill_null(False)
    explicit = pl.col("_t").str.contains(_EXPLICIT_FLAG).fill_null(False)
    flags = base.select("_row", pii.alias("_pii"), explicit.alias("_explicit"),
                        pl.col("_t").str.extract(r"^([^\s:,<>@]+)[:,](?:\s|$)").str.to_lowercase().alias("_addr"))
    nm = names if all_keys else names.filter(pl.col(N_MENTIONABLE))
    # Only rows of communities that have names to find are split into words (Diplomacy, the
    # bulk of some corpora, has none: ROLE_PLATFORMS), the rest cannot join anyway.
    words = (base.join(nm.select(pl.col(N_COMMUNITY).unique()), left_on=M.community, right_on=N_COMMUNITY,
                       how="semi")
             .select("_row", M.community, pl.col("_t").str.to_lowercase().str.extract_all(_WORD).alias("_w"))
             .explode("_w"))
    # Join first, then de-duplicate: the join keeps only the few words that start a known
    # name, so the unique runs on those instead of on every word of every message.
    hits = (words.join(nm.select(N_COMMUNITY, N_FIRST, N_KEY), left_on=[M.community, "_w"],
                       right_on=[N_COMMUNITY, N_FIRST], how="inner")
            .group_by("_row").agg(pl.col(N_KEY).unique().sort().alias("_cands")))
    addr = (base.select("_row", M.community).join(flags.select("_row", "_addr"), on="_row")
            .join(names.select(N_COMMUNITY, N_KEY), left_on=[M.community, "_addr"], right_on=[N_COMMUNITY, N_KEY],
                  how="semi").select("_row", pl.lit(True).alias("_addr_hit")))
    out = (flags.join(hits, on="_row", how="left").join(addr, on="_row", how="left")
           .with_columns(pl.col("_addr_hit").fill_null(False)).sort("_row"))
    return out.with_columns(
        (pl.col("_pii") | pl.col("_explicit") | pl.col("_addr_hit") | pl.col("_cands").is_not_null()).alias("_todo"))


def _anonymize(df: pl.DataFrame, names: pl.DataFrame, secret: bytes, engine: PiiEngine,
               cfg: AnonymizeConfig) -> tuple[pl.DataFrame, Counter]:
    c = _Ctx(secret, engine, {})
    comms = df.select(pl.col(M.community).unique())
    nb = names.join(comms, left_on=N_COMMUNITY, right_on=M.community, how="semi")
    c.lookup = dict(zip(zip(nb[N_COMMUNITY].to_list(), nb[N_KEY].to_list()), nb[N_PSEUDONYM].to_list()))
    force = engine.needs_all_messages
    communities, platforms = df[M.community].to_list(), df[M.platform].to_list()
    new_cols, types_by_col = {}, {}
    for col in (M.title, M.text, M.extra):
        values = df[col].to_list()
        fl = _flags(df, col, nb, all_keys=(col == M.extra), force_pii=force)
        todo = fl.filter(pl.col("_todo"))
        types: list[list[str]] = [[] for _ in range(df.height)]
        c.stats[f"{col}_rows_flagged"] += todo.height
        # Python per flagged row: Presidio and callback-driven replacement need it; most rows are not flagged.
        c.stats[f"{col}_presidio_rows"] += int(todo["_pii"].sum())
        for row, pii, cands in zip(todo["_row"].to_list(), todo["_pii"].to_list(), todo["_cands"].to_list()):
            v = values[row]
            if v is None:
                continue
            cands_t = tuple(cands or ())
            if col == M.extra:
                try:
                    decoded = json.loads(v)
                except ValueError:
                    # Not JSON (a reader bug): anonymise it as text rather than leak or drop it.
                    c.stats["extra_not_json"] += 1
                    values[row], _ = _anon_string(v, communities[row], platforms[row], cands_t, pii, c)
                    continue
                values[row] = json.dumps(_anon_json(decoded, communities[row], platforms[row], cands_t, pii, c),
                                         ensure_ascii=False, separators=(",", ":"))
            else:
                values[row], types[row] = _anon_string(v, communities[row], platforms[row], cands_t, pii, c)
        new_cols[col] = pl.Series(col, values, dtype=pl.String)
        types_by_col[col] = types
    pii_types = [t + x for t, x in zip(types_by_col[M.title], types_by_col[M.text])]
    for ts in pii_types:
        c.stats.update(ts)
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
        pl.Series(ANON.pii_types, pii_types, dtype=pl.List(pl.String)),
    )
    return out, c.stats


def anonymize_batch(batch: pa.RecordBatch | pa.Table, names: pl.DataFrame, secret: bytes,
                    cfg: AnonymizeConfig, engine: PiiEngine | None = None) -> pa.RecordBatch:
    """Anonymise one Arrow batch of ``messages`` rows into ``messages_anon`` rows (same order).

    ``names`` comes from :func:`build_name_table` over the whole input (so a name is known in
    every batch of its community). Pure per batch: the Spark engine can call it through
    ``mapInArrow``.
    """
    engine = engine or PiiEngine(cfg.presidio_score_threshold, cfg.spacy_model)
    df = pl.from_arrow(batch)
    out, _ = _anonymize(df, names, secret, engine, cfg)
    batches = ANON.conform(out.to_arrow()).combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=ANON.arrow)


def anonymize_messages(messages: pl.DataFrame, secret: bytes, cfg: AnonymizeConfig | None = None,
                       engine: PiiEngine | None = None) -> tuple[pl.DataFrame, dict]:
    """Anonymise a whole ``messages`` frame. Out: ``messages_anon`` rows in input order and counts.

    Counts: rows_in, rows_out (equal: nothing is dropped), replacements by type, rows sent to
    Presidio, rows flagged per column, authors pseudonymised, names known, and which
    recognizers were active. Never contains the secret.
    """
    cfg = cfg or AnonymizeConfig()
    engine = engine or PiiEngine(cfg.presidio_score_threshold, cfg.spacy_model)
    names = build_name_table(messages, secret, cfg)
    parts, stats = [], Counter()
    for start in range(0, max(messages.height, 1), cfg.batch_rows):
        out, st = _anonymize(messages.slice(start, cfg.batch_rows), names, secret, engine, cfg)
        parts.append(out)
        stats.update(st)
    out = pl.concat(parts) if parts else messages
    replaced = {k: v for k, v in sorted(stats.items())
                if k.isupper() or (k.startswith("extra_") and k[6:].isupper()) or k == "extra_handles"}
    summary = {
        "rows_in": messages.height,
        "rows_out": out.height,
        "dropped": {},
        "authors": int(messages[M.author_id].drop_nulls().n_unique()) if messages.height else 0,
        "names_known": names.height,
        "names_mentionable": int(names[N_MENTIONABLE].sum()) if names.height else 0,
        "presidio_rows": {c: stats[f"{c}_presidio_rows"] for c in (M.title, M.text, M.extra)},
        "presidio_strings": stats["presidio_strings"],
        # share of messages whose text went through Presidio (the prefilter's hit rate)
        "presidio_rate": round(stats[f"{M.text}_presidio_rows"] / max(messages.height, 1), 4),
        "rows_flagged": {k.removesuffix("_rows_flagged"): v for k, v in sorted(stats.items())
                         if k.endswith("_rows_flagged")},
        "replacements": replaced,
        "messages_with_replacements": int((out[ANON.pii_types].list.len() > 0).sum()) if out.height else 0,
        "pii": engine.summary(),
    }
    return out, summary


def run(ctx) -> dict:
    """Read `messages`, write `messages_anon`; return the counts (see :func:`anonymize_messages`)."""
    cfg: AnonymizeConfig = ctx.config.section("anonymize")
    secret = ctx.secret()  # raises MissingSecretError with what to do
    messages = storage.read(ctx.config.table_url(RECORDS.name))
    out, summary = anonymize_messages(messages, secret, cfg)
    storage.write_table(ctx.config.table_url(ANON.name), out, schema=ANON)
    ctx.log.info("anonymize: %d rows, %d strings sent to Presidio, recognizers %s", summary["rows_out"],
                 summary["presidio_strings"], ", ".join(summary["pii"]["recognizers"]))
    return summary
