"""The privacy check: does anything from the raw inputs survive in an anonymised table?

Used by the tests and by the Dagster asset check on `messages_anon` (and later tables).
"""

from __future__ import annotations

import polars as pl

from pipelines.anonymize import N_KEY, AnonymizeConfig, author_keys, mentionable
from pipelines.checks import CheckResult
from schemas import MESSAGES as M

# What a surviving e-mail or phone number looks like (Rust regex). Phones: North-American
# forms with separators, or international `+CC` numbers with groups.
EMAIL_RE = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}"
PHONE_RE = (r"(?:^|[^\w])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:$|[^\w])"
            r"|\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}")
_ROW = "_row_id"
_MAX_SAMPLES = 10


# Structural columns built by the readers from platform scopes and file paths (ids, community,
# file names): not text anyone wrote. Diplomacy thread ids name the two powers of a dialog
# (roles, not people). They are not scanned; everything else that holds strings is.
STRUCTURAL = frozenset({M.message_id, M.platform, M.community, M.thread_id, M.parent_id, M.parent_inferred,
                        M.source_uri, M.kind, M.author_kind, M.time_kind, M.time_precision, "dup_of",
                        "timeline_id"})


def _string_columns(df: pl.DataFrame) -> list[str]:
    return [c for c, t in df.schema.items() if c not in STRUCTURAL
            and (t == pl.String or (isinstance(t, pl.List) and t.inner == pl.String))]


def raw_names(raw: pl.DataFrame, cfg: AnonymizeConfig | None = None) -> pl.DataFrame:
    """Per community, the lower-cased raw author names and native ids that must not survive as
    words: those the anonymiser promises to replace (same mentionable rule)."""
    cfg = cfg or AnonymizeConfig()
    names = author_keys(raw).select(M.community, pl.col(N_KEY).alias("key")).unique()
    names = names.filter(mentionable(names, cfg))
    return names.with_columns(pl.col("key").str.extract(r"(\w+)").alias("first")).drop_nulls("first")


def scan_leaks(raw: pl.DataFrame, output: pl.DataFrame, secret: bytes | None = None) -> CheckResult:
    """Report raw author names/handles, e-mails, phone numbers and the secret found in ``output``.

    ``raw``: the input messages (``author_name``, ``author_id``, ``community``). ``output``: an
    anonymised table with ``message_id`` and ``community``. Every string (and list-of-string)
    column is scanned. A name counts as leaked where it occurs as a whole word (case-insensitive)
    in a row of the same community, or as an explicit ``@name``/``u/name`` anywhere. Samples give
    column, message id and type, never the value.
    """
    names = raw_names(raw)
    hits: list[pl.DataFrame] = []
    out = output.with_columns(pl.col(M.message_id).alias(_ROW))
    secret_s = secret.decode("utf-8") if secret else None
    for col in _string_columns(output):
        v = pl.col(col)
        if isinstance(output.schema[col], pl.List):
            v = v.list.join("\x1f")
        base = out.select(_ROW, M.community, v.alias("_v")).filter(pl.col("_v").is_not_null())
        patt = {"email": EMAIL_RE, "phone": PHONE_RE}
        for kind, rx in patt.items():
            hits.append(base.filter(pl.col("_v").str.contains(rx))
                        .select(_ROW, pl.lit(col).alias("column"), pl.lit(kind).alias("type")))
        if secret_s:
            hits.append(base.filter(pl.col("_v").str.contains(secret_s, literal=True))
                        .select(_ROW, pl.lit(col).alias("column"), pl.lit("secret").alias("type")))
        low = base.select(_ROW, M.community, pl.col("_v").str.to_lowercase().alias("_v"))
        words = low.select(_ROW, M.community, pl.col("_v").str.extract_all(r"\w+").alias("w")).explode("w")
        cand = (words.join(names, left_on=[M.community, "w"], right_on=[M.community, "first"], how="inner")
                .select(_ROW, M.community, "key").unique())
        cand = cand.join(low, on=[_ROW, M.community], how="inner")
        # whole-word check of the full key (multi-word and punctuated names included)
        found = cand.filter(pl.col("_v").str.contains(
            pl.lit(r"(?:^|[^\w])") + pl.col("key").str.escape_regex() + pl.lit(r"(?:$|[^\w])")))
        hits.append(found.select(_ROW, pl.lit(col).alias("column"), pl.lit("author_name").alias("type")).unique())
        # explicit handle forms of any raw name, in any community
        handles = names.select("key").unique().filter(pl.col("key").str.contains(r"^[\w\-]+$"))
        expl = (low.select(_ROW, pl.col("_v").str.extract_all(r"(?:^|[^\w/])/?u/[\w\-]+|(?:^|[^\w@.+\-])@[\w\-]+")
                           .alias("h")).explode("h").drop_nulls("h")
                .with_columns(pl.col("h").str.extract(r"([\w\-]+)$"))
                .join(handles, left_on="h", right_on="key", how="semi"))
        hits.append(expl.select(_ROW, pl.lit(col).alias("column"), pl.lit("handle").alias("type")).unique())
    found = pl.concat(hits).unique().sort(_ROW, "column", "type")
    by_type = dict(sorted(found.group_by("type").len().iter_rows()))
    n_rows = found[_ROW].n_unique()
    samples = [{"column": c, "message_id": r, "type": t} for r, c, t in found.head(_MAX_SAMPLES).iter_rows()]
    desc = (f"scanned {output.height} rows, {len(_string_columns(output))} string columns for "
            f"{names.height} raw author names/ids, e-mails, phone numbers"
            + (" and the secret" if secret_s else ""))
    if n_rows:
        desc += f": {n_rows} rows leak ({', '.join(f'{k}: {v}' for k, v in by_type.items())})"
    return CheckResult(name="no_pii_leak", passed=n_rows == 0, failed_rows=n_rows, description=desc,
                       samples=samples)
