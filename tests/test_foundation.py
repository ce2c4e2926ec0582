"""The foundation: schemas, config file, atomic storage, the reader registry."""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from pipelines.core import storage
from pipelines.core.config import ConfigError, from_dict, load
from pipelines.sources import FORMATS, get_reader
from schemas import ALL_TABLES, MESSAGES
from schemas.docs import render

ROOT = Path(__file__).resolve().parent.parent


def test_schema_docs_are_generated_from_the_declarations():
    assert (ROOT / "docs" / "schema.md").read_text(encoding="utf-8") == render(), \
        "docs/schema.md is stale: run `python -m schemas.docs`"


def test_configuration_docs_are_generated_from_the_section_models():
    from pipelines.core import config_docs

    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == config_docs.render(), \
        "docs/configuration.md is stale: run `python -m pipelines.core.config_docs`"


# Imports every module under pipelines/ and reads every config section, in a fresh interpreter.
_IMPORT_ALL = """
import importlib, pkgutil, sys
import pipelines
names = sorted(m.name for m in pkgutil.walk_packages(pipelines.__path__, "pipelines."))
for name in names:
    importlib.import_module(name)
from pipelines.core.config import from_dict
from pipelines.core.settings import SECTIONS
cfg = from_dict({"out": "/tmp/x", "sources": []})
for model in SECTIONS.values():
    cfg.section(model)
cfg.check()
print(len(names))
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_pipelines_imports_neither_dagster_nor_torch():
    r = subprocess.run([sys.executable, "-c", _IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    count, loaded = r.stdout.split("\n")[:2]
    assert int(count) > 40  # every module was found
    assert not {"dagster", "dagster_project", "torch", "trainer"} & set(loaded.split()), loaded


def test_column_names_are_attributes_and_typos_fail():
    assert MESSAGES.author_id == "author_id"
    with pytest.raises(AttributeError, match="no column 'auther_id'"):
        MESSAGES.auther_id


def test_every_table_converts_to_polars():
    for t in ALL_TABLES:
        assert list(t.polars.names()) == t.names


def test_conform_fills_optional_columns_and_rejects_missing_required():
    t = pa.table({"message_id": ["m"], "platform": ["irc"]})
    with pytest.raises(ValueError, match="required column 'community' is missing"):
        MESSAGES.conform(t)


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(ValueError, match="known formats: reddit, stackexchange"):
        get_reader("myspace")


def test_every_format_has_a_registered_reader():
    for f in FORMATS:
        assert get_reader(f).format == f


def test_config_resolves_paths_relative_to_the_file(tmp_path):
    (tmp_path / "c.toml").write_text('out = "built"\n[[sources]]\nformat = "irc"\npaths = ["logs/*/*.txt"]\n')
    cfg = load(str(tmp_path / "c.toml"))
    assert cfg.out == str(tmp_path / "built")
    assert cfg.sources[0].name == "irc" and cfg.sources[0].paths == (str(tmp_path / "logs/*/*.txt"),)
    assert cfg.table_url("timeline") == str(tmp_path / "built" / "timeline")


@pytest.mark.parametrize("data,message", [
    ({"sources": []}, "missing `out"),
    ({"out": "o", "engine": "dask"}, "choose one of"),
    ({"out": "o", "sources": [{"format": "myspace", "paths": ["x"]}]}, "known formats"),
    ({"out": "o", "sources": [{"format": "irc"}]}, "has no `paths`"),
    ({"out": "o", "histroy": {"n": 3}}, "unknown key or section 'histroy'"),
])
def test_config_errors_name_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data, path="corpus.toml")


def test_repeated_formats_get_distinct_source_names():
    cfg = from_dict({"out": "o", "sources": [{"format": "irc", "paths": ["a"]}, {"format": "irc", "paths": ["b"]}]})
    assert [s.name for s in cfg.sources] == ["irc", "irc-2"]


def test_write_dataset_replaces_the_directory_whole(tmp_path):
    url = str(tmp_path / "t")
    storage.write_dataset(url, pa.table({"x": list(range(10))}), rows_per_file=4)
    assert len(storage.dataset_files(url)) == 3
    storage.write_dataset(url, pa.table({"x": [1]}))
    assert storage.read(url)["x"].to_list() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_a_failed_write_leaves_the_previous_table(tmp_path):
    url = str(tmp_path / "t")
    storage.write_dataset(url, pa.table({"x": [1, 2]}))

    def batches():
        yield pa.table({"x": [3]})
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        storage.write_dataset(url, batches(), rows_per_file=1)
    assert storage.read(url)["x"].to_list() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_storage_works_on_memory_urls():
    url = "memory://socialcorpus-test/t"
    storage.write_table(url, pl.DataFrame({"x": [1, 2, 3]}))
    assert storage.read(url)["x"].sum() == 6


def test_a_literal_path_with_glob_characters_is_used_as_is(tmp_path):
    from pipelines.stages.ingest import expand_paths
    from pipelines.sources import SourceError

    f = tmp_path / "Guild - general [1060927310439657577].json"
    f.write_text("{}")
    assert expand_paths([str(f)]) == [str(f)]
    assert expand_paths([str(tmp_path / "*.json")]) == [str(f)]
    with pytest.raises(SourceError, match="matches no file"):
        expand_paths([str(tmp_path / "*.zst")])
