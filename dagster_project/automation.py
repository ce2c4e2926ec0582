"""Automation: the weekly full rebuild, the landing-folder sensor, and rebuilds downstream.

* ``full_rebuild_<format>`` (schedules, ``[schedule] cron``, weekly by default): request
  every raw partition that has input (each configured source; each Reddit month with files).
* ``landing_sensor``: lists the landing folder (an fsspec URL, ``[schedule] landing``) and
  requests only the raw partitions whose files are new or changed. Its cursor holds
  ``{file: size}`` of every file it has handled, so a file is requested once; a file
  that grows or is replaced with another size is requested again.
* ``corpus_automation``: every stage asset rebuilds when an upstream asset (any partition)
  was updated, so a new Reddit month re-runs what depends on it, while other months'
  partitions are not recomputed.
"""


import hashlib
import os
import json
from dataclasses import dataclass

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from dagster_project.partitions import PartitionError, partition_keys, partition_of_file
from pipelines.sources import SourceError
from dagster_project.resources import CorpusStorage
from pipelines.core.config import CorpusConfig
from pipelines.core.settings import ScheduleConfig  # the [schedule] section (was defined here)


@dataclass(frozen=True)
class LandingPlan:
    requests: dict[tuple[str, str], list[str]]  # (format, partition key) -> new files
    cursor: dict[str, int]                     # every handled file -> its size
    unmatched: list[str]                       # files no configured source reads
    errors: list[str]                          # files that could not be given a partition


def plan_landing(config: CorpusConfig, files: dict[str, int], cursor: dict[str, int]) -> LandingPlan:
    """Which raw partitions the files not yet in ``cursor`` (or with a new size) belong to."""
    requests: dict[tuple[str, str], list[str]] = {}
    new_cursor = dict(cursor)
    unmatched, errors = [], []
    for path, size in sorted(files.items()):
        if cursor.get(path) == size:
            continue
        try:
            target = partition_of_file(config, path)
        except (PartitionError, SourceError) as e:  # an unreadable file must not crash the sensor
            errors.append(str(e))
            continue
        if target is None:
            unmatched.append(path)
            continue
        requests.setdefault(target, []).append(path)
        new_cursor[path] = size
    return LandingPlan(requests, new_cursor, unmatched, errors)


def _run_key(fmt: str, key: str, files: list[str], cursor: dict[str, int]) -> str:
    h = hashlib.sha256(json.dumps([[f, cursor[f]] for f in files]).encode()).hexdigest()[:16]
    return f"landing:{fmt}:{key}:{h}"


def landing_url(config: CorpusConfig) -> str | None:
    """``[schedule] landing``; a relative path is relative to the config file, like source paths."""
    landing = config.section(ScheduleConfig).landing
    if not landing or "://" in landing or os.path.isabs(landing) or not config.path:
        return landing
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config.path)), landing))


def build_landing_sensor(config: CorpusConfig, ingest_jobs: dict):
    """The landing sensor; ``ingest_jobs`` maps each configured format to its partitioned ingest job."""
    sched = config.section(ScheduleConfig)
    landing = landing_url(config)

    @sensor(
        name="landing_sensor",
        minimum_interval_seconds=sched.sensor_interval_s,
        jobs=list(ingest_jobs.values()),
        default_status=DefaultSensorStatus.RUNNING if landing else DefaultSensorStatus.STOPPED,
        description=f"Watches {landing or '(no [schedule] landing set)'} for new dump files and "
                    "requests only their raw partitions.",
    )
    def landing_sensor(context: SensorEvaluationContext, storage: CorpusStorage):
        if not landing:
            return SkipReason("no landing folder: set `landing = \"<URL>\"` in the [schedule] section")
        cursor = json.loads(context.cursor) if context.cursor else {}
        plan = plan_landing(config, storage.list_files(landing), cursor)
        for e in plan.errors:
            context.log.warning(e)
        if plan.unmatched:
            context.log.info("%d landed file(s) match no configured source, e.g. %s",
                             len(plan.unmatched), plan.unmatched[0])
        runs = [RunRequest(run_key=_run_key(fmt, key, files, plan.cursor), job_name=ingest_jobs[fmt].name,
                           partition_key=key, tags={"socialcorpus/landed_files": str(len(files))})
                for (fmt, key), files in sorted(plan.requests.items()) if fmt in ingest_jobs]
        return SensorResult(run_requests=runs, cursor=json.dumps(plan.cursor, sort_keys=True))

    return landing_sensor


def build_schedules(config: CorpusConfig, ingest_jobs: dict) -> list:
    """One ``full_rebuild_<format>`` schedule per format, all on ``[schedule] cron``.

    A Dagster schedule targets one job and a job covers one partitions definition, so the
    full rebuild is one schedule per ingest job (same cron); each requests every partition
    of its format that has input, and the stages downstream follow through
    ``corpus_automation`` once no ingest run is in progress.
    """
    sched = config.section(ScheduleConfig)

    def make(fmt: str, job):
        @schedule(
            name=f"full_rebuild_{fmt}",
            cron_schedule=sched.cron,
            execution_timezone=sched.timezone,
            job=job,
            default_status=DefaultScheduleStatus.STOPPED,
            description=f"Full rebuild ({sched.cron}, {sched.timezone}): re-ingests every {fmt} partition; "
                        "the stages downstream follow.",
        )
        def _full_rebuild(context: ScheduleEvaluationContext):
            tag = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
            return [RunRequest(run_key=f"rebuild:{tag}:{fmt}:{key}", partition_key=key)
                    for key in partition_keys(config, fmt)]

        return _full_rebuild

    return [make(fmt, job) for fmt, job in ingest_jobs.items()]


corpus_automation = AutomationConditionSensorDefinition(
    "corpus_automation",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Rebuilds each stage when its upstream assets were updated (see each asset's condition).",
)
