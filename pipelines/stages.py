"""The stages of the corpus build, in order. Each is ``run(ctx: RunContext) -> dict`` in its module.

The CLI (`socialcorpus build`), the Dagster assets, the benchmarks and the tests all call
stages through here, so a stage is written once.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def run(self, ctx) -> dict:
        """Run on the configured engine. A stage without a Spark side runs on Polars and the
        summary says so (``engine``), so nothing pretends to have been distributed."""
        if ctx.config.engine == "spark":
            from pipelines.engines import spark

            if spark.has_stage(self.name):
                return {**spark.run_stage(self.name, ctx), "engine": "spark"}
            ctx.log.warning("stage %s has no Spark implementation; running it on Polars", self.name)
        return {**importlib.import_module(self.module).run(ctx), "engine": "polars"}


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "pipelines.ingest", (), ("messages_raw", "quarantine")),
    Stage("dedup", "pipelines.dedup", ("messages_raw",), ("messages",)),
    Stage("anonymize", "pipelines.anonymize", ("messages",), ("messages_anon",)),
    Stage("neardup", "pipelines.neardup", ("messages_anon",), ("messages_dedup",)),
    Stage("timeline", "pipelines.timeline", ("messages_dedup",), ("timeline",)),
    Stage("histories", "pipelines.histories", ("timeline",), ("reading_histories",)),
    Stage("examples", "pipelines.examples", ("timeline", "reading_histories"), ("pair_examples",)),
    Stage("tokenizer", "pipelines.tokenizer", ("timeline", "pair_examples"), ("tokenizer.json",)),
    Stage("shards", "pipelines.shards", ("timeline", "pair_examples", "tokenizer.json"), ("shards",)),
)


def get_stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def run_stage(name: str, ctx) -> dict:
    return get_stage(name).run(ctx)
