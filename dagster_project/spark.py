"""Dagster resource giving a SparkSession for the Spark engine (`engine = "spark"`).

The fields mirror :class:`pipelines.engines.spark.SparkConfig` (the `[spark]` section) and
take their defaults from it, so a setting is defined once. Unset (None) fields keep the
corpus file's `[spark]` value when the resource is built with :meth:`from_corpus`.

    defs = Definitions(..., resources={"spark": SparkResource(master="spark://host:7077")})
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from pipelines.engines.spark import SparkConfig

_DEFAULTS = {name: f.get_default(call_default_factory=True) for name, f in SparkConfig.model_fields.items()}


class SparkResource(ConfigurableResource):
    """A SparkSession from a SparkConfig (master URL, app name, `spark.*` settings)."""

    master: str = Field(default=_DEFAULTS["master"],
                        description="Spark master URL: local[*], local[2], spark://host:7077, yarn, k8s://…")
    app_name: str = Field(default=_DEFAULTS["app_name"], description="Application name shown by the cluster manager.")
    conf: dict[str, str] = Field(default_factory=dict,
                                 description='Any spark.* settings, e.g. {"spark.executor.memory": "8g"}.')
    shuffle_partitions: int = Field(default=_DEFAULTS["shuffle_partitions"],
                                    description="spark.sql.shuffle.partitions unless conf sets it.")

    @classmethod
    def from_corpus(cls, corpus_config) -> "SparkResource":
        """The resource for a CorpusConfig's `[spark]` section."""
        cfg: SparkConfig = corpus_config.section(SparkConfig)
        return cls(master=cfg.master, app_name=cfg.app_name, conf={k: str(v) for k, v in cfg.conf.items()},
                   shuffle_partitions=cfg.shuffle_partitions)

    def spark_config(self) -> SparkConfig:
        """The validated SparkConfig (a conf key not starting with `spark.` is an error)."""
        return SparkConfig(master=self.master, app_name=self.app_name, conf=dict(self.conf),
                           shuffle_partitions=self.shuffle_partitions)

    def get_session(self):
        """Get or create the SparkSession (workers use this interpreter; see engines/spark.session)."""
        from pipelines.engines.spark import session

        return session(self.spark_config())
