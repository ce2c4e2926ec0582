"""The human summary that ends `socialcorpus build` and `make demo`, rendered from the summary dict.

Two summaries come in: the one ``pipelines.build.build`` returns (``{stage: summary}``) and
the one ``dagster_project.definitions.materialize_corpus`` returns (``{"assets": {key:
metadata}, "checks": …, "seconds": …}``). Both become the same rows (:class:`StageRow`),
read from each stage's :class:`pipelines.core.results.StageResult` (rebuilt from its entry,
whose keys are the same in both), and the same text: a table of stages (rows in, rows out,
dropped by reason, seconds, rate, peak resident memory), the quarantine count with its top reasons, where the
shards and the tokenizer are, and what to run next. The full JSON is written to a file whose path the text names.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from pipelines.core import storage
from pipelines.core.results import StageResult

# Stage name (pipelines/stages.py) -> the Dagster asset that runs it (dagster_project/definitions.py).
STAGE_ASSETS = {"dedup": "messages", "anonymize": "messages_anon", "neardup": "messages_dedup",
                "timeline": "timeline", "histories": "reading_histories", "examples": "pair_examples",
                "tokenizer": "tokenizer", "shards": "token_shards"}
RAW_PREFIX = "messages_raw/"
TOP_REASONS = 2
SUMMARY_FILE = "build_summary.json"  # under the config's `out`, next to the tables


@dataclass
class StageRow:
    stage: str
    rows_in: int | None
    rows_out: int | None
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None
    peak_rss_mb: float | None = None

    @property
    def rate(self) -> float | None:
        """Rows in per second."""
        if self.rows_in is None or not self.seconds:
            return None
        return self.rows_in / self.seconds


def _row(result: StageResult, seconds: float | None = None) -> StageRow:
    """A table row from a stage's result: its counts, its drops with a count, its seconds."""
    dropped = {k: int(v) for k, v in result.dropped_by_reason.items() if v}
    return StageRow(result.stage, result.rows_in, result.rows_out, dropped,
                    result.seconds if seconds is None else seconds, result.peak_rss_mb)


def _is_dagster(summary: Mapping[str, Any]) -> bool:
    return isinstance(summary.get("assets"), Mapping)


def _raw_parts(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every ingest summary in ``summary``: per source (CLI) or per raw partition (Dagster)."""
    if _is_dagster(summary):
        return [md for key, parts in summary["assets"].items() if key.startswith(RAW_PREFIX)
                for md in parts.values()]
    return list((summary.get("ingest") or {}).get("sources") or [])


def stage_results(summary: Mapping[str, Any]) -> list[tuple[StageResult, float | None]]:
    """Each stage's result, in stage order, with its seconds, from either kind of summary: the
    CLI's entries, or a Dagster run's asset metadata (the same keys, see
    :meth:`StageResult.summary`; ingest summed over the raw partitions)."""
    if _is_dagster(summary):
        secs = summary.get("seconds") or {}
        assets = summary["assets"]
        out = []
        parts = _raw_parts(summary)
        if parts:
            raw_secs = [v for k, v in secs.items() if k.startswith(RAW_PREFIX)]
            out.append((StageResult.total("ingest", [StageResult.from_summary("ingest", p) for p in parts]),
                        sum(raw_secs) if raw_secs else None))
        for stage, key in STAGE_ASSETS.items():
            if key in assets:
                out.append((StageResult.from_summary(stage, assets[key]), secs.get(key)))
        return out
    return [(StageResult.from_summary(stage, summary[stage]), None) for stage in ("ingest", *STAGE_ASSETS)
            if isinstance(summary.get(stage), Mapping)]


def stage_rows(summary: Mapping[str, Any]) -> list[StageRow]:
    """The table's rows, in stage order, from either kind of summary."""
    return [_row(r, secs) for r, secs in stage_results(summary)]


def quarantine_reasons(summary: Mapping[str, Any]) -> Counter:
    """Quarantined records by reason, summed over every source (or raw partition)."""
    c: Counter = Counter()
    for p in _raw_parts(summary):
        c.update(p.get("quarantined_by_reason") or {})
    return c


def failed_checks(summary: Mapping[str, Any]) -> dict[str, str]:
    return dict(summary.get("failed_checks") or {})


def _n(x) -> str:
    return "–" if x is None else f"{x:,}"


def _reasons(d: Mapping[str, int], top: int = TOP_REASONS) -> str:
    if not d:
        return "–"
    # Quarantined records lead the ingest row (their reasons have a line of their own).
    items = sorted(d.items(), key=lambda kv: (kv[0] != "quarantined", -kv[1], kv[0]))
    text = ", ".join(f"{k} {v:,}" for k, v in items[:top])
    return text + (f", +{len(items) - top} more" if len(items) > top else "")


def table(rows: list[StageRow]) -> str:
    """The stage table as aligned plain text."""
    head = ("stage", "rows in", "rows out", "dropped (top reasons)", "seconds", "rows/s", "peak MB")
    body = [(r.stage, _n(r.rows_in), _n(r.rows_out), _reasons(r.dropped),
             "–" if r.seconds is None else f"{r.seconds:.1f}", "–" if r.rate is None else f"{r.rate:,.0f}",
             "–" if r.peak_rss_mb is None else f"{r.peak_rss_mb:,.0f}")
            for r in rows]
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    right = {1, 2, 4, 5, 6}

    def fmt(cells) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([fmt(head), fmt("-" * w for w in widths), *map(fmt, body)])


def render(summary: Mapping[str, Any], out: str, json_path: str | None = None,
           next_steps: list[str] | None = None, title: str = "corpus built", notes: list[str] = ()) -> str:
    """The human summary of a build whose tables are under ``out`` (the config's storage root);
    ``notes`` are extra lines before the paths (the demo's training run)."""
    rows = stage_rows(summary)
    q = quarantine_reasons(summary)
    lines = [f"{title}: {out}", "", table(rows), ""]
    qurl = storage.join(out, "quarantine")
    if sum(q.values()):
        lines.append(f"quarantine: {sum(q.values()):,} records ({_reasons(q, 3)}) in {qurl}/<source>")
    else:
        lines.append("quarantine: empty")
    failed = failed_checks(summary)
    if failed:
        lines.append(f"FAILED checks ({len(failed)}): " + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3]))
    elif summary.get("checks"):
        lines.append(f"checks: all {len(summary['checks'])} passed")
    lines += list(notes)
    built = {r.stage for r in rows}
    if "shards" in built:
        lines.append(f"shards: {storage.join(out, 'shards')}/<split>/manifest.json")
    if "tokenizer" in built:
        lines.append(f"tokenizer: {storage.join(out, 'tokenizer.json')}")
    if rows and "shards" not in built:
        lines.append(f"stopped after {rows[-1].stage}: no shards built in this run")
        next_steps = []
    if json_path:
        lines.append(f"full summary (JSON): {json_path}")
    for i, step in enumerate(next_steps or []):
        lines.append(("next: " if i == 0 else "      ") + step)
    return "\n".join(lines) + "\n"


def next_commands(out: str, split: str = "validation", prog: str = "socialcorpus") -> list[str]:
    """The one command to try next: look at a training example."""
    return [f"{prog} show-example --data {storage.join(out, 'shards', split, 'manifest.json')}"]


def write_json(obj: Any, path: str) -> str:
    """Write ``obj`` as indented JSON to ``path`` (a local path or fsspec URL); return the path."""
    if "://" not in path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    storage.write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode("utf-8"))
    return path
