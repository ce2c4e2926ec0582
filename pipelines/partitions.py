"""Which input files form which partition of a source: one layout for the CLI and Dagster.

* Reddit: monthly partitions (``YYYY-MM``), as Pushshift/Arctic Shift publish dumps. A
  file's month comes from its name (``RC_2005-12.zst``, ``RS_2024-02.zst``); a file whose
  name carries no month (an ad-hoc export) is filed under the month of its first record,
  so it still lands in exactly one partition. A month is written to
  ``messages_raw/<source>/<YYYY-MM>`` and ``quarantine/<source>/<YYYY-MM>``, so re-running
  it replaces exactly that month and leaves the others untouched.
* Every other format: one partition per configured source, written to
  ``messages_raw/<source>`` and ``quarantine/<source>``.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import fsspec
import orjson
import zstandard

from pipelines.config import SourceConfig

MONTHLY_FORMATS = ("reddit",)
MONTH_IN_NAME = re.compile(r"R[CS]_(\d{4})-(\d{2})")
MAX_PEEK_BYTES = 1 << 20


class PartitionError(ValueError):
    """A dump file cannot be assigned to a partition; the message names the file and the fix."""


def _first_record_month(path: str) -> str | None:
    with fsspec.open(path, "rb") as raw:
        if path.endswith(".zst"):
            # Pushshift frames declare a 2 GiB window; only the first line is read.
            stream = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw)
            line = io.BufferedReader(stream).readline(MAX_PEEK_BYTES)
        else:
            line = raw.readline(MAX_PEEK_BYTES)
    try:
        created = orjson.loads(line).get("created_utc")
        return datetime.fromtimestamp(int(float(created)), tz=timezone.utc).strftime("%Y-%m")
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, OverflowError, zstandard.ZstdError):
        return None


def month_of_file(path: str) -> str:
    """``YYYY-MM`` of a Reddit dump file: from its name, else from its first record's ``created_utc``.

    Raises PartitionError naming the file when neither gives a month.
    """
    m = MONTH_IN_NAME.search(path.rsplit("/", 1)[-1])
    if m:
        return f"{m.group(1)}-{m.group(2)}"
    month = _first_record_month(path)
    if month is None:
        raise PartitionError(f"{path}: no month in the file name (RC_YYYY-MM / RS_YYYY-MM) and no readable "
                             f"`created_utc` in its first record; rename it after the month it covers.")
    return month


def files_by_month(source: SourceConfig) -> dict[str, list[str]]:
    """The source's files grouped by month, each list sorted."""
    from pipelines.ingest import expand_paths

    out: dict[str, list[str]] = {}
    for p in expand_paths(source.paths):
        out.setdefault(month_of_file(p), []).append(p)
    return {k: sorted(v) for k, v in sorted(out.items())}


def merge_summaries(per: list[dict], **head) -> dict:
    """One ingest summary from several (per source or per month): counts and reasons summed."""
    total = dict(head)
    for k in ("records", "messages", "quarantined", "skipped", "files"):
        total[k] = sum(p[k] for p in per)
    for k in ("skipped_by_reason", "quarantined_by_reason"):
        merged: dict[str, int] = {}
        for p in per:
            for r, n in p[k].items():
                merged[r] = merged.get(r, 0) + n
        total[k] = dict(sorted(merged.items()))
    return total
