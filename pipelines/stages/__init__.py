"""The stages of the corpus build, in order. Each is ``run(ctx[, engine]) -> StageResult`` in its module.

The CLI (`socialcorpus build`), the Dagster assets, the benchmarks and the tests all call
stages through here, so a stage is written once.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass

from pipelines.core.results import StageResult


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def written_once(self) -> bool:
        """True when the stage is one definition for both engines (``run(ctx, engine)``)."""
        return "engine" in inspect.signature(importlib.import_module(self.module).run).parameters

    def runs_on(self, engine: str) -> bool:
        """Whether the stage really runs on ``engine`` (else it falls back to Polars)."""
        return engine == "polars" or self.written_once()

    def run(self, ctx) -> StageResult:
        """Run on the configured engine (chosen in one place, :func:`pipelines.engines.for_run`).

        A stage written once for both engines has ``run(ctx, engine)`` (every stage today). A
        stage without that would run on Polars and the result would say so (``engine``), so
        nothing pretends to have been distributed."""
        module = importlib.import_module(self.module)
        if self.written_once():
            from pipelines import engines

            engine = engines.for_run(ctx)
            return as_result(self.name, module.run(ctx, engine)).with_run(engine=engine.name)
        if ctx.config.engine == "spark":
            ctx.log.warning("stage %s has no Spark implementation; running it on Polars", self.name)
        return as_result(self.name, module.run(ctx)).with_run(engine="polars")


def as_result(stage: str, result: StageResult) -> StageResult:
    """A stage's return value, checked: every stage returns a StageResult (a TypeError names the
    stage that does not)."""
    if not isinstance(result, StageResult):
        raise TypeError(f"stage {stage} returned {type(result).__name__}, not a StageResult")
    return result


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "pipelines.stages.ingest", (), ("messages_raw", "quarantine")),
    Stage("dedup", "pipelines.stages.dedup", ("messages_raw",), ("messages",)),
    Stage("anonymize", "pipelines.stages.anonymize", ("messages",), ("messages_anon",)),
    Stage("neardup", "pipelines.stages.neardup", ("messages_anon",), ("messages_dedup",)),
    Stage("timeline", "pipelines.stages.timeline", ("messages_dedup",), ("timeline",)),
    Stage("histories", "pipelines.stages.histories", ("timeline",), ("reading_histories",)),
    Stage("examples", "pipelines.stages.examples", ("timeline", "reading_histories"), ("pair_examples",)),
    Stage("tokenizer", "pipelines.stages.tokenizer", ("timeline", "pair_examples"), ("tokenizer.json",)),
    Stage("shards", "pipelines.stages.shards", ("timeline", "pair_examples", "tokenizer.json"), ("shards",)),
)


def get_stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def run_stage(name: str, ctx) -> StageResult:
    return get_stage(name).run(ctx)
