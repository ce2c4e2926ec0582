"""The section models (pipelines/core/settings.py): typed, frozen, looked up by class; the file
loader, `build --set`, the docs and the build's config hash all derive from them."""

import argparse
import datetime
import logging

import polars as pl
import pytest
from pydantic import BaseModel

from conftest import TEST_SECRET
from pipelines import cli
from pipelines.core import settings
from pipelines.core.config import ConfigError, from_dict, load
from pipelines.core.context import SECRET_ENV
from pipelines.core.settings import (SECTIONS, AnonymizeConfig, ExamplesConfig, HistoryConfig, NearDupConfig,
                                     ScheduleConfig, ShardsConfig, SparkConfig, TokenizerConfig)
from pipelines.stages.shards import config_hash
from test_dagster_materialize import write_config

SOURCES = [{"format": "irc", "paths": ["/data/irc/*.txt"]}]


def _cfg(path="corpus.toml", **sections):
    return from_dict({"out": "/data/out", "sources": SOURCES, **sections}, path=path)


def test_every_section_is_a_frozen_pydantic_model_with_a_description_for_every_key():
    assert list(SECTIONS) == ["anonymize", "neardup", "histories", "examples", "tokenizer", "shards", "spark",
                              "schedule"]
    for name, model in SECTIONS.items():
        assert issubclass(model, BaseModel) and model.SECTION == name
        assert model.model_config["frozen"] and model.model_config["extra"] == "forbid"
        for key, f in model.model_fields.items():
            assert f.description, f"[{name}] {key} has no description"
        with pytest.raises(Exception, match="frozen"):
            setattr(model(), next(iter(model.model_fields)), None)


def test_the_stage_modules_re_export_their_model():
    from pipelines.engines.spark import SparkConfig as Spark
    from pipelines.stages.anonymize import AnonymizeConfig as A
    from pipelines.stages.examples import ExamplesConfig as E
    from pipelines.stages.histories import HistoryConfig as H
    from pipelines.stages.neardup import NearDupConfig as N
    from pipelines.stages.shards import ShardsConfig as S
    from pipelines.stages.tokenizer import TokenizerConfig as T
    from dagster_project.automation import ScheduleConfig as Sch

    assert (A, N, H, E, T, S, Spark, Sch) == (AnonymizeConfig, NearDupConfig, HistoryConfig, ExamplesConfig,
                                              TokenizerConfig, ShardsConfig, SparkConfig, ScheduleConfig)


def test_defaults_are_unchanged():
    """The defaults the stage dataclasses had (they reach every default build's output)."""
    assert HistoryConfig().model_dump() == {"n": 5, "k": 10}
    assert ExamplesConfig().model_dump() == {
        "max_per_target": 5, "max_per_pair": 1000, "max_per_author": 5000, "other_public": False,
        "split_salt": "socialcorpus-v1", "validation_fraction": 0.05, "test_fraction": 0.05,
        "temporal_cutoff": None, "user_disjoint": False}
    assert NearDupConfig().model_dump() == {"num_perm": 128, "bands": 32, "rows": 4, "shingle_size": 3,
                                            "min_tokens": 8, "threshold": 0.5, "mass_dup_authors": 3, "seed": 1}
    assert TokenizerConfig().model_dump() == {"vocab_size": 32_000, "path": None, "min_frequency": 2,
                                              "max_training_messages": 1_000_000}
    assert ShardsConfig().model_dump() == {
        "layout": "reference", "seed": 0, "target_file_bytes": 128 * 2**20, "row_group_rows": 512, "max_message_tokens": 1024,
        "max_window_tokens": 2048, "max_stream_tokens": 2048, "bytes_per_token": 1.5, "examples_per_batch": 100_000}
    assert AnonymizeConfig().model_dump() == {
        "demo_secret": None, "spacy_model": None, "presidio_score_threshold": 0.35, "min_name_length": 3,
        "min_numeric_id_length": 6, "common_word_zipf": 3.5, "platform_name_zipf": 4.5, "extra_stopwords": (),
        "batch_rows": 50_000, "processes": 1}
    assert SparkConfig().model_dump() == {"master": "local[*]", "app_name": "socialcorpus", "conf": {},
                                          "shuffle_partitions": 8}
    assert ScheduleConfig().model_dump() == {"cron": "0 3 * * 0", "timezone": "UTC", "landing": None,
                                             "sensor_interval_s": 60}


def test_constants_copied_into_settings_match_their_sources():
    from pipelines.core import render
    from pipelines.stages import histories, tokenizer

    assert settings.MIN_VOCAB_SIZE == 256 + len(tokenizer.SPECIAL_TOKENS)
    assert settings.MESSAGE_FRAME_TOKENS == render.PREFIX + render.SUFFIX
    assert (histories.MAX_N, histories.MAX_K) == (10, 128)
    TokenizerConfig(vocab_size=settings.MIN_VOCAB_SIZE)
    with pytest.raises(ValueError, match="vocab_size"):
        TokenizerConfig(vocab_size=settings.MIN_VOCAB_SIZE - 1)


def test_config_hash_is_the_one_the_dataclasses_gave():
    """Pinned hashes (same settings, same hash: a rebuild with the same config still matches its
    _BUILD_COMPLETE.json). Computed with the dataclass configs before #12 moved them to pydantic;
    updated once in #14, whose new `[shards] layout` key changes what a build writes."""
    assert config_hash(_cfg()) == "1e14feae5bb965a9097e79271e3300929a7bb34ae03083b98fed33adc502bfdb"
    demo = {"anonymize": {"demo_secret": "x", "extra_stopwords": ["Foo", "bar"]}, "tokenizer": {"vocab_size": 4000},
            "schedule": {"landing": "landing"}}
    assert config_hash(_cfg(**demo)) == "c86b3ec8f4682381e9219da6014b4b62c0589c35651d5d16460e41e05ff6c5cf"
    changed = {"histories": {"n": 3, "k": 4}, "neardup": {"threshold": 0.6}, "shards": {"seed": 7},
               "examples": {"temporal_cutoff": datetime.date(2013, 1, 5), "validation_fraction": 0.2,
                            "other_public": True}, "spark": {"master": "local[2]"}}
    want = "f79a6312710398e52a349289ff03c0745a0f294dfc01b6c1d7b00f81dc141d48"
    assert config_hash(_cfg(**changed)) == want
    old_name = {("history" if k == "histories" else k): v for k, v in changed.items()}
    assert config_hash(_cfg(**old_name)) == want
    assert config_hash(_cfg(histories={"n": 4})) != config_hash(_cfg())


def test_a_section_is_looked_up_by_class_and_still_by_name():
    cfg = _cfg(histories={"n": 3, "k": 4})
    assert cfg.section(HistoryConfig) == HistoryConfig(n=3, k=4)
    assert cfg.section("histories") == cfg.section("history") == cfg.section(HistoryConfig)
    with pytest.raises(ConfigError, match="unknown config section \\[histroy\\]"):
        cfg.section("histroy")

    class NotASection(HistoryConfig):
        pass

    with pytest.raises(ConfigError, match="not a config section model"):
        cfg.section(NotASection)


def test_the_old_section_name_still_works_with_a_warning(tmp_path, caplog):
    path = tmp_path / "c.toml"
    path.write_text('out = "o"\n[history]\nn = 2\n')
    with caplog.at_level(logging.WARNING, logger="pipelines.core.config"):
        cfg = load(str(path))
    assert cfg.section(HistoryConfig).n == 2
    assert any("[history] is the old name of [histories]" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)
    path.write_text('out = "o"\n[history]\nn = 2\n[histories]\nn = 3\n')
    with pytest.raises(ConfigError, match=r"both \[history\] and \[histories\]"):
        load(str(path))
    # A config built in code with both names is refused where it is read.
    with pytest.raises(ConfigError, match="both"):
        _cfg().with_overrides(sections={"history": {"n": 2}, "histories": {"n": 3}}).section(HistoryConfig)


@pytest.mark.parametrize("section, values, key", [
    ("histories", {"n": 0}, "n"), ("histories", {"n": 11}, "n"), ("histories", {"k": -1}, "k"),
    ("histories", {"n": "5"}, "n"), ("histories", {"n": True}, "n"), ("histories", {"n": 2.0}, "n"),
    ("examples", {"max_per_target": 0}, "max_per_target"), ("examples", {"test_fraction": 1.5}, "test_fraction"),
    ("examples", {"user_disjoint": "yes"}, "user_disjoint"), ("examples", {"split_salt": ""}, "split_salt"),
    ("examples", {"temporal_cutoff": "yesterday"}, "temporal_cutoff"),
    ("examples", {"validation_fraction": 0.6, "test_fraction": 0.5}, "validation_fraction"),
    ("neardup", {"bands": 64, "rows": 4}, "num_perm"), ("neardup", {"threshold": 0.0}, "threshold"),
    ("neardup", {"mass_dup_authors": 1}, "mass_dup_authors"),
    ("tokenizer", {"vocab_size": 100}, "vocab_size"), ("tokenizer", {"min_frequency": 0}, "min_frequency"),
    ("shards", {"max_message_tokens": 100, "max_window_tokens": 50}, "max_window_tokens"),
    ("shards", {"bytes_per_token": 0}, "bytes_per_token"), ("shards", {"max_stream_tokens": 4}, "max_stream_tokens"),
    ("anonymize", {"min_name_length": 0}, "min_name_length"), ("spark", {"conf": {"executor.memory": "8g"}}, "conf"),
    ("histories", {"m": 3}, "['m']"), ("schedule", {"sensor_interval_s": "often"}, "sensor_interval_s"),
])
def test_a_bad_value_names_the_file_the_section_and_the_key(section, values, key):
    cfg = _cfg(path="my/corpus.toml", **{section: values})
    with pytest.raises(ConfigError) as e:
        cfg.section(SECTIONS[section])
    msg = str(e.value)
    assert msg.startswith("my/corpus.toml: ") and f"[{section}]" in msg and key in msg, msg
    with pytest.raises(ConfigError):
        cfg.check()
    with pytest.raises(ValueError):  # built in code, the model itself refuses it
        SECTIONS[section](**values)


def test_good_values_pass_and_keep_their_meaning():
    ex = ExamplesConfig(temporal_cutoff="2013-01-05", validation_fraction=0, test_fraction=0.25)
    assert ex.cutoff() == datetime.datetime(2013, 1, 5, tzinfo=datetime.timezone.utc)
    assert ExamplesConfig().cutoff() is None
    # A bare TOML date reads as a date object; it is the same setting as the string.
    toml_date = _cfg(examples={"temporal_cutoff": datetime.date(2013, 1, 5)}).section(ExamplesConfig)
    assert toml_date.temporal_cutoff == "2013-01-05" and toml_date.cutoff() == ex.cutoff()
    assert AnonymizeConfig(extra_stopwords=["Alice", "BOB"]).extra_stopwords == ("alice", "bob")
    assert len({ExamplesConfig(split_salt=s) for s in "abc"}) == 3  # hashable: usable as a key
    secret = AnonymizeConfig(demo_secret="demo-only-secret")
    assert "demo-only-secret" not in repr(secret) and "demo-only-secret" not in str(secret)
    with pytest.raises(ValueError) as e:
        AnonymizeConfig(demo_secret=12345678)
    assert "12345678" not in str(e.value)


def test_set_overrides_a_setting_and_is_validated_by_the_model():
    cfg = _cfg(path="c.toml", histories={"n": 2})
    new = cfg.with_settings(["histories.k=3", "examples.split_salt=other salt", "examples.other_public=true",
                             "anonymize.extra_stopwords=[\"Foo\"]", "examples.temporal_cutoff=2013-01-05",
                             "spark.conf={ \"spark.executor.memory\" = \"8g\" }", "history.n=4"])
    assert new.section(HistoryConfig) == HistoryConfig(n=4, k=3)
    ex = new.section(ExamplesConfig)
    assert (ex.split_salt, ex.other_public, ex.temporal_cutoff) == ("other salt", True, "2013-01-05")
    assert new.section(AnonymizeConfig).extra_stopwords == ("foo",)
    assert new.section(SparkConfig).conf == {"spark.executor.memory": "8g"}
    assert cfg.section(HistoryConfig) == HistoryConfig(n=2)  # the original is unchanged
    for bad, match in [("histories.n=11", r"c.toml with --set histories.n=11: \[histories\] n = 11"),
                       ("histories.n=x", r"\[histories\] n = 'x'"), ("histories.m=1", "has no key 'm'"),
                       ("histroy.n=1", "unknown config section"), ("histories=1", "SECTION.KEY=VALUE"),
                       ("histories.n", "SECTION.KEY=VALUE")]:
        with pytest.raises(ConfigError, match=match):
            cfg.with_settings([bad])


def test_build_help_lists_every_setting_from_the_models():
    p = cli.parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["build"].format_help()
    for name, model in SECTIONS.items():
        for key in model.model_fields:
            assert f"    {name}.{key}=" in text, f"{name}.{key} missing from build --help"
    assert "histories.n=5  (int, >= 1, <= 10)" in text


def test_build_set_reaches_the_stage(real, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(SECRET_ENV, TEST_SECRET)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "corpus.toml", out, [{"format": "telegram", "paths": [f"{real}/telegram/*.json"]}])
    assert cli.main(["build", "--config", cfg, "--until", "histories", "--json", "--set", "histories.n=1",
                     "--set", "histories.k=0"]) == 0
    hist = pl.read_parquet(out / "reading_histories")
    assert hist.height > 0
    assert hist["read_seqs"].list.len().max() == 1 and hist["own_seqs"].list.len().max() == 0
    before = (out / "build_summary.json").read_text()
    assert cli.main(["build", "--config", cfg, "--set", "histories.n=11"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg} with --set histories.n=11: [histories] n = 11" in err
    assert (out / "build_summary.json").read_text() == before  # refused before anything ran


def test_worker_processes_do_not_change_the_config_hash():
    """How many processes anonymise the batches changes how a build runs, not what it writes."""
    assert config_hash(_cfg(anonymize={"processes": 1})) == config_hash(_cfg()) == config_hash(
        _cfg(anonymize={"processes": 4}))
    assert config_hash(_cfg(anonymize={"batch_rows": 7})) != config_hash(_cfg())
