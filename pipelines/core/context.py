"""What a stage run gets: the corpus configuration, a logger for progress, and the secret."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from pipelines.core.config import CorpusConfig
from pipelines.core.settings import SparkConfig

SECRET_ENV = "SOCIALCORPUS_SECRET"


class MissingSecretError(RuntimeError):
    pass


@dataclass
class RunContext:
    config: CorpusConfig
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("socialcorpus"))
    # An explicit secret (e.g. from a Dagster resource) wins over the environment.
    secret_value: str | None = None
    # A SparkConfig from outside the corpus file (the Dagster `spark` resource) wins over `[spark]`.
    spark_config: object | None = None

    def spark(self):
        """The SparkSession for this run (engine = "spark")."""
        from pipelines.engines.spark import session

        return session(self.spark_config or self.config.section(SparkConfig))

    def secret(self) -> bytes:
        """The pseudonym key: explicit value, else $SOCIALCORPUS_SECRET, else the config's demo secret.

        Raises MissingSecretError (with what to do) when none is set. Never log the value.
        """
        value = self.secret_value or os.environ.get(SECRET_ENV)
        if not value:
            demo = self.config.sections.get("anonymize", {}).get("demo_secret")
            value = demo
        if not value:
            raise MissingSecretError(
                f"anonymisation needs a secret key for author pseudonyms: set the environment variable "
                f"{SECRET_ENV} (keep it stable across rebuilds and out of version control), or pass it "
                f"through the Dagster `pseudonym_secret` resource.")
        return value.encode("utf-8")
