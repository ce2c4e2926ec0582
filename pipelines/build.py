"""`socialcorpus build`: every available stage, in order, on the configured engine."""

from __future__ import annotations

import time

from pipelines.context import RunContext
from pipelines.stages import STAGES


def build(ctx: RunContext, until: str | None = None) -> dict:
    """Run the stages in order (up to and including ``until``); return ``{stage: summary}``."""
    summary: dict = {"out": ctx.config.out, "engine": ctx.config.engine}
    for stage in STAGES:
        if not stage.available():
            continue
        t0 = time.monotonic()
        ctx.log.info("stage %s: start", stage.name)
        result = stage.run(ctx)
        result["seconds"] = round(time.monotonic() - t0, 3)
        summary[stage.name] = result
        ctx.log.info("stage %s: done in %.1fs", stage.name, result["seconds"])
        if stage.name == until:
            break
    return summary
