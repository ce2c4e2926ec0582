"""Ingest on Spark: units (file groups) are distributed across tasks and parsed by the same
reader code as the Polars engine (pipelines/stages/ingest.py), through ``mapInArrow``."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa

from pipelines.engines.spark import spark_schema
from schemas import MESSAGES, QUARANTINE

_KIND, _Q, _SKIP, _RECORDS = "_outcome", "_quarantine", "_skip_reason", "_records"
# Every outcome is one row: message columns, or a quarantine row (JSON) or a skip count; one more
# row per unit batch carries how many records the reader read (kind "r"), so the summary's
# `records` is counted by the reader, not derived from the other three.
_OUTCOMES = pa.schema([*(pa.field(f.name, f.type, nullable=True) for f in MESSAGES.arrow),
                       pa.field(_KIND, pa.string()), pa.field(_Q, pa.string()),
                       pa.field(_SKIP, pa.string()), pa.field(_RECORDS, pa.int64())])


def _unit_outcomes(format: str):
    """mapInArrow function: rows of (unit json) -> every outcome of reading those units."""

    def run(batches):
        from pipelines.stages.ingest import iter_unit_batches

        for batch in batches:
            for unit_json in batch.column("unit").to_pylist():
                for ub in iter_unit_batches(format, json.loads(unit_json)):
                    m = ub.messages
                    n = m.num_rows
                    parts = [m.append_column(_KIND, pa.array(["m"] * n, pa.string()))
                              .append_column(_Q, pa.nulls(n, pa.string()))
                              .append_column(_SKIP, pa.nulls(n, pa.string()))
                              .append_column(_RECORDS, pa.nulls(n, pa.int64()))]
                    extra = [{_KIND: "q", _Q: json.dumps(q, sort_keys=True)} for q in ub.quarantine]
                    extra += [{_KIND: "s", _SKIP: reason, _RECORDS: c} for reason, c in sorted(ub.skipped.items())]
                    extra.append({_KIND: "r", _RECORDS: ub.records})
                    if extra:
                        parts.append(pa.Table.from_pylist(extra, schema=_OUTCOMES))
                    t = pa.concat_tables([p.cast(_OUTCOMES) for p in parts])
                    yield from t.to_batches()

    return run


def ingest(spark, format: str, patterns, messages_url: str, quarantine_url: str):
    """Spark ingestion: units (file groups) are distributed across tasks and parsed by the
    same reader code as the Polars engine; returns the same IngestStats.

    Each output is written under a temporary name and swapped in whole (see storage).
    """
    from pipelines.core import storage
    from pipelines.sources.base import expand_paths
    from pipelines.stages.ingest import IngestStats
    from pipelines.sources import get_reader

    paths = expand_paths(patterns)
    units = get_reader(format).units(paths)
    stats = IngestStats(format=format, files=sum(len(u) for u in units))
    units_df = spark.createDataFrame([(i, json.dumps(u)) for i, u in enumerate(units)],
                                     "unit_index long, unit string")
    units_df = units_df.repartition(max(1, min(len(units), spark.sparkContext.defaultParallelism * 4)))
    outcomes = units_df.mapInArrow(_unit_outcomes(format), spark_schema(_OUTCOMES, nullable=True)).cache()
    try:
        from pyspark.sql import functions as F

        msgs = outcomes.filter(F.col(_KIND) == "m").select(*MESSAGES.names)
        storage.write_spark(msgs, messages_url)
        qrows = [json.loads(r[0]) for r in outcomes.filter(F.col(_KIND) == "q").select(_Q).collect()]
        skips = outcomes.filter(F.col(_KIND) == "s").groupBy(_SKIP).agg(F.sum(_RECORDS)).collect()
        n_msgs = outcomes.filter(F.col(_KIND) == "m").count()
        n_records = outcomes.filter(F.col(_KIND) == "r").agg(F.sum(_RECORDS)).collect()[0][0] or 0
    finally:
        outcomes.unpersist()
    qrows.sort(key=lambda q: (q["source_uri"], q["source_record"] or -1, q["byte_offset"] or -1, q["reason"]))
    storage.write_dataset(quarantine_url, QUARANTINE.conform(pa.Table.from_pylist(qrows, schema=QUARANTINE.arrow)))
    q_reasons = Counter(q["reason"] for q in qrows)
    stats.skipped_by_reason = dict(sorted((r[0], int(r[1])) for r in skips))
    stats.quarantined_by_reason = dict(sorted(q_reasons.items()))
    stats.messages = n_msgs
    stats.quarantined = len(qrows)
    stats.skipped = sum(stats.skipped_by_reason.values())
    stats.records = int(n_records)
    return stats
