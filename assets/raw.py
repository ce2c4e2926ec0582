"""Ingest assets: one per dump format, partitioned by month (Reddit) or by configured source."""


from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, asset

from dagster_project.partitions import configured_formats, ingest_partition, partitions_def
from dagster_project.resources import CorpusConfigResource, PseudonymSecret, run_context
from dagster_project.spark import SparkResource
from dagster_project.results import RECORDS_CHECK, ingest_result
from pipelines.core.config import CorpusConfig
from pipelines.core.lock import out_lock, step_wait_s
from pipelines.core.memory import with_peak

GROUP = "ingest"


def raw_key(format: str) -> AssetKey:
    return AssetKey(["messages_raw", format])


def raw_asset(config: CorpusConfig, format: str) -> AssetsDefinition:
    key = raw_key(format)

    @asset(
        key=key,
        group_name=GROUP,
        partitions_def=partitions_def(config, format),
        description=f"The {format} dumps read into `messages_raw/<source>` and `quarantine/<source>`: every "
                    "record is a message, a quarantine row with a reason, or a skip counted by policy.",
        kinds={"python", "parquet"},
        check_specs=[AssetCheckSpec(RECORDS_CHECK, asset=key, blocking=True,
                                    description="records == messages + quarantined + skipped, as written")],
        metadata={"format": format},
    )
    def _raw(context: AssetExecutionContext, corpus: CorpusConfigResource,
             pseudonym_secret: PseudonymSecret, spark: SparkResource) -> MaterializeResult:
        ctx = run_context(corpus, pseudonym_secret, context.log, spark)
        with out_lock(ctx.config.out, f"dagster asset {key.to_user_string()}[{context.partition_key}] "
                      f"(run {context.run.run_id})", wait=step_wait_s(), log=context.log):
            result = with_peak(lambda: ingest_partition(ctx, format, context.partition_key))
        return ingest_result(ctx.config, format, context.partition_key, result)

    return _raw


def build(config: CorpusConfig) -> list[AssetsDefinition]:
    """One raw asset per format that has a configured source."""
    return [raw_asset(config, f) for f in configured_formats(config)]
