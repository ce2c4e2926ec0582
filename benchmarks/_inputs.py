"""Benchmark inputs generated from the real samples (read in place, never copied)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from pipelines.core import storage
from pipelines.stages.dedup import dedup_records
from pipelines.stages.ingest import ingest

REAL = Path(os.environ.get("SOCIALCORPUS_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))


def real_sources(real: Path = REAL) -> list[dict]:
    """One `[[sources]]` entry per format, pointing at the real samples in place (tests use it too)."""
    r = str(real)
    return [
        {"format": "reddit", "paths": [f"{r}/reddit/*.zst", f"{r}/reddit/*.ndjson"]},
        {"format": "stackexchange", "paths": [f"{r}/stackexchange"]},
        {"format": "discourse", "paths": [f"{r}/discourse/*.json"]},
        {"format": "diplomacy", "paths": [f"{r}/diplomacy/train.jsonl"]},
        {"format": "discord", "paths": [f"{r}/discord/dce-frontend-example-guild/*.json"]},
        {"format": "slack", "paths": [f"{r}/slack/slack-export-viewer_testarchive"]},
        {"format": "telegram", "paths": [f"{r}/telegram/*.json"]},
        {"format": "irc", "paths": [f"{r}/irc/ubuntu/*/*/*/*.txt"]},
    ]


def real_messages() -> pl.DataFrame:
    """Reddit, IRC and Discord sample messages after record dedup."""
    with tempfile.TemporaryDirectory() as d:
        for fmt, pat in {"reddit": "reddit/*.zst", "irc": "irc/ubuntu/*/*/*/*.txt",
                         "discord": "discord/dce-frontend-example-guild/*.json"}.items():
            ingest(fmt, [str(REAL / pat)], f"{d}/raw/{fmt}", f"{d}/q/{fmt}")
        return dedup_records(storage.read(f"{d}/raw"))[0]


# --- a large Reddit dump in the real Pushshift layout -----------------------------------------

BAD_EVERY = 10_000  # one broken line per this many, so the benchmark pays for the quarantine path too


def write_reddit_dump(path: str, messages: int, seed: int = 0) -> int:
    """Write ``messages`` Reddit comment lines to ``path`` as one long-window `.zst` frame.

    The lines replay the real RC_2005-12 sample (its field order, lengths and text) with new
    ids, threads and times, so the reader sees what a Pushshift month holds; every
    ``BAD_EVERY``-th line is cut in half (an ``invalid_json`` quarantine row). Streamed: memory
    does not grow with ``messages``. Returns the number of lines written.
    """
    import orjson
    import zstandard

    from pipelines.sample import ZSTD_LEVEL, ZSTD_WINDOW_LOG, b36

    with open(REAL / "reddit" / "RC_2005-12.zst", "rb") as f:
        data = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read()
    templates = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG,
                                                            write_checksum=True, write_content_size=False)
    t0 = 1_134_000_000 + seed
    with open(path, "wb") as out, zstandard.ZstdCompressor(compression_params=params).stream_writer(out) as w:
        buf = []
        for i in range(messages):
            c = dict(templates[(i * 7919) % len(templates)])
            thread = i // 25
            c.update(id=b36(10_000 + i), link_id=f"t3_{b36(thread)}",
                     parent_id=f"t3_{b36(thread)}" if i % 25 == 0 else f"t1_{b36(10_000 + i - 1)}",
                     created_utc=t0 + i // 4)
            line = orjson.dumps(c)
            if i % BAD_EVERY == BAD_EVERY - 1:
                line = line[: len(line) // 2]
            buf.append(line)
            if len(buf) >= 10_000:
                w.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            w.write(b"\n".join(buf) + b"\n")
    return messages
