"""Benchmark inputs generated from the real samples (read in place, never copied)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from pipelines import storage
from pipelines.dedup import dedup_records
from pipelines.ingest import ingest

REAL = Path(os.environ.get("SOCIALCORPUS_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))


def real_messages() -> pl.DataFrame:
    """Reddit, IRC and Discord sample messages after record dedup."""
    with tempfile.TemporaryDirectory() as d:
        for fmt, pat in {"reddit": "reddit/*.zst", "irc": "irc/ubuntu/*/*/*/*.txt",
                         "discord": "discord/dce-frontend-example-guild/*.json"}.items():
            ingest(fmt, [str(REAL / pat)], f"{d}/raw/{fmt}", f"{d}/q/{fmt}")
        return dedup_records(storage.read(f"{d}/raw"))[0]
