"""Streamed table writes (issue #13): `storage.write_dataset` takes batches as they come and writes
a row group at a time, and the Polars engine hands it Polars' streaming batches, so no stage holds
its whole output table to write it. The bytes are those of writing each file in one piece.

Input: every real sample of Telegram, Slack, Discord and IRC after ingest (messages_raw rows).
"""

from __future__ import annotations

import hashlib

import narwhals as nw
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core import storage
from pipelines.engines.polars import PolarsEngine
from pipelines.stages.ingest import ingest
from schemas import MESSAGES


@pytest.fixture(scope="module")
def messages(real, tmp_path_factory) -> pa.Table:
    d = tmp_path_factory.mktemp("stream")
    for fmt, pat in {"telegram": "telegram/*.json", "slack": "slack/slack-export-viewer_testarchive",
                     "irc": "irc/ubuntu/*/*/*/*.txt", "discord": "discord/dce-frontend-example-guild/*.json"}.items():
        ingest(fmt, [str(real / pat)], str(d / "raw" / fmt), str(d / "quarantine" / fmt))
    t = storage.read_arrow(str(d / "raw")).sort_by("message_id")
    assert t.num_rows > 1_000
    return t


def _hashes(url: str) -> dict[str, str]:
    fs, path = storage.fs_and_path(url)
    return {p.rsplit("/", 1)[1]: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in storage.dataset_files(url)}


def _whole(table: pa.Table, url: str, rows_per_file: int, row_group_rows: int) -> None:
    """The old way: each file's rows in one table, written with one call."""
    fs, path = storage.fs_and_path(url)
    fs.makedirs(path, exist_ok=True)
    for i, a in enumerate(range(0, table.num_rows, rows_per_file)):
        with fs.open(f"{path}/part-{i:05d}.parquet", "wb") as f:
            pq.write_table(table.slice(a, rows_per_file).combine_chunks(), f, row_group_size=row_group_rows,
                           **storage.PARQUET_OPTIONS)


@pytest.mark.parametrize("batch_rows", [1, 37, 500, 10**9])
def test_streamed_files_are_byte_identical_to_files_written_whole(messages, tmp_path, batch_rows):
    # Files cut at 700 rows, row groups of 256: a file ends mid row group, and the next file's
    # row groups start again at its first row.
    _whole(messages, str(tmp_path / "whole"), 700, 256)
    batches = (messages.slice(a, batch_rows) for a in range(0, messages.num_rows, batch_rows))
    names = storage.write_dataset(str(tmp_path / "streamed"), batches, rows_per_file=700, row_group_rows=256)
    assert names == [f"part-{i:05d}.parquet" for i in range(-(-messages.num_rows // 700))]
    assert _hashes(str(tmp_path / "streamed")) == _hashes(str(tmp_path / "whole"))
    groups = [pq.ParquetFile(f).metadata.num_row_groups for f in storage.dataset_files(str(tmp_path / "streamed"))]
    assert groups[0] == 3  # 256 + 256 + 188


def test_batches_are_pulled_as_they_are_written_not_all_first(messages, tmp_path):
    pulled, written = [], []
    real_write = storage._write_file

    def batches():
        for a in range(0, messages.num_rows, 100):
            pulled.append(a)
            yield messages.slice(a, 100)

    def spy(fs, path, data, *args, **kw):
        written.append(len(pulled))
        return real_write(fs, path, data, *args, **kw)

    storage._write_file, saved = spy, storage._write_file
    try:
        storage.write_dataset(str(tmp_path / "t"), batches(), rows_per_file=300, row_group_rows=100)
    finally:
        storage._write_file = saved
    # The first file starts after its first row group's batch, not after the whole input.
    assert written[0] == 1 and len(written) == -(-messages.num_rows // 300)


def test_an_empty_stream_still_writes_a_readable_empty_file(messages, tmp_path):
    storage.write_dataset(str(tmp_path / "e"), iter([messages.slice(0, 0)]))
    back = storage.read_arrow(str(tmp_path / "e"))
    assert back.num_rows == 0 and back.schema == messages.schema
    with pytest.raises(ValueError, match="no schema given"):
        storage.write_dataset(str(tmp_path / "f"), iter([]))


def test_the_polars_engine_writes_what_a_collect_and_write_wrote(messages, tmp_path):
    src = str(tmp_path / "src")
    storage.write_dataset(src, messages, rows_per_file=50_000)
    engine = PolarsEngine()
    frame = engine.scan(src, MESSAGES).filter(nw.col("platform") != "irc")
    engine.write(frame, str(tmp_path / "streamed"), MESSAGES, order_by=["created_at", "message_id"])
    expected = frame.to_native().sort(["created_at", "message_id"]).collect()
    storage.write_dataset(str(tmp_path / "whole"), MESSAGES.conform(expected.to_arrow()).combine_chunks())
    assert _hashes(str(tmp_path / "streamed")) == _hashes(str(tmp_path / "whole"))
    assert storage.read_arrow(str(tmp_path / "streamed")).num_rows == expected.height > 0
