"""Dagster resources: the corpus configuration, the pseudonym secret, and fsspec storage.

The same TOML file drives `socialcorpus build` and Dagster; the resource may override a
few settings (storage root, engine, history sizes, split and tokenizer settings) so a
deployment can differ from the file without editing it. Each override names a field of
a stage's config dataclass (``OVERRIDES``); a test checks that every one still exists.
"""

from __future__ import annotations

import logging
from typing import Optional

import fsspec
from dagster import ConfigurableResource
from pydantic import Field

from pipelines.core import config as cfgmod
from pipelines.core.context import RunContext

# resource field -> (config section, field of that section's dataclass)
OVERRIDES: dict[str, tuple[str, str]] = {
    "history_n": ("history", "n"),
    "history_k": ("history", "k"),
    "split_salt": ("examples", "split_salt"),
    "validation_fraction": ("examples", "validation_fraction"),
    "test_fraction": ("examples", "test_fraction"),
    "temporal_cutoff": ("examples", "temporal_cutoff"),
    "user_disjoint": ("examples", "user_disjoint"),
    "tokenizer_vocab_size": ("tokenizer", "vocab_size"),
}


class CorpusConfigResource(ConfigurableResource):
    """The corpus configuration file, plus optional overrides of its settings."""

    config_path: str = Field(description="Path of the corpus TOML file (the one `socialcorpus build` reads).")
    out: Optional[str] = Field(default=None, description="Storage root URL for every table (overrides `out`).")
    engine: Optional[str] = Field(default=None, description="`polars` or `spark` (overrides `engine`).")
    history_n: Optional[int] = Field(default=None, description="[history] n: messages read before each message (1..10).")
    history_k: Optional[int] = Field(default=None, description="[history] k: the author's own previous messages.")
    split_salt: Optional[str] = Field(default=None, description="[examples] split_salt: salt of the thread-hash split.")
    validation_fraction: Optional[float] = Field(default=None, description="[examples] validation_fraction.")
    test_fraction: Optional[float] = Field(default=None, description="[examples] test_fraction.")
    temporal_cutoff: Optional[str] = Field(default=None, description="[examples] temporal_cutoff: later threads go to test.")
    user_disjoint: Optional[bool] = Field(default=None, description="[examples] user_disjoint: hold out users.")
    tokenizer_vocab_size: Optional[int] = Field(default=None, description="[tokenizer] vocab_size.")

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
        for field, (section, key) in OVERRIDES.items():
            value = getattr(self, field)
            if value is not None:
                sections.setdefault(section, {})[key] = value
        cfg = cfg.with_overrides(sections=sections, **top)
        for section, _ in set(OVERRIDES.values()):
            if section in sections:
                cfg.section(section)  # unknown keys or bad values fail here, naming the section
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
