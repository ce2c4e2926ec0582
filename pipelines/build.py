"""`socialcorpus build`: every available stage, in order, on the configured engine, under the
output lock (pipelines/core/lock.py): a second build on the same `out` refuses instead of racing."""

from __future__ import annotations

import time

from pipelines.core.context import RunContext
from pipelines.core.lock import out_lock
from pipelines.core.memory import with_peak
from pipelines.core.progress import progress
from pipelines.core.results import StageResult
from pipelines.stages import STAGES


class BuildSummary(dict):
    """The JSON build summary (``{"out", "engine", stage: StageResult.summary(), …}``), with the
    typed results it was made from in ``results`` (``{stage: StageResult}``; not in the JSON)."""

    results: dict[str, StageResult]


def build(ctx: RunContext, until: str | None = None, command: str | None = None) -> BuildSummary:
    """Run the stages in order (up to and including ``until``); return ``{stage: summary}``.

    Holds the lock on ``out`` throughout (raises :class:`pipelines.core.lock.OutLockedError`
    naming the holder if another run has it); taking it first repairs what killed runs left,
    and the summary's ``recovered`` says what, when anything was.
    """
    with out_lock(ctx.config.out, command, log=ctx.log) as recovered:
        return _build(ctx, until, recovered)


def _build(ctx: RunContext, until: str | None, recovered: dict) -> BuildSummary:
    summary = BuildSummary(out=ctx.config.out, engine=ctx.config.engine)
    summary.results = {}
    if recovered["restored"] or recovered["removed"] or recovered["stale_holder"]:
        summary["recovered"] = recovered
    bar = progress("stages", ctx.log, total=len(STAGES), unit="stages", show_rate=False)
    for stage in STAGES:
        bar.update(0, stage=stage.name)  # the bar names the stage that is running
        if not stage.available():
            continue
        t0 = time.monotonic()
        ctx.log.info("stage %s: start", stage.name)
        result = with_peak(lambda: stage.run(ctx)).with_run(seconds=round(time.monotonic() - t0, 3))
        summary.results[stage.name] = result
        summary[stage.name] = result.summary()
        counts = result.conservation()
        if not counts.passed:
            ctx.log.error("stage %s: counts do not add up: %s", stage.name, counts.description)
        ctx.log.info("stage %s: done in %.1fs, peak RSS %.0f MB", stage.name, result.seconds, result.peak_rss_mb)
        bar.update(1)
        if stage.name == until:
            break
    bar.close()
    return summary
