"""Token shards for the trainer tests, built through the real pipeline.

``pipelines.sample.write_sample`` writes the demo dumps (every format) and
``pipelines.build.build`` runs every stage on them up to the shards, exactly as ``make demo``
does without Dagster. Built once per test process (the build takes tens of seconds).
"""

from __future__ import annotations

from pathlib import Path

_BUILT: dict[str, dict[str, str]] = {}


def build_demo_shards(out: Path) -> dict[str, str]:
    """Build the demo corpus under ``out``; return {split: manifest path}."""
    key = str(out)
    if key not in _BUILT:
        from pipelines.core import config as cfgmod
        from pipelines.build import build
        from pipelines.core.context import RunContext
        from pipelines.sample import write_sample

        write_sample(str(out / "dumps"), seed=0, scale=1)
        cfg = cfgmod.load(str(out / "dumps" / "corpus.toml"))
        build(RunContext(cfg))
        root = cfg.table_url("shards")
        _BUILT[key] = {s: f"{root}/{s}/manifest.json" for s in ("train", "validation", "test")}
    return _BUILT[key]


def shards_dir(tmp_path_factory) -> dict[str, str]:
    """The session's demo shards (one build per process, whichever test module asks first)."""
    if not _BUILT:
        return build_demo_shards(tmp_path_factory.mktemp("trainer_demo"))
    return next(iter(_BUILT.values()))
