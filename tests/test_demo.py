"""`make demo` (pipelines.demo): the corpus is materialised into a persistent Dagster instance,
the one `make ui` serves, and the terminal ends with a human summary; the JSON goes to a file."""

import json

import pytest
from dagster import AssetKey

from dagster_project.definitions import STAGE_KEYS
from dagster_project.instance import MARKER, ensure_home, open_instance
from demo_run import shared_demo
from pipelines.sources import FORMATS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return shared_demo(tmp_path_factory)


def test_every_asset_and_its_runs_are_in_the_persistent_instance(demo):
    with open_instance(demo.home) as instance:
        for key in [*STAGE_KEYS, *(("messages_raw", f) for f in FORMATS)]:
            k = AssetKey(key) if isinstance(key, str) else AssetKey(list(key))
            assert instance.get_latest_materialization_event(k) is not None, k
        # one run per raw partition, then one for the stages and checks
        partitions = sum(len(parts) for k, parts in json.loads((demo.dir / "demo_summary.json").read_text())
                         ["build"]["assets"].items() if k.startswith("messages_raw/"))
        assert len(instance.get_runs()) == partitions + 1


def test_the_instance_has_no_onboarding_dialog_and_no_telemetry(demo):
    with open_instance(demo.home) as instance:
        assert instance.nux_enabled is False
        assert instance.telemetry_enabled is False


def test_a_users_own_dagster_yaml_is_kept(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    ensure_home(tmp_path)
    assert (tmp_path / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"
    (tmp_path / "dagster.yaml").write_text(MARKER + " (an older version)\n")
    ensure_home(tmp_path)
    assert "nux:\n  enabled: false" in (tmp_path / "dagster.yaml").read_text()


def test_the_terminal_ends_with_a_stage_table_checks_paths_and_next_commands(demo):
    out = demo.stdout
    summary = json.loads((demo.dir / "demo_summary.json").read_text())
    checks = summary["build"]["checks"]
    assert out.startswith("demo corpus built: ")
    for stage in ("ingest", "dedup", "anonymize", "neardup", "timeline", "histories", "examples", "tokenizer",
                  "shards"):
        assert any(line.split()[:1] == [stage] for line in out.splitlines()), stage
    shards = summary["build"]["assets"]["token_shards"]
    assert f"{shards['rows_in']:,}  " in out
    assert f"checks: all {len(checks)} passed" in out and all(checks.values())
    assert f"full summary (JSON): {demo.dir / 'demo_summary.json'}" in out
    assert "next: make ui" in out and "show-example --data " in out
    assert not out.lstrip().startswith("{")
