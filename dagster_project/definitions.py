"""The one code location: ``dagster_project.definitions:defs``.

The corpus configuration file (``$SOCIALCORPUS_CONFIG``, default the demo corpus's
``demo/dumps/corpus.toml``) decides the raw assets' partitions (its sources) and the
schedule; the same file drives ``socialcorpus build``. The environment is chosen here
and only here: the pseudonym secret comes from ``$SOCIALCORPUS_SECRET`` through an
``EnvVar`` (the UI shows the variable's name, never the value).

    dagster dev -m dagster_project.definitions
    dagster asset materialize -m dagster_project.definitions --select '*'
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    Definitions,
    DagsterEventType,
    DagsterInstance,
    EnvVar,
    define_asset_job,
    materialize,
)

import assets.clean
import assets.corpus
import assets.raw
import assets.training
from dagster_project.automation import build_landing_sensor, build_schedules, corpus_automation
from dagster_project.checks import ASSET_CHECKS
from dagster_project.partitions import configured_formats, partition_keys
from dagster_project.resources import CorpusConfigResource, CorpusStorage, PseudonymSecret
from dagster_project.spark import SparkResource
from pipelines.core import config as cfgmod
from pipelines.core.context import SECRET_ENV
from pipelines.sources import FORMATS

ROOT = Path(__file__).resolve().parent.parent
CONFIG_ENV = "SOCIALCORPUS_CONFIG"
DEFAULT_CONFIG = ROOT / "demo" / "dumps" / "corpus.toml"
STAGE_KEYS = ("messages", "messages_anon", "messages_dedup", "timeline", "reading_histories", "pair_examples",
              "tokenizer", "token_shards")


def config_path() -> str:
    return os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG)


def _config_for_layout(path: str) -> cfgmod.CorpusConfig:
    """The config that shapes the graph. Before the file exists (a fresh clone, no demo yet),
    one source per format named after it, so the code location still loads; a run then
    fails with the config loader's "config file not found" naming the file."""
    if os.path.exists(path):
        return cfgmod.load(path)
    return cfgmod.CorpusConfig(out=str(ROOT / "demo" / "out"), path=path,
                               sources=tuple(cfgmod.SourceConfig(f, f, ()) for f in FORMATS))


def make_resources(path: str, out: str | None = None, secret: str | None = None) -> dict:
    """Resources for the corpus at ``path``. ``secret``: an explicit value (tests); else the
    EnvVar when the variable is set; else the stage's own fallback (the config's labelled demo
    secret, or a clear error)."""
    if secret is not None:
        pseudonym = PseudonymSecret(value=secret)
    elif os.environ.get(SECRET_ENV):
        pseudonym = PseudonymSecret(value=EnvVar(SECRET_ENV))
    else:
        pseudonym = PseudonymSecret()
    return {"corpus": CorpusConfigResource(config_path=os.path.abspath(path), out=out),
            "pseudonym_secret": pseudonym, "storage": CorpusStorage(),
            # Used when the corpus sets engine = "spark"; defaults from the file's [spark] section.
            "spark": SparkResource.from_corpus(_config_for_layout(path))}


def build_defs(path: str, out: str | None = None, secret: str | None = None) -> Definitions:
    """The Definitions for the corpus configured at ``path``."""
    config = _config_for_layout(path)
    raw = assets.raw.build(config)
    raw_keys = {f: assets.raw.raw_key(f) for f in configured_formats(config)}
    stage_assets = [*assets.clean.build(list(raw_keys.values())), *assets.corpus.ASSETS, *assets.training.ASSETS]
    ingest_jobs = {f: define_asset_job(f"ingest_{f}", selection=AssetSelection.assets(k),
                                       description=f"Ingest one partition of the {f} dumps.")
                   for f, k in raw_keys.items()}
    build_job = define_asset_job("build_corpus", selection=AssetSelection.assets(*STAGE_KEYS),
                                 description="Every stage after ingestion, from the raw tables as they are.")
    return Definitions(
        assets=[*raw, *stage_assets],
        asset_checks=ASSET_CHECKS,
        jobs=[*ingest_jobs.values(), build_job],
        schedules=build_schedules(config, ingest_jobs),
        sensors=[build_landing_sensor(config, ingest_jobs), corpus_automation],
        resources=make_resources(path, out, secret),
    )


defs = build_defs(config_path())


def _summary_of(result) -> dict:
    out: dict = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.step_materialization_data.materialization
        key = mat.asset_key.to_user_string()
        md = {k: v.value for k, v in mat.metadata.items()
              if not k.startswith("plot_") and k != "example" and isinstance(v.value, (int, float, str, dict, list))}
        if mat.partition:
            out.setdefault(key, {})[mat.partition] = md
        else:
            out[key] = md
    return out


def _checks_of(result) -> dict:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


def _seconds_of(instance: DagsterInstance, result) -> dict[str, float]:
    """Seconds each asset's step took in ``result``'s run, from the run's event log."""
    start, end, asset_of = {}, {}, {}
    for entry in instance.all_logs(result.run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type == DagsterEventType.STEP_START:
            start[ev.step_key] = entry.timestamp
        elif ev.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            end[ev.step_key] = entry.timestamp
        elif ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            asset_of[ev.step_key] = ev.asset_key.to_user_string()
    return {a: round(end[k] - start[k], 3) for k, a in asset_of.items() if k in start and k in end}


def _failures_of(result) -> dict:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.description
            for e in result.get_asset_check_evaluations() if not e.passed}


def materialize_corpus(path: str, instance: DagsterInstance | None = None, out: str | None = None,
                       secret: str | None = None, raise_on_error: bool = True, log_level: str = "DEBUG") -> dict:
    """Materialise every asset in process: each raw partition with input, then every stage.

    Returns ``{"assets": {key: metadata}, "checks": {"asset:check": passed}, "failed_checks":
    {"asset:check": description}, "seconds": {key: seconds of its steps}}``. With
    ``raise_on_error`` it raises on the first failed step; either way a failed blocking
    check stops the stages after it (and its result is in ``checks``). ``instance``: where
    the runs are recorded (``make demo`` passes the project's persistent one, so the UI shows
    them); default an ephemeral one. ``log_level``: of Dagster's console logger (``INFO``
    shows the stages' own lines and progress, not every Dagster event).
    """
    d = build_defs(path, out, secret)
    resources = make_resources(path, out, secret)
    instance = instance or DagsterInstance.ephemeral()
    config = cfgmod.load(path)
    all_assets = list(d.assets)
    summary: dict = {"assets": {}, "checks": {}, "failed_checks": {}, "seconds": {}}
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    for a in all_assets:
        if a.partitions_def is None:
            continue
        fmt = a.key.path[-1]
        for key in partition_keys(config, fmt):
            r = materialize(all_assets, instance=instance, resources=resources, partition_key=key,
                            selection=AssetSelection.assets(a.key), raise_on_error=raise_on_error,
                            run_config=run_config)
            for k, secs in _seconds_of(instance, r).items():
                summary["seconds"][k] = round(summary["seconds"].get(k, 0.0) + secs, 3)
            for k, v in _summary_of(r).items():
                summary["assets"].setdefault(k, {}).update(v)
            summary["checks"].update({f"{c}[{key}]": p for c, p in _checks_of(r).items()})
            summary["failed_checks"].update({f"{c}[{key}]": d for c, d in _failures_of(r).items()})
    r = materialize([*all_assets, *ASSET_CHECKS], instance=instance, resources=resources,
                    selection=AssetSelection.assets(*STAGE_KEYS) | AssetSelection.checks_for_assets(*STAGE_KEYS),
                    raise_on_error=raise_on_error, run_config=run_config)
    summary["seconds"].update(_seconds_of(instance, r))
    summary["assets"].update(_summary_of(r))
    summary["checks"].update(_checks_of(r))
    summary["failed_checks"].update(_failures_of(r))
    return summary


__all__ = ["defs", "build_defs", "make_resources", "materialize_corpus", "config_path", "STAGE_KEYS", "AssetKey"]
