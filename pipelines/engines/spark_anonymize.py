"""Anonymisation on Spark: the per-batch function of pipelines/stages/anonymize.py through mapInArrow.

* The name table (per community: every author name and handle -> pseudonym) is built side
  by side with :func:`pipelines.stages.anonymize.build_name_table` (see :func:`build_name_table`):
  the per-record parts (author_keys, pseudonym_expr) are the shared functions; the counting
  runs in Spark; the counts (one row per distinct name and author) are collected to the
  driver, where the shared :func:`pipelines.stages.anonymize.name_table_from_counts` ranks them.
* The private scopes (ids that would name a person) come from the shared row-local
  :func:`pipelines.stages.anonymize.private_scope_candidates` per batch, made distinct in Spark, and
  are hashed on the driver (:func:`pipelines.stages.anonymize.scope_table`).
* Both tables are broadcast once to the executors; every task runs
  :func:`pipelines.stages.anonymize.anonymize_batch` (Presidio, mention replacement, pseudonyms)
  on its Arrow batches, with one Presidio engine per Python worker.

The secret reaches the executors inside the task closure (like any UDF argument): run
production clusters with `spark.authenticate` and `spark.network.crypto.enabled`.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.stages.anonymize import (N_COMMUNITY, N_KEY, N_MENTIONABLE, N_PSEUDONYM, PLATFORM_WIDE, AnonymizeConfig,
                                 anonymize_batch, author_keys, name_table_from_counts, private_scope_candidates,
                                 pseudonym_expr, scope_table)
from schemas import ANON, RECORDS
from schemas import MESSAGES as M

_N = "_n"
_ENGINES: dict = {}  # one Presidio engine per Python worker process and config (building one takes seconds)


def _engine(cfg: AnonymizeConfig):
    from pipelines.core.pii import PiiEngine

    key = (cfg.presidio_score_threshold, cfg.spacy_model)
    if key not in _ENGINES:
        _ENGINES[key] = PiiEngine(cfg.presidio_score_threshold, cfg.spacy_model)
    return _ENGINES[key]


def _author_keys(batches):
    """mapInArrow: message rows -> :func:`pipelines.stages.anonymize.author_keys` of each batch (one row
    per message and name: platform, community, author_id, key)."""
    import polars as pl

    for b in batches:
        if b.num_rows:
            keys = author_keys(pl.from_arrow(pa.Table.from_batches([b])))
            yield from keys.to_arrow().cast(_KEYS).to_batches()


def _pseudonyms(secret: bytes):
    """mapInArrow: (platform, author_id, …) -> the same rows plus the pseudonym (pseudonym_expr)."""

    def run(batches):
        import polars as pl

        for b in batches:
            if b.num_rows:
                df = pl.from_arrow(pa.Table.from_batches([b]))
                df = df.with_columns(pseudonym_expr(pl.col(M.platform), pl.col(M.author_id), df, secret)
                                     .alias(N_PSEUDONYM))
                yield from df.to_arrow().cast(_COUNTED).to_batches()

    return run


_KEYS = pa.schema([pa.field(c, pa.string()) for c in (M.platform, M.community, M.author_id, N_KEY)])
_COUNTED = pa.schema([*_KEYS, pa.field(_N, pa.int64()), pa.field(N_PSEUDONYM, pa.string())])


def build_name_table(messages, secret: bytes, cfg: AnonymizeConfig | None = None):
    """Spark ``messages`` -> the name table as a Polars DataFrame, equal to
    :func:`pipelines.stages.anonymize.build_name_table` on the same rows.

    author_keys per batch (shared); Spark counts rows per (platform, community, author, key),
    which shrinks the data to distinct names before any HMAC; pseudonyms per batch (shared);
    Spark sums per (platform, community, key, pseudonym); the ranking (winner per community and
    per platform for platform-wide names), first_word and mentionable on the driver (shared).
    """
    import polars as pl
    from pyspark.sql import functions as F

    from pipelines.engines.spark import spark_schema, to_polars

    cfg = cfg or AnonymizeConfig()
    keys = messages.mapInArrow(_author_keys, spark_schema(_KEYS, nullable=True))
    counted = keys.groupBy(*_KEYS.names).agg(F.count(F.lit(1)).alias(_N))
    named = counted.mapInArrow(_pseudonyms(secret), spark_schema(_COUNTED, nullable=True))
    sums = named.groupBy(M.platform, M.community, N_KEY, N_PSEUDONYM).agg(F.sum(_N).alias("n"))
    counts = to_polars(sums).select(pl.col(M.platform).cast(pl.String), pl.col(M.community).cast(pl.String),
                                    pl.col(N_KEY).cast(pl.String), pl.col(N_PSEUDONYM).cast(pl.String),
                                    pl.col("n").cast(pl.Int64))
    return name_table_from_counts(counts, cfg)


_SCOPE_COLS = (M.platform, M.community, M.thread_id, M.author_id, M.recipient_ids)
_SCOPES = pa.schema([pa.field("scope", pa.string())])


def _scope_candidates(batches):
    """mapInArrow: message rows -> :func:`pipelines.stages.anonymize.private_scope_candidates` of each batch."""
    import polars as pl

    for b in batches:
        if b.num_rows:
            yield from private_scope_candidates(pl.from_arrow(pa.Table.from_batches([b]))).to_arrow().cast(_SCOPES).to_batches()


def build_scope_table(messages, secret: bytes):
    """Spark ``messages`` -> :func:`pipelines.stages.anonymize.scope_table` of the whole input (Polars)."""
    import polars as pl

    from pipelines.engines.spark import spark_schema, to_polars

    cands = messages.select(*_SCOPE_COLS).mapInArrow(_scope_candidates, spark_schema(_SCOPES, nullable=True)).distinct()
    return scope_table(to_polars(cands).select(pl.col("scope").cast(pl.String)), secret)


def _anonymize_batches(names_bc, scopes_bc, secret: bytes, cfg: AnonymizeConfig):
    out_schema = pa.schema([f.with_nullable(True) for f in ANON.arrow])

    def run(batches):
        names, scopes = names_bc.value, scopes_bc.value
        engine = _engine(cfg)
        for b in batches:
            if b.num_rows:
                out = anonymize_batch(b, names, secret, cfg, engine, scopes=scopes)
                yield pa.Table.from_batches([out]).cast(out_schema).to_batches()[0]

    return run


def anonymize_messages(messages, secret: bytes, cfg: AnonymizeConfig | None = None):
    """Spark ``messages`` -> (Spark ``messages_anon`` rows, the name table and the scope table,
    Polars). Row content
    equals :func:`pipelines.stages.anonymize.anonymize_messages`; order is not kept (the writer sorts)."""
    from pipelines.engines.spark import spark_schema

    cfg = cfg or AnonymizeConfig()
    names = build_name_table(messages, secret, cfg)
    scopes = build_scope_table(messages, secret)
    sc = messages.sparkSession.sparkContext
    out = messages.select(*RECORDS.names).mapInArrow(_anonymize_batches(sc.broadcast(names), sc.broadcast(scopes),
                                                                        secret, cfg),
                                                     spark_schema(ANON.arrow, nullable=True))
    return out, names, scopes


def run(ctx, spark) -> dict:
    """Read `messages`, write `messages_anon` sorted by `message_id`; return counts computed from the
    output (replacements by type in title and text, rows with any replacement)."""
    from pyspark.sql import functions as F

    from pipelines.engines.spark import read_table, write_table

    cfg: AnonymizeConfig = ctx.config.section("anonymize")
    secret = ctx.secret()  # raises MissingSecretError with what to do
    messages = read_table(spark, ctx.config.table_url(RECORDS.name), RECORDS)
    out, names, scopes = anonymize_messages(messages, secret, cfg)
    out = out.cache()
    try:
        write_table(out, ctx.config.table_url(ANON.name), ANON, order_by=[F.col(M.message_id)])
        rows = out.count()
        by_type = (out.select(F.explode(ANON.pii_types).alias("t")).groupBy("t").count().orderBy("t").collect())
        with_repl = out.filter(F.size(ANON.pii_types) > 0).count()
    finally:
        out.unpersist()
    rows_in = messages.count()
    authors = messages.select(M.author_id).dropna().distinct().count()
    summary = {
        "rows_in": rows_in,
        "rows_out": rows,
        "dropped": {},
        "authors": authors,
        "names_known": names.height,
        "names_mentionable": int(names[N_MENTIONABLE].sum()) if names.height else 0,
        "names_platform_wide": int(names[N_COMMUNITY].str.starts_with(PLATFORM_WIDE).sum()) if names.height else 0,
        "private_scopes": scopes.height,
        # Presidio call counts live inside the per-batch function (not returned by anonymize_batch).
        "replacements_title_text": {r["t"]: int(r["count"]) for r in by_type},
        "messages_with_replacements": with_repl,
        "pii": _engine(cfg).summary(),
    }
    ctx.log.info("anonymize (spark): %d rows, %d with replacements", rows, with_repl)
    return summary
