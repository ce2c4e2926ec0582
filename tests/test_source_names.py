"""`[[sources]] name` becomes a folder under `out`: only a slug is accepted, with a clear error."""

import os
import subprocess
import sys

import pytest

from pipelines.core.config import SOURCE_NAME, ConfigError, _check_source_folders, from_dict, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _toml(path, real, name: str) -> str:
    path.write_text(f'out = "out"\n\n[[sources]]\nformat = "telegram"\nname = "{name}"\n'
                    f'paths = ["{real}/telegram/*.json"]\n')
    return str(path)


def test_a_name_that_climbs_out_of_out_is_refused_naming_the_file_and_the_name(real, tmp_path):
    cfg = _toml(tmp_path / "corpus.toml", real, "../../victim")
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert cfg in str(e.value) and "'../../victim'" in str(e.value) and SOURCE_NAME.pattern in str(e.value)


def test_the_build_refuses_before_touching_anything_outside_out(real, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (tmp_path / "sub").mkdir()
    cfg = _toml(tmp_path / "sub" / "corpus.toml", real, "../../../victim")  # = the victim folder
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "build", "--config", cfg], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "is not a valid source name" in r.stderr
    assert (victim / "keep.txt").read_text() == "precious" and not (tmp_path / "sub" / "out").exists()


@pytest.mark.parametrize("name", ["Reddit", "a/b", "a.b", "", "-x", "_x", "x y", "..", "reddit.tmp-0123abcd", "é"])
def test_names_that_are_not_slugs_are_refused(real, name):
    with pytest.raises(ConfigError, match="is not a valid source name"):
        from_dict({"out": "out", "sources": [{"format": "telegram", "name": name, "paths": [str(real)]}]},
                  path="corpus.toml")


def test_slugs_and_the_default_names_are_accepted(real):
    cfg = from_dict({"out": "out", "sources": [
        {"format": "telegram", "paths": [str(real)]}, {"format": "telegram", "paths": [str(real)]},
        {"format": "reddit", "name": "reddit-askscience_2", "paths": [str(real)]},
        {"format": "irc", "name": "9front", "paths": [str(real)]}]})
    assert [s.name for s in cfg.sources] == ["telegram", "telegram-2", "reddit-askscience_2", "9front"]


def test_message_and_quarantine_folders_of_sources_never_overlap():
    _check_source_folders("corpus.toml", "/data/out", ["reddit", "reddit-2", "irc"])
    with pytest.raises(ConfigError, match="overlap"):
        _check_source_folders("corpus.toml", "/data/out", ["reddit", "reddit/2024"])
    with pytest.raises(ConfigError, match="outside out"):
        _check_source_folders("corpus.toml", "/data/out", ["../../etc"])


def test_the_configuration_docs_state_the_rule():
    text = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    assert SOURCE_NAME.pattern in text
