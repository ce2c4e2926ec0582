"""The Polars engine's stage runs past their bucket sizes (dedup, timeline, near-dup's write: a bucket
of message ids at a time, merged on the table's order as they are written; examples in test_examples_write):
the same files byte for byte and the same counts as one bucket, on the real samples."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import TEST_SECRET
from pipelines.core.context import RunContext
from pipelines.engines.polars import PolarsEngine
from pipelines.stages import dedup, neardup, timeline


def _files(folder) -> dict[str, bytes]:
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


@pytest.mark.parametrize("module, inputs, output, rows", [
    (dedup, ["messages_raw"], "messages", 700),
    (timeline, ["messages_dedup"], "timeline", 900),
    (neardup, ["messages_anon"], "messages_dedup", 800),
])
def test_buckets_write_the_files_and_counts_of_one_bucket(real_built, tmp_path, monkeypatch, module, inputs, output,
                                                          rows):
    config, summary = real_built
    cfg = config.with_overrides(out=str(tmp_path / "out"))
    for name in inputs:
        shutil.copytree(config.table_url(name), cfg.table_url(name))
    monkeypatch.setattr(module, "BUCKET_ROWS", rows)
    engine = PolarsEngine(spill=True)
    got = module.run(RunContext(cfg, secret_value=TEST_SECRET), engine)
    assert engine._spill_dir and any(f.startswith("batches") for f in os.listdir(engine._spill_dir))  # runs spilled
    assert got.rows_in > 3 * rows                                   # several buckets
    want = summary[module.__name__.rsplit(".", 1)[1]]
    assert {k: v for k, v in got.summary().items() if k in want and k not in ("seconds", "peak_rss_mb")} == \
        {k: v for k, v in want.items() if k in got.summary() and k not in ("seconds", "peak_rss_mb")}
    assert _files(cfg.table_url(output)) == _files(config.table_url(output))
