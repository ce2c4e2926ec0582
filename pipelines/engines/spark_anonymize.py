"""Anonymisation on Spark: the per-batch function of pipelines/anonymize.py through mapInArrow.

* The name table (per community: every author name and handle -> pseudonym) is built side
  by side with :func:`pipelines.anonymize.build_name_table` (see :func:`build_name_table`):
  the per-record parts (author_keys, pseudonym_expr, mentionable) are the shared functions;
  the counting and ranking run in Spark; the winners (one row per distinct name) are
  collected to the driver.
* The table is broadcast once to the executors; every task runs
  :func:`pipelines.anonymize.anonymize_batch` (Presidio, mention replacement, pseudonyms)
  on its Arrow batches, with one Presidio engine per Python worker.

The secret reaches the executors inside the task closure (like any UDF argument): run
production clusters with `spark.authenticate` and `spark.network.crypto.enabled`.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.anonymize import (N_COMMUNITY, N_FIRST, N_KEY, N_MENTIONABLE, N_PSEUDONYM, AnonymizeConfig,
                                 anonymize_batch, author_keys, mentionable, pseudonym_expr)
from schemas import ANON, RECORDS
from schemas import MESSAGES as M

_N = "_n"
_ENGINES: dict = {}  # one Presidio engine per Python worker process and config (building one takes seconds)


def _engine(cfg: AnonymizeConfig):
    from pipelines.pii import PiiEngine

    key = (cfg.presidio_score_threshold, cfg.spacy_model)
    if key not in _ENGINES:
        _ENGINES[key] = PiiEngine(cfg.presidio_score_threshold, cfg.spacy_model)
    return _ENGINES[key]


def _author_keys(batches):
    """mapInArrow: message rows -> :func:`pipelines.anonymize.author_keys` of each batch (one row
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
    :func:`pipelines.anonymize.build_name_table` on the same rows (sorted by community, key).

    author_keys per batch (shared); Spark counts rows per (platform, community, author, key),
    which shrinks the data to distinct names before any HMAC; pseudonyms per batch (shared);
    Spark sums per (community, key, pseudonym) and keeps the winner by the same rule (most
    rows, then smallest pseudonym); first_word and mentionable on the driver (shared).
    """
    import polars as pl
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.engines.spark import spark_schema, to_polars

    cfg = cfg or AnonymizeConfig()
    keys = messages.mapInArrow(_author_keys, spark_schema(_KEYS, nullable=True))
    counted = keys.groupBy(*_KEYS.names).agg(F.count(F.lit(1)).alias(_N))
    named = counted.mapInArrow(_pseudonyms(secret), spark_schema(_COUNTED, nullable=True))
    w = Window.partitionBy(M.community, N_KEY).orderBy(F.col(_N).desc(), F.col(N_PSEUDONYM).asc())
    best = (named.groupBy(M.community, N_KEY, N_PSEUDONYM).agg(F.sum(_N).alias(_N))
            .withColumn("_r", F.row_number().over(w)).filter(F.col("_r") == 1)
            .select(M.community, N_KEY, N_PSEUDONYM))
    table = to_polars(best).sort(M.community, N_KEY).select(
        pl.col(M.community).cast(pl.String).alias(N_COMMUNITY), pl.col(N_KEY).cast(pl.String),
        pl.col(N_KEY).cast(pl.String).str.extract(r"(\w+)").alias(N_FIRST), pl.col(N_PSEUDONYM).cast(pl.String))
    return table.with_columns(mentionable(table, cfg).alias(N_MENTIONABLE))


def _anonymize_batches(names_bc, secret: bytes, cfg: AnonymizeConfig):
    out_schema = pa.schema([f.with_nullable(True) for f in ANON.arrow])

    def run(batches):
        names = names_bc.value
        engine = _engine(cfg)
        for b in batches:
            if b.num_rows:
                yield pa.Table.from_batches([anonymize_batch(b, names, secret, cfg, engine)]).cast(out_schema).to_batches()[0]

    return run


def anonymize_messages(messages, secret: bytes, cfg: AnonymizeConfig | None = None):
    """Spark ``messages`` -> (Spark ``messages_anon`` rows, the name table, Polars). Row content
    equals :func:`pipelines.anonymize.anonymize_messages`; order is not kept (the writer sorts)."""
    from pipelines.engines.spark import spark_schema

    cfg = cfg or AnonymizeConfig()
    names = build_name_table(messages, secret, cfg)
    bc = messages.sparkSession.sparkContext.broadcast(names)
    out = messages.select(*RECORDS.names).mapInArrow(_anonymize_batches(bc, secret, cfg),
                                                     spark_schema(ANON.arrow, nullable=True))
    return out, names


def run(ctx, spark) -> dict:
    """Read `messages`, write `messages_anon` sorted by `message_id`; return counts computed from the
    output (replacements by type in title and text, rows with any replacement)."""
    from pyspark.sql import functions as F

    from pipelines.engines.spark import read_table, write_table

    cfg: AnonymizeConfig = ctx.config.section("anonymize")
    secret = ctx.secret()  # raises MissingSecretError with what to do
    messages = read_table(spark, ctx.config.table_url(RECORDS.name), RECORDS)
    out, names = anonymize_messages(messages, secret, cfg)
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
        # Presidio call counts live inside the per-batch function (not returned by anonymize_batch).
        "replacements_title_text": {r["t"]: int(r["count"]) for r in by_type},
        "messages_with_replacements": with_repl,
        "pii": _engine(cfg).summary(),
    }
    ctx.log.info("anonymize (spark): %d rows, %d with replacements", rows, with_repl)
    return summary
