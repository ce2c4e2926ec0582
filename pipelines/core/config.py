"""The corpus configuration file (TOML): what to read, where to write, and every stage's settings.

    out = "out"                       # URL or path; relative paths are relative to this file
    engine = "polars"                 # or "spark"

    [[sources]]
    format = "reddit"                 # a name from pipelines.sources.FORMATS
    paths = ["dumps/reddit/*.zst"]    # globs or fsspec URLs, relative to this file
    # name = "reddit"                 # optional slug; defaults to the format (format-2, … for repeats)

    [history]                         # one table per stage; keys are that stage's config fields
    n = 5

Each stage owns a frozen config dataclass with documented defaults (``SECTIONS`` maps a
section name to it). An unknown section or key is an error that lists the known ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import posixpath
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pipelines.sources import FORMATS
from pipelines.core.storage import join
from schemas import MESSAGES, QUARANTINE

# section name -> "module:ConfigClass"; the stage module owns its defaults.
SECTIONS: dict[str, str] = {
    "anonymize": "pipelines.stages.anonymize:AnonymizeConfig",
    "neardup": "pipelines.stages.neardup:NearDupConfig",
    "history": "pipelines.stages.histories:HistoryConfig",
    "examples": "pipelines.stages.examples:ExamplesConfig",
    "tokenizer": "pipelines.stages.tokenizer:TokenizerConfig",
    "shards": "pipelines.stages.shards:ShardsConfig",
    "spark": "pipelines.engines.spark:SparkConfig",
    "schedule": "dagster_project.automation:ScheduleConfig",
}
ENGINES = ("polars", "spark")
# A source name is a folder name under messages_raw/ and quarantine/: a slug, so it can
# neither climb out of `out` ("../x") nor nest in ("a/b") nor differ only by case.
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
RAW_TABLES = (MESSAGES.name, QUARANTINE.name)  # the per-source tables (pipelines/stages/ingest.py)


class ConfigError(ValueError):
    """The corpus configuration is wrong; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class SourceConfig:
    name: str
    format: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class CorpusConfig:
    out: str
    sources: tuple[SourceConfig, ...]
    engine: str = "polars"
    path: str | None = None  # the TOML file it came from
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def table_url(self, table: str, *parts: str) -> str:
        return join(self.out, table, *parts)

    def section(self, name: str):
        """The stage config dataclass for ``name``, built from the file's table (or defaults)."""
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section [{name}]; known: {', '.join(sorted(SECTIONS))}")
        mod, cls = SECTIONS[name].split(":")
        klass = getattr(importlib.import_module(mod), cls)
        values = dict(self.sections.get(name, {}))
        known = {f.name for f in dataclasses.fields(klass)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"{self.path or '<config>'}: [{name}] has unknown keys {sorted(unknown)}; "
                              f"known: {sorted(known)}")
        try:
            return klass(**values)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{self.path or '<config>'}: [{name}]: {e}") from e

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"no source named {name!r}; sources: {[s.name for s in self.sources]}")

    def with_overrides(self, **kw) -> "CorpusConfig":
        return dataclasses.replace(self, **kw)


def _resolve(base_dir: str, p: str) -> str:
    if "://" in p or os.path.isabs(p):
        return p
    return os.path.normpath(os.path.join(base_dir, p))


def _check_source_folders(where: str, out: str, names: list[str]) -> None:
    """Every source's message and quarantine folders are distinct, inside ``out``, and none
    holds another (a rewrite of one must never replace or delete another's files)."""
    root = posixpath.normpath(out.split("://", 1)[-1])
    folders = [(posixpath.normpath(posixpath.join(root, table, n)), f"{table}/{n}")
               for table in RAW_TABLES for n in names]
    for i, (a, la) in enumerate(folders):
        if not a.startswith(root.rstrip("/") + "/"):
            raise ConfigError(f"{where}: source folder {la} would lie outside out = {out!r}")
        for b, lb in folders[i + 1:]:
            if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
                raise ConfigError(f"{where}: source folders {la} and {lb} overlap; give the sources distinct names")


def from_dict(data: dict[str, Any], base_dir: str = ".", path: str | None = None) -> CorpusConfig:
    where = path or "<config>"
    data = dict(data)
    if "out" not in data:
        raise ConfigError(f"{where}: missing `out = \"<URL or path>\"` (where the tables go)")
    out = _resolve(base_dir, str(data.pop("out")))
    engine = data.pop("engine", "polars")
    if engine not in ENGINES:
        raise ConfigError(f"{where}: engine = {engine!r}; choose one of {ENGINES}")
    raw_sources = data.pop("sources", [])
    sources, seen = [], {}
    for i, s in enumerate(raw_sources):
        fmt = s.get("format")
        if fmt not in FORMATS:
            raise ConfigError(f"{where}: sources[{i}].format = {fmt!r}; known formats: {', '.join(FORMATS)}")
        paths = s.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not paths:
            raise ConfigError(f"{where}: sources[{i}] ({fmt}) has no `paths`")
        seen[fmt] = seen.get(fmt, 0) + 1
        name = s["name"] if "name" in s else (fmt if seen[fmt] == 1 else f"{fmt}-{seen[fmt]}")
        if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: sources[{i}].name = {name!r} is not a valid source name: it becomes a folder "
                              f"(messages_raw/<name>, quarantine/<name>), so it must match {SOURCE_NAME.pattern} "
                              "(lower-case letters, digits, '_' and '-', starting with a letter or digit), "
                              'e.g. name = "reddit-askscience"')
        extra = set(s) - {"format", "paths", "name"}
        if extra:
            raise ConfigError(f"{where}: sources[{i}] has unknown keys {sorted(extra)}")
        sources.append(SourceConfig(name, fmt, tuple(_resolve(base_dir, p) for p in paths)))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: source names must be unique, got {names}")
    _check_source_folders(where, out, names)
    sections = {}
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError(f"{where}: unknown key or section {key!r}; known sections: "
                              f"{', '.join(sorted(SECTIONS))}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a table ([{key}])")
        sections[key] = value
    return CorpusConfig(out=out, sources=tuple(sources), engine=engine, path=path, sections=sections)


def load(path: str) -> CorpusConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return from_dict(data, os.path.dirname(os.path.abspath(path)), path)
