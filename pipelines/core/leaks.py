"""The privacy check: does anything from the raw inputs survive in an anonymised table?

Used by the tests and by the Dagster asset check on `messages_anon` (and later tables).
"""

from __future__ import annotations

import polars as pl

from pipelines.stages.anonymize import (N_COMMUNITY, N_KEY, AnonymizeConfig, author_keys, is_platform_name, mentionable,
                                 platform_scope)
from pipelines.core.checks import CheckResult
from schemas import MESSAGES as M
from schemas.messages import ROLE_PLATFORMS

# What a surviving e-mail or phone number looks like (Rust regex). Phones: North-American
# forms with separators, or international `+CC` numbers with groups.
EMAIL_RE = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}"
PHONE_RE = (r"(?:^|[^\w])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:$|[^\w])"
            r"|\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}")
_ROW = "_row_id"
_IDX = "_row_index"
_MAX_SAMPLES = 10


# Structural columns built by the readers from platform scopes (ids, community, enums): not
# text anyone wrote, so not scanned for names as words (Diplomacy thread ids name the two
# powers of a dialog: roles, not people). The id columns among them are scanned for raw
# platform user ids instead (ID_COLUMNS). `source_uri` is not structural: from `messages_anon`
# on it is a keyed hash, and a file name left in clear is scanned like text.
STRUCTURAL = frozenset({M.message_id, M.platform, M.community, M.thread_id, M.parent_id, M.parent_inferred,
                        M.kind, M.author_kind, M.time_kind, M.time_precision, "dup_of", "timeline_id",
                        "target_message_id", "window_msg_ids", "example_id", "split"})
# Id columns and whether their values are message ids (`<scope>:<native message number>`: the
# last part is the message's own number, which may equal some user id by chance, so it is not
# compared) or scope ids (every part compared). Shards carry thread_id, target_message_id and
# window_msg_ids.
ID_COLUMNS = {M.message_id: True, M.parent_id: True, M.parent_inferred: True, "dup_of": True,
              "target_message_id": True, "window_msg_ids": True,
              M.thread_id: False, M.community: False, "timeline_id": False}


def _string_columns(df: pl.DataFrame) -> list[str]:
    return [c for c, t in df.schema.items() if c not in STRUCTURAL
            and (t == pl.String or (isinstance(t, pl.List) and t.inner == pl.String))]


def raw_names(raw: pl.DataFrame, cfg: AnonymizeConfig | None = None) -> pl.DataFrame:
    """Per community, the lower-cased raw author names and native ids that must not survive as
    words: those the anonymiser promises to replace (same mentionable rule). Distinctive
    multi-word names also appear once per platform, under ``platform_scope(platform)``."""
    cfg = cfg or AnonymizeConfig()
    keys = author_keys(raw)
    local = keys.select(M.community, pl.col(N_KEY).alias("key"))
    wide = (keys.filter(is_platform_name(pl.col(N_KEY), cfg))
            .select(platform_scope(pl.col(M.platform)).alias(M.community), pl.col(N_KEY).alias("key")))
    names = pl.concat([local, wide]).unique()
    names = names.filter(mentionable(names.rename({M.community: N_COMMUNITY}), cfg))
    return names.with_columns(pl.col("key").str.extract(r"(\w+)").alias("first")).drop_nulls("first")


def raw_user_ids(raw: pl.DataFrame, cfg: AnonymizeConfig | None = None) -> pl.Series:
    """The raw platform user ids that an id column must never contain, lower-cased: the native part
    of every author and recipient id (after the reader's ``scope:`` prefix), and for Telegram's
    ``user<n>`` also ``n`` (a personal chat's id). Only ids with a digit and at least
    ``min_numeric_id_length`` characters (Telegram and Discord numbers, Slack ``U…`` ids): short
    numbers and handles equal parts of ids by chance (a post number, a subreddit named like a user)."""
    cfg = cfg or AnonymizeConfig()
    people = raw.filter(~pl.col(M.platform).is_in(list(ROLE_PLATFORMS)))
    parts = [people.select(pl.col(M.author_id).alias("i"))]
    if M.recipient_ids in raw.columns:
        parts.append(people.select(pl.col(M.recipient_ids).alias("i")).explode("i"))
    ids = pl.concat(parts).drop_nulls()
    native = ids.select(pl.col("i").str.split(":").list.last().str.to_lowercase())
    digits = native.select(pl.col("i").str.extract(r"^user(\d+)$")).drop_nulls()
    both = pl.concat([native, digits]).unique()
    return both.filter(pl.col("i").str.contains(r"\d")
                       & (pl.col("i").str.len_chars() >= cfg.min_numeric_id_length))["i"].sort()


def _id_parts(out: pl.DataFrame, col: str, message_like: bool) -> pl.DataFrame:
    """(row, lower-cased part) for each `:`/`/`-separated part of the ids in ``col``."""
    v = out.select(_IDX, pl.col(col).alias("_v"))
    if isinstance(out.schema[col], pl.List):
        v = v.explode("_v")
    parts = pl.col("_v").str.to_lowercase().str.extract_all(r"[^:/]+")
    if message_like:
        parts = parts.list.slice(0, pl.max_horizontal(parts.list.len() - 1, 0))
    return v.drop_nulls("_v").select(_IDX, parts.alias("p")).explode("p").drop_nulls("p")


def scan_leaks(raw: pl.DataFrame, output: pl.DataFrame, secret: bytes | None = None,
               cfg: AnonymizeConfig | None = None) -> CheckResult:
    """Report raw author names/handles, user ids, e-mails, phone numbers and the secret found in ``output``.

    ``raw``: the input messages (``author_name``, ``author_id``, ``community``). ``output``: an
    anonymised table with ``message_id`` and ``community``. Every string (and list-of-string)
    column but the structural ones is scanned as text. A name counts as leaked where it occurs as a
    whole word (case-insensitive) in a row of the same community (a distinctive multi-word name:
    of the same platform), or as an explicit ``@name``/``u/name`` anywhere. Id columns (message,
    parent, thread, community, timeline and shard id columns) are scanned for raw platform user ids
    (:func:`raw_user_ids`) as whole parts. Samples give column, message id (or ``row <n>`` where the
    message id itself leaks) and type, never the value. ``cfg``: the build's `[anonymize]` section,
    so the scanner holds the stage to the same name rules (defaults when None).
    """
    names = raw_names(raw, cfg)
    user_ids = raw_user_ids(raw, cfg)
    hits: list[pl.DataFrame] = []
    out = output.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias(_IDX))
    scope = platform_scope(pl.col(M.platform)) if M.platform in out.columns else pl.lit(None, pl.String)
    secret_s = secret.decode("utf-8") if secret else None
    for col in _string_columns(output):
        v = pl.col(col)
        if isinstance(output.schema[col], pl.List):
            v = v.list.join("\x1f")
        base = out.select(_IDX, M.community, scope.alias("_scope"), v.alias("_v")).filter(pl.col("_v").is_not_null())
        patt = {"email": EMAIL_RE, "phone": PHONE_RE}
        for kind, rx in patt.items():
            hits.append(base.filter(pl.col("_v").str.contains(rx))
                        .select(_IDX, pl.lit(col).alias("column"), pl.lit(kind).alias("type")))
        if secret_s:
            hits.append(base.filter(pl.col("_v").str.contains(secret_s, literal=True))
                        .select(_IDX, pl.lit(col).alias("column"), pl.lit("secret").alias("type")))
        low = base.select(_IDX, M.community, "_scope", pl.col("_v").str.to_lowercase().alias("_v"))
        words = low.select(_IDX, M.community, "_scope", pl.col("_v").str.extract_all(r"\w+").alias("w")).explode("w")
        cand = pl.concat([
            words.join(names, left_on=[M.community, "w"], right_on=[M.community, "first"], how="inner")
            .select(_IDX, "key"),
            words.join(names, left_on=["_scope", "w"], right_on=[M.community, "first"], how="inner")
            .select(_IDX, "key")]).unique()
        cand = cand.join(low.select(_IDX, "_v"), on=_IDX, how="inner")
        # whole-word check of the full key (multi-word and punctuated names included)
        found = cand.filter(pl.col("_v").str.contains(
            pl.lit(r"(?:^|[^\w])") + pl.col("key").str.escape_regex() + pl.lit(r"(?:$|[^\w])")))
        hits.append(found.select(_IDX, pl.lit(col).alias("column"), pl.lit("author_name").alias("type")).unique())
        # explicit handle forms of any raw name, in any community
        handles = names.select("key").unique().filter(pl.col("key").str.contains(r"^[\w\-]+$"))
        expl = (low.select(_IDX, pl.col("_v").str.extract_all(r"(?:^|[^\w/])/?u/[\w\-]+|(?:^|[^\w@.+\-])@[\w\-]+")
                           .alias("h")).explode("h").drop_nulls("h")
                .with_columns(pl.col("h").str.extract(r"([\w\-]+)$"))
                .join(handles, left_on="h", right_on="key", how="semi"))
        hits.append(expl.select(_IDX, pl.lit(col).alias("column"), pl.lit("handle").alias("type")).unique())
    id_cols = [c for c in ID_COLUMNS if c in output.columns]
    uid = pl.DataFrame({"p": user_ids})
    for col in id_cols:
        parts = _id_parts(out, col, ID_COLUMNS[col])
        hits.append(parts.join(uid, on="p", how="semi").select(_IDX).unique()
                    .with_columns(pl.lit(col).alias("column"), pl.lit("user_id").alias("type")))
    found = pl.concat(hits).unique().sort(_IDX, "column", "type")
    by_type = dict(sorted(found.group_by("type").len().iter_rows()))
    n_rows = found[_IDX].n_unique()
    leaky_ids = set(found.filter((pl.col("column") == M.message_id) & (pl.col("type") == "user_id"))[_IDX])
    mids = out[M.message_id]
    samples = [{"column": c, "message_id": f"row {i}" if i in leaky_ids else mids[i], "type": t}
               for i, c, t in found.head(_MAX_SAMPLES).iter_rows()]
    desc = (f"scanned {output.height} rows, {len(_string_columns(output))} string columns for "
            f"{names.height} raw author names/ids, e-mails, phone numbers"
            + (" and the secret" if secret_s else "")
            + f", {len(id_cols)} id columns for {user_ids.len()} raw user ids")
    if n_rows:
        desc += f": {n_rows} rows leak ({', '.join(f'{k}: {v}' for k, v in by_type.items())})"
    return CheckResult(name="no_pii_leak", passed=n_rows == 0, failed_rows=n_rows, description=desc,
                       samples=samples)
