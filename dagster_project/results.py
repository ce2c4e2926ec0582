"""From a stage's StageResult to a MaterializeResult: metadata, derived rates, plots, inline checks.

Asset bodies stay one line of work (call the stage) and one line of reporting (this). The
metadata is the result's JSON summary (:meth:`StageResult.summary`), so the UI shows the same
keys as `socialcorpus build --json`; the counts check is the result's own
:meth:`StageResult.conservation`, reported, not recomputed.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from dagster import AssetCheckResult, MaterializeResult, MetadataValue

from dagster_project import checks, plots
from dagster_project.metadata import rate, summary_metadata
from dagster_project.partitions import partition_tables
from pipelines.core import storage
from pipelines.core.config import CorpusConfig
from pipelines.core.results import StageResult

COUNTS_CHECK = "counts_conserved"
RECORDS_CHECK = "record_conservation"


def _derived(result: StageResult) -> dict:
    """The numbers a user looks for first, from the result's counts and its stage's figures."""
    d: dict[str, Any] = {}
    rin, rout, fig = result.rows_in, result.rows_out, result.figures
    if result.stage == "dedup":
        d["dedup_rate"] = rate(rin - rout, rin)
    if result.stage == "neardup":  # duplicates stay as context rows (is_target false), not dropped
        d["near_dup_rate"] = rate(fig["duplicates"], rout)
    if result.stage == "shards":
        d["tokens_per_split"] = {k: v["tokens"] for k, v in fig["splits"].items()}
        d["rows_per_split"] = {k: v["rows"] for k, v in fig["splits"].items()}
    return {k: v for k, v in d.items() if v is not None}


def shard_example(config: CorpusConfig) -> dict:
    """One training example as the model sees it (``socialcorpus show-example``, as Markdown),
    from the validation split, or the first non-empty split when a small corpus left it empty."""
    from pipelines.show_example import show

    for split in ("validation", "train", "test"):
        manifest = storage.join(config.table_url("shards", split), "manifest.json")
        fs, path = storage.fs_and_path(manifest)
        if fs.exists(path) and json.loads(fs.cat_file(path)).get("rows"):
            return {"example": MetadataValue.md(show(manifest, markdown=True))}
    return {}


# stage -> functions run on its output, each returning metadata entries (plots, an example)
PLOTS: dict[str, tuple[Callable[[CorpusConfig], dict], ...]] = {
    "timeline": (plots.messages_per_day,),
    "histories": (plots.history_lengths,),
    "examples": (plots.example_gaps,),
    "shards": (shard_example,),
}


def _counts_check(name: str, counts, result: StageResult) -> AssetCheckResult:
    return AssetCheckResult(check_name=name, passed=counts.passed, description=counts.description,
                            metadata={"failed_rows": counts.failed_rows, "dropped": result.dropped,
                                      "failed_flows": ", ".join(f.name for f in result.laws() if f.off_by)})


def stage_result(stage: str, config: CorpusConfig, result: StageResult) -> MaterializeResult:
    """Metadata (summary, derived rates, plots) and the stage's counts check."""
    md = summary_metadata(result, _derived(result))
    for plot in PLOTS.get(stage, ()):
        md.update(plot(config))
    return MaterializeResult(metadata=md, check_results=[_counts_check(COUNTS_CHECK, result.conservation(), result)])


def ingest_result(config: CorpusConfig, format: str, key: str, result: StageResult) -> MaterializeResult:
    """Metadata for one ingest partition and its record-conservation check (the result's flow,
    and the written tables' rows against the counted ones)."""
    quarantined = result.dropped_by_reason.get("quarantined", 0)
    md = summary_metadata(result, {"quarantine_rate": rate(quarantined, result.rows_in)})
    counts = checks.ingest_conservation(config, partition_tables(config, format, key), result)
    return MaterializeResult(metadata=md, check_results=[_counts_check(RECORDS_CHECK, counts, result)])
