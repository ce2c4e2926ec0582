"""The code location loads, resolves every job, schedule and sensor, and keeps assets thin."""

import ast
import dataclasses
from pathlib import Path

from dagster import AssetKey, Definitions, EnvVar

from dagster_project.definitions import STAGE_KEYS, build_defs, defs, make_resources
from dagster_project.resources import OVERRIDES, CorpusConfigResource
from pipelines.core.config import from_dict
from pipelines.sources import FORMATS
from test_dagster_materialize import write_config

ROOT = Path(__file__).resolve().parent.parent


def test_code_location_loads_and_resolves_everything():
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    jobs = {j.name for j in repo.get_all_jobs()}
    assert "build_corpus" in jobs
    assert {s.name for s in repo.sensor_defs} == {"landing_sensor", "corpus_automation"}
    for s in repo.schedule_defs:
        assert s.job_name in jobs
    for s in repo.sensor_defs:
        for t in s.targets:
            assert t.job_name in jobs or t.job_name.startswith("__")


def test_graph_has_one_raw_asset_per_format_and_every_stage(real, tmp_path):
    from conftest import real_sources

    d = build_defs(write_config(tmp_path / "c.toml", tmp_path / "out", real_sources(real)))
    graph = d.get_repository_def().asset_graph
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {f"messages_raw/{f}" for f in FORMATS} | set(STAGE_KEYS)
    assert graph.get(AssetKey("messages")).parent_keys == {AssetKey(["messages_raw", f]) for f in FORMATS}
    assert graph.get(AssetKey("token_shards")).parent_keys == {AssetKey(k) for k in
                                                               ("timeline", "pair_examples", "tokenizer")}
    reddit = d.get_assets_def(AssetKey(["messages_raw", "reddit"])).partitions_def
    assert "2005-12" in reddit.get_partition_keys()
    irc = d.get_assets_def(AssetKey(["messages_raw", "irc"])).partitions_def
    assert irc.get_partition_keys() == ["irc"]
    groups = {d.get_assets_def(AssetKey(k)).group_names_by_key[AssetKey(k)] for k in STAGE_KEYS}
    assert groups == {"clean", "corpus", "training"}


def test_every_resource_override_is_a_field_of_its_stage_config():
    cfg = from_dict({"out": "/tmp/x", "sources": []})
    for field, (section, key) in OVERRIDES.items():
        assert field in CorpusConfigResource.model_fields
        klass = type(cfg.section(section))
        assert key in {f.name for f in dataclasses.fields(klass)}, (field, section, key)


def test_resource_overrides_reach_the_config(tmp_path):
    path = write_config(tmp_path / "c.toml", tmp_path / "out", [])
    cfg = CorpusConfigResource(config_path=path, out=str(tmp_path / "elsewhere"), history_n=3,
                               tokenizer_vocab_size=1000).load()
    assert cfg.out == str(tmp_path / "elsewhere")
    assert cfg.section("history").n == 3
    assert cfg.section("tokenizer").vocab_size == 1000


def test_secret_comes_from_the_environment_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("SOCIALCORPUS_SECRET", "do-not-show-this")
    res = make_resources(write_config(tmp_path / "c.toml", tmp_path / "out", []))["pseudonym_secret"]
    assert isinstance(res.value, EnvVar)
    assert res.value.env_var_name == "SOCIALCORPUS_SECRET"
    assert "do-not-show-this" not in repr(res)


def test_assets_do_not_import_dataframe_libraries():
    for path in (ROOT / "assets").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"polars", "pyspark", "pyarrow", "pandas"}, path


def test_the_spark_resource_defaults_to_the_corpus_section_and_reaches_the_run(tmp_path):
    import logging

    from dagster_project.definitions import make_resources
    from dagster_project.resources import run_context

    cfg = tmp_path / "corpus.toml"
    cfg.write_text('out = "o"\nengine = "spark"\n[[sources]]\nformat = "irc"\npaths = ["x/*.txt"]\n'
                   '[spark]\nmaster = "spark://head:7077"\nconf = { "spark.executor.memory" = "8g" }\n')
    res = make_resources(str(cfg), secret="s")
    spark = res["spark"]
    assert spark.master == "spark://head:7077" and spark.conf == {"spark.executor.memory": "8g"}
    ctx = run_context(res["corpus"], res["pseudonym_secret"], logging.getLogger("t"), spark.model_copy(
        update={"master": "local[2]"}))
    assert ctx.spark_config.master == "local[2]" and ctx.spark_config.conf == {"spark.executor.memory": "8g"}
