"""The corpus configuration file (TOML): what to read, where to write, and every stage's settings.

    out = "out"                       # URL or path; relative paths are relative to this file
    engine = "polars"                 # or "spark"

    [[sources]]
    format = "reddit"                 # a name from pipelines.sources.FORMATS
    paths = ["dumps/reddit/*.zst"]    # globs or fsspec URLs, relative to this file
    # name = "reddit"                 # optional slug; defaults to the format (format-2, … for repeats)

    [histories]                       # one table per section; keys are that section model's fields
    n = 5

Every section is a typed model in :mod:`pipelines.core.settings` (``SECTIONS``), looked up
by class: ``config.section(HistoryConfig)``. An unknown section or key is an error that
lists the known ones; a bad value is an error naming the file, the section and the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import posixpath
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

from pipelines.core.settings import ALIASES, SECTIONS, Section, SettingsError, content_settings, model_for
from pipelines.core.storage import join
from pipelines.sources import FORMATS
from schemas import MESSAGES, QUARANTINE

log = logging.getLogger(__name__)

ENGINES = ("polars", "spark")
# A source name is a folder name under messages_raw/ and quarantine/: a slug, so it can
# neither climb out of `out` ("../x") nor nest in ("a/b") nor differ only by case.
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
RAW_TABLES = (MESSAGES.name, QUARANTINE.name)  # the per-source tables (pipelines/stages/ingest.py)
SectionT = typing.TypeVar("SectionT", bound=Section)


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

    @typing.overload
    def section(self, key: type[SectionT]) -> SectionT: ...
    @typing.overload
    def section(self, key: str) -> Section: ...

    def section(self, key):
        """The settings of a section, built from the file's table (or defaults): ``key`` is the
        model class (``HistoryConfig``) or, during the transition, the section's name or old alias."""
        model = _model(key, self.path or "<config>")
        return _build(model, _values(self.sections, model, self.path or "<config>"), self.path or "<config>")

    def check(self) -> None:
        """Builds every section, so a bad value fails now, naming the file, not when its stage runs."""
        for model in SECTIONS.values():
            self.section(model)

    def content_settings(self) -> dict[str, dict[str, Any]]:
        """The settings that decide a build's content (the config hash's ``sections``)."""
        return content_settings({name: self.section(m) for name, m in SECTIONS.items()})

    def with_settings(self, assignments: Iterable[str]) -> "CorpusConfig":
        """This config with ``SECTION.KEY=VALUE`` assignments (``socialcorpus build --set``) applied.

        VALUE is read as a TOML value (``3``, ``0.2``, ``true``, ``"text"``, ``["a", "b"]``);
        for a text key, an unquoted value is the text itself. Every section assigned to is
        validated here."""
        assignments = list(assignments)
        sections = {k: dict(v) for k, v in self.sections.items()}
        touched = []
        for a in assignments:
            key, eq, raw = a.partition("=")
            section, dot, name = key.strip().partition(".")
            if not eq or not dot or not name:
                raise ConfigError(f"--set {a!r}: expected SECTION.KEY=VALUE, e.g. --set histories.n=3")
            model = _model(section, "--set")
            if name not in model.model_fields:
                raise ConfigError(f"--set {a!r}: [{model.SECTION}] has no key {name!r}; "
                                  f"known: {sorted(model.model_fields)}")
            for alias in model.ALIASES:  # an old-named table merges into the section
                if alias in sections:
                    sections.setdefault(model.SECTION, {}).update(sections.pop(alias))
            sections.setdefault(model.SECTION, {})[name] = parse_value(raw, model.model_fields[name].annotation)
            touched.append(model)
        where = f"{self.path or '<config>'} with --set {' '.join(assignments)}"
        for model in dict.fromkeys(touched):
            _build(model, sections.get(model.SECTION, {}), where)
        return dataclasses.replace(self, sections=sections)

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"no source named {name!r}; sources: {[s.name for s in self.sources]}")

    def with_overrides(self, **kw) -> "CorpusConfig":
        return dataclasses.replace(self, **kw)


def _known() -> str:
    return ", ".join([*sorted(SECTIONS), *(f"{a} (old name of {n})" for a, n in sorted(ALIASES.items()))])


def _model(key, where: str) -> type[Section]:
    try:
        return model_for(key)
    except KeyError as e:
        if isinstance(key, type):
            raise ConfigError(f"{where}: {e.args[0]}") from None
        raise ConfigError(f"{where}: unknown config section [{key}]; known: {_known()}") from None


def _values(sections: dict[str, dict[str, Any]], model: type[Section], where: str) -> dict[str, Any]:
    """The section's table; under its old name too (a config built in code may still use it)."""
    given = [n for n in (model.SECTION, *model.ALIASES) if n in sections]
    if len(given) > 1:
        raise ConfigError(f"{where}: both [{given[0]}] and [{given[1]}] are set; keep one table, [{model.SECTION}]")
    return dict(sections[given[0]]) if given else {}


def _build(model: type[SectionT], values: dict[str, Any], where: str) -> SectionT:
    try:
        return model(**values)
    except SettingsError as e:
        raise ConfigError(f"{where}: {e}") from e


def parse_value(raw: str, annotation: Any = None) -> Any:
    """A ``--set`` value: TOML (``3``, ``true``, ``"x"``, ``[1, 2]``, ``{ "a" = 1 }``); an unquoted
    value for a text key, a date or anything TOML cannot read is the text itself."""
    raw = raw.strip()
    text_key = annotation is str or (typing.get_origin(annotation) in (typing.Union, types.UnionType)
                                     and str in typing.get_args(annotation))
    if text_key and not raw.startswith(('"', "'")):
        return raw
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    return raw if isinstance(value, (dt.date, dt.time)) else value


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
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key not in SECTIONS and key not in ALIASES:
            raise ConfigError(f"{where}: unknown key or section {key!r}; known sections: {_known()}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a table ([{key}])")
        name = ALIASES.get(key, key)
        if name != key:
            if name in data:
                raise ConfigError(f"{where}: both [{key}] and [{name}] are set; [{key}] is the old name of "
                                  f"[{name}]: keep one table, [{name}]")
            log.warning("%s: [%s] is the old name of [%s]; rename the table to [%s]", where, key, name, name)
        sections[name] = value
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
