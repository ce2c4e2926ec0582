"""Asset checks: the stages' own check functions, run against the tables they wrote.

Each check loads what it needs from storage and calls the check function that lives with
its stage in ``pipelines/`` (so the CLI, the tests and Dagster agree on what "passed"
means). A stage's counts check (``counts_conserved``, inline in its asset) is its result's
:meth:`pipelines.core.results.StageResult.conservation`, only reported here. A failing check
names what failed and how many rows, with up to ten samples.
Checks on the corpus's integrity are blocking: a failure stops downstream assets.
"""


import json

import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetKey, asset_check

from dagster_project.resources import CorpusConfigResource, PseudonymSecret, run_context
from pipelines.core import storage
from pipelines.core.checks import CheckResult
from pipelines.core.config import CorpusConfig
from pipelines.core.results import StageResult
from pipelines.core.settings import AnonymizeConfig


def to_dagster(result: CheckResult, **extra) -> AssetCheckResult:
    return AssetCheckResult(
        passed=result.passed,
        severity=AssetCheckSeverity.ERROR,
        description=result.description,
        metadata={"failed_rows": result.failed_rows, "samples": json.dumps(result.samples[:10], default=str),
                  **extra},
    )


def _rows(url: str) -> int:
    """Rows of a Parquet dataset from file footers (no data read)."""
    fs, _ = storage.fs_and_path(url)
    total = 0
    for f in storage.dataset_files(url):
        with fs.open(f, "rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


# --- the glue: load a table, call the stage's check -------------------------------------------------

def ingest_conservation(config: CorpusConfig, tables: list[tuple[str, str]], result: StageResult) -> CheckResult:
    """The ingest result's own conservation (records = messages + quarantined + skipped, see
    :func:`pipelines.stages.ingest.result_of`), and the written tables hold exactly the rows it
    counted (read from the Parquet footers here, since only this check reads the files)."""
    counts = result.conservation()
    m, q = result.rows_out, result.dropped_by_reason.get("quarantined", 0)
    written_m = sum(_rows(mu) for mu, _ in tables)
    written_q = sum(_rows(qu) for _, qu in tables)
    problems = [] if counts.passed else [counts.description]
    if written_m != m:
        problems.append(f"messages_raw holds {written_m} rows, the reader counted {m}")
    if written_q != q:
        problems.append(f"quarantine holds {written_q} rows, the reader counted {q}")
    failed = counts.failed_rows + abs(written_m - m) + abs(written_q - q)
    return CheckResult("record_conservation", not problems, failed, "; ".join(problems) or counts.description,
                       [*counts.samples, [u for u, _ in tables]])


def no_pii_leak(config: CorpusConfig, secret: bytes) -> CheckResult:
    """No raw handle, e-mail, phone or the secret of `messages` survives in `messages_anon`."""
    from pipelines.core.leaks import scan_leaks

    raw = storage.read(config.table_url("messages"))
    anon = storage.read(config.table_url("messages_anon"))
    # The stage's own [anonymize] settings, so check and stage agree on which names are mentions.
    return scan_leaks(raw, anon, secret, cfg=config.section(AnonymizeConfig))


def timeline_order(config: CorpusConfig) -> CheckResult:
    from pipelines.stages.timeline import check_order

    return check_order(storage.read(config.table_url("timeline")))


def histories_causal(config: CorpusConfig) -> CheckResult:
    from pipelines.stages.histories import check_causal

    return check_causal(storage.read(config.table_url("reading_histories")))


def no_split_leakage(config: CorpusConfig) -> CheckResult:
    from pipelines.stages.examples import check_split_leakage

    return check_split_leakage(storage.read(config.table_url("pair_examples")))


def manifests_verify(config: CorpusConfig) -> CheckResult:
    """Every split's manifest.json matches its shards (rows, tokens, sha256)."""
    from pipelines.stages.shards import verify_manifest

    root = config.table_url("shards")
    fs, path = storage.fs_and_path(root)
    manifests = sorted(p for p in fs.glob(f"{path}/*/manifest.json"))
    if not manifests:
        return CheckResult("manifest_checksums", False, 0, f"{root}: no <split>/manifest.json found")
    proto = root.split("://", 1)[0] + "://" if "://" in root and not root.startswith("file://") else ""
    results = [verify_manifest(proto + m if proto else m) for m in manifests]
    failed = [r for r in results if not r.passed]
    return CheckResult("manifest_checksums", not failed, sum(r.failed_rows for r in failed),
                       "; ".join(r.description for r in (failed or results)),
                       [s for r in failed for s in r.samples][:10])


# --- the Dagster asset checks --------------------------------------------------------------------

@asset_check(asset=AssetKey("messages_anon"), blocking=True,
             description="No raw author handle, e-mail, phone number or the secret survives anonymisation.")
def no_pii_leak_check(context: AssetCheckExecutionContext, corpus: CorpusConfigResource,
                      pseudonym_secret: PseudonymSecret) -> AssetCheckResult:
    ctx = run_context(corpus, pseudonym_secret, context.log)
    return to_dagster(no_pii_leak(ctx.config, ctx.secret()))


@asset_check(asset=AssetKey("timeline"), blocking=True,
             description="`seq` is dense 0..n-1 per timeline and follows the sort key.")
def timeline_order_check(context: AssetCheckExecutionContext, corpus: CorpusConfigResource) -> AssetCheckResult:
    return to_dagster(timeline_order(corpus.load()))


@asset_check(asset=AssetKey("reading_histories"), blocking=True,
             description="Every referenced message is strictly earlier on its timeline.")
def histories_causal_check(context: AssetCheckExecutionContext, corpus: CorpusConfigResource) -> AssetCheckResult:
    return to_dagster(histories_causal(corpus.load()))


@asset_check(asset=AssetKey("pair_examples"), blocking=True,
             description="No thread has examples in two splits.")
def split_leakage_check(context: AssetCheckExecutionContext, corpus: CorpusConfigResource) -> AssetCheckResult:
    return to_dagster(no_split_leakage(corpus.load()))


@asset_check(asset=AssetKey("token_shards"), blocking=True,
             description="Each split's manifest.json matches its shard files (rows, tokens, sha256).")
def manifest_checksums_check(context: AssetCheckExecutionContext, corpus: CorpusConfigResource) -> AssetCheckResult:
    return to_dagster(manifests_verify(corpus.load()))


ASSET_CHECKS = [no_pii_leak_check, timeline_order_check, histories_causal_check, split_leakage_check,
                manifest_checksums_check]
