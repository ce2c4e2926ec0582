"""How a stage becomes an asset: one call into `pipelines/`, its StageResult turned into metadata.

The body of every stage asset is the same two lines, so it is written once here; the
stage modules in this folder only declare which stage, which key, which group, which
upstream assets.
"""


from typing import Sequence

from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, AutomationCondition, MaterializeResult, asset

from dagster_project.resources import CorpusConfigResource, PseudonymSecret, run_context
from dagster_project.spark import SparkResource
from dagster_project.results import COUNTS_CHECK, stage_result
from pipelines.core.lock import out_lock, step_wait_s
from pipelines.core.memory import with_peak
from pipelines.stages import get_stage, run_stage

# Rebuild when any upstream asset (any partition of it) was updated, once nothing upstream
# is still running. Unlike AutomationCondition.eager() it does not wait for *every*
# upstream partition to exist: a Reddit month that was never published is not missing data.
ON_UPSTREAM_UPDATE = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("upstream updated")


def stage_asset(stage: str, key: str, group: str, deps: Sequence[str | AssetKey], description: str):
    """An asset that runs ``pipelines.stages`` stage ``stage`` and reports its StageResult."""
    spec = get_stage(stage)

    @asset(
        key=key,
        group_name=group,
        deps=list(deps),
        description=description,
        kinds={"polars", "parquet"},
        automation_condition=ON_UPSTREAM_UPDATE,
        check_specs=[AssetCheckSpec(COUNTS_CHECK, asset=key, blocking=True,
                                    description="rows_in == rows_out + dropped by reason, for each of "
                                                "the stage's flows (StageResult.conservation)")],
        metadata={"stage": stage, "module": spec.module, "writes": ", ".join(spec.writes)},
    )
    def _stage(context: AssetExecutionContext, corpus: CorpusConfigResource,
               pseudonym_secret: PseudonymSecret, spark: SparkResource) -> MaterializeResult:
        ctx = run_context(corpus, pseudonym_secret, context.log, spark)
        # Steps of one `out` take turns (the executor runs independent steps at once) and a
        # concurrent `socialcorpus build` makes them wait instead of racing it.
        with out_lock(ctx.config.out, f"dagster asset {key} (run {context.run.run_id})", wait=step_wait_s(),
                      log=context.log):
            result = with_peak(lambda: run_stage(stage, ctx))
        return stage_result(stage, ctx.config, result)

    return _stage
