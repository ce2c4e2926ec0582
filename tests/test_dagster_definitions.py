"""The code location loads, resolves every job, schedule and sensor, and keeps assets thin."""

import ast
from pathlib import Path

import pytest

from dagster import AssetKey, Definitions, EnvVar

from dagster_project.definitions import STAGE_KEYS, build_defs, defs, make_resources
from dagster_project.resources import OVERRIDES, CorpusConfigResource
from pipelines.core.config import ConfigError
from pipelines.core.settings import SECTIONS, HistoryConfig, TokenizerConfig
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


def test_resource_overrides_are_derived_from_the_section_models():
    """One override field per section that decides a build's content, with that model's keys
    (secrets left out) and descriptions."""
    content = {name for name, m in SECTIONS.items() if m.HASH_KEY}
    assert set(OVERRIDES) == content == {"anonymize", "neardup", "histories", "examples", "tokenizer", "shards"}
    assert content <= set(CorpusConfigResource.model_fields)
    for name, overrides in OVERRIDES.items():
        model = SECTIONS[name]
        assert set(overrides.model_fields) == {k for k in model.model_fields if "secret" not in k}, name
        for key, f in overrides.model_fields.items():
            assert f.description == model.model_fields[key].description and f.default is None


def test_resource_overrides_reach_the_config(tmp_path):
    path = write_config(tmp_path / "c.toml", tmp_path / "out", [], history={"n": 2, "k": 7})
    cfg = CorpusConfigResource(config_path=path, out=str(tmp_path / "elsewhere"), histories={"n": 3},
                               tokenizer={"vocab_size": 1000}, anonymize={"extra_stopwords": ["Foo"]}).load()
    assert cfg.out == str(tmp_path / "elsewhere")
    assert cfg.section(HistoryConfig) == HistoryConfig(n=3, k=7)  # unset keys keep the file's ([history]: old name)
    assert cfg.section(TokenizerConfig).vocab_size == 1000
    assert cfg.section("anonymize").extra_stopwords == ("foo",)
    with pytest.raises(ConfigError, match=r"corpus resource overrides: .*\[histories\] n = 11"):
        CorpusConfigResource(config_path=path, histories={"n": 11}).load()


def test_the_old_flat_override_fields_still_work_with_a_warning(tmp_path, caplog):
    """Run configs written for resource version 1 (`history_n`, `split_salt`, …) keep working."""
    from dagster_project.resources import LEGACY_OVERRIDES

    path = write_config(tmp_path / "c.toml", tmp_path / "out", [], history={"n": 2, "k": 7})
    with caplog.at_level("WARNING", logger="socialcorpus"):
        cfg = CorpusConfigResource(config_path=path, history_n=4, split_salt="s2", tokenizer_vocab_size=900).load()
    assert cfg.section(HistoryConfig) == HistoryConfig(n=4, k=7)
    assert cfg.section("examples").split_salt == "s2" and cfg.section(TokenizerConfig).vocab_size == 900
    assert "history_n is deprecated" in caplog.text
    # the per-section table wins over the flat field; every flat field names a real key
    assert CorpusConfigResource(config_path=path, history_n=4, histories={"n": 5}).load().section(HistoryConfig).n == 5
    for section, key in LEGACY_OVERRIDES.values():
        assert key in SECTIONS[section].model_fields
    with pytest.raises(ConfigError, match=r"\[histories\] n = 11"):
        CorpusConfigResource(config_path=path, history_n=11).load()


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


def test_resource_overrides_are_set_through_dagster_run_config(tmp_path):
    """The derived override tables are real Dagster config: the launchpad's run config sets them."""
    from dagster import asset, materialize

    path = write_config(tmp_path / "c.toml", tmp_path / "out", [])

    @asset
    def settings_seen(corpus: CorpusConfigResource) -> list:
        cfg = corpus.load()
        return [cfg.section(HistoryConfig).n, list(cfg.section("anonymize").extra_stopwords)]

    run_config = {"resources": {"corpus": {"config": {"config_path": path, "histories": {"n": 2},
                                                      "anonymize": {"extra_stopwords": ["Bob"]}}}}}
    r = materialize([settings_seen], resources={"corpus": CorpusConfigResource(config_path=path)},
                    run_config=run_config)
    assert r.output_for_node("settings_seen") == [2, ["bob"]]
