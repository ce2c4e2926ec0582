"""The Spark engine's configuration surface: the `[spark]` section and the Dagster resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.core.config import ConfigError, from_dict
from pipelines.engines.spark import SparkConfig

pytestmark = pytest.mark.spark


def test_spark_section_is_read_from_the_corpus_config(tmp_path):
    cfg = from_dict({"out": str(tmp_path), "engine": "spark",
                     "spark": {"master": "spark://host:7077", "conf": {"spark.executor.memory": "8g"}}})
    sc = cfg.section("spark")
    assert cfg.engine == "spark"
    assert sc == SparkConfig(master="spark://host:7077", conf={"spark.executor.memory": "8g"})


def test_spark_conf_keys_must_be_spark_settings(tmp_path):
    cfg = from_dict({"out": str(tmp_path), "spark": {"conf": {"executor.memory": "8g"}}})
    with pytest.raises(ConfigError, match="must start with 'spark.'"):
        cfg.section("spark")


def test_dagster_spark_resource_gives_the_running_session(spark, tmp_path):
    from dagster_project.spark import SparkResource

    cfg = from_dict({"out": str(tmp_path), "spark": {"master": "local[2]", "shuffle_partitions": 4}})
    res = SparkResource.from_corpus(cfg)
    assert res.spark_config() == cfg.section("spark")
    assert SparkResource().spark_config() == SparkConfig()  # defaults come from SparkConfig
    s = res.get_session()
    assert s is spark  # one SparkSession per process: the resource reuses the running one
    assert s.range(5).count() == 5


def test_every_stage_is_one_definition_for_both_engines():
    from pipelines.stages import STAGES

    assert all(s.written_once() and s.runs_on("spark") for s in STAGES)  # run(ctx, engine): no Spark twin
    engines = Path(__file__).resolve().parent.parent / "pipelines" / "engines"
    # Spark code is the engine and its ingest adapter (mapInArrow readers), no per-stage twin
    assert sorted(p.name for p in engines.glob("spark*.py")) == ["spark.py", "spark_ingest.py"]
