"""How the raw ingest assets are partitioned, and which files belong to which partition.

* Reddit: monthly partitions (``YYYY-MM``), as Pushshift/Arctic Shift publish dumps. A
  file's month comes from its name (``RC_2005-12.zst``, ``RS_2024-02.zst``); a file whose
  name carries no month (an ad-hoc export) is filed under the month of its first record,
  so it still lands in exactly one partition. A month's run ingests only that month's
  files, into ``messages_raw/<source>/<YYYY-MM>`` and ``quarantine/<source>/<YYYY-MM>``,
  so re-running it replaces exactly that partition and leaves other months untouched.
* Every other format: static partitions, one per configured source of that format; a
  run writes ``messages_raw/<source>`` and ``quarantine/<source>`` (the CLI's layout).
"""

from __future__ import annotations

import fnmatch

from dagster import MonthlyPartitionsDefinition, StaticPartitionsDefinition

from pipelines.stages import ingest as ingest_mod
from pipelines.core.config import CorpusConfig
from pipelines.core.results import StageResult
from pipelines.core.partitions import (MONTHLY_FORMATS, PartitionError, files_by_month,  # noqa: F401 (re-exported)
                                  merge_summaries, month_of_file)
from pipelines.sources import FORMATS

# Reddit's first month; a partition for every month since, up to the current one (a dump of
# a month in progress can arrive from Arctic Shift).
REDDIT_MONTHS = MonthlyPartitionsDefinition(start_date="2005-06", end_offset=1, fmt="%Y-%m")


def partitions_def(config: CorpusConfig, format: str):
    """The partitions of the raw asset of ``format``: monthly for Reddit, else one per source."""
    if format in MONTHLY_FORMATS:
        return REDDIT_MONTHS
    return StaticPartitionsDefinition([s.name for s in config.sources if s.format == format])


def configured_formats(config: CorpusConfig) -> list[str]:
    """Formats with at least one configured source, in the registry's order."""
    present = {s.format for s in config.sources}
    return [f for f in FORMATS if f in present]


def partition_keys(config: CorpusConfig, format: str) -> list[str]:
    """The partitions of ``format`` that have input now (what a full rebuild materialises)."""
    if format in MONTHLY_FORMATS:
        months: set[str] = set()
        for s in config.sources:
            if s.format == format:
                months |= set(files_by_month(s))
        return sorted(months)
    return [s.name for s in config.sources if s.format == format]


def partition_tables(config: CorpusConfig, format: str, key: str) -> list[tuple[str, str]]:
    """``(messages_raw URL, quarantine URL)`` written by partition ``key`` of ``format``, one per source."""
    if format in MONTHLY_FORMATS:
        return [(config.table_url("messages_raw", s.name, key), config.table_url("quarantine", s.name, key))
                for s in config.sources if s.format == format]
    return [(config.table_url("messages_raw", key), config.table_url("quarantine", key))]


def ingest_partition(ctx, format: str, key: str) -> StageResult:
    """Ingest partition ``key`` of ``format`` (a month of every Reddit source, or one source).

    Returns the ingest StageResult (:func:`pipelines.stages.ingest.result_of`): totals over the
    sources, the summed summary's fields as figures and, for a month, the per-source list; a
    month without files still writes empty tables, so a re-run after files were withdrawn
    replaces the old partition.
    """
    from pipelines import engines

    config = ctx.config
    engine = engines.for_run(ctx)
    if format not in MONTHLY_FORMATS:
        src = config.source(key)
        if src.format != format:
            raise PartitionError(f"partition {key!r} is a {src.format} source, not {format}")
        summary = ingest_mod.ingest_source(ctx, key, engine)
        return ingest_mod.result_of([summary], **_figures(summary)).with_run(engine=engine.name)
    per = []
    for s in config.sources:
        if s.format != format:
            continue
        files = files_by_month(s).get(key, [])
        ctx.log.info("ingest %s month %s: %d file(s) from source %s", format, key, len(files), s.name)
        stats = engine.ingest(format, files, config.table_url("messages_raw", s.name, key),
                              config.table_url("quarantine", s.name, key), ctx.log)
        per.append({"source": s.name, **stats.summary()})
    merged = merge_summaries(per, format=format, partition=key)
    return ingest_mod.result_of(per, **_figures(merged), sources=per).with_run(engine=engine.name)


def _figures(summary: dict) -> dict:
    """An ingest summary's fields other than the totals (which the result adds itself)."""
    return {k: v for k, v in summary.items() if k not in ingest_mod.INGEST_TOTALS}


def partition_of_file(config: CorpusConfig, path: str) -> tuple[str, str] | None:
    """``(format, partition key)`` that ingests ``path``, or None if no configured source matches it.

    A file belongs to a source when one of the source's path patterns (globs or URLs)
    matches it, or names a folder that contains it.
    """
    for s in config.sources:
        for pat in s.paths:
            if fnmatch.fnmatchcase(path, pat) or path.startswith(pat.rstrip("/") + "/"):
                return (s.format, month_of_file(path) if s.format in MONTHLY_FORMATS else s.name)
    return None
