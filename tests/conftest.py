"""Shared fixtures. Real sample dumps are read in place from ../shared/data/real (never copied)."""

import os
import tempfile
from pathlib import Path

import pytest

# The loader's local copies (remote shards, memory-mapped token stores) go to a folder of this test
# run, not the user's ~/.cache. Set before trainer.data is imported (it reads the variable once).
os.environ.setdefault("SOCIALCORPUS_SHARD_CACHE", tempfile.mkdtemp(prefix="socialcorpus-test-cache-"))

# real_sources(real): one `[[sources]]` entry per format over the real samples, shared with the benchmarks.
from benchmarks._inputs import real_sources  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("SOCIALCORPUS_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real() -> Path:
    """The folder of real public sample dumps (see its SOURCES.md)."""
    if not REAL.is_dir():
        pytest.fail(f"real sample data not found at {REAL}; set SOCIALCORPUS_REAL_DATA")
    return REAL


TEST_SECRET = "test-secret-not-for-production"


@pytest.fixture(scope="session")
def real_config(real, tmp_path_factory):
    """A CorpusConfig over every real sample, writing to a session temp dir."""
    from pipelines.core.config import from_dict

    out = tmp_path_factory.mktemp("real_out")
    return from_dict({"out": str(out), "sources": real_sources(real),
                      "tokenizer": {"vocab_size": 2000}}, base_dir=str(out))


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session (starting one costs ~10 s)."""
    from pipelines.engines.spark import SparkConfig, session

    s = session(SparkConfig(master="local[2]", shuffle_partitions=4,
                            conf={"spark.ui.enabled": "false", "spark.driver.memory": "2g"}))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def real_built(real_config):
    """The whole pipeline run once over every real sample: (config, {stage: summary}).

    Tests that only read the tables share this build; tests that need a variant build
    their own in a temp dir.
    """
    from pipelines.build import build
    from pipelines.core.context import RunContext

    summary = build(RunContext(real_config, secret_value=TEST_SECRET))
    return real_config, summary


@pytest.fixture(scope="session")
def demo_built(tmp_path_factory):
    """The demo corpus (`socialcorpus sample`, seed 0, scale 1) built through every stage, once.

    Returns the demo root: dumps and `corpus.toml` in `root/dumps`, tables in `root/dumps/out`.
    Shared with the trainer tests (tests/trainer_shards.py keeps one build per process).
    """
    from trainer_shards import build_demo_shards

    root = tmp_path_factory.mktemp("demo")
    build_demo_shards(root)
    from trainer_shards import _BUILT

    return Path(next(iter(_BUILT)))
