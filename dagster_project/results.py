"""From a stage's summary to a MaterializeResult: metadata, derived rates, plots, inline checks.

Asset bodies stay one line of work (call the stage) and one line of reporting (this).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from dagster import AssetCheckResult, MaterializeResult, MetadataValue

from dagster_project import checks, plots
from dagster_project.metadata import dropped_total, rate, summary_metadata
from dagster_project.partitions import partition_tables
from pipelines.core import storage
from pipelines.core.config import CorpusConfig

COUNTS_CHECK = "counts_conserved"
RECORDS_CHECK = "record_conservation"


def _get(d: Mapping, *path, default=None):
    for p in path:
        if not isinstance(d, Mapping) or p not in d:
            return default
        d = d[p]
    return d


def _derived(stage: str, s: Mapping[str, Any]) -> dict:
    """The numbers a user looks for first, computed from whatever the stage reported."""
    d: dict[str, Any] = {}
    rin, rout = s.get("rows_in"), s.get("rows_out")
    if stage == "dedup" and rin:
        d["dedup_rate"] = rate(rin - (rout or 0), rin)
    if stage == "neardup":
        nontarget = s.get("non_targets", s.get("not_target", s.get("duplicates")))
        if isinstance(nontarget, int):
            d["near_dup_rate"] = rate(nontarget, rout or rin)
    if stage == "examples" and "blowup" not in s and s.get("target_messages"):
        d["blowup"] = rate(rout, s["target_messages"])
    if stage == "shards":
        splits = s.get("splits")
        if isinstance(splits, Mapping):
            d["tokens_per_split"] = {k: _get(v, "tokens") for k, v in splits.items()}
            d["rows_per_split"] = {k: _get(v, "rows") for k, v in splits.items()}
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


def stage_result(stage: str, config: CorpusConfig, summary: Mapping[str, Any]) -> MaterializeResult:
    """Metadata (summary, derived rates, plots) and the stage's counts check."""
    md = summary_metadata(summary, _derived(stage, summary))
    for plot in PLOTS.get(stage, ()):
        md.update(plot(config))
    counts = checks.stage_conservation(stage, dict(summary))
    return MaterializeResult(metadata=md, check_results=[
        AssetCheckResult(check_name=COUNTS_CHECK, passed=counts.passed, description=counts.description,
                         metadata={"failed_rows": counts.failed_rows, "dropped": dropped_total(summary)})])


def ingest_result(config: CorpusConfig, format: str, key: str, summary: Mapping[str, Any]) -> MaterializeResult:
    """Metadata for one ingest partition and its record-conservation check."""
    md = summary_metadata(summary, {"quarantine_rate": rate(summary.get("quarantined"), summary.get("records"))})
    md["rows_in"] = MetadataValue.int(summary["records"])
    md["rows_out"] = MetadataValue.int(summary["messages"])
    result = checks.ingest_conservation(config, partition_tables(config, format, key), dict(summary))
    return MaterializeResult(metadata=md, check_results=[
        AssetCheckResult(check_name=RECORDS_CHECK, passed=result.passed, description=result.description,
                         metadata={"failed_rows": result.failed_rows})])
