"""Dagster resources: the corpus configuration, the pseudonym secret, and fsspec storage.

The same TOML file drives `socialcorpus build` and Dagster; the corpus resource may override
the storage root, the engine and any key of the sections that decide a build's content, so
a deployment can differ from the file without editing it. Those override fields are derived
from the section models (pipelines/core/settings.py): one optional nested config per section,
with the model's keys, types and descriptions, e.g. in run config

    resources: {corpus: {config: {config_path: corpus.toml, histories: {n: 3}, tokenizer: {vocab_size: 8000}}}}

Values are validated by the model when the config is loaded. Spark settings have their
own resource (dagster_project/spark.py); the schedule shapes the definitions at load time.
"""

from __future__ import annotations

import logging
import types
import typing
from typing import Any, Optional

import fsspec
from dagster import Config, ConfigurableResource
from pydantic import Field, create_model

from pipelines.core import config as cfgmod
from pipelines.core import settings
from pipelines.core.context import RunContext


def _dagster_type(annotation: Any) -> Any:
    """The Dagster-config type of a model field (``X | None`` -> ``X``, ``tuple[str, ...]`` -> ``list[str]``,
    ``Literal["a", "b"]`` -> ``str``: the section model still refuses any other value)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return list[typing.get_args(annotation)[0]]
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    return annotation


def overrides_config(model: type[settings.Section]) -> type[Config]:
    """A Dagster ``Config`` with every key of ``model`` as an optional field (None: keep the file's
    value), secrets left out: a secret never goes through run config."""
    fields = {name: (Optional[_dagster_type(f.annotation)], Field(default=None, description=f.description))
              for name, f in model.model_fields.items() if "secret" not in name}
    return create_model(f"{model.__name__}Overrides", __base__=Config,
                        __doc__=f"Overrides of the corpus file's [{model.SECTION}] section.", **fields)


# section -> its override config: the sections that decide a build's content.
OVERRIDES: dict[str, type[Config]] = {m.SECTION: overrides_config(m) for m in settings.MODELS if m.HASH_KEY}


# The flat override fields of resource version 1 (before the per-section tables), still accepted
# so existing run configs keep working: field -> (section, key). Deprecated: a warning is logged.
LEGACY_OVERRIDES: dict[str, tuple[str, str]] = {
    "history_n": ("histories", "n"),
    "history_k": ("histories", "k"),
    "split_salt": ("examples", "split_salt"),
    "validation_fraction": ("examples", "validation_fraction"),
    "test_fraction": ("examples", "test_fraction"),
    "temporal_cutoff": ("examples", "temporal_cutoff"),
    "user_disjoint": ("examples", "user_disjoint"),
    "tokenizer_vocab_size": ("tokenizer", "vocab_size"),
}


def _section_field(name: str):
    return Field(default=None, description=f"Overrides of [{name}] (docs/configuration.md); unset keys keep the file's.")


class CorpusConfigResource(ConfigurableResource):
    """The corpus configuration file, plus optional overrides of its settings (one field per
    section in ``OVERRIDES``; a test checks the two lists agree)."""

    config_path: str = Field(description="Path of the corpus TOML file (the one `socialcorpus build` reads).")
    out: Optional[str] = Field(default=None, description="Storage root URL for every table (overrides `out`).")
    engine: Optional[str] = Field(default=None, description="`polars` or `spark` (overrides `engine`).")
    anonymize: Optional[OVERRIDES["anonymize"]] = _section_field("anonymize")  # type: ignore[valid-type]
    neardup: Optional[OVERRIDES["neardup"]] = _section_field("neardup")  # type: ignore[valid-type]
    histories: Optional[OVERRIDES["histories"]] = _section_field("histories")  # type: ignore[valid-type]
    examples: Optional[OVERRIDES["examples"]] = _section_field("examples")  # type: ignore[valid-type]
    tokenizer: Optional[OVERRIDES["tokenizer"]] = _section_field("tokenizer")  # type: ignore[valid-type]
    shards: Optional[OVERRIDES["shards"]] = _section_field("shards")  # type: ignore[valid-type]
    # Deprecated flat fields (LEGACY_OVERRIDES); the per-section tables above win over them.
    history_n: Optional[int] = Field(default=None, description="Deprecated: use histories.n.")
    history_k: Optional[int] = Field(default=None, description="Deprecated: use histories.k.")
    split_salt: Optional[str] = Field(default=None, description="Deprecated: use examples.split_salt.")
    validation_fraction: Optional[float] = Field(default=None, description="Deprecated: use examples.validation_fraction.")
    test_fraction: Optional[float] = Field(default=None, description="Deprecated: use examples.test_fraction.")
    temporal_cutoff: Optional[str] = Field(default=None, description="Deprecated: use examples.temporal_cutoff.")
    user_disjoint: Optional[bool] = Field(default=None, description="Deprecated: use examples.user_disjoint.")
    tokenizer_vocab_size: Optional[int] = Field(default=None, description="Deprecated: use tokenizer.vocab_size.")

    def load(self) -> cfgmod.CorpusConfig:
        """The CorpusConfig from the file with this resource's overrides applied (validated)."""
        cfg = cfgmod.load(self.config_path)
        top = {}
        if self.out:
            top["out"] = self.out
        if self.engine:
            if self.engine not in cfgmod.ENGINES:
                raise cfgmod.ConfigError(f"corpus resource: engine={self.engine!r}; choose one of {cfgmod.ENGINES}")
            top["engine"] = self.engine
        sections = {k: dict(v) for k, v in cfg.sections.items()}
        legacy: dict[str, dict] = {}
        for field_name, (section, key) in LEGACY_OVERRIDES.items():
            value = getattr(self, field_name)
            if value is not None:
                logging.getLogger("socialcorpus").warning(
                    "corpus resource: %s is deprecated; use %s: {%s: …}", field_name, section, key)
                legacy.setdefault(section, {})[key] = value
        for name in OVERRIDES:
            given = getattr(self, name)
            if given is None and name not in legacy:
                continue
            values = {**legacy.get(name, {}), **(given.model_dump(exclude_none=True) if given is not None else {})}
            if values:
                for alias in settings.SECTIONS[name].ALIASES:  # a table under its old name merges in
                    sections.setdefault(name, {}).update(sections.pop(alias, {}))
                sections.setdefault(name, {}).update(values)
        cfg = cfg.with_overrides(sections=sections, **top)
        for name in OVERRIDES:
            if getattr(self, name) is not None or name in legacy:
                try:
                    cfg.section(settings.SECTIONS[name])  # unknown keys or bad values fail here, naming the section
                except cfgmod.ConfigError as e:
                    raise cfgmod.ConfigError(f"corpus resource overrides: {e}") from e
        return cfg


class PseudonymSecret(ConfigurableResource):
    """The key for author pseudonyms. Set it with ``EnvVar("SOCIALCORPUS_SECRET")`` so the UI
    shows the variable's name, never its value. Left unset, the stage falls back on
    $SOCIALCORPUS_SECRET and then on the config's labelled demo secret, else refuses to run."""

    value: Optional[str] = Field(default=None, description="The secret (use an EnvVar; never a literal).")


class CorpusStorage(ConfigurableResource):
    """Storage through fsspec: lists and opens files at any URL (local, s3://, gs://, memory://)."""

    storage_options: dict[str, str] = Field(default_factory=dict,
                                            description="fsspec options for the landing folder's filesystem.")

    def filesystem(self, url: str):
        fs, path = fsspec.core.url_to_fs(url, **self.storage_options)
        return fs, path

    def list_files(self, url: str) -> dict[str, int]:
        """Every file under ``url`` (recursively) as ``{url-or-path: size in bytes}``, sorted."""
        fs, root = self.filesystem(url)
        if not fs.exists(root):
            return {}
        proto = url.split("://", 1)[0] + "://" if "://" in url and not url.startswith("file://") else ""
        found = fs.find(root, detail=True)
        return {proto + p if proto and not p.startswith(proto) else p: int(info.get("size") or 0)
                for p, info in sorted(found.items()) if info.get("type", "file") == "file"}


def run_context(corpus: CorpusConfigResource, secret: PseudonymSecret, log: logging.Logger,
                spark=None) -> RunContext:
    """The pipelines' RunContext for one Dagster step. ``spark``: the SparkResource, whose
    settings replace the corpus file's `[spark]` section when the engine is Spark."""
    return RunContext(config=corpus.load(), log=log, secret_value=secret.value,
                      spark_config=spark.spark_config() if spark is not None else None)
