"""Materialising every asset in process on the real samples: metadata, checks, a planted leak."""

import json

import polars as pl
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

from conftest import TEST_SECRET, real_sources
from dagster_project.checks import ASSET_CHECKS, no_pii_leak_check
from dagster_project.definitions import STAGE_KEYS, build_defs, make_resources, materialize_corpus
from pipelines.core import storage
from pipelines.core.config import load
from schemas import ANON, MESSAGES


def write_config(path, out, sources, **sections) -> str:
    """A corpus TOML file (TOML basic strings are JSON strings)."""
    lines = [f"out = {json.dumps(str(out))}", ""]
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
        lines.append("")
    for s in sources:
        lines += ["[[sources]]", f"format = {json.dumps(s['format'])}",
                  f"paths = [{', '.join(json.dumps(p) for p in s['paths'])}]", ""]
    path.write_text("\n".join(lines))
    return str(path)


@pytest.fixture(scope="module")
def built(real, tmp_path_factory):
    """Every raw partition and every stage materialised once, into an ephemeral instance."""
    tmp = tmp_path_factory.mktemp("dagster_real")
    cfg_path = write_config(tmp / "corpus.toml", tmp / "out", real_sources(real),
                            tokenizer={"vocab_size": 2000})
    instance = DagsterInstance.ephemeral()
    summary = materialize_corpus(cfg_path, instance=instance, secret=TEST_SECRET, raise_on_error=False)
    return cfg_path, instance, summary


def test_every_asset_is_materialised(built):
    cfg_path, instance, summary = built
    cfg = load(cfg_path)
    for fmt in {s.format for s in cfg.sources}:
        assert summary["assets"][f"messages_raw/{fmt}"], fmt
    for key in STAGE_KEYS:
        assert key in summary["assets"], key
        assert instance.get_latest_materialization_event(AssetKey(key)) is not None


def test_reddit_is_partitioned_by_month_from_file_names_and_first_records(built):
    cfg_path, _, summary = built
    months = summary["assets"]["messages_raw/reddit"]
    # RC_2005-12.zst by its name; the two paul-e exports by their first record (2024-02).
    assert sorted(months) == ["2005-12", "2024-02"]
    assert months["2005-12"]["messages"] == 1075
    assert months["2024-02"]["records"] == 27 + 31
    out = load(cfg_path).out
    assert storage.read(storage.join(out, "messages_raw", "reddit", "2005-12")).height == 1075


def test_every_check_passes(built):
    _, _, summary = built
    checks = summary["checks"]
    expected = {"messages_anon:no_pii_leak_check", "timeline:timeline_order_check",
                "reading_histories:histories_causal_check", "pair_examples:split_leakage_check",
                "token_shards:manifest_checksums_check", "messages:counts_conserved",
                "token_shards:counts_conserved"}
    assert expected <= set(checks)
    assert any(k.startswith("messages_raw/reddit:record_conservation[") for k in checks)
    assert all(checks.values()), summary["failed_checks"]


def test_metadata_reports_counts_rates_and_plots(built):
    cfg_path, instance, summary = built
    a = summary["assets"]
    assert a["messages"]["rows_in"] >= a["messages"]["rows_out"] > 0
    assert 0 <= a["messages"]["dedup_rate"] < 1
    assert a["timeline"]["dagster/row_count"] == a["messages_dedup"]["rows_out"]
    assert "blowup" in a["pair_examples"]
    assert set(a["token_shards"]["tokens_per_split"]) >= {"train"}
    reddit = a["messages_raw/reddit"]["2005-12"]
    assert reddit["records"] == reddit["messages"] + reddit["quarantined"] + reddit["skipped"]
    # every step reports its peak resident memory, raw partitions and stages alike
    assert reddit["peak_rss_mb"] > 10 and all(a[k]["peak_rss_mb"] > 10 for k in ("messages", "token_shards"))
    for key, plot in (("timeline", "plot_messages_per_day"), ("reading_histories", "plot_history_lengths")):
        md = instance.get_latest_materialization_event(AssetKey(key)).asset_materialization.metadata
        assert md[plot].value.count("data:image/png;base64,") == 1


def test_secret_never_appears_in_metadata(built):
    _, instance, _ = built
    for key in [*STAGE_KEYS]:
        md = instance.get_latest_materialization_event(AssetKey(key)).asset_materialization.metadata
        assert TEST_SECRET not in json.dumps({k: str(v.value) for k, v in md.items()})


def test_planted_leak_fails_the_leak_check_with_a_count(built, tmp_path):
    cfg_path, _, _ = built
    out = load(cfg_path).out
    anon_url = storage.join(out, "messages_anon")
    anon = storage.read(anon_url)
    raw = storage.read(storage.join(out, "messages"))
    handle = raw.filter(pl.col(MESSAGES.author_name).is_not_null()
                        & (pl.col(MESSAGES.author_name).str.len_chars() >= 6))[MESSAGES.author_name][0]
    planted = anon.with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then(pl.lit(f"write to leaky.person@example.org or ask {handle} ") + pl.col(ANON.text))
        .otherwise(pl.col(ANON.text)).alias(ANON.text))
    storage.write_table(anon_url, planted, schema=ANON)
    try:
        d = build_defs(cfg_path, secret=TEST_SECRET)
        result = materialize([*d.assets, *ASSET_CHECKS], resources=make_resources(cfg_path, secret=TEST_SECRET),
                             instance=DagsterInstance.ephemeral(), raise_on_error=False,
                             selection=AssetSelection.checks(no_pii_leak_check))
        (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_pii_leak_check"]
        assert not ev.passed
        assert ev.metadata["failed_rows"].value >= 3
        assert str(ev.metadata["failed_rows"].value) in ev.description or "leak" in ev.description
    finally:
        storage.write_table(anon_url, anon, schema=ANON)
