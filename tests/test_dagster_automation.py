"""The landing sensor, the full-rebuild schedules and the rebuild-downstream automation."""

import shutil
from datetime import datetime, timezone

import pytest
from dagster import (AssetKey, DagsterInstance, build_schedule_context, build_sensor_context,
                     evaluate_automation_conditions, materialize)

from dagster_project.definitions import STAGE_KEYS, build_defs, make_resources
from dagster_project.partitions import month_of_file, partition_of_file
from dagster_project.resources import CorpusStorage
from pipelines.core.config import load
from test_dagster_materialize import write_config

SECRET = "sensor-test-secret"


@pytest.fixture()
def landing_corpus(real, tmp_path):
    """A corpus whose Reddit and Telegram sources read from a landing folder, empty at first."""
    landing = tmp_path / "landing"
    (landing / "reddit").mkdir(parents=True)
    (landing / "telegram").mkdir()
    sources = [{"format": "reddit", "paths": [f"{landing}/reddit/R[CS]_*.zst"]},
               {"format": "telegram", "paths": [f"{landing}/telegram/*.json"]}]
    cfg = write_config(tmp_path / "corpus.toml", tmp_path / "out", sources,
                       schedule={"landing": str(landing), "cron": "0 4 * * 1"})
    return cfg, landing


def _tick(defs, instance, cursor):
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("landing_sensor")
    ctx = build_sensor_context(instance=instance, cursor=cursor, resources={"storage": CorpusStorage()},
                               repository_def=repo)
    result = sensor(ctx)
    return result.run_requests, result.cursor


def test_new_dump_file_requests_exactly_its_partition_once(real, landing_corpus):
    cfg, landing = landing_corpus
    defs = build_defs(cfg)
    with DagsterInstance.ephemeral() as instance:
        runs, cursor = _tick(defs, instance, None)
        assert runs == []
        shutil.copy(real / "reddit" / "RC_2005-12.zst", landing / "reddit" / "RC_2005-12.zst")
        runs, cursor = _tick(defs, instance, cursor)
        assert [(r.job_name, r.partition_key) for r in runs] == [("ingest_reddit", "2005-12")]
        # The same file again (copied over itself): nothing new.
        shutil.copy(real / "reddit" / "RC_2005-12.zst", landing / "reddit" / "RC_2005-12.zst")
        runs, cursor = _tick(defs, instance, cursor)
        assert runs == []


def test_files_of_static_sources_request_their_source_partition(real, landing_corpus):
    cfg, landing = landing_corpus
    defs = build_defs(cfg)
    with DagsterInstance.ephemeral() as instance:
        _, cursor = _tick(defs, instance, None)
        for f in (real / "telegram").glob("*.json"):
            shutil.copy(f, landing / "telegram" / f.name)
        (landing / "notes.txt").write_text("not a dump")
        runs, cursor = _tick(defs, instance, cursor)
        # two new files of one source -> one run for that source's partition
        assert [(r.job_name, r.partition_key) for r in runs] == [("ingest_telegram", "telegram")]
        assert _tick(defs, instance, cursor)[0] == []


def test_reddit_month_comes_from_the_name_or_the_first_record(real):
    assert month_of_file(str(real / "reddit" / "RC_2005-12.zst")) == "2005-12"
    assert month_of_file(str(real / "reddit" / "paul-e_test_comments.ndjson")) == "2024-02"


def test_a_file_no_source_reads_has_no_partition(real, landing_corpus):
    cfg, landing = landing_corpus
    assert partition_of_file(load(cfg), str(landing / "elsewhere.zst")) is None


def test_full_rebuild_schedules_request_every_partition_with_input(real, landing_corpus):
    cfg, landing = landing_corpus
    shutil.copy(real / "reddit" / "RC_2005-12.zst", landing / "reddit" / "RC_2005-12.zst")
    defs = build_defs(cfg)
    repo = defs.get_repository_def()
    sched = repo.get_schedule_def("full_rebuild_reddit")
    assert sched.cron_schedule == "0 4 * * 1"  # from the config's [schedule] section
    with DagsterInstance.ephemeral() as instance:
        requests = sched.evaluate_tick(build_schedule_context(instance=instance, repository_def=repo, scheduled_execution_time=datetime(2026, 1, 5, 4, tzinfo=timezone.utc))).run_requests
    assert [(r.partition_key, r.run_key) for r in requests] == [("2005-12", "rebuild:20260105T0400:reddit:2005-12")]


def test_new_month_rebuilds_downstream_but_not_other_partitions(real, landing_corpus):
    cfg, landing = landing_corpus
    shutil.copy(real / "reddit" / "RC_2005-12.zst", landing / "reddit" / "RC_2005-12.zst")
    defs = build_defs(cfg, secret=SECRET)
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0
        raw = defs.get_assets_def(AssetKey(["messages_raw", "reddit"]))
        materialize([raw], partition_key="2005-12", instance=instance, resources=make_resources(cfg, secret=SECRET))
        second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        for key in STAGE_KEYS:
            assert second.get_num_requested(AssetKey(key)) == 1, key
        # only the stages: no raw partition (this month or any other) is recomputed
        assert second.total_requested == len(STAGE_KEYS)
        assert second.get_num_requested(AssetKey(["messages_raw", "reddit"])) == 0
