"""Ingest: run a format's reader over dump files into `messages_raw/<source>` and `quarantine/<source>`.

Every record becomes a message row, a quarantine row or a counted skip. The summary counts
all four (``messages`` is the rows actually written, not a difference), so
``records == messages + quarantined + skipped`` is a check the run reports on (an error in
the log here, the blocking ``record_conservation`` check in Dagster), not an identity.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute

from pipelines.core import storage
from pipelines.core.progress import progress
from pipelines.core.results import Flow, StageResult
from pipelines.sources import Quarantined, Skipped, get_reader
from pipelines.sources.base import expand_paths  # noqa: F401  (re-exported: where ingest reads from)
from schemas import MESSAGES, QUARANTINE

BATCH_ROWS = 20_000
PROGRESS_EVERY_S = 10.0


@dataclass
class IngestStats:
    format: str
    records: int = 0
    messages: int = 0
    quarantined: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    files: int = 0

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("files")
        return d | {"files": self.files}


def _table(rows: list[dict]) -> pa.Table:
    return MESSAGES.conform(pa.Table.from_pylist(rows, schema=MESSAGES.arrow))


def _rows_to_table(rows: list[dict], fmt: str, quarantine: list[dict]) -> pa.Table:
    """Arrow table of message rows; a row the schema rejects (a wrong type, an int beyond int64,
    a null in a required column) becomes a ``wrong_type`` quarantine row instead of failing the batch.

    The batch is halved until the bad rows are alone, so one bad row in 20,000 costs about
    30 conversions, not 20,000.
    """
    try:
        return _table(rows)
    except Exception as e:  # noqa: BLE001 - whatever the schema rejects is that row's fault
        if len(rows) == 1:
            r = rows[0] if isinstance(rows[0], dict) else {}
            quarantine.append(Quarantined(
                str(r.get("source_uri", "?")), "wrong_type",
                f"message row does not fit the schema: {type(e).__name__}: {e}"[:500],
                source_record=r.get("source_record") if isinstance(r.get("source_record"), int) else None,
                excerpt=str(r.get("text", ""))).row(fmt))
            return _table([])
        if not rows:
            raise
    mid = len(rows) // 2
    return pa.concat_tables([_rows_to_table(rows[:mid], fmt, quarantine), _rows_to_table(rows[mid:], fmt, quarantine)])


@dataclass
class UnitBatch:
    """What reading part of a unit produced: message rows (Arrow), quarantine rows, skip counts."""

    messages: pa.Table
    quarantine: list[dict]
    skipped: Counter
    records: int


def iter_unit_batches(format: str, unit: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[UnitBatch]:
    """Read one unit with the ``format`` reader, yielding a UnitBatch every ``batch_rows`` records.

    This is the per-record work both engines share (Polars here, Spark inside ``mapInArrow``).
    Summed over the batches: records == messages + quarantine + skipped.
    """
    reader = get_reader(format)
    if reader.read_batches is not None:
        yield from _block_batches(format, reader.read_batches(unit, batch_rows))
        return
    for rows, qrows, skipped, n in _segments(reader, format, unit, batch_rows):
        yield UnitBatch(_rows_to_table(rows, format, qrows), qrows, skipped, n)


def iter_units_batches(format: str, units: list[list[str]], batch_rows: int = BATCH_ROWS) -> Iterator[UnitBatch]:
    """:func:`iter_unit_batches` over ``units`` in turn, with the rows of small units converted together.

    A Discourse site is one unit per topic and a Slack export one per channel: converting each
    unit's few rows to Arrow on its own costs a few milliseconds of fixed work per unit. Here the
    per-unit pieces (cut where ``iter_unit_batches`` cuts them) are gathered up to ``batch_rows``
    records and converted at once. The rows, and the quarantine rows in their order, are the
    same: if the schema rejects a row, each piece is converted on its own, as before.
    """
    reader = get_reader(format)
    if reader.read_batches is not None:  # block readers make their own tables
        for unit in units:
            yield from iter_unit_batches(format, unit, batch_rows)
        return
    pending: list[tuple] = []
    records = 0

    def merged() -> UnitBatch:
        try:
            table = _table([r for rows, *_ in pending for r in rows])
            qrows = [q for _, qs, *_ in pending for q in qs]
        except Exception:  # noqa: BLE001 - a row the schema rejects: piece by piece, as iter_unit_batches does
            tables, qrows = [], []
            for rows, qs, *_ in pending:
                tables.append(_rows_to_table(rows, format, qs))
                qrows.extend(qs)
            table = pa.concat_tables(tables)
        return UnitBatch(table, qrows, sum((s for *_, s, _ in pending), Counter()), records)

    for unit in units:
        for piece in _segments(reader, format, unit, batch_rows):
            pending.append(piece)
            records += piece[3]
            if records >= batch_rows:
                yield merged()
                pending, records = [], 0
    if pending:
        yield merged()


def _segments(reader, format: str, unit: list[str], batch_rows: int) -> Iterator[tuple[list, list, Counter, int]]:
    """(message rows, quarantine rows, skips, records) of one unit, cut every ``batch_rows`` records."""
    rows: list[dict] = []
    qrows: list[dict] = []
    skipped: Counter = Counter()
    n = 0
    for o in reader.read_unit(unit):
        n += 1
        _sort_outcome(o, format, rows, qrows, skipped)
        if n >= batch_rows:
            yield rows, qrows, skipped, n
            rows, qrows, skipped, n = [], [], Counter(), 0
    if n:
        yield rows, qrows, skipped, n


def _sort_outcome(o, format: str, rows: list[dict], qrows: list[dict], skipped: Counter) -> None:
    """File one reader outcome: a message row, a quarantine row, or a skip counted by reason."""
    if isinstance(o, Quarantined):
        qrows.append(o.row(format))
    elif isinstance(o, Skipped):
        skipped[o.reason] += 1
    else:
        rows.append(o)


def _block_batches(format: str, blocks) -> Iterator[UnitBatch]:
    """UnitBatches from a reader's ``read_batches``: its table joined by the rows of the other
    outcomes, in record order."""
    for table, outcomes, n in blocks:
        rows, qrows, skipped = [], [], Counter()
        for o in outcomes:
            _sort_outcome(o, format, rows, qrows, skipped)
        messages = _rows_to_table(rows, format, qrows) if rows or table is None else None
        if table is not None and messages is not None and messages.num_rows:
            messages = pa.concat_tables([table, messages])
            messages = messages.take(pa.compute.sort_indices(messages, [(MESSAGES.source_record, "ascending")]))
        elif table is not None:
            messages = table
        yield UnitBatch(messages, qrows, skipped, n)


def iter_ingest(format: str, paths: list[str], stats: IngestStats, log: logging.Logger | None = None,
                quarantine_rows: list[dict] | None = None) -> Iterator[pa.Table]:
    """Yield message batches (Arrow, MESSAGES schema) while filling ``stats`` and ``quarantine_rows``."""
    reader = get_reader(format)
    log = log or logging.getLogger("socialcorpus.ingest")
    quarantine_rows = quarantine_rows if quarantine_rows is not None else []
    q_reasons, s_reasons = Counter(), Counter()
    written = 0
    units = reader.units(paths)
    stats.files += sum(len(u) for u in units)
    with progress(f"ingest {format}", log, unit="records", every_s=PROGRESS_EVERY_S) as p:
        for b in iter_units_batches(format, units):
            stats.records += b.records
            quarantine_rows.extend(b.quarantine)
            q_reasons.update(q["reason"] for q in b.quarantine)
            s_reasons.update(b.skipped)
            p.update(b.records, quarantined=len(quarantine_rows))
            # Counted, not derived from records: a row lost on the way must break conservation.
            written += b.messages.num_rows
            if b.messages.num_rows:
                yield b.messages
    stats.quarantined = sum(q_reasons.values())
    stats.skipped = sum(s_reasons.values())
    stats.messages = written
    if stats.records != stats.messages + stats.quarantined + stats.skipped:
        log.error("ingest %s: %d records but %d messages + %d quarantined + %d skipped were produced",
                  format, stats.records, stats.messages, stats.quarantined, stats.skipped)
    stats.quarantined_by_reason = dict(sorted(q_reasons.items()))
    stats.skipped_by_reason = dict(sorted(s_reasons.items()))


def ingest(format: str, patterns: Iterable[str], messages_url: str, quarantine_url: str,
           log: logging.Logger | None = None) -> IngestStats:
    """Read the dumps matched by ``patterns`` with the ``format`` reader; write both tables atomically."""
    paths = expand_paths(patterns)
    stats = IngestStats(format=format)
    qrows: list[dict] = []
    storage.write_dataset(messages_url, iter_ingest(format, paths, stats, log, qrows), schema=MESSAGES.arrow)
    storage.write_dataset(quarantine_url, QUARANTINE.conform(pa.Table.from_pylist(qrows, schema=QUARANTINE.arrow)))
    return stats


def ingest_source(ctx, source_name: str, engine=None) -> dict:
    """Ingest one configured source; return its summary.

    The layout is the one Dagster's partitions use (pipelines/core/partitions.py): monthly
    formats write `messages_raw/<name>/<YYYY-MM>` per month (months whose files are gone
    are removed), every other format `messages_raw/<name>`; quarantine likewise.
    """
    from pipelines.core.partitions import MONTHLY_FORMATS, files_by_month, merge_summaries

    if engine is None:
        from pipelines import engines

        engine = engines.for_run(ctx)
    src = ctx.config.source(source_name)
    raw, quar = ctx.config.table_url("messages_raw", src.name), ctx.config.table_url("quarantine", src.name)
    if src.format not in MONTHLY_FORMATS:
        stats = engine.ingest(src.format, src.paths, raw, quar, ctx.log)
        return {"source": src.name, **stats.summary()}
    months = files_by_month(src)
    per = [{"month": m, **engine.ingest(src.format, files, storage.join(raw, m), storage.join(quar, m), ctx.log).summary()}
           for m, files in months.items()]
    for root in (raw, quar):
        storage.remove_children_except(root, set(months))
    return {"source": src.name, **merge_summaries(per, format=src.format), "months": per}


INGEST_TOTALS = ("records", "messages", "quarantined", "skipped")


def result_of(per: list[dict], **figures) -> StageResult:
    """The StageResult of the ingest summaries ``per`` (one per source, or per source of a month).

    One flow, ``records = messages + quarantined + skipped``: rows in are the records read, rows
    out the message rows written, and the drops are ``quarantined`` plus each skip policy by name
    (``join_part``, ``system_event``, …; a ``skipped`` total its reasons do not add up to breaks
    the flow). The totals also stay figures under their own names
    (the JSON summary has always had them), after ``figures`` (the per-source list, the format
    and partition of a Dagster partition).
    """
    tot = {k: sum(int(p[k]) for p in per) for k in INGEST_TOTALS}
    skipped: Counter = Counter()
    for p in per:
        skipped.update(p.get("skipped_by_reason") or {})
    dropped = {"quarantined": tot["quarantined"], **dict(sorted(skipped.items()))}
    flow = Flow("records", tot["records"], tot["messages"], dropped)
    return StageResult("ingest", tot["records"], tot["messages"], dropped, figures={**figures, **tot}, flows=(flow,))


def run(ctx, engine) -> StageResult:
    """Ingest every configured source; the result has one summary per source (``sources``) plus totals."""
    per = [ingest_source(ctx, s.name, engine) for s in ctx.config.sources]
    return result_of(per, sources=per)
